"""The ledger's business questions: one ``queries/<name>.sql`` file each, and the lake views they read.

The files follow :mod:`marketpipe.query`'s contract (tables only, positional ``?`` parameters, a
description line and one ``-- param:`` line per placeholder), so the same text runs on DuckDB over the
local lake (``marketpipe query``) and on Athena (the named queries of ``infra/constructs/ledger_etl.py``).
"""

from __future__ import annotations

from importlib import resources

from marketpipe.etl.model import LEDGER_PREFIX, PARTITION_COLUMN, TABLES
from marketpipe.lake import open_location
from marketpipe.query import QuerySpec, QuestionSet, parse_query


def load_queries() -> dict[str, QuerySpec]:
    """Every ``queries/*.sql`` shipped with the package, by name."""
    folder = resources.files("marketpipe.etl") / "queries"
    specs = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            name = entry.name.removesuffix(".sql")
            specs[name] = parse_query(name, entry.read_text(encoding="utf-8"))
    return specs


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


def missing_tables(lake_uri: str) -> str | None:
    """What to tell the user when the ledger tables are not in the lake yet."""
    lake = open_location(lake_uri)
    missing = [t.name for t in TABLES if not lake.child(LEDGER_PREFIX, t.name).exists()]
    if missing:
        return f"no ledger tables ({', '.join(missing)}) under {lake_uri}; run `marketpipe etl` first"
    return None


LEDGER_QUESTIONS = QuestionSet("ledger", load_queries(), duckdb_views, missing_tables)
"""The ledger's contribution to ``marketpipe query``."""
