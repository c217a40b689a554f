"""DuckDB 1.4.4 + third-party PyPI wheel duckdb-ext-iceberg (repackaged core extension): offline iceberg_scan?"""
import glob, sys, time
import duckdb
ext = glob.glob(sys.prefix + "/lib/python3*/site-packages/duckdb_ext/extensions/v*/*/iceberg.duckdb_extension")[0]
meta = sorted(glob.glob("local_lake/warehouse/marketpipe/quotes/metadata/*.metadata.json"))[-1]
con = duckdb.connect(config={"autoinstall_known_extensions": False})
for label, stmt in [("LOAD path", f"LOAD '{ext}'"),
                    ("SET extension_directory", f"SET extension_directory='{ext.split('/v1.4.4')[0]}'"),
                    ("LOAD iceberg", "LOAD iceberg")]:
    try:
        t0 = time.perf_counter(); con.execute(stmt); print(label, "OK", f"{time.perf_counter()-t0:.2f}s")
    except Exception as e:
        print(label, "ERR", str(e).splitlines()[0][:200])
for q in [f"SELECT count(*), count(DISTINCT symbol) FROM iceberg_scan('{meta}')",
          f"SELECT count(*) FROM iceberg_scan('{meta}') WHERE symbol='SYM001USDT' AND received_ts >= TIMESTAMPTZ '2025-01-03 00:00:00+00'",
          f"SELECT count(*) FROM iceberg_snapshots('{meta}')"]:
    try:
        print(q[:60], "->", con.execute(q).fetchall())
    except Exception as e:
        print(q[:60], "ERR", str(e).splitlines()[0][:200])
