"""Q4: S3/Glue requests and time per append; 2 vs 100 symbols; growth over ~200 appends."""

import datetime as dt
import statistics
import sys
import time

import boto3

from harness import BUCKET, REGION, SCHEMA, SPEC, batch, glue_catalog, patch_moto_glue_version_check, start_server

server = start_server()
patch_moto_glue_version_check()
N_GROWTH = int(sys.argv[1]) if len(sys.argv) > 1 else 200
start = dt.datetime(2025, 1, 2, 12, tzinfo=dt.UTC)


def fmt(d):
    return ", ".join(f"{k.split(':')[0][0]}:{k.split(':')[1]}={v}" for k, v in sorted(d.items()))


def measure(cat, ident, n_symbols, rows_per_symbol, reps, label):
    times, reqs = [], None
    for i in range(reps):
        df = batch(n_symbols, rows_per_symbol, start, seed=i)
        server.counter.reset()
        t0 = time.perf_counter()
        tbl = cat.load_table(ident)  # a Lambda invocation loads the table each time
        tbl.append(df, snapshot_properties={"marketpipe.batch": f"{label}-{i}"})
        times.append(time.perf_counter() - t0)
        reqs = server.counter.snapshot()
    total = sum(reqs.values())
    print(f"{label}: symbols={n_symbols} rows={n_symbols*rows_per_symbol} median={statistics.median(times)*1000:.0f}ms "
          f"requests(last)={total} [{fmt(reqs)}]")
    return times


for io_label, extra in [("default PyArrowFileIO", {}), ("allow_delayed_open FileIO", {"py-io-impl": "harness.DelayedOpenPyArrowFileIO"})]:
    print(f"--- {io_label}")
    cat = glue_catalog(server, **extra)
    ns = "cost" + str(abs(hash(io_label)) % 1000)
    cat.create_namespace(ns)
    for n_sym in (2, 100):
        ident = f"{ns}.q_{n_sym}"
        cat.create_table(ident, schema=SCHEMA, partition_spec=SPEC)
        measure(cat, ident, n_sym, 50, 8, f"{n_sym}sym")

# growth: N_GROWTH appends of 2 symbols x 50 rows into one table
print(f"--- growth over {N_GROWTH} appends (default FileIO, 2 symbols x 50 rows each)")
cat = glue_catalog(server)
cat.create_namespace("growth")
ident = "growth.q"
cat.create_table(ident, schema=SCHEMA, partition_spec=SPEC)
s3 = boto3.client("s3", region_name=REGION, endpoint_url=server.url)
rows = []
for i in range(N_GROWTH):
    df = batch(2, 50, start + dt.timedelta(days=i % 3), seed=i)
    server.counter.reset()
    t0 = time.perf_counter()
    tbl = cat.load_table(ident)
    tbl.append(df, snapshot_properties={"marketpipe.batch": f"g-{i}"})
    el = time.perf_counter() - t0
    rows.append((el, sum(server.counter.snapshot().values()), server.counter.snapshot()))
first, last = rows[:10], rows[-10:]
print(f"first 10: median {statistics.median(r[0] for r in first)*1000:.0f} ms, requests {statistics.median(r[1] for r in first)}")
print(f"last 10:  median {statistics.median(r[0] for r in last)*1000:.0f} ms, requests {statistics.median(r[1] for r in last)}  [{fmt(last[-1][2])}]")
tbl = cat.load_table(ident)
meta = s3.head_object(Bucket=BUCKET, Key=tbl.metadata_location.split(BUCKET + "/")[1])["ContentLength"]
mlist = tbl.current_snapshot().manifest_list
ml = s3.head_object(Bucket=BUCKET, Key=mlist.split(BUCKET + "/")[1])["ContentLength"]
print(f"after {N_GROWTH}: metadata.json {meta} bytes, snapshots {len(tbl.metadata.snapshots)}, "
      f"metadata-log entries {len(tbl.metadata.metadata_log)}, manifests {len(tbl.current_snapshot().manifests(tbl.io))}, manifest list {ml} bytes")
objs = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="iceberg/growth.db/q/"):
    objs += page.get("Contents", [])
md = [o for o in objs if "/metadata/" in o["Key"]]
print(f"objects under table: {len(objs)} (metadata dir {len(md)}: {sum(o['Key'].endswith('.metadata.json') for o in md)} metadata.json, "
      f"{sum(o['Key'].endswith('.avro') for o in md)} avro)")
server.counter.reset()
t0 = time.perf_counter()
n = sum(1 for _ in tbl.scan().plan_files())
print(f"plan_files over {N_GROWTH} manifests: {n} files, {(time.perf_counter()-t0)*1000:.0f} ms, requests [{fmt(server.counter.snapshot())}]")
t0 = time.perf_counter()
n = sum(1 for _ in tbl.scan(row_filter="symbol == 'SYM000USDT'").plan_files())
print(f"plan_files symbol filter: {n} files, {(time.perf_counter()-t0)*1000:.0f} ms")
server.stop()
