"""Run with Python 3.12 and PYTHONPATH=<layer>/python:<runtime boto3 dir> against a moto server at $MOTO_URL:
imports, Glue create_table (day+identity partitions), append, scan -- i.e. the Lambda path, with the pruned layer."""
import datetime as dt, os, sys
import boto3, pyarrow as pa
import dateutil, botocore
from pyiceberg.catalog.glue import GlueCatalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import DoubleType, NestedField, StringType, TimestamptzType
url = os.environ["MOTO_URL"]
print("python", sys.version.split()[0], "pyarrow", pa.__version__, "dateutil", dateutil.__version__, "botocore", botocore.__version__)
s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=url)
bucket = "smoke-" + os.environ.get("TAG", "x")
s3.create_bucket(Bucket=bucket)
cat = GlueCatalog("glue", **{"glue.endpoint": url, "s3.endpoint": url, "s3.region": "us-east-1", "glue.region": "us-east-1",
                            "warehouse": f"s3://{bucket}/wh"})
ns = "smoke_" + os.environ.get("TAG", "x")
cat.create_namespace(ns)
schema = Schema(NestedField(1, "symbol", StringType(), required=False), NestedField(2, "received_ts", TimestamptzType(), required=False),
                NestedField(3, "price", DoubleType(), required=False))
day = os.environ.get("DAY", "1") == "1"
spec = PartitionSpec(*( [PartitionField(2, 1000, DayTransform(), "received_day")] if day else []), PartitionField(1, 1001, IdentityTransform(), "symbol"))
t = cat.create_table(f"{ns}.q", schema=schema, partition_spec=spec)
ts = dt.datetime(2025, 1, 2, tzinfo=dt.timezone.utc)
t.append(pa.table({"symbol": ["A", "B"], "received_ts": pa.array([ts, ts], pa.timestamp("us", tz="UTC")), "price": [1.0, 2.0]}),
         snapshot_properties={"marketpipe.batch": "x"})
print("OK rows", t.scan().to_arrow().num_rows, "summary", t.current_snapshot().summary.get("marketpipe.batch"),
      "modules:", sorted(m for m in sys.modules if m.split(".")[0] in ("zstandard", "hive_metastore", "pygments", "rich", "pyiceberg_core"))[:8])
