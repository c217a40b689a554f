"""Shared prototype harness: a request-counting moto server, an optional Glue VersionId check for
moto, a GlueCatalog pointed at it, and the marketpipe-like schemas.

Everything runs in-process: ThreadedMotoServer serves both Glue (boto3) and S3 (pyarrow's C++
S3FileSystem, which moto's in-process `mock_aws` cannot intercept -- that is why pyiceberg's own tests
use a ThreadedMotoServer + `s3.endpoint` for S3 while Glue runs under `mock_aws`).
"""

from __future__ import annotations

import collections
import logging
import datetime as dt
import os
import re
import threading
from urllib.parse import parse_qs

import boto3
import pyarrow as pa
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from pyiceberg.catalog.glue import GlueCatalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import DoubleType, NestedField, StringType, TimestamptzType

for k, v in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ.setdefault(k, v)

logging.getLogger("werkzeug").setLevel(logging.ERROR)

REGION = "us-east-1"
BUCKET = "marketpipe-lake"
_SERVICE_RE = re.compile(r"Credential=[^/]+/\d+/[^/]+/([^/]+)/")


class RequestCounter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)

    def record(self, environ: dict) -> None:
        m = _SERVICE_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
        service = m.group(1) if m else "?"
        method = environ["REQUEST_METHOD"]
        if service == "s3":
            q = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            if method == "GET" and "list-type" in q:
                op = "ListObjectsV2"
            elif method == "GET" and environ.get("PATH_INFO", "/").count("/") <= 1 and not q:
                op = "ListObjects(v1)"
            elif method == "GET":
                op = "GetObject"
            elif method == "HEAD":
                op = "HeadObject"
            elif method == "PUT" and "partNumber" in q:
                op = "UploadPart"
            elif method == "PUT":
                op = "PutObject"
            elif method == "POST" and "uploads" in q:
                op = "CreateMultipartUpload"
            elif method == "POST" and "uploadId" in q:
                op = "CompleteMultipartUpload"
            elif method == "POST" and "delete" in q:
                op = "DeleteObjects"
            elif method == "DELETE":
                op = "DeleteObject"
            else:
                op = method
            key = f"s3:{op}"
        elif service == "glue":
            key = "glue:" + environ.get("HTTP_X_AMZ_TARGET", "?").split(".")[-1]
        else:
            key = f"{service}:{method}"
        with self.lock:
            self.counts[key] += 1


class CountingMotoServer(ThreadedMotoServer):
    """ThreadedMotoServer whose WSGI app counts every request by service/operation."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self.counter = RequestCounter()

    def _server_entry(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)
        counter = self.counter

        def counting_app(environ, start_response):  # type: ignore[no-untyped-def]
            counter.record(environ)
            return app(environ, start_response)

        self._server = make_server(
            self._ip_address, self._port, counting_app, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()

    @property
    def url(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"


def patch_moto_glue_version_check() -> None:
    """moto 5.x ignores UpdateTable's VersionId (no optimistic locking). Real Glue raises
    ConcurrentModificationException when VersionId is stale; emulate that so concurrency tests mean
    something. Must run in the process that hosts the (threaded) moto server."""
    from moto.core.exceptions import JsonRESTError
    from moto.glue.models import GlueBackend

    lock = threading.Lock()
    original = GlueBackend.update_table

    def update_table(self, database_name, table_name, table_input, version_id=None):  # type: ignore[no-untyped-def]
        with lock:
            table = self.get_table(database_name, table_name)
            if version_id is not None and str(version_id) != str(table._current_version):
                raise JsonRESTError(
                    "ConcurrentModificationException",
                    f"stale VersionId {version_id}, current {table._current_version}",
                )
            return original(self, database_name, table_name, table_input)

    GlueBackend.update_table = update_table  # type: ignore[method-assign]

    from moto.glue.responses import GlueResponse

    def resp_update_table(self):  # type: ignore[no-untyped-def]
        from moto.core.responses import EmptyResult

        database_name = self.parameters.get("DatabaseName")
        table_input = self.parameters.get("TableInput")
        self.glue_backend.update_table(
            database_name, table_input.get("Name"), table_input, self.parameters.get("VersionId")
        )
        return EmptyResult()

    GlueResponse.update_table = resp_update_table  # type: ignore[method-assign]


def start_server() -> CountingMotoServer:
    server = CountingMotoServer()
    server.start()
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=server.url)
    s3.create_bucket(Bucket=BUCKET)
    return server


def glue_catalog(server: CountingMotoServer, **extra: str) -> GlueCatalog:
    return GlueCatalog(
        "glue",
        **{
            "glue.endpoint": server.url,
            "glue.region": REGION,
            "s3.endpoint": server.url,
            "s3.region": REGION,
            "client.access-key-id": "testing",
            "client.secret-access-key": "testing",
            "warehouse": f"s3://{BUCKET}/iceberg",
            **extra,
        },
    )


SCHEMA = Schema(
    NestedField(1, "symbol", StringType(), required=False),
    NestedField(2, "received_ts", TimestamptzType(), required=False),
    NestedField(3, "bid", DoubleType(), required=False),
    NestedField(4, "ask", DoubleType(), required=False),
    NestedField(5, "price", DoubleType(), required=False),
    NestedField(6, "qty", DoubleType(), required=False),
)

SPEC = PartitionSpec(
    PartitionField(source_id=2, field_id=1000, transform=DayTransform(), name="received_day"),
    PartitionField(source_id=1, field_id=1001, transform=IdentityTransform(), name="symbol"),
)


def wide_schema(n_doubles: int = 400) -> Schema:
    return Schema(
        NestedField(1, "symbol", StringType(), required=False),
        NestedField(2, "received_ts", TimestamptzType(), required=False),
        *[NestedField(3 + i, f"f{i:03d}", DoubleType(), required=False) for i in range(n_doubles)],
    )


def batch(n_symbols: int, rows_per_symbol: int, start: dt.datetime, seed: int = 0, wide: int = 0) -> pa.Table:
    """A pyarrow table matching SCHEMA (or wide_schema(wide))."""
    symbols, ts = [], []
    for s in range(n_symbols):
        for r in range(rows_per_symbol):
            symbols.append(f"SYM{s:03d}USDT")
            ts.append(start + dt.timedelta(milliseconds=r * 100 + seed))
    n = len(symbols)
    cols: dict[str, pa.Array] = {
        "symbol": pa.array(symbols, pa.string()),
        "received_ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
    }
    if wide:
        for i in range(wide):
            cols[f"f{i:03d}"] = pa.array([float(i + j + seed) for j in range(n)], pa.float64())
    else:
        for name in ("bid", "ask", "price", "qty"):
            cols[name] = pa.array([float(j + seed) for j in range(n)], pa.float64())
    return pa.table(cols)


from pyiceberg.io.pyarrow import PyArrowFileIO  # noqa: E402


class DelayedOpenPyArrowFileIO(PyArrowFileIO):
    """PyArrowFileIO whose S3FileSystem has allow_delayed_open=True: a small file is written with ONE
    PutObject instead of CreateMultipartUpload + UploadPart + CompleteMultipartUpload (pyiceberg exposes
    no property for it). Select with catalog property  py-io-impl = "harness.DelayedOpenPyArrowFileIO"."""

    def _initialize_s3_fs(self, netloc):  # type: ignore[no-untyped-def]
        from pyarrow.fs import S3FileSystem

        fs = super()._initialize_s3_fs(netloc)
        kwargs = fs.__reduce__()[1][0]  # the constructor kwargs (credentials stay None -> default chain)
        kwargs["allow_delayed_open"] = True
        return S3FileSystem(**kwargs)
