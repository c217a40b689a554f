"""Run configuration: one settings mechanism for flags, the environment, ``marketpipe.toml`` and defaults.

Precedence, for every setting: command-line flag > environment variable > config file > default.

Each capability declares its settings once, as a :class:`Section` of :class:`Setting` (flag, environment
name, file key, default, help, check); the same table builds the ``run`` flags, reads the environment and
the file, validates the values and reports where each one came from (``marketpipe config``). What concerns
one exchange is declared in its ``service`` module, so this module names no exchange.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from marketpipe import envnames
from marketpipe.errors import ConfigError

SUPPORTED_SINKS = ("csv", "db", "lake")
TRANSPORTS = ("local", "kinesis")


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def positive(text: Any, name: str, kind: Callable[[str], Any] = float) -> Any:
    """``text`` as a positive number of ``kind``; ConfigError naming the flag otherwise."""
    try:
        value = kind(str(text))
    except ValueError as exc:
        raise ConfigError(f"{name}: expected a number, got {text!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name}: must be positive, got {text!r}")
    return value


def option_reader(options: Mapping[str, Any], env: Mapping[str, str]) -> Callable[[str, str], Any]:
    """``pick(option, variable)``: the flag (``opt_*``) over the environment variable, or None."""

    def pick(option: str, variable: str) -> Any:
        value = options.get(option)
        return value if value is not None else env.get(variable) or None

    return pick


@dataclass
class RunConfig:
    exchanges: list[str] = field(default_factory=list)
    """Capabilities to run, by name (the command: flag, file or every capability); empty, as code may leave
    it: ``capabilities.UNSET_EXCHANGES``."""
    data_dir: Path = Path("data")
    db_url: str | None = None
    lake_uri: str | None = None
    sinks: list[str] = field(default_factory=lambda: list(SUPPORTED_SINKS))
    duration: float | None = None
    simulate: bool = False
    compress_raw: bool = False
    flush_interval: float = 1.0
    lake_flush_interval: float = 10.0
    """How often a live run rewrites the lake files of windows still open (closed windows are written as
    they close, everything at a clean stop): the lake stays within ~10 s of the other stores, well inside
    the liveness check's default 60 s, and a ten-minute file is rewritten 60 times instead of 600."""
    stale_after: float = 30.0
    drain_timeout: float = 10.0
    subscription_retry: float = 5.0
    transport: str = "local"
    """``local``: capture files + sinks in this process; ``kinesis``: frames to Kinesis and S3 (AWS)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Per-capability settings: their own ``run`` flags (``opt_*``, see ``capabilities.add_run_arguments``)
    and overrides set by code (tests, the simulators)."""
    file: ConfigFile | None = None
    """The config file (``--config``, ``MARKETPIPE_CONFIG`` or ``./marketpipe.toml``): below the
    environment, above the defaults."""

    @property
    def resolved_db_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.data_dir / 'marketpipe.db').as_posix()}"

    @property
    def resolved_lake_uri(self) -> str:
        return self.lake_uri or str(self.data_dir / "lake")

    def validate(self) -> RunConfig:
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"unknown transport {self.transport!r} (supported: {', '.join(TRANSPORTS)})")
        bad_sinks = [s for s in self.sinks if s not in SUPPORTED_SINKS]
        if bad_sinks:
            raise ConfigError(f"unknown sink {bad_sinks[0]!r} (supported: {', '.join(SUPPORTED_SINKS)})")
        if self.duration is not None and self.duration <= 0:
            raise ConfigError(f"--duration must be positive, got {self.duration:g}")
        return self


# ------------------------------------------------------------------------------------------ settings
CONFIG_FILE_NAME = "marketpipe.toml"
"""Read from the current folder when neither ``--config`` nor ``MARKETPIPE_CONFIG`` names a file."""
OPAQUE_TABLES = ("aws",)
"""Tables the command does not read: ``[aws]`` is the CDK app's (``infra/config.py`` checks it)."""

KINDS = ("str", "int", "float", "bool", "strs", "numbers")
_EXPECTED = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "strs": "a list of strings",
    "numbers": "a list of numbers",
}


@dataclass
class ConfigFile:
    """A parsed ``marketpipe.toml``: its tables by name (``path`` None: no file)."""

    path: Path | None = None
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return str(self.path) if self.path is not None else CONFIG_FILE_NAME

    def table(self, name: str) -> dict[str, Any]:
        return self.tables.get(name, {})

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.label}: {key}: {message}")


def load_config_file(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> ConfigFile:
    """``path`` (``--config``), else ``MARKETPIPE_CONFIG``, else ``./marketpipe.toml`` if present, else none.

    A named file that is missing, or any file that is not TOML of tables, is one ConfigError line.
    """
    env = os.environ if env is None else env
    named = path if path is not None else env.get(envnames.CONFIG) or None
    if named is None:
        default = Path(CONFIG_FILE_NAME)
        if not default.is_file():
            return ConfigFile()
        named = default
    file = Path(named)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the config file ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    for name, value in data.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: {name}: unknown key (settings live in tables such as [run])")
    return ConfigFile(file, data)


def _number_token(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError
    text = str(value).strip()
    number = Decimal(text.replace("_", "").rstrip("%"))
    if not number.is_finite():
        raise ValueError
    return text


def _from_text(kind: str, text: str) -> Any:
    """A flag's or environment variable's text as the setting's TOML type; ValueError if it is not."""
    text = text.strip()
    if kind == "str":
        return text
    if kind == "int":
        return int(text)
    if kind == "float":
        value = float(text)
        if not math.isfinite(value):
            raise ValueError
        return value
    if kind == "bool":
        lowered = text.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError
    if kind == "strs":
        return split_list(text)
    try:
        return [_number_token(part) for part in split_list(text)]
    except InvalidOperation:
        raise ValueError from None


def _from_file(kind: str, value: Any) -> Any:
    """A TOML value as the setting's type; ValueError if it has another type."""
    if kind == "str" and isinstance(value, str):
        return value.strip()
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError
        return float(value)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "strs" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    if kind == "numbers" and isinstance(value, list):
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
            raise ValueError
        try:
            return [_number_token(v) for v in value]
        except InvalidOperation:
            raise ValueError from None
    raise ValueError


def _from_option(kind: str, value: Any) -> Any:
    """A value set by a flag or by code (a string, a list from a repeatable flag, or a number)."""
    if isinstance(value, str):
        return _from_text(kind, value)
    if kind in ("strs", "numbers") and isinstance(value, list | tuple):
        parts = [str(v).strip() for v in value if str(v).strip()]
        return parts if kind == "strs" else [_number_token(p) for p in parts]
    if kind == "bool" and isinstance(value, bool):
        return value
    return _from_text(kind, str(value))


@dataclass(frozen=True)
class Setting:
    """One setting, declared once: its file key, flag, environment name, default, help and check."""

    key: str
    """Key in the section's table of ``marketpipe.toml``."""
    default: Any
    """TOML-typed default (a list for ``strs``/``numbers``)."""
    help: str
    kind: str = "str"
    flag: str | None = None
    env: str | None = None
    dest: str | None = None
    """Key in ``RunConfig.options`` (the flag's argparse dest); default ``opt_<section>_<key>``."""
    metavar: str | None = None
    repeatable: bool = False
    """The flag may be given several times (each occurrence one item, not split at commas)."""
    check: Callable[[Any], Any] | None = None
    """Typed value -> the domain's value; ConfigError (without the setting's name) when impossible."""
    mask: Callable[[str], str] | None = None
    """How ``marketpipe config`` shows a string value that must not be printed whole (a URL's password,
    phone numbers)."""

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind


@dataclass(frozen=True)
class Resolved:
    """A setting's effective value, where it came from, and the domain's value (``checked``)."""

    section: str
    setting: Setting
    value: Any
    source: str
    """``flag --x``, ``env NAME``, ``file PATH`` or ``default``."""
    checked: Any = None

    @property
    def name(self) -> str:
        return f"{self.section}.{self.setting.key}"


@dataclass(frozen=True)
class Section:
    """A table of ``marketpipe.toml`` and the settings it holds (one per capability, plus the shared ones)."""

    name: str
    title: str
    settings: tuple[Setting, ...]

    def dest(self, setting: Setting) -> str:
        return setting.dest or f"opt_{self.name}_{setting.key}"

    def __getitem__(self, key: str) -> Setting:
        for setting in self.settings:
            if setting.key == key:
                return setting
        raise KeyError(key)

    def add_arguments(
        self, parser: argparse.ArgumentParser, title: str | None = None, keys: Sequence[str] | None = None
    ) -> None:
        """Every setting with a flag (of ``keys``, default all), as an argparse argument whose default is
        None (= not given)."""
        flagged = [s for s in self.settings if s.flag and (keys is None or s.key in keys)]
        if not flagged:
            return
        group = parser.add_argument_group(title or self.title)
        for s in flagged:
            assert s.flag is not None
            where = [f"env {s.env}"] if s.env else []
            where.append(f"file {self.name}.{s.key}")
            shown = (
                ",".join(map(str, s.default))
                if isinstance(s.default, list)
                else display_value(s.default, s.kind)
            )
            default = "" if s.default in ("", None, []) else f"; default {shown}"
            help_text = f"{s.help} ({', '.join(where)}{default})".replace("%", "%%")
            metavar = s.metavar or _METAVARS[s.kind]
            if s.kind == "bool":
                group.add_argument(s.flag, dest=self.dest(s), action="store_const", const="true",
                                   help=help_text)  # fmt: skip
            else:
                action = "append" if s.repeatable else "store"
                group.add_argument(s.flag, dest=self.dest(s), action=action, metavar=metavar, help=help_text)

    def check_file(self, file: ConfigFile) -> None:
        """Unknown keys, wrong types and impossible values in this section's table: one ConfigError
        naming the key."""
        table = file.table(self.name)
        known = {s.key: s for s in self.settings}
        for key, value in table.items():
            setting = known.get(key)
            if setting is None:
                raise file.error(f"{self.name}.{key}", f"unknown key (known: {', '.join(known)})")
            try:
                typed = _from_file(setting.kind, value)
            except ValueError:
                raise file.error(f"{self.name}.{key}", f"expected {_EXPECTED[setting.kind]}") from None
            if setting.check is not None:  # an impossible value is refused whether its capability runs or not
                try:
                    setting.check(typed)
                except ConfigError as exc:
                    raise file.error(f"{self.name}.{key}", str(exc)) from None

    def resolve_one(
        self, setting: Setting, options: Mapping[str, Any], env: Mapping[str, str], file: ConfigFile | None
    ) -> Resolved:
        """Flag (or code) > environment > file > default, typed and checked; ConfigError naming the source."""
        option = options.get(self.dest(setting))
        if option is not None and option != []:
            label = setting.flag or self.dest(setting)
            source = f"flag {label}" if setting.flag else f"option {label}"
            raw_value, parse, prefix = option, _from_option, f"{label}: "
        elif setting.env and env.get(setting.env, "").strip():
            source, raw_value, parse, prefix = f"env {setting.env}", env[setting.env], _from_option, ""
            prefix = f"{setting.env}: "
        elif file is not None and setting.key in file.table(self.name):
            source, raw_value, parse = f"file {file.label}", file.table(self.name)[setting.key], _from_file
            prefix = f"{file.label}: {self.name}.{setting.key}: "
        else:
            value = setting.default
            checked = setting.check(value) if setting.check else value
            return Resolved(self.name, setting, value, "default", checked)
        try:
            value = parse(setting.kind, raw_value)
        except (ValueError, InvalidOperation):
            raise ConfigError(f"{prefix}expected {_EXPECTED[setting.kind]}, got {raw_value!r}") from None
        try:
            checked = setting.check(value) if setting.check else value
        except ConfigError as exc:
            raise ConfigError(f"{prefix}{exc}") from None
        return Resolved(self.name, setting, value, source, checked)

    def resolve(
        self,
        options: Mapping[str, Any],
        env: Mapping[str, str],
        file: ConfigFile | None = None,
        *,
        whole_table: bool = True,
    ) -> dict[str, Resolved]:
        """Every setting resolved; ``whole_table``: also refuse keys of the table this section does not
        declare (False for a section that reads part of a table, such as :data:`STORES`)."""
        if file is not None and whole_table:
            self.check_file(file)
        return {s.key: self.resolve_one(s, options, env, file) for s in self.settings}

    def values(
        self,
        options: Mapping[str, Any],
        env: Mapping[str, str],
        file: ConfigFile | None = None,
        *,
        whole_table: bool = True,
    ) -> dict[str, Any]:
        """Each setting's checked value by key."""
        resolved = self.resolve(options, env, file, whole_table=whole_table)
        return {key: r.checked for key, r in resolved.items()}


_METAVARS = {"str": "TEXT", "int": "N", "float": "SECONDS", "bool": "", "strs": "LIST", "numbers": "LIST"}


def check_file_tables(file: ConfigFile, sections: Iterable[Section]) -> None:
    """Unknown tables, unknown keys and wrong types anywhere in the file: one ConfigError naming the key."""
    by_name = {s.name: s for s in sections}
    for name in file.tables:
        if name not in by_name and name not in OPAQUE_TABLES:
            known = ", ".join([*by_name, *OPAQUE_TABLES])
            raise file.error(name, f"unknown table (known: {known})")
    for section in by_name.values():
        section.check_file(file)


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_URL_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]+@")


def mask_url_password(url: str) -> str:
    """``mysql+pymysql://user:secret@host/db`` -> ``mysql+pymysql://user:***@host/db``."""
    return _URL_PASSWORD.sub(r"\1***@", url)


def display_value(value: Any, kind: str, mask: Callable[[str], str] | None = None) -> str:
    """A value as TOML (what ``marketpipe config`` prints, and the flags' help shows as defaults)."""
    if kind == "bool":
        return "true" if value else "false"
    if kind in ("int", "float"):
        return str(value)
    if kind == "strs":
        return "[" + ", ".join(_toml_string(v) for v in value) + "]"
    if kind == "numbers":
        return "[" + ", ".join(str(v) for v in value) + "]"
    text = str(value)
    return _toml_string(mask(text) if mask is not None and text else text)


def describe(resolved: Sequence[Resolved]) -> list[str]:
    """TOML lines ``key = value  # source`` for one section's resolved settings."""
    width = max((len(r.setting.key) for r in resolved), default=0)
    lines = []
    for r in resolved:
        value = display_value(r.value, r.setting.kind, r.setting.mask)
        lines.append(f"{r.setting.key.ljust(width)} = {value}  # {r.source}")
    return lines


def positive_check(kind: Callable[[Any], Any] = float) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value <= 0:
            raise ConfigError(f"must be positive, got {value}")
        return kind(value)

    return check


def _sinks(sinks: list[str]) -> list[str]:
    bad = [s for s in sinks if s not in SUPPORTED_SINKS]
    if bad:
        raise ConfigError(f"unknown sink {bad[0]!r} (supported: {', '.join(SUPPORTED_SINKS)})")
    return sinks


STORE_SETTINGS = (
    Setting(
        "data_dir",
        "data",
        "root of CSV, raw capture, SQLite",
        flag="--data-dir",
        dest="data_dir",
        metavar="DIR",
    ),
    Setting(
        "db",
        "",
        "SQLAlchemy URL (empty: sqlite:///<data_dir>/marketpipe.db; mysql+pymysql://… for MySQL)",
        flag="--db",
        dest="db_url",
        metavar="URL",
        mask=mask_url_password,
    ),
    Setting(
        "lake",
        "",
        "lake root: a folder or s3://bucket/prefix (empty: <data_dir>/lake)",
        flag="--lake",
        dest="lake_uri",
        metavar="URI",
    ),
    Setting(
        "sinks",
        list(SUPPORTED_SINKS),
        "comma list of csv, db, lake",
        kind="strs",
        flag="--sinks",
        dest="sinks",
        check=_sinks,
    ),
)
"""The stores of ``[run]``: also read by ``replay`` and ``check``."""
COMPRESS_RAW = Setting(
    "compress_raw",
    False,
    "gzip the raw capture files",
    kind="bool",
    flag="--compress-raw",
    dest="compress_raw",
)
STORES = Section("run", "Stores", STORE_SETTINGS)
"""The part of ``[run]`` every command that opens the stores reads (the whole table: ``run_section``)."""


def run_section(exchanges: Setting) -> Section:
    """``[run]``: which capabilities run (declared by ``marketpipe.capabilities``) and the stores."""
    return Section("run", "Run", (exchanges, *STORE_SETTINGS, COMPRESS_RAW))


def apply_stores(config: RunConfig, values: Mapping[str, Any]) -> RunConfig:
    """The checked ``[run]`` store values into a RunConfig."""
    config.data_dir = Path(values["data_dir"])
    config.db_url = values["db"] or None
    config.lake_uri = values["lake"] or None
    config.sinks = list(values["sinks"])
    return config
