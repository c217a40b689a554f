"""The table catalog: every table marketpipe writes, defined once and shared by every sink.

:mod:`marketpipe.tables.schema` holds the vocabulary (:class:`Kind`, :class:`Column`, :class:`Table`);
one module per capability defines that capability's tables (:mod:`~marketpipe.tables.bitfinex`,
:mod:`~marketpipe.tables.bitso`, :mod:`~marketpipe.tables.binance`, :mod:`~marketpipe.tables.execution`).
:data:`TABLES` lists them all, so importing this package alone is enough to know every table (the
migration, ``marketpipe check --tables``, the CDK app); nothing registers itself on import. A new
capability adds its module and its tuple below.
"""

from __future__ import annotations

from marketpipe.tables.binance import BINANCE_TABLES
from marketpipe.tables.bitfinex import BITFINEX_BOOK, BITFINEX_QUOTES, BITFINEX_TABLES, BITFINEX_TRADES
from marketpipe.tables.bitso import BITSO_TABLES
from marketpipe.tables.execution import EXECUTION_TABLES
from marketpipe.tables.schema import WIDE_FLOAT_RUN, Column, Kind, Table, divides_an_hour, float_runs


def _catalog(*groups: tuple[Table, ...]) -> dict[str, Table]:
    catalog: dict[str, Table] = {}
    for table in (t for group in groups for t in group):
        if table.name in catalog:
            raise ValueError(f"table {table.name} is defined twice")
        catalog[table.name] = table
    return catalog


TABLES: dict[str, Table] = _catalog(BITFINEX_TABLES, BITSO_TABLES, BINANCE_TABLES, EXECUTION_TABLES)
"""Every table marketpipe writes, by name (Bitfinex, Bitso, Binance, execution prices)."""

__all__ = [
    "BITFINEX_BOOK",
    "BITFINEX_QUOTES",
    "BITFINEX_TRADES",
    "TABLES",
    "WIDE_FLOAT_RUN",
    "Column",
    "Kind",
    "Table",
    "divides_an_hour",
    "float_runs",
]
