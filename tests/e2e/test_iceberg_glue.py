"""The Iceberg lake on moto's Glue and S3: tables created at deploy, concurrent commits, expiry."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

pytest.importorskip("pyiceberg")

from marketpipe.aws import lake_tables
from marketpipe.sinks.iceberg_sink import IcebergSink, watermarks
from marketpipe.tables.bitfinex import BITFINEX_QUOTES, BITFINEX_TABLES
from tests.e2e.conftest import client, create_bucket, unique
from tests.support.moto_glue import enforce_glue_table_versions

T0 = 1_700_000_000_000_000


def quote(i: int) -> tuple[object, ...]:
    return (f"S{i % 7:02d}-USD", T0 + i, T0 + i, i, "ask", 10.0 + i, 2, 1.25, "add")


@pytest.fixture
def catalog_env(moto_endpoint: str) -> Iterator[dict[str, str]]:
    enforce_glue_table_versions()
    bucket = create_bucket(unique("lake"))
    database = unique("marketpipe").replace("-", "_")
    yield {**os.environ, "MARKETPIPE_ICEBERG_CATALOG": f"glue://{database}?warehouse=s3://{bucket}/iceberg"}


def test_deploy_creates_iceberg_tables_in_glue_once(catalog_env: dict[str, str]) -> None:
    event = {"RequestType": "Create", "ResourceProperties": {}}
    created = lake_tables.handle_deploy(event, catalog_env)
    assert created == {"PhysicalResourceId": "marketpipe-iceberg-tables"}
    assert lake_tables.handle_deploy({**event, "RequestType": "Update"}, catalog_env)
    assert lake_tables.handle_deploy({**event, "RequestType": "Delete"}, catalog_env)
    database = catalog_env["MARKETPIPE_ICEBERG_CATALOG"].split("//")[1].split("?")[0]
    tables = client("glue").get_tables(DatabaseName=database)["TableList"]
    assert sorted(t["Name"] for t in tables) == sorted(t.name for t in BITFINEX_TABLES)
    for table in tables:
        assert table["Parameters"]["table_type"] == "ICEBERG"
        assert table["StorageDescriptor"]["Location"].endswith(f"/iceberg/{table['Name']}")


def test_two_lambdas_committing_to_one_glue_table_lose_nothing(catalog_env: dict[str, str]) -> None:
    uri = catalog_env["MARKETPIPE_ICEBERG_CATALOG"]
    lake_tables.handle_deploy({"RequestType": "Create"}, catalog_env)
    sinks = [IcebergSink(uri, [BITFINEX_QUOTES], env=catalog_env) for _ in range(2)]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def shard(index: int) -> None:
        start.wait()
        try:
            for batch in range(8):
                rows = [quote(index * 10_000 + batch * 100 + i) for i in range(25)]
                sinks[index].write_at(f"bitfinex:slot-{index}", batch, BITFINEX_QUOTES, rows)
                sinks[index].flush()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=shard, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(s.stats.conflicts for s in sinks) > 0, "the commits never raced; the test proves nothing"
    table = sinks[0].catalog.load_table((uri.split("//")[1].split("?")[0], BITFINEX_QUOTES.name))
    assert table.scan().to_arrow().num_rows == 2 * 8 * 25
    assert watermarks(table.properties) == {"bitfinex:slot-0": 7, "bitfinex:slot-1": 7}
    assert len(table.metadata.snapshots) == 16

    env = {**catalog_env, "MARKETPIPE_ICEBERG_SNAPSHOT_HOURS": "0"}
    assert lake_tables.handle_maintenance({}, env)["expired"][BITFINEX_QUOTES.name] == 15
    table = sinks[0].catalog.load_table(table.name())
    assert len(table.metadata.snapshots) == 1 and table.scan().to_arrow().num_rows == 400
