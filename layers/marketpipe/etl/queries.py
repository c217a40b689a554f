"""The business questions as SQL files, their typed parameters, and a local DuckDB runner.

Each ``queries/<name>.sql`` names tables only and takes positional ``?`` parameters, so the same text
runs on DuckDB (views over the lake's Parquet files) and on Athena (Glue tables; prepared statement or
console parameters). Parameters are validated and bound by the driver, never pasted into the text.
The header comments are the query's contract: the first line is its description, then one
``-- param: <name> <type>  <help>`` line per ``?`` in order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Any

from marketpipe.errors import ConfigError
from marketpipe.etl import storage
from marketpipe.etl.model import LEDGER_PREFIX, PARTITION_COLUMN, TABLES
from marketpipe.lake import open_location

_PARAM_LINE = re.compile(r"--\s*param:\s*(\w+)\s+(\w+)\s+(.*)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CURRENCY = re.compile(r"[a-z][a-z0-9]{1,9}")
_USER_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
PARAM_TYPES = ("date", "currency", "user_id")


@dataclass(frozen=True, slots=True)
class QueryParam:
    name: str
    type: str
    help: str

    def parse(self, raw: str) -> str:
        """Validate a user's text; returns the value to bind (a date as ISO text, like ``dt``)."""
        text = raw.strip()
        if self.type == "date":
            try:
                if not _DATE.fullmatch(text):
                    raise ValueError
                return date.fromisoformat(text).isoformat()
            except ValueError:
                raise ConfigError(f"--param {self.name}={raw!r}: expected a date YYYY-MM-DD") from None
        if self.type == "currency":
            text = text.lower()
            if not _CURRENCY.fullmatch(text):
                raise ConfigError(f"--param {self.name}={raw!r}: expected a currency code such as mxn")
            return text
        if not _USER_ID.fullmatch(text):
            raise ConfigError(f"--param {self.name}={raw!r}: expected a user id")
        return text

    def athena_example(self) -> str:
        return {"date": "'2020-01-10'", "currency": "'mxn'"}.get(self.type, "'<user_id>'")


@dataclass(frozen=True, slots=True)
class QuerySpec:
    name: str
    description: str
    params: tuple[QueryParam, ...]
    sql: str

    def bind(self, raw: Mapping[str, str]) -> list[str]:
        """Positional values for the ``?`` placeholders; unknown or missing names are errors."""
        known = {p.name for p in self.params}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(
                f"query {self.name}: unknown parameter(s) {', '.join(unknown)}; "
                f"expected {', '.join(sorted(known)) or 'none'}"
            )
        missing = [p.name for p in self.params if p.name not in raw]
        if missing:
            raise ConfigError(f"query {self.name}: missing --param {', '.join(m + '=...' for m in missing)}")
        return [p.parse(raw[p.name]) for p in self.params]

    def signature(self) -> str:
        return " ".join(f"{p.name}=<{p.type}>" for p in self.params)


def parse_query(name: str, text: str) -> QuerySpec:
    lines = text.splitlines()
    description = lines[0].removeprefix("--").strip() if lines and lines[0].startswith("--") else name
    params = []
    for line in lines:
        m = _PARAM_LINE.fullmatch(line.strip())
        if m:
            if m.group(2) not in PARAM_TYPES:
                raise ValueError(f"{name}: unknown parameter type {m.group(2)!r}")
            params.append(QueryParam(m.group(1), m.group(2), m.group(3).strip()))
    placeholders = text.count("?")
    if placeholders != len(params):
        raise ValueError(f"{name}: {placeholders} placeholders but {len(params)} declared parameters")
    return QuerySpec(name, description, tuple(params), text.strip() + "\n")


def load_queries() -> dict[str, QuerySpec]:
    """Every ``queries/*.sql`` shipped with the package, by name."""
    folder = resources.files("marketpipe.etl") / "queries"
    specs = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            name = entry.name.removesuffix(".sql")
            specs[name] = parse_query(name, entry.read_text(encoding="utf-8"))
    return specs


def get_query(name: str) -> QuerySpec:
    specs = load_queries()
    if name not in specs:
        raise ConfigError(f"unknown query {name!r}; known: {', '.join(specs)}")
    return specs[name]


def duckdb_views(lake_uri: str) -> dict[str, str]:
    """``CREATE VIEW`` statements mapping each model table name onto its Parquet files in the lake."""
    lake = open_location(lake_uri)
    views = {}
    for table in TABLES:
        folder = lake.child(LEDGER_PREFIX, table.name).uri()
        if table.daily:
            # dt stays VARCHAR, as in Glue, so the same `dt = ?` comparisons work in both engines
            source = (
                f"read_parquet('{_sql_text(folder)}/{PARTITION_COLUMN}=*/*.parquet', "
                "hive_partitioning = true, hive_types_autocast = false)"
            )
        else:
            source = f"read_parquet('{_sql_text(folder)}/*.parquet')"
        views[table.name] = f"CREATE OR REPLACE VIEW {table.name} AS SELECT * FROM {source}"
    return views


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def run_query(lake_uri: str, spec: QuerySpec, values: Sequence[str]) -> QueryResult:
    """Run one question on the local lake with DuckDB (an in-memory database, nothing persisted)."""
    try:
        import duckdb
    except ImportError:  # pragma: no cover - duckdb ships with the dev and ledger extras
        raise ConfigError("marketpipe query needs DuckDB: pip install 'marketpipe[ledger]'") from None

    missing = [
        t.name for t in TABLES if not storage.exists(open_location(lake_uri).child(LEDGER_PREFIX, t.name))
    ]
    if missing:
        raise ConfigError(
            f"no ledger tables ({', '.join(missing)}) under {lake_uri}; run `marketpipe etl` first"
        )
    con = duckdb.connect(":memory:")
    try:
        for statement in duckdb_views(lake_uri).values():
            con.execute(statement)
        cursor = con.execute(spec.sql, list(values))
        columns = tuple(d[0] for d in cursor.description or ())
        return QueryResult(columns, [tuple(r) for r in cursor.fetchall()])
    except duckdb.Error as exc:
        raise ConfigError(f"query {spec.name} failed: {str(exc).splitlines()[0]}") from exc
    finally:
        con.close()
