"""Q5: maintenance with pyiceberg: manifest merge on append, metadata.json cleanup, expire snapshots,
(absent) compaction -> a partition rewrite by overwrite(), orphan-file listing. Also checks that
AWS_ENDPOINT_URL is enough for Glue (boto3) but not for S3 (needs s3.endpoint + s3.region)."""

import datetime as dt
import os
import time

import boto3
import pyarrow.compute as pc

from harness import BUCKET, REGION, SCHEMA, SPEC, batch, patch_moto_glue_version_check, start_server
from pyiceberg.catalog.glue import GlueCatalog
from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan
from pyiceberg.table import Table

server = start_server()
patch_moto_glue_version_check()
os.environ["AWS_ENDPOINT_URL"] = server.url  # boto3 (Glue) and pyarrow (S3) both honour it
# boto3 (Glue) honours AWS_ENDPOINT_URL; pyiceberg's pyarrow S3FileSystem does NOT (it builds S3FileSystem(endpoint_override=None)
# directly; pyarrow reads the env var only in FileSystem.from_uri) and, without s3.region, it tries to resolve the bucket
# region over the network -> pass both explicitly.
cat = GlueCatalog("glue", **{"warehouse": f"s3://{BUCKET}/iceberg", "s3.endpoint": os.environ["AWS_ENDPOINT_URL"], "s3.region": REGION})
cat.create_namespace("m")
s3 = boto3.client("s3", region_name=REGION)
day0 = dt.datetime(2025, 1, 2, tzinfo=dt.UTC)
N = 60


def objects(prefix: str) -> list[dict]:
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        out += page.get("Contents", [])
    return out


def fill(ident: str, props: dict) -> Table:
    cat.create_table(ident, schema=SCHEMA, partition_spec=SPEC, properties=props)
    t_first = t_last = 0.0
    for i in range(N):
        tbl = cat.load_table(ident)
        server.counter.reset()
        t0 = time.perf_counter()
        tbl.append(batch(2, 20, day0 + dt.timedelta(hours=i), seed=i), snapshot_properties={"marketpipe.batch": f"b{i}"})
        el = time.perf_counter() - t0
        if i < 5:
            t_first += el / 5
        if i >= N - 5:
            t_last += el / 5
    tbl = cat.load_table(ident)
    prefix = tbl.location().split(BUCKET + "/")[1] + "/"
    objs = objects(prefix)
    n_meta_json = sum(o["Key"].endswith(".metadata.json") for o in objs)
    print(
        f"[{ident}] props={props}\n   {N} appends: append first5 {t_first*1000:.0f} ms, last5 {t_last*1000:.0f} ms; "
        f"manifests in current snapshot={len(tbl.current_snapshot().manifests(tbl.io))}; data files={len(list(tbl.scan().plan_files()))}; "
        f"objects={len(objs)} (metadata.json={n_meta_json})"
    )
    return tbl


fill("m.fast", {})
fill("m.merge", {"commit.manifest-merge.enabled": "true", "commit.manifest.min-count-to-merge": "10"})
tbl = fill(
    "m.tidy",
    {"write.metadata.delete-after-commit.enabled": "true", "write.metadata.previous-versions-max": "5"},
)

# --- expire snapshots
ident = "m.tidy"
prefix = tbl.location().split(BUCKET + "/")[1] + "/"
before_objs = len(objects(prefix))
snaps_before = len(tbl.metadata.snapshots)
cutoff = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)  # all but the current (protected) one
t0 = time.perf_counter()
tbl.maintenance.expire_snapshots().older_than(cutoff).commit()
tbl = cat.load_table(ident)
markers = [s.summary.get("marketpipe.batch") for s in tbl.metadata.snapshots]
print(
    f"[expire] {snaps_before} -> {len(tbl.metadata.snapshots)} snapshots in {time.perf_counter()-t0:.2f}s; "
    f"objects {before_objs} -> {len(objects(prefix))} (files are NOT deleted); batch markers left: {markers}"
)
rows_before = tbl.scan().to_arrow().num_rows

# --- 'compaction' by partition rewrite: overwrite one (day, symbol) partition with its own rows
part_filter = And(
    And(GreaterThanOrEqual("received_ts", "2025-01-02T00:00:00+00:00"), LessThan("received_ts", "2025-01-03T00:00:00+00:00")),
    EqualTo("symbol", "SYM000USDT"),
)
files_before = [f.file.file_path for f in tbl.scan(row_filter=part_filter).plan_files()]
data = tbl.scan(row_filter=part_filter).to_arrow().sort_by([("received_ts", "ascending")])
t0 = time.perf_counter()
tbl.overwrite(data, overwrite_filter=part_filter, snapshot_properties={"marketpipe.compaction": "2025-01-02/SYM000USDT"})
tbl = cat.load_table(ident)
files_after = [f.file.file_path for f in tbl.scan(row_filter=part_filter).plan_files()]
s = tbl.current_snapshot()
print(
    f"[rewrite] partition 2025-01-02/SYM000USDT: {len(files_before)} files -> {len(files_after)} file(s), "
    f"{data.num_rows} rows, {time.perf_counter()-t0:.2f}s; table rows {rows_before} -> {tbl.scan().to_arrow().num_rows}; "
    f"snapshot ops since: {[x.summary.operation.value for x in tbl.metadata.snapshots[-3:]]} summary={dict(s.summary.additional_properties)}"
)

# --- orphan listing (what pyiceberg lacks): files under the table location not reachable from metadata
reachable = set()
for snap in tbl.metadata.snapshots:
    reachable.add(snap.manifest_list)
    for m in snap.manifests(tbl.io):
        reachable.add(m.manifest_path)
        for e in m.fetch_manifest_entry(tbl.io, discard_deleted=False):
            reachable.add(e.data_file.file_path)
reachable.add(tbl.metadata_location)
reachable.update(e.metadata_file for e in tbl.metadata.metadata_log)
all_objs = objects(prefix)
orphans = [o for o in all_objs if f"s3://{BUCKET}/{o['Key']}" not in reachable]
print(
    f"[orphans] objects={len(all_objs)} reachable={len(reachable)} orphans={len(orphans)} "
    f"(data={sum('/data/' in o['Key'] for o in orphans)}, avro={sum(o['Key'].endswith('.avro') for o in orphans)}, "
    f"metadata.json={sum(o['Key'].endswith('.metadata.json') for o in orphans)})"
)
print("maintenance API surface:", [a for a in dir(tbl.maintenance) if not a.startswith("_")],
      "| Table has rewrite/compact/orphan methods:",
      [a for a in dir(tbl) if any(k in a for k in ("rewrite", "compact", "orphan"))])
server.stop()
