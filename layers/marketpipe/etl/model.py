"""The ledger's dimensional model: one definition drives Parquet schemas, CSV, Glue tables and the ERD.

Keeping the model in data (not in scattered code) is what lets the Glue tables, the DuckDB views and
the ERD image agree with what the ETL actually writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

import pyarrow as pa

AMOUNT_PRECISION = 38
AMOUNT_SCALE = 18
"""DECIMAL(38, 18): 20 integer digits and wei-level (18) fraction digits, exact in Athena and DuckDB."""

CALENDAR_START = date(2000, 1, 1)
CALENDAR_END = date(2049, 12, 31)
"""dim_date's fixed calendar: constant, so it never depends on which days a run processed."""

LEDGER_PREFIX = "ledger"
"""Every lake table lives under ``<lake>/ledger/<table>/``."""

PARTITION_COLUMN = "dt"
"""Daily tables are Hive-partitioned ``dt=YYYY-MM-DD`` (a string, so Athena date projection applies)."""


class ColumnType(StrEnum):
    """Logical column types; each store maps them to its own physical type."""

    STRING = "string"
    BIGINT = "bigint"
    INT = "int"
    BOOLEAN = "boolean"
    DATE = "date"
    TIMESTAMP = "timestamp"
    AMOUNT = "amount"

    @property
    def arrow(self) -> pa.DataType:
        return _ARROW[self]

    @property
    def glue(self) -> str:
        """The Glue/Athena (Hive DDL) type name."""
        return _GLUE[self]


_ARROW: dict[ColumnType, pa.DataType] = {
    ColumnType.STRING: pa.string(),
    ColumnType.BIGINT: pa.int64(),
    ColumnType.INT: pa.int32(),
    ColumnType.BOOLEAN: pa.bool_(),
    ColumnType.DATE: pa.date32(),
    # UTC by convention and tz-naive on purpose: DuckDB reads it as TIMESTAMP (not TIMESTAMPTZ), like Athena.
    ColumnType.TIMESTAMP: pa.timestamp("us"),
    ColumnType.AMOUNT: pa.decimal128(AMOUNT_PRECISION, AMOUNT_SCALE),
}
_GLUE: dict[ColumnType, str] = {
    ColumnType.STRING: "string",
    ColumnType.BIGINT: "bigint",
    ColumnType.INT: "int",
    ColumnType.BOOLEAN: "boolean",
    ColumnType.DATE: "date",
    ColumnType.TIMESTAMP: "timestamp",
    ColumnType.AMOUNT: f"decimal({AMOUNT_PRECISION},{AMOUNT_SCALE})",
}


class TableKind(StrEnum):
    DIMENSION = "dimension"
    FACT = "transaction fact"
    SNAPSHOT = "periodic snapshot fact"


@dataclass(frozen=True, slots=True)
class ModelColumn:
    """One column; ``references`` names ``table.column`` for foreign keys (drawn in the ERD)."""

    name: str
    type: ColumnType
    description: str
    nullable: bool = False
    references: str | None = None


@dataclass(frozen=True, slots=True)
class ModelTable:
    """A table of the star schema with its grain and natural key."""

    name: str
    kind: TableKind
    grain: str
    columns: tuple[ModelColumn, ...]
    key: tuple[str, ...]
    daily: bool
    """Partitioned by ``dt`` (one partition per UTC day) rather than rewritten whole."""

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate column names")
        for k in self.key:
            if k not in names:
                raise ValueError(f"{self.name}: key column {k!r} is not a column")
        if PARTITION_COLUMN in names:
            raise ValueError(f"{self.name}: {PARTITION_COLUMN!r} is reserved for the partition")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type.arrow, nullable=c.nullable) for c in self.columns])

    def column(self, name: str) -> ModelColumn:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


_C = ModelColumn
_T = ColumnType

DIM_DATE = ModelTable(
    name="dim_date",
    kind=TableKind.DIMENSION,
    grain="one row per calendar day, 2000-01-01 to 2049-12-31",
    key=("date_key",),
    daily=False,
    columns=(
        _C("date_key", _T.INT, "YYYYMMDD, the key every fact uses"),
        _C("calendar_date", _T.DATE, "the UTC calendar day"),
        _C("year", _T.INT, "calendar year"),
        _C("quarter", _T.INT, "1-4"),
        _C("month", _T.INT, "1-12"),
        _C("month_name", _T.STRING, "January .. December"),
        _C("day_of_month", _T.INT, "1-31"),
        _C("day_of_week", _T.INT, "ISO: 1 = Monday .. 7 = Sunday"),
        _C("day_name", _T.STRING, "Monday .. Sunday"),
        _C("iso_week", _T.INT, "ISO 8601 week number"),
        _C("is_weekend", _T.BOOLEAN, "Saturday or Sunday"),
    ),
)

DIM_USER = ModelTable(
    name="dim_user",
    kind=TableKind.DIMENSION,
    grain="one row per user in the user snapshot",
    key=("user_id",),
    daily=False,
    columns=(_C("user_id", _T.STRING, "the source system's user id (durable natural key)"),),
)

DIM_CURRENCY = ModelTable(
    name="dim_currency",
    kind=TableKind.DIMENSION,
    grain="one row per currency in the reference list or in a valid transaction",
    key=("currency_code",),
    daily=False,
    columns=(
        _C("currency_code", _T.STRING, "lower-case code as in the source (mxn, btc, usd ...)"),
        _C("currency_name", _T.STRING, "human name, 'unknown' when not in the reference list"),
        _C("currency_type", _T.STRING, "fiat, crypto, stablecoin or unknown"),
    ),
)

FACT_TRANSACTION = ModelTable(
    name="fact_transaction",
    kind=TableKind.FACT,
    grain="one row per deposit or withdrawal (any status)",
    key=("transaction_type", "transaction_id"),
    daily=True,
    columns=(
        _C("transaction_type", _T.STRING, "deposit or withdrawal"),
        _C("transaction_id", _T.BIGINT, "the source id (unique per transaction_type)"),
        _C("user_id", _T.STRING, "who", references="dim_user.user_id"),
        _C("currency_code", _T.STRING, "what", references="dim_currency.currency_code"),
        _C("date_key", _T.INT, "UTC day of event_ts", references="dim_date.date_key"),
        _C("event_ts", _T.TIMESTAMP, "when, UTC"),
        _C("amount", _T.AMOUNT, "non-negative amount in the currency"),
        _C("tx_status", _T.STRING, "complete, failed, pending ..."),
        _C("interface", _T.STRING, "withdrawal channel (app, web, api); NULL for deposits", nullable=True),
    ),
)

FACT_EVENT = ModelTable(
    name="fact_event",
    kind=TableKind.FACT,
    grain="one row per user event (logins and the other event names)",
    key=("event_id",),
    daily=True,
    columns=(
        _C("event_id", _T.BIGINT, "the source id"),
        _C("user_id", _T.STRING, "who", references="dim_user.user_id"),
        _C("date_key", _T.INT, "UTC day of event_ts", references="dim_date.date_key"),
        _C("event_ts", _T.TIMESTAMP, "when, UTC"),
        _C("event_name", _T.STRING, "login, logout, ... (lower case)"),
    ),
)

FACT_DAILY_USER_ACTIVITY = ModelTable(
    name="fact_daily_user_activity",
    kind=TableKind.SNAPSHOT,
    grain="one row per user per UTC day, from the day the user first appears in any source",
    key=("date_key", "user_id"),
    daily=True,
    columns=(
        _C("date_key", _T.INT, "the snapshot day", references="dim_date.date_key"),
        _C("snapshot_date", _T.DATE, "the snapshot day as a DATE"),
        _C("user_id", _T.STRING, "who", references="dim_user.user_id"),
        _C("deposit_count", _T.INT, "deposits that day, any status"),
        _C("withdrawal_count", _T.INT, "withdrawals that day, any status"),
        _C("login_count", _T.INT, "logins that day"),
        _C("is_active", _T.BOOLEAN, "made a deposit or a withdrawal that day (any status)"),
        _C("completed_deposits_to_date", _T.BIGINT, "completed deposits up to the end of the day"),
        _C("completed_withdrawals_to_date", _T.BIGINT, "completed withdrawals up to the end of the day"),
        _C("logins_to_date", _T.BIGINT, "logins up to the end of the day"),
        _C("last_login_ts", _T.TIMESTAMP, "latest login up to the end of the day, UTC", nullable=True),
    ),
)

TABLES: tuple[ModelTable, ...] = (
    DIM_DATE,
    DIM_USER,
    DIM_CURRENCY,
    FACT_TRANSACTION,
    FACT_EVENT,
    FACT_DAILY_USER_ACTIVITY,
)


@dataclass(frozen=True, slots=True)
class CurrencyInfo:
    name: str
    type: str


CURRENCIES: dict[str, CurrencyInfo] = {
    "mxn": CurrencyInfo("Mexican peso", "fiat"),
    "usd": CurrencyInfo("US dollar", "fiat"),
    "ars": CurrencyInfo("Argentine peso", "fiat"),
    "brl": CurrencyInfo("Brazilian real", "fiat"),
    "cop": CurrencyInfo("Colombian peso", "fiat"),
    "eur": CurrencyInfo("Euro", "fiat"),
    "btc": CurrencyInfo("Bitcoin", "crypto"),
    "eth": CurrencyInfo("Ether", "crypto"),
    "xrp": CurrencyInfo("XRP", "crypto"),
    "ltc": CurrencyInfo("Litecoin", "crypto"),
    "bch": CurrencyInfo("Bitcoin Cash", "crypto"),
    "mana": CurrencyInfo("Decentraland", "crypto"),
    "bat": CurrencyInfo("Basic Attention Token", "crypto"),
    "usdt": CurrencyInfo("Tether", "stablecoin"),
    "usdc": CurrencyInfo("USD Coin", "stablecoin"),
    "dai": CurrencyInfo("Dai", "stablecoin"),
    "tusd": CurrencyInfo("TrueUSD", "stablecoin"),
}
"""Reference data for dim_currency; a code missing here still loads, as type 'unknown'."""


def validate_model(tables: tuple[ModelTable, ...] = TABLES) -> None:
    """Every foreign key must point at a key column of a table in the model (checked by a test)."""
    by_name = {t.name: t for t in tables}
    for table in tables:
        for col in table.columns:
            if col.references is None:
                continue
            target_name, _, target_col = col.references.partition(".")
            target = by_name.get(target_name)
            if target is None or target.key != (target_col,):
                raise ValueError(f"{table.name}.{col.name}: bad reference {col.references!r}")
            if target.column(target_col).type is not col.type:
                raise ValueError(f"{table.name}.{col.name}: type differs from {col.references}")
