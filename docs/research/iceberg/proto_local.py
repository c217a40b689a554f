"""Q6: the same tables locally: pyiceberg SqlCatalog (SQLite file) + local folder warehouse; DuckDB offline."""

import datetime as dt
import shutil
import time
from pathlib import Path

import duckdb

from harness import SCHEMA, SPEC, batch
from pyiceberg.catalog.sql import SqlCatalog

root = Path(__file__).resolve().parent / "local_lake"
shutil.rmtree(root, ignore_errors=True)
(root / "warehouse").mkdir(parents=True)

cat = SqlCatalog(
    "local",
    **{"uri": f"sqlite:///{root}/catalog.db", "warehouse": f"file://{root}/warehouse"},
)
cat.create_namespace_if_not_exists("marketpipe")
tbl = cat.create_table_if_not_exists("marketpipe.quotes", schema=SCHEMA, partition_spec=SPEC)
start = dt.datetime(2025, 1, 2, 23, 0, tzinfo=dt.UTC)
t0 = time.perf_counter()
for i in range(20):
    tbl.append(batch(3, 50, start + dt.timedelta(minutes=7 * i), seed=i), snapshot_properties={"marketpipe.batch": f"b{i}"})
print(f"local: 20 appends {time.perf_counter()-t0:.2f}s; metadata {tbl.metadata_location}")
print("rows:", tbl.scan().to_arrow().num_rows, "snapshots:", len(tbl.metadata.snapshots))
print("files on disk:", sorted(str(p.relative_to(root)) for p in (root / "warehouse").rglob("*"))[:6], "...")

# concurrency on the SQL catalog: commit is an UPDATE ... WHERE metadata_location = <old> -> CommitFailedException
t1 = cat.load_table("marketpipe.quotes")
t2 = cat.load_table("marketpipe.quotes")
t1.append(batch(1, 1, start), snapshot_properties={"marketpipe.batch": "x1"})
t2.append(batch(1, 1, start), snapshot_properties={"marketpipe.batch": "x2"})  # stale base -> auto-retry rebases it
print("stale-writer append on SqlCatalog ok; rows", cat.load_table("marketpipe.quotes").scan().to_arrow().num_rows)

# --- DuckDB
con = duckdb.connect()
print("duckdb", duckdb.__version__)
for stmt in ("LOAD iceberg", "INSTALL iceberg"):
    t0 = time.perf_counter()
    try:
        con.execute(stmt)
        print(f"  {stmt}: OK")
    except Exception as e:  # noqa: BLE001
        print(f"  {stmt}: {type(e).__name__}: {str(e).splitlines()[0][:160]} ({time.perf_counter()-t0:.1f}s)")

# (a) plan_files -> read_parquet([...]) : pruning by pyiceberg, scan by DuckDB; works with s3:// too via httpfs
tbl = cat.load_table("marketpipe.quotes")
flt = "symbol == 'SYM001USDT' and received_ts >= '2025-01-03T00:00:00+00:00'"
tasks = list(tbl.scan(row_filter=flt).plan_files())
paths = [t.file.file_path.removeprefix("file://") for t in tasks]
has_deletes = any(t.delete_files for t in tasks)
q = "SELECT symbol, count(*) n, min(received_ts) lo, max(received_ts) hi FROM read_parquet(?) GROUP BY 1"
print(f"(a) plan_files -> {len(paths)} files (delete files: {has_deletes}):", con.execute(q, [paths]).fetchall())
# NOTE: read_parquet over the planned files still needs the row filter re-applied (files are pruned, rows are not)
# and ignores schema evolution (renamed columns) and delete files -> fine for append-only tables.

# (b) scan().to_duckdb(): materialises the scan as an Arrow table registered in an in-memory DuckDB
t0 = time.perf_counter()
con2 = tbl.scan(row_filter=flt).to_duckdb(table_name="quotes")
print(f"(b) to_duckdb: {con2.execute('SELECT count(*) FROM quotes').fetchone()} in {time.perf_counter()-t0:.2f}s")

# (c) to_arrow() / to_arrow_batch_reader() + DuckDB replacement scan (zero-copy, streaming)
reader = tbl.scan(row_filter=flt, selected_fields=("symbol", "received_ts", "price")).to_arrow_batch_reader()
print("(c) arrow reader:", duckdb.sql("SELECT count(*), avg(price) FROM reader").fetchall())

# (d) DuckDB reading the whole table's current files via the metadata without pyiceberg: not possible w/o extension
# (e) what a catalog.db holds
import sqlite3

with sqlite3.connect(root / "catalog.db") as db:
    print("(e) sqlite tables:", [r[0] for r in db.execute("select name from sqlite_master where type='table'")])
    print("    iceberg_tables row:", db.execute("select * from iceberg_tables").fetchall())
