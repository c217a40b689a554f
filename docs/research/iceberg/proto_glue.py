"""Q2 + Q7: Glue catalog on a moto server, S3 warehouse on moto, partitioned table, append, read back."""

import datetime as dt
import json
import time

import boto3

from harness import BUCKET, REGION, SPEC, SCHEMA, batch, glue_catalog, start_server, wide_schema
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.transforms import DayTransform, IdentityTransform

server = start_server()
cat = glue_catalog(server)
cat.create_namespace("marketpipe")

server.counter.reset()
t0 = time.perf_counter()
tbl = cat.create_table("marketpipe.quotes", schema=SCHEMA, partition_spec=SPEC)
print(f"create_table: {time.perf_counter() - t0:.3f}s requests={server.counter.snapshot()}")
print("location:", tbl.location(), "metadata:", tbl.metadata_location)

day = dt.datetime(2025, 1, 2, 23, 59, 59, tzinfo=dt.UTC)
data = batch(n_symbols=3, rows_per_symbol=20, start=day)  # crosses midnight -> 2 days x 3 symbols
server.counter.reset()
t0 = time.perf_counter()
tbl.append(data, snapshot_properties={"marketpipe.batch": "b-0001"})
print(f"append: {time.perf_counter() - t0:.3f}s requests={server.counter.snapshot()}")

snap = tbl.current_snapshot()
print("snapshot summary:", json.dumps(snap.summary.model_dump() if hasattr(snap.summary, "model_dump") else dict(snap.summary), default=str))

files = [t.file.file_path for t in tbl.scan().plan_files()]
print(f"{len(files)} data files, e.g.", files[0])
back = tbl.scan().to_arrow()
print("rows back:", back.num_rows, "schema:", back.schema)
print("filtered:", tbl.scan(row_filter="symbol == 'SYM001USDT' and received_ts >= '2025-01-03T00:00:00+00:00'").to_arrow().num_rows)

glue = boto3.client("glue", region_name=REGION, endpoint_url=server.url)
g = glue.get_table(DatabaseName="marketpipe", Name="quotes")["Table"]
print("Glue Parameters:", json.dumps(g["Parameters"], indent=1))
print("Glue TableType:", g.get("TableType"), "StorageDescriptor.Location:", g["StorageDescriptor"].get("Location"))
print("Glue columns:", [(c["Name"], c["Type"], c.get("Parameters")) for c in g["StorageDescriptor"]["Columns"]][:3])
print("VersionId:", g.get("VersionId"))

# list S3 layout
s3 = boto3.client("s3", region_name=REGION, endpoint_url=server.url)
for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]:
    print("  s3://%s/%s %d" % (BUCKET, o["Key"], o["Size"]))

# symbol bucket variant
from pyiceberg.transforms import BucketTransform

spec_b = PartitionSpec(
    PartitionField(source_id=2, field_id=1000, transform=DayTransform(), name="received_day"),
    PartitionField(source_id=1, field_id=1001, transform=BucketTransform(16), name="symbol_bucket"),
)
tb = cat.create_table("marketpipe.quotes_bucketed", schema=SCHEMA, partition_spec=spec_b)
tb.append(batch(50, 4, day))
print("bucketed: files", len(list(tb.scan().plan_files())), "rows", tb.scan().to_arrow().num_rows)

# wide variant: 400 doubles
ws = wide_schema(400)
tw = cat.create_table(
    "marketpipe.features_wide",
    schema=ws,
    partition_spec=PartitionSpec(
        PartitionField(source_id=2, field_id=1000, transform=DayTransform(), name="received_day"),
        PartitionField(source_id=1, field_id=1001, transform=IdentityTransform(), name="symbol"),
    ),
)
wdata = batch(10, 100, day.replace(hour=12), wide=400)
server.counter.reset()
t0 = time.perf_counter()
tw.append(wdata)
print(f"wide append (1000 rows x 402 cols, 10 symbols): {time.perf_counter() - t0:.3f}s requests={server.counter.snapshot()}")
t0 = time.perf_counter()
wb = tw.scan(selected_fields=("symbol", "received_ts", "f000", "f399")).to_arrow()
print(f"wide read 4 cols: {wb.num_rows} rows {time.perf_counter() - t0:.3f}s")
g = glue.get_table(DatabaseName="marketpipe", Name="features_wide")["Table"]
print("wide Glue column count:", len(g["StorageDescriptor"]["Columns"]))
server.stop()
