"""``marketpipe lake push``: copy a local Parquet lake's rows into the Iceberg tables, each row once.

A local lake (``marketpipe run`` or ``replay`` on a laptop, history from before the deployment) holds
the same tables as the AWS lake in the Parquet layout. Pushing it reads one symbol-day at a time,
looks up which natural keys the Iceberg table already holds for that symbol and day (a scan pruned by
the hidden partitions), and appends only the others. Re-running a push, or pushing a day the AWS
pipeline also recorded, adds nothing twice. The append is optimistic like the book builder's: when
another writer commits first, the keys are looked up again and the append retried.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from marketpipe.lake import open_location
from marketpipe.sinks.iceberg_sink import IcebergSink, ensure_tables, retry_conflicts
from marketpipe.sinks.lake_sink import arrow_schema
from marketpipe.tables import Table

log = logging.getLogger(__name__)

PUSH_SUMMARY = "marketpipe.push"


@dataclass
class PushStats:
    days: int = 0
    rows_read: int = 0
    rows_appended: int = 0
    rows_already_there: int = 0


def push_lake(
    local_uri: str, sink: IcebergSink, tables: Sequence[Table], symbols: Sequence[str] = ()
) -> PushStats:
    """Append the rows of ``tables`` under ``local_uri`` that the Iceberg tables do not hold yet."""
    location = open_location(local_uri, "local lake")
    ensure_tables(sink.catalog, sink.spec.namespace, sink.spec.warehouse, tables)
    stats = PushStats()
    for table in tables:
        base = f"{location.path}/{table.name}"
        for symbol, day in _symbol_days(location.fs, base):
            if symbols and symbol not in symbols:
                continue
            local = _read_day(location.fs, base, table, symbol, day)
            if local.num_rows:
                _append_new(sink, table, symbol, day, local, stats)
    return stats


def _symbol_days(fs: pafs.FileSystem, base: str) -> list[tuple[str, str]]:
    """(symbol, YYYY-MM-DD) of every ``symbol=…/dt=…`` folder of a table, in order."""
    found: list[tuple[str, str]] = []
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        return found
    for sym in fs.get_file_info(pafs.FileSelector(base)):
        if sym.type == pafs.FileType.Directory and sym.base_name.startswith("symbol="):
            for day in fs.get_file_info(pafs.FileSelector(sym.path)):
                if day.type == pafs.FileType.Directory and day.base_name.startswith("dt="):
                    found.append((sym.base_name[len("symbol=") :], day.base_name[len("dt=") :]))
    return sorted(found)


def _read_day(fs: pafs.FileSystem, base: str, table: Table, symbol: str, day: str) -> pa.Table:
    folder = f"{base}/symbol={symbol}/dt={day}"
    dataset = ds.dataset(folder, filesystem=fs, format="parquet", partitioning=None)
    stored = dataset.to_table()
    data = stored.append_column("symbol", pa.array([symbol] * stored.num_rows, pa.string()))
    return data.select(list(table.column_names)).cast(arrow_schema(table))


def _append_new(
    sink: IcebergSink, table: Table, symbol: str, day: str, local: pa.Table, stats: PushStats
) -> None:
    from marketpipe.sinks.iceberg_io import CheckedTransaction

    first = dt.date.fromisoformat(day)
    start, end = (f"{d.isoformat()}T00:00:00+00:00" for d in (first, first + dt.timedelta(days=1)))
    quoted = symbol.replace("'", "''")
    in_day = (
        f"{table.partitions[0]} == '{quoted}' and {table.partition_ts} >= '{start}' "
        f"and {table.partition_ts} < '{end}'"
    )
    keys = list(table.key)
    stats.days += 1
    stats.rows_read += local.num_rows

    def append_once() -> None:
        """Look up the keys the table holds for the day, append the others (re-run after a conflict)."""
        iceberg = sink.catalog.load_table((sink.spec.namespace, table.name))
        held = iceberg.scan(row_filter=in_day, selected_fields=tuple(keys)).to_arrow()
        new = (
            local.join(held.cast(local.select(keys).schema), keys=keys, join_type="left anti")
            if held.num_rows
            else local
        )
        if not new.num_rows:
            stats.rows_already_there += local.num_rows
            log.info(
                "%s %s %s: all %d rows already in the Iceberg table", table.name, symbol, day, local.num_rows
            )
            return
        new = new.select(list(table.column_names)).cast(arrow_schema(table))  # joins drop NOT NULL
        new = new.sort_by([(table.order_by, "ascending")])
        with CheckedTransaction(iceberg) as tx:
            tx.append(new, snapshot_properties={PUSH_SUMMARY: f"{symbol}/{day}"})
        stats.rows_appended += new.num_rows
        stats.rows_already_there += local.num_rows - new.num_rows
        log.info("%s %s %s: appended %d of %d rows", table.name, symbol, day, new.num_rows, local.num_rows)

    retry_conflicts(f"{table.name} {symbol} {day}", append_once)
