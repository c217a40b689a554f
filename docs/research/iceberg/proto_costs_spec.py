"""Q4 follow-up: one 100-symbol batch under different partition specs (files, requests, time)."""
import datetime as dt, statistics, time
from harness import SCHEMA, batch, glue_catalog, start_server, wide_schema
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.transforms import BucketTransform, DayTransform, IdentityTransform
from pyiceberg.table.sorting import SortField, SortOrder

server = start_server()
cat = glue_catalog(server, **{"py-io-impl": "harness.DelayedOpenPyArrowFileIO"})
cat.create_namespace("spec")
day = PartitionField(2, 1000, DayTransform(), "received_day")
specs = {
    "day+identity(symbol)": PartitionSpec(day, PartitionField(1, 1001, IdentityTransform(), "symbol")),
    "day+bucket(8,symbol)": PartitionSpec(day, PartitionField(1, 1001, BucketTransform(8), "symbol_bucket")),
    "day only": PartitionSpec(day),
}
start = dt.datetime(2025, 1, 2, 12, tzinfo=dt.UTC)
for wide in (0, 400):
    for name, spec in specs.items():
        ident = f"spec.t{abs(hash((name, wide))) % 10**6}"
        cat.create_table(ident, schema=wide_schema(400) if wide else SCHEMA, partition_spec=spec)
        times = []
        for i in range(5):
            df = batch(100, 10, start, seed=i, wide=wide)
            server.counter.reset(); t0 = time.perf_counter()
            cat.load_table(ident).append(df)
            times.append(time.perf_counter() - t0)
        reqs = server.counter.snapshot()
        files = int(cat.load_table(ident).current_snapshot().summary["added-data-files"])
        print(f"{'wide400' if wide else 'narrow'} {name:22s}: 100 symbols x 10 rows -> {files:3d} data files/append, "
              f"{sum(reqs.values()):3d} requests, median {statistics.median(times)*1000:.0f} ms")
server.stop()
