#!/usr/bin/env bash
# Install a MariaDB server for the MySQL integration tests (tests/mariadb.py starts a throwaway
# instance; the system service is never used). Safe to re-run: does nothing when already installed.
# Always exits 0 so CI can call it unconditionally; the tests then skip loudly if it failed.
set -u

banner() {
    echo "################################################################" >&2
    echo "# $*" >&2
    echo "################################################################" >&2
}

if command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; then
    echo "MariaDB server already installed: $(/usr/sbin/mariadbd --version 2>/dev/null || mariadbd --version)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    banner "install-mariadb.sh: not root, cannot install mariadb-server (MySQL tests will be SKIPPED)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    banner "install-mariadb.sh: apt-get not found, install mariadb-server yourself (MySQL tests will be SKIPPED)"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# The package's postinst would start a system service; we do not want one.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
fi

ok=1
apt-get update -qq >/dev/null 2>&1 || ok=0
if [ "$ok" -eq 1 ]; then
    apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client >/dev/null 2>&1 || ok=0
fi
[ "$created_policy" -eq 1 ] && rm -f "$policy"

if [ "$ok" -eq 1 ] && { command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; }; then
    echo "MariaDB server installed: $(/usr/sbin/mariadbd --version 2>/dev/null || mariadbd --version)"
else
    banner "install-mariadb.sh: apt-get install mariadb-server FAILED (MySQL tests will be SKIPPED)"
fi
exit 0
