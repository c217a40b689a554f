"""Shared fixtures (keep generic: anything specific to one area lives beside its tests)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.mariadb import MariaDBServer, available

MARIADB_MISSING = "MariaDB not installed: MySQL tests SKIPPED — run scripts/install-mariadb.sh"

# Property tests judge results, not speed: a busy CI machine's stall must not fail an example.
settings.register_profile("marketpipe", deadline=None)
settings.load_profile("marketpipe")


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """``marketpipe`` commands point the root logger at the sys.stderr of their test (pytest's capture,
    closed afterwards); restore it so a later test's log lines do not hit a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """URL of a throwaway MariaDB database for the session (tests using it are marked ``mysql``)."""
    if not available():
        pytest.skip(MARIADB_MISSING)
    server = MariaDBServer()
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


def pytest_report_header(config: pytest.Config) -> str | None:
    """Say loudly, before any test runs, that the MySQL tests will be skipped."""
    return None if available() else f"!!! {MARIADB_MISSING} !!!"
