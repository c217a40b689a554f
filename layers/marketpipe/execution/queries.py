"""The execution-price questions: one SQL text for DuckDB over the lake and for Athena (named queries).

The texts name tables only and take one positional ``?`` (the UTC day, compared with the ``dt``
partition so Athena reads one day). Without that filter the per-minute questions are also views in
the SQL database (``v_execution_mid_per_minute``, ``v_execution_preferred_exchange``). Prices in USDT
are compared with USD prices at par; every row names its quote currency (docs/EXECUTION.md explains
why and how to read the difference).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from marketpipe.query import QuerySpec, QuestionSet, parse_query
from marketpipe.tables.execution import EXECUTION_TABLES, FACT_TABLES

if TYPE_CHECKING:
    from marketpipe.sinks.sql_sink import SqlSink

MID_PER_MINUTE = """-- Average mid price per exchange and market, each minute of a day (no crossed books).
-- param: day date  UTC day (YYYY-MM-DD)
SELECT s.minute_key, s.exchange, s.market, m.quote,
       count(*) AS snapshots,
       avg(s.mid) AS avg_mid,
       min(s.mid) AS min_mid,
       max(s.mid) AS max_mid,
       avg(s.spread_bps) AS avg_spread_bps
FROM execution_snapshots s
JOIN execution_dim_market m ON m.exchange = s.exchange AND m.market = s.market
WHERE {day}s.mid IS NOT NULL AND s.crossed = 0
GROUP BY s.minute_key, s.exchange, s.market, m.quote
ORDER BY s.minute_key, s.exchange, s.market
"""

PREFERRED_EXCHANGE = """-- Preferred exchange each minute per asset, side and notional, and at what price.
-- param: day date  UTC day (YYYY-MM-DD)
WITH per_exchange AS (
  SELECT q.minute_key, q.base, q.side, q.notional, q.exchange, q.market, q.quote,
         avg(q.avg_price) AS avg_price,
         avg(q.slippage_bps) AS slippage_bps,
         count(*) AS snapshots
  FROM execution_quotes q
  WHERE {day}q.deep_enough = 1 AND q.crossed = 0
  GROUP BY q.minute_key, q.base, q.side, q.notional, q.exchange, q.market, q.quote
), ranked AS (
  SELECT p.*,
         row_number() OVER (
           PARTITION BY minute_key, base, side, notional
           ORDER BY CASE WHEN side = 'buy' THEN avg_price ELSE -avg_price END, exchange
         ) AS price_rank,
         count(*) OVER (PARTITION BY minute_key, base, side, notional) AS venues
  FROM per_exchange p
)
SELECT b.minute_key, b.base, b.side, b.notional,
       b.exchange AS preferred_exchange, b.market, b.quote,
       b.avg_price, b.slippage_bps,
       r.exchange AS runner_up, r.quote AS runner_up_quote, r.avg_price AS runner_up_price,
       CASE WHEN r.avg_price IS NULL THEN NULL
            WHEN b.side = 'buy' THEN (r.avg_price - b.avg_price) / b.avg_price * 10000
            ELSE (b.avg_price - r.avg_price) / b.avg_price * 10000 END AS advantage_bps,
       b.venues
FROM ranked b
LEFT JOIN ranked r
  ON r.minute_key = b.minute_key AND r.base = b.base AND r.side = b.side AND r.notional = b.notional
 AND r.price_rank = 2
WHERE b.price_rank = 1
ORDER BY b.minute_key, b.base, b.side, b.notional DESC
"""

COST_SUMMARY = """-- Execution cost per exchange, market, side and notional over a UTC day: slippage, depth.
-- param: day date  UTC day (YYYY-MM-DD)
SELECT q.exchange, q.market, q.quote, q.side, q.notional,
       count(*) AS snapshots,
       sum(q.deep_enough) AS deep_enough_snapshots,
       avg(CASE WHEN q.deep_enough = 1 THEN q.slippage_bps END) AS avg_slippage_bps,
       max(CASE WHEN q.deep_enough = 1 THEN q.slippage_bps END) AS max_slippage_bps,
       avg(q.levels_used) AS avg_levels_used
FROM execution_quotes q
WHERE {day}q.crossed = 0
GROUP BY q.exchange, q.market, q.quote, q.side, q.notional
ORDER BY q.exchange, q.market, q.side, q.notional DESC
"""

_TEXTS = {
    "execution_mid_per_minute": (MID_PER_MINUTE, "s"),
    "execution_preferred_exchange": (PREFERRED_EXCHANGE, "q"),
    "execution_cost_summary": (COST_SUMMARY, "q"),
}

QUERIES: dict[str, QuerySpec] = {
    name: parse_query(name, text.replace("{day}", f"{alias}.dt = ? AND "))
    for name, (text, alias) in _TEXTS.items()
}
"""Every execution question by name (``marketpipe query NAME --param day=YYYY-MM-DD``)."""

DB_VIEWS: dict[str, str] = {
    f"v_{name}": "\n".join(
        line for line in _TEXTS[name][0].replace("{day}", "").splitlines() if not line.startswith("--")
    )
    for name in ("execution_mid_per_minute", "execution_preferred_exchange")
}
"""The per-minute questions as views in the SQL database (every day; filter on ``minute_key``)."""


def create_db_views(sink: SqlSink) -> list[str]:
    """(Re)create :data:`DB_VIEWS` in the SQL sink's database (SQLite, MySQL 8, MariaDB 10.2+)."""
    import sqlalchemy as sa

    sink.ensure_tables(EXECUTION_TABLES)
    with sink.engine.begin() as conn:
        for name, sql in DB_VIEWS.items():
            conn.execute(sa.text(f"DROP VIEW IF EXISTS {name}"))
            conn.execute(sa.text(f"CREATE VIEW {name} AS {sql}"))
    return list(DB_VIEWS)


def duckdb_views(lake_uri: str) -> dict[str, str]:
    """``CREATE VIEW`` per table over its Parquet files, partition columns as text (as in Glue)."""
    root = lake_uri.rstrip("/")
    views = {}
    for table in EXECUTION_TABLES:
        parts = "/".join(f"{p}=*" for p in table.partitions)
        pattern = f"{root}/{table.name}/{parts + '/' if parts else ''}dt=*/hour=*/*.parquet".replace(
            "'", "''"
        )
        views[table.name] = (
            f"CREATE OR REPLACE VIEW {table.name} AS SELECT * FROM read_parquet('{pattern}', "
            "hive_partitioning = true, hive_types_autocast = false, union_by_name = true)"
        )
    return views


def missing_tables(lake_uri: str) -> str | None:
    """What to tell the user when the execution fact tables are not in the lake yet."""
    from marketpipe.lake import open_location

    lake = open_location(lake_uri)
    missing = [t.name for t in FACT_TABLES if not lake.child(t.name).exists()]
    if missing:
        return (
            f"no execution tables ({', '.join(missing)}) under {lake_uri}; "
            "run `marketpipe run --exchanges execution` first"
        )
    return None


EXECUTION_QUESTIONS = QuestionSet("execution", QUERIES, duckdb_views, missing_tables)
"""The execution-price capability's contribution to ``marketpipe query``."""
