"""Typed deployment configuration: ``marketpipe.toml`` (the file ``marketpipe run`` reads), overridden by
CDK context (``cdk.json`` or ``cdk deploy -c key=value``).

Precedence: context > file > default. What a local run and a deployment share is described once, in the
file: the Bitfinex symbols (``[bitfinex] symbols``), which capabilities run (``[run] exchanges``), the Bitso
books, thresholds and window, the execution markets and notionals, the Binance symbols and watches, the
alarm number (``[alerts] sms_to``); the AWS-only knobs are the file's ``[aws]`` table (snake_case field
names below; the context keys are their camelCase forms).

Every knob has a default that deploys a small, cheap, working pipeline, so a fresh clone needs no
configuration at all. Nothing account-specific lives here: the account and region come from the CDK
CLI's credentials, the alarm phone number and Plivo credentials are supplied at deploy time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from constructs import Node
from marketpipe.bitfinex.slots import SYMBOLS_PER_SLOT, slot_count, slot_name
from marketpipe.config import ConfigFile
from marketpipe.errors import ConfigError as LocalConfigError
from marketpipe.execution.processor import DEFAULT_MARKETS
from marketpipe.tables.bitfinex import BITFINEX_TABLES

BOOK_BUILDER_TABLES = tuple(t.name for t in BITFINEX_TABLES)

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                      2557, 2922, 3288, 3653)  # fmt: skip
_PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
_SYMBOL = re.compile(r"^[A-Z0-9]+-[A-Z0-9]+$")
ALL_SYMBOLS = "all"
"""``symbols: "all"``: every pair Bitfinex lists, resolved by the collector when it starts."""
SYMBOLS_PER_SHARD = 100
"""Symbols one provisioned Kinesis shard (1 MiB/s in) is planned for: ~10 KiB/s each, ~3x the
benchmark's per-symbol rate (3.6 KiB/s of raw-capture lines at ~23 book frames/s) and about a busy
book's (13 KiB/s at ~87 frames/s): docs/AWS.md."""


class ConfigError(ValueError):
    """A context value is present but unusable; raised at synth so nothing half-configured deploys."""


def _as_list(value: Any) -> list[str]:
    """Context from ``-c key=a,b`` arrives as a string, from ``cdk.json`` as a list: accept both."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = json.loads(text)
        else:
            return [part.strip() for part in text.split(",") if part.strip()]
    if not isinstance(value, list | tuple):
        raise ConfigError(f"expected a list or comma-separated string, got {value!r}")
    return [str(v).strip() for v in value if str(v).strip()]


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise ConfigError(f"expected a boolean, got {value!r}")


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"expected an integer, got {value!r}")
    try:
        return int(str(value).strip())
    except ValueError as exc:
        raise ConfigError(f"expected an integer, got {value!r}") from exc


def _as_str(value: Any) -> str:
    return str(value).strip()


@dataclass(frozen=True)
class MarketpipeConfig:
    """Deployment knobs; field names map to camelCase context keys (``shard_count`` → ``shardCount``)."""

    stack_name: str = "Marketpipe"
    symbols: tuple[str, ...] = ("BTC-USD", "ETH-USD")
    exchanges: tuple[str, ...] = ("bitfinex",)
    """What the Fargate collector streams besides Binance (which ``binance`` adds): the file's
    ``[run] exchanges`` among :data:`COLLECTOR_EXCHANGES`."""
    # The capabilities that run as Lambdas or beside the collector (file: listed in [run] exchanges).
    binance: bool = True
    bitso_spreads: bool = True
    execution_price: bool = True
    # Capability settings shared with `marketpipe run` (file tables [bitso], [execution], [binance]).
    bitso_books: tuple[str, ...] = ("btc_mxn", "usd_mxn")
    spread_thresholds: tuple[str, ...] = ("1.0", "0.5", "0.1")
    bitso_window_seconds: int = 600
    execution_markets: tuple[str, ...] = DEFAULT_MARKETS
    execution_notionals: tuple[str, ...] = ("100000", "50000")
    binance_symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
    binance_watch: tuple[str, ...] = ()
    # What the book builder also writes to SQL (the lake always gets every table and symbol): at scale
    # a db.t4g.micro cannot take hundreds of books' 404-column rows. Empty symbols: all of `symbols`.
    sql_tables: tuple[str, ...] = ("bitfinex_trades", "bitfinex_quotes", "bitfinex_book")
    sql_symbols: tuple[str, ...] = ()
    # Kinesis: one provisioned shard carries 1 MB/s in; planned for SYMBOLS_PER_SHARD symbols.
    shard_count: int = 1
    stream_retention_hours: int = 24
    # Book-builder event source.
    batch_size: int = 500
    # Concurrent batches per shard (1..10). Lambda keeps the order of each partition key whatever the
    # factor, and the book builder checkpoints per key, so a factor above 1 adds throughput per shard.
    parallelization_factor: int = 1
    # Each invocation merges into the current 60 s lake window per table/symbol (GET + PUT + a new
    # object version): 10 s keeps that to ~6 rewrites a window instead of ~60, at 10 s of lag.
    max_batching_window_seconds: int = 10
    retry_attempts: int = 10
    max_record_age_seconds: int = 6 * 3600
    book_builder_memory_mb: int = 1024
    book_builder_timeout_seconds: int = 120
    iterator_age_alarm_ms: int = 5 * 60 * 1000
    # Collector task.
    collector_cpu: int = 256
    collector_memory_mb: int = 512
    # RDS MySQL. 8.4 is the MySQL 8 LTS line; 8.0 left RDS standard support on 2026-07-31 and new
    # 8.0 instances would be billed for Extended Support (about $146/month on a 2-vCPU t4g.micro).
    db_engine_version: str = "8.4"
    db_instance_class: str = "t4g.micro"
    db_allocated_storage_gb: int = 20
    db_name: str = "marketpipe"
    db_multi_az: bool = False
    db_deletion_protection: bool = True
    db_backup_retention_days: int = 7
    # Lake and archive.
    glue_database_name: str = "marketpipe"
    lake_start_date: str = "2025-01-01"
    raw_archive_transition_days: int = 30
    raw_archive_expiration_days: int = 0  # 0 keeps the raw capture (the write-ahead log) forever
    failed_batch_expiration_days: int = 90
    athena_results_expiration_days: int = 30
    athena_bytes_scanned_cutoff_gb: int = 10
    # The Iceberg lake (the Bitfinex tables; docs/AWS.md "The Iceberg lake"). Snapshots older than this
    # are expired by the maintenance Lambda: every append adds one, and every commit rewrites them all.
    iceberg_snapshot_hours: float = 0.5
    # Unreferenced files (lost optimistic commits, files of expired snapshots) older than this are
    # deleted by the Glue orphan-file optimizer; nothing legitimately stays unreferenced for minutes.
    iceberg_orphan_retention_days: int = 1
    # Create the Iceberg tables (custom resource) and their Glue optimizers. false for one deploy, to move
    # a stack deployed with the old Parquet Glue tables of the same names (docs/AWS.md): CloudFormation
    # deletes those by name only at the end of an update. false also pauses the book builder's mapping.
    iceberg_tables: bool = True
    depth_levels: int = 10
    retain_data: bool = True
    # Observability.
    log_retention_days: int = 30
    alarm_phone_number: str = ""
    tags: Mapping[str, str] = field(default_factory=lambda: {"project": "marketpipe"})

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ConfigError("symbols: at least one symbol is required")
        if ALL_SYMBOLS in self.symbols and len(self.symbols) > 1:
            raise ConfigError(f"symbols: '{ALL_SYMBOLS}' stands alone, not in a list of symbols")
        for symbol in self.symbols:
            if symbol != ALL_SYMBOLS and not _SYMBOL.match(symbol):
                raise ConfigError(
                    f"symbols: {symbol!r} is not a normalized BASE-QUOTE symbol (BTC-USD) or '{ALL_SYMBOLS}'"
                )
        if len(set(self.symbols)) != len(self.symbols):
            raise ConfigError("symbols: each symbol once")
        unknown_tables = sorted(set(self.sql_tables) - set(BOOK_BUILDER_TABLES))
        if unknown_tables:
            raise ConfigError(
                f"sqlTables: {', '.join(unknown_tables)} not written by the book builder "
                f"(choose from {', '.join(BOOK_BUILDER_TABLES)})"
            )
        for symbol in self.sql_symbols:
            if not _SYMBOL.match(symbol):
                raise ConfigError(f"sqlSymbols: {symbol!r} is not a normalized BASE-QUOTE symbol (BTC-USD)")
        stray = [] if self.all_symbols else sorted(set(self.sql_symbols) - set(self.symbols))
        if stray:
            raise ConfigError(f"sqlSymbols: {', '.join(stray)} not among the collected symbols")
        if not 1 <= self.shard_count <= 500:
            raise ConfigError("shardCount must be between 1 and 500")
        needed = self.shards_needed
        if needed is not None and self.shard_count < needed:
            raise ConfigError(
                f"shardCount: {len(self.symbols)} symbols need at least {needed} Kinesis shards "
                f"({SYMBOLS_PER_SHARD} symbols per 1 MB/s shard), not {self.shard_count}"
            )
        if not 24 <= self.stream_retention_hours <= 8760:
            raise ConfigError("streamRetentionHours must be between 24 and 8760")
        if not 1 <= self.parallelization_factor <= 10:
            raise ConfigError("parallelizationFactor must be between 1 and 10")
        if not 1 <= self.batch_size <= 10000:
            raise ConfigError("batchSize must be between 1 and 10000")
        if not 0 <= self.max_batching_window_seconds <= 300:
            raise ConfigError("maxBatchingWindowSeconds must be between 0 and 300")
        if not 0 <= self.retry_attempts <= 10000:
            raise ConfigError("retryAttempts must be bounded (0..10000): unbounded retries stall a shard")
        if not 60 <= self.max_record_age_seconds <= 604800:
            raise ConfigError("maxRecordAgeSeconds must be between 60 and 604800")
        if self.max_record_age_seconds > self.stream_retention_hours * 3600:
            raise ConfigError("maxRecordAgeSeconds must not exceed the stream retention")
        if self.alarm_phone_number and not _PHONE.match(self.alarm_phone_number):
            raise ConfigError("alarmPhoneNumber must be E.164 (+15551234567) or empty")
        if not re.match(r"^[a-z0-9_]+$", self.glue_database_name):
            raise ConfigError("glueDatabaseName: lowercase letters, digits and underscores only")
        if not re.match(r"^\d{4}-\d{2}-\d{2}$", self.lake_start_date):
            raise ConfigError("lakeStartDate must be YYYY-MM-DD")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ConfigError(f"logRetentionDays must be one of {LOG_RETENTION_DAYS}")
        if not re.match(r"^8\.(0|4)(\.\d+)?$", self.db_engine_version):
            raise ConfigError("dbEngineVersion must be a MySQL 8 version: 8.4 (default) or 8.0")
        if not 0.25 <= self.iceberg_snapshot_hours <= 24 * 7:
            raise ConfigError("icebergSnapshotHours must be between 0.25 and 168")
        if not 1 <= self.iceberg_orphan_retention_days <= 60:
            raise ConfigError("icebergOrphanRetentionDays must be between 1 and 60")
        if not 1 <= self.depth_levels <= 100:
            raise ConfigError("depthLevels must be between 1 and 100")

    @property
    def all_symbols(self) -> bool:
        """``symbols: "all"``: the list is the exchange's, known only when the collector starts."""
        return self.symbols == (ALL_SYMBOLS,)

    @property
    def slots(self) -> int | None:
        """Bitfinex connection slots (Kinesis partition keys ``bitfinex:slot-NNN``); None for ``all``."""
        return None if self.all_symbols else slot_count(len(self.symbols), SYMBOLS_PER_SLOT)

    @property
    def shards_needed(self) -> int | None:
        """The fewest shards for the symbols (None for ``all``: sized by the user, see docs/AWS.md)."""
        return None if self.all_symbols else -(-len(self.symbols) // SYMBOLS_PER_SHARD)

    @property
    def sql_scope(self) -> tuple[str, str]:
        """(tables, symbols) as the book builder's environment states them (comma lists; ``all``)."""
        return ",".join(self.sql_tables), ",".join(self.sql_symbols or self.symbols)

    @property
    def partitions(self) -> list[tuple[str, str]]:
        """The Bitfinex (exchange, partition) pairs the collector publishes: one per slot; empty for
        ``all`` (the slots are cut when the collector has listed the pairs)."""
        if "bitfinex" not in self.exchanges:
            return []
        return [("bitfinex", slot_name(i)) for i in range(self.slots or 0)]

    @classmethod
    def from_context(cls, node: Node, file: ConfigFile | None = None) -> MarketpipeConfig:
        """Every field from ``node.try_get_context(<camelCase name>)``, else from ``file``
        (``marketpipe.toml``, see :func:`file_values`), else its default."""
        tuple_of_str = lambda v: tuple(_as_list(v))  # noqa: E731
        converters: dict[str, Callable[[Any], Any]] = {
            "symbols": _as_symbols,
            "sql_symbols": lambda v: tuple(s.upper() for s in _as_list(v)),
            "sql_tables": lambda v: tuple(s.lower() for s in _as_list(v)),
            "exchanges": lambda v: tuple(s.lower() for s in _as_list(v)),
            "tags": _as_tags,
            "bitso_books": tuple_of_str,
            "spread_thresholds": tuple_of_str,
            "execution_markets": tuple_of_str,
            "execution_notionals": tuple_of_str,
            "binance_symbols": lambda v: tuple(s.upper() for s in _as_list(v)),
            "binance_watch": tuple_of_str,
        }
        from_file = file_values(file) if file is not None else {}
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = node.try_get_context(_camel(f.name))
            if raw is None:
                raw = from_file.get(f.name)
            if raw is None:
                continue
            if f.name in converters:
                convert = converters[f.name]
            elif f.type in ("int", int):
                convert = _as_int
            elif f.type in ("bool", bool):
                convert = _as_bool
            elif f.type in ("float", float):
                convert = _as_float
            else:
                convert = _as_str
            try:
                values[f.name] = convert(raw)
            except ConfigError as exc:
                raise ConfigError(f"{_camel(f.name)}: {exc}") from exc
        return cls(**values)


COLLECTOR_EXCHANGES = ("bitfinex",)
"""Capabilities the Fargate collector streams by ``exchanges`` (Binance joins it through ``binance``;
Bitso spreads and execution prices are Lambdas)."""
_FILE_KEYS = {
    ("bitfinex", "symbols"): "symbols",
    ("bitso", "books"): "bitso_books",
    ("bitso", "thresholds"): "spread_thresholds",
    ("bitso", "window_seconds"): "bitso_window_seconds",
    ("execution", "markets"): "execution_markets",
    ("execution", "notionals"): "execution_notionals",
    ("binance", "symbols"): "binance_symbols",
    ("binance", "watch"): "binance_watch",
    ("alerts", "sms_to"): "alarm_phone_number",
}
"""``marketpipe.toml`` keys shared with ``marketpipe run`` -> the deployment field they set."""


def file_values(file: ConfigFile) -> dict[str, Any]:
    """The deployment fields ``marketpipe.toml`` sets, by field name; ConfigError naming the file's key for
    anything ``marketpipe run`` would refuse too, or an ``[aws]`` key no field has."""
    from marketpipe.capabilities import check_file

    try:
        check_file(file)  # the same checks as `marketpipe run` and `marketpipe config`
    except LocalConfigError as exc:
        raise ConfigError(str(exc)) from None
    out: dict[str, Any] = {}
    for (table, key), name in _FILE_KEYS.items():
        if key in file.table(table):
            out[name] = file.table(table)[key]
    exchanges = file.table("run").get("exchanges")
    if exchanges is not None:
        out["exchanges"] = [e for e in exchanges if e in COLLECTOR_EXCHANGES]
        out["binance"] = "binance" in exchanges
        out["bitso_spreads"] = "bitso" in exchanges
        out["execution_price"] = "execution" in exchanges
    shared = {*_FILE_KEYS.values(), "exchanges", "binance", "bitso_spreads", "execution_price"}
    known = {f.name for f in fields(MarketpipeConfig)} - shared  # shared keys live in their own tables
    for key, value in file.table("aws").items():
        if key not in known:
            raise ConfigError(
                f"{file.label}: aws.{key}: unknown key (the [aws] keys are infra/config.py's fields)"
            )
        out[key] = value
    return out


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"expected a number, got {value!r}") from None


def _as_symbols(value: Any) -> tuple[str, ...]:
    """A list of symbols (upper-cased), or ``all`` in any case, alone or as a one-item list."""
    symbols = [s.upper() for s in _as_list(value)]
    return tuple(ALL_SYMBOLS if s == ALL_SYMBOLS.upper() else s for s in symbols)


def _as_tags(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, dict):
        raise ConfigError(f"expected an object of tag names to values, got {value!r}")
    return {str(k): str(v) for k, v in value.items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def log_retention(days: int) -> Any:
    """Map a day count to ``aws_logs.RetentionDays`` (jsii enums are keyed by name, not by value)."""
    from aws_cdk import aws_logs as logs

    names = ("ONE_DAY", "THREE_DAYS", "FIVE_DAYS", "ONE_WEEK", "TWO_WEEKS", "ONE_MONTH", "TWO_MONTHS",
             "THREE_MONTHS", "FOUR_MONTHS", "FIVE_MONTHS", "SIX_MONTHS", "ONE_YEAR", "THIRTEEN_MONTHS",
             "EIGHTEEN_MONTHS", "TWO_YEARS", "THREE_YEARS", "FIVE_YEARS", "SIX_YEARS", "SEVEN_YEARS",
             "EIGHT_YEARS", "NINE_YEARS", "TEN_YEARS")  # fmt: skip
    return getattr(logs.RetentionDays, dict(zip(LOG_RETENTION_DAYS, names, strict=True))[days])
