"""Apache Iceberg lake sink: each flush is one append per table, committed exactly once.

Why Iceberg on AWS: the Parquet layout rewrites every open ten-minute file a batch touches, so a
batch's cost grows with the window's rows and its S3 requests with the number of symbols. An Iceberg
append writes only the batch's own rows (one data file per day and symbol bucket) plus three small
metadata files, whatever the table holds and however many symbols the batch carries.

Exactly once. Appends are not idempotent by themselves, so rows written through :meth:`write_at`
carry their stream position (Kinesis partition key and sequence number). Each commit sets, in the same
atomic metadata update as its rows, the table property ``marketpipe.applied.<key>`` to the last position
of that key it holds. Before committing, the sink reloads the table and drops the rows of positions at
or below that watermark: a batch retried after a crash between the data commit and the DynamoDB
checkpoint, or delivered twice, adds nothing. Table properties survive snapshot expiry and compaction,
which snapshot-summary markers would not.

Concurrency. Several shards' Lambdas append to one table at once. Commits are optimistic (the Glue
``VersionId``, the SQL catalog's row): a loser gets ``CommitFailedException`` and this sink reloads,
re-checks the watermarks and appends again, with backoff. pyiceberg's own retry is refused by our
transaction (``iceberg_io.CheckedTransaction``) because it would rebase the commit without that check.

Plain :meth:`write` has no position to check, so its rows are appended as they are: only
stream-positioned writes are exactly once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa

from marketpipe.errors import ConfigError
from marketpipe.net.backoff import Backoff, retry
from marketpipe.records import Row
from marketpipe.sinks.lake_sink import arrow_schema
from marketpipe.tables import Kind, Table

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table as IcebergTable
    from pyiceberg.table.sorting import SortOrder

log = logging.getLogger(__name__)
T = TypeVar("T")

WATERMARK_PREFIX = "marketpipe.applied."
"""Table property prefix: ``marketpipe.applied.<partition key>`` = last sequence number appended."""
BATCH_SUMMARY = "marketpipe.keys"
"""Snapshot summary entry naming the keys and positions a commit holds (for people and audits)."""
SYMBOL_BUCKETS = 8
"""``bucket(8, symbol)``: at most 8 data files per day per append whatever the symbol count, and a
symbol filter still reads an eighth of a day (measured: 32 S3+Glue requests per 100-symbol append,
against 216 for ``identity(symbol)``; docs/research/iceberg/NOTES.md §4)."""
MAX_COMMIT_ATTEMPTS = 12
TABLE_PROPERTIES = {
    # Old metadata.json files go at each commit. Manifests are not merged by the writer: pyiceberg's
    # merge rereads the growing merged manifest, which made a batch's cost grow with the table
    # (measured 1.8x within four minutes at 20 symbols); compaction replaces the small files and the
    # manifests that list them.
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "10",
    "commit.manifest-merge.enabled": "false",
    "format-version": "2",
}


def table_properties(table: Table) -> dict[str, str]:
    """Our properties, plus column statistics only where a query filters.

    Every data file's manifest entry carries per-column lower and upper bounds by default: for a
    404-column book row that made each manifest large and each manifest merge the costliest part of a
    commit. Counts are kept for all columns; bounds only for the columns reads filter or sort on (the
    partition columns, the receive and exchange times, the natural key)."""
    bounded = dict.fromkeys([*table.partitions, table.partition_ts, table.order_by, *table.key])
    if "exchange_ts" in table.index:
        bounded["exchange_ts"] = None
    return {
        **TABLE_PROPERTIES,
        "write.metadata.metrics.default": "counts",
        **{f"write.metadata.metrics.column.{name}": "full" for name in bounded},
    }


# ------------------------------------------------------------------ schema


def iceberg_schema(table: Table) -> Schema:
    """The table's columns as an Iceberg schema (field ids in column order, timestamps in µs UTC)."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import DoubleType, LongType, NestedField, StringType, TimestamptzType

    types = {
        Kind.STR: StringType(),
        Kind.INT: LongType(),
        Kind.FLOAT: DoubleType(),
        Kind.TS_MS: TimestamptzType(),
        Kind.TS_US: TimestamptzType(),
    }
    return Schema(
        *(
            NestedField(i, c.name, types[c.kind], required=not c.nullable)
            for i, c in enumerate(table.columns, start=1)
        )
    )


def partition_spec(table: Table) -> PartitionSpec:
    """Hidden partitions: the day of ``partition_ts``, then a bucket of each partition column."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import BucketTransform, DayTransform

    source = {c.name: i for i, c in enumerate(table.columns, start=1)}
    fields = [PartitionField(source[table.partition_ts], 1000, DayTransform(), f"{table.partition_ts}_day")]
    for n, name in enumerate(table.partitions, start=1001):
        fields.append(PartitionField(source[name], n, BucketTransform(SYMBOL_BUCKETS), f"{name}_bucket"))
    return PartitionSpec(*fields)


def sort_order(table: Table) -> SortOrder:
    """Partition columns, then receive time: what compaction sorts by, so that a file holds a few
    symbols' rows and a one-symbol read skips the rest by the files' column bounds."""
    from pyiceberg.table.sorting import SortField, SortOrder
    from pyiceberg.transforms import IdentityTransform

    source = {c.name: i for i, c in enumerate(table.columns, start=1)}
    names = [*table.partitions, table.partition_ts]
    return SortOrder(*(SortField(source_id=source[n], transform=IdentityTransform()) for n in names))


# ------------------------------------------------------------------ catalog


@dataclass(frozen=True)
class CatalogSpec:
    """Where the Iceberg tables live, parsed from one URI.

    * ``glue://<database>?warehouse=s3://bucket/prefix`` -- the AWS Glue Data Catalog (AWS);
    * ``sqlite:///<path/catalog.db>?warehouse=file:///<dir>&namespace=marketpipe`` -- pyiceberg's SQL
      catalog in one SQLite file (tests, a local copy of the AWS lake).
    """

    kind: str
    namespace: str
    warehouse: str
    location: str = ""
    """The SQLite file's path (sqlite only)."""

    @classmethod
    def parse(cls, uri: str) -> CatalogSpec:
        parts = urlsplit(uri)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if parts.scheme not in ("glue", "sqlite"):
            raise ConfigError(f"Iceberg catalog {uri!r}: expected glue://… or sqlite:///…")
        warehouse = query.get("warehouse", "").rstrip("/")
        if not warehouse:
            raise ConfigError(f"Iceberg catalog {uri!r}: add ?warehouse=<s3:// or file:// folder>")
        if parts.scheme == "glue":
            if not parts.netloc:
                raise ConfigError(f"Iceberg catalog {uri!r}: glue://<database>?warehouse=…")
            return cls("glue", parts.netloc, warehouse)
        return cls("sqlite", query.get("namespace", "marketpipe"), warehouse, parts.path)

    def open(self, env: Mapping[str, str]) -> Catalog:
        """The pyiceberg catalog; on AWS endpoints and region come from the standard variables."""
        if self.kind == "sqlite":
            from pyiceberg.catalog.sql import SqlCatalog

            return SqlCatalog("marketpipe", uri=f"sqlite:///{self.location}", warehouse=self.warehouse)
        from pyiceberg.catalog.glue import GlueCatalog

        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        # pyarrow's S3 client ignores AWS_ENDPOINT_URL when pyiceberg builds it, and without an explicit
        # region it asks the network for the bucket's (a local moto server has neither).
        props = {
            "warehouse": self.warehouse,
            "glue.region": region,
            "s3.region": region,
            "py-io-impl": "marketpipe.sinks.iceberg_io.SinglePutFileIO",
        }
        endpoint = env.get("AWS_ENDPOINT_URL")
        if endpoint:
            props["glue.endpoint"] = props["s3.endpoint"] = env.get("AWS_ENDPOINT_URL_S3") or endpoint
        return GlueCatalog("marketpipe", **props)


def ensure_tables(catalog: Catalog, namespace: str, warehouse: str, tables: Sequence[Table]) -> list[str]:
    """Create the namespace and any missing table (schema, hidden partitions, our properties).

    Run at deploy time by a custom resource (and on first use by a local sink). A table that exists is
    brought up to date instead: columns added to its definition are added (``union_by_name``; a change
    Iceberg cannot make raises), our properties set; a changed partition spec raises, since rewriting a
    table's layout is a migration to do by hand. Either way the deployment fails with the reason rather
    than the book builder failing every batch later. Returns the names created.
    """
    from pyiceberg.exceptions import NamespaceAlreadyExistsError, TableAlreadyExistsError

    with contextlib.suppress(NamespaceAlreadyExistsError):
        catalog.create_namespace(namespace)
    existing = {ident[-1] for ident in catalog.list_tables(namespace)}
    created = []
    for table in tables:
        if table.name in existing:
            _bring_up_to_date(catalog.load_table((namespace, table.name)), table)
            continue
        try:
            catalog.create_table(
                (namespace, table.name),
                schema=iceberg_schema(table),
                partition_spec=partition_spec(table),
                sort_order=sort_order(table),
                location=f"{warehouse}/{table.name}",
                properties=table_properties(table),
            )
            created.append(table.name)
        except TableAlreadyExistsError:  # another Lambda created it meanwhile
            pass
    return created


def _bring_up_to_date(iceberg: IcebergTable, table: Table) -> None:
    wanted = [(f.source_id, str(f.transform), f.name) for f in partition_spec(table).fields]
    current = [(f.source_id, str(f.transform), f.name) for f in iceberg.spec().fields]
    if wanted != current:
        change = f"from {current} to {wanted}"
        raise ValueError(f"{table.name}: the partition spec changed {change}: migrate by hand")
    schema = iceberg_schema(table)
    have = [(f.name, str(f.field_type), f.required) for f in iceberg.schema().fields]
    if have != [(f.name, str(f.field_type), f.required) for f in schema.fields]:
        with iceberg.update_schema() as update:
            update.union_by_name(schema)
        log.info("%s: schema brought up to date", table.name)
    properties = table_properties(table)
    stale = {k: v for k, v in properties.items() if k != "format-version" and iceberg.properties.get(k) != v}
    if stale:
        with iceberg.transaction() as tx:
            tx.set_properties(stale)
        log.info("%s: properties set: %s", table.name, ", ".join(sorted(stale)))


def retry_conflicts(
    what: str,
    attempt: Callable[[], T],
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_conflict: Callable[[Exception, float], None] | None = None,
) -> T:
    """``attempt()`` (reload, re-check, commit), run again after each optimistic-commit conflict with
    jittered backoff, up to :data:`MAX_COMMIT_ATTEMPTS`: every committer of the lake retries this way."""
    from pyiceberg.exceptions import CommitFailedException

    def conflicted(number: int, exc: Exception, delay: float) -> None:
        log.info("%s: commit conflict (%s); retrying in %.2f s", what, exc, delay)
        if on_conflict is not None:
            on_conflict(exc, delay)

    try:
        return retry(
            attempt,
            attempts=MAX_COMMIT_ATTEMPTS,
            backoff=Backoff(initial=0.05, cap=2.0),
            retry_on=CommitFailedException,
            sleep=sleep,
            on_retry=conflicted,
        )
    except CommitFailedException as exc:
        raise RuntimeError(f"{what}: gave up after {MAX_COMMIT_ATTEMPTS} conflicting commits") from exc


# ------------------------------------------------------------------ the sink


@dataclass
class _Pending:
    """Rows buffered for one table: (partition key, position, rows) parts in arrival order."""

    parts: list[tuple[str | None, int, list[Row]]] = field(default_factory=list)
    rows: int = 0


@dataclass
class CommitStats:
    commits: int = 0
    conflicts: int = 0
    """Optimistic commits lost to another writer and retried."""
    rows_appended: int = 0
    rows_already_committed: int = 0
    """Rows a retried or duplicated batch brought again, dropped by the watermark check."""


class IcebergSink:
    """A sink appending each flush to Iceberg tables; exactly once for stream-positioned writes."""

    name = "iceberg"

    def __init__(
        self,
        catalog_uri: str,
        tables: Sequence[Table],
        *,
        env: Mapping[str, str] | None = None,
        catalog: Catalog | None = None,
        create_tables: bool = True,
        sleep: Any = time.sleep,
    ) -> None:
        self.spec = CatalogSpec.parse(catalog_uri)
        self.catalog = catalog if catalog is not None else self.spec.open(os.environ if env is None else env)
        self.tables = {t.name: t for t in tables}
        self.stats = CommitStats()
        self._pending: dict[str, _Pending] = {}
        self._loaded: dict[str, IcebergTable] = {}
        self._ready = not create_tables
        """``create_tables=False`` (the Lambda): the deploy step made the tables; a missing one fails the
        batch rather than being created by a role that may not create tables."""
        self._sleep = sleep

    # -------------------------------------------------------------- Sink

    def write(self, table: Table, rows: Sequence[Row]) -> None:
        self.write_at(None, -1, table, rows)

    def write_at(self, key: str | None, position: int, table: Table, rows: Sequence[Row]) -> None:
        """Buffer rows produced by the record at ``position`` of partition ``key``."""
        if table.name not in self.tables:
            raise ValueError(f"{table.name} is not an Iceberg table of this lake")
        if not rows:
            return
        pending = self._pending.setdefault(table.name, _Pending())
        pending.parts.append((key, position, list(rows)))
        pending.rows += len(rows)

    def discard(self, key: str, position: int) -> None:
        for name, pending in list(self._pending.items()):
            kept = [p for p in pending.parts if (p[0], p[1]) != (key, position)]
            pending.parts, pending.rows = kept, sum(len(rows) for _, _, rows in kept)
            if not kept:
                del self._pending[name]

    def flush(self) -> None:
        """Commit each table's buffered rows; raises when a table cannot be committed (nothing lost:
        what is still pending stays buffered until the caller retries or discards the sink)."""
        if not self._pending:
            return
        if not self._ready:
            ensure_tables(self.catalog, self.spec.namespace, self.spec.warehouse, list(self.tables.values()))
            self._ready = True
        for name in list(self._pending):
            self._commit(self.tables[name], self._pending[name])
            del self._pending[name]

    def close(self) -> None:
        self.flush()

    # -------------------------------------------------------------- commit loop

    def _commit(self, table: Table, pending: _Pending) -> None:
        def conflicted(exc: Exception, delay: float) -> None:
            self.stats.conflicts += 1

        retry_conflicts(
            table.name, lambda: self._commit_once(table, pending), sleep=self._sleep, on_conflict=conflicted
        )

    def _commit_once(self, table: Table, pending: _Pending) -> None:
        """Reload the table, drop what its watermarks cover, append the rest with the new watermarks."""
        from marketpipe.sinks.iceberg_io import CheckedTransaction

        iceberg = self._load((self.spec.namespace, table.name))
        marks = watermarks(iceberg.properties)
        fresh = [p for p in pending.parts if p[0] is None or p[1] > marks.get(p[0], -1)]
        dropped = pending.rows - sum(len(rows) for _, _, rows in fresh)
        if not fresh:
            self.stats.rows_already_committed += dropped
            log.info("%s: all %d rows already committed (retried batch)", table.name, dropped)
            return
        last: dict[str, int] = {}
        for key, position, _ in fresh:
            if key is not None:
                last[key] = max(position, last.get(key, -1))
        data = to_arrow(table, [row for _, _, rows in fresh for row in rows])
        with CheckedTransaction(iceberg) as tx:
            tx.append(data, snapshot_properties=_summary(fresh))
            if last:
                tx.set_properties({f"{WATERMARK_PREFIX}{k}": str(v) for k, v in last.items()})
        self.stats.commits += 1
        self.stats.rows_appended += data.num_rows
        self.stats.rows_already_committed += dropped

    def _load(self, ident: tuple[str, str]) -> IcebergTable:
        """The table's current metadata: another writer may have committed since the last flush."""
        loaded = self._loaded.get(ident[1])
        if loaded is None:
            loaded = self._loaded[ident[1]] = self.catalog.load_table(ident)
        else:
            loaded.refresh()
        return loaded


def expire_snapshots(
    catalog: Catalog, namespace: str, names: Sequence[str], keep_seconds: float, *, now: float | None = None
) -> dict[str, int]:
    """Drop snapshots older than ``keep_seconds`` from each table's metadata; ``{table: expired}``.

    Every append adds a snapshot (about 1 KB of ``metadata.json``, read and rewritten by every commit),
    so without expiry a table appended every 10 s would carry megabytes per commit within a day. The
    current snapshot is always kept. Files are not deleted here (pyiceberg 0.12 cannot): the orphan
    file deletion of the Glue table optimizer removes them (docs/AWS.md). Exactly-once does not rely
    on snapshots (the watermarks are table properties), so expiry is safe at any age.
    """
    cutoff_ms = int(((time.time() if now is None else now) - keep_seconds) * 1000)

    def expire(name: str) -> int:
        table = catalog.load_table((namespace, name))
        current = table.current_snapshot()
        old = [
            s.snapshot_id
            for s in table.metadata.snapshots
            if s.timestamp_ms < cutoff_ms and (current is None or s.snapshot_id != current.snapshot_id)
        ]
        if old:
            table.maintenance.expire_snapshots().by_ids(old).commit()
        return len(old)

    expired: dict[str, int] = {}
    for name in names:  # an append may win the race: reload and try again
        expired[name] = retry_conflicts(f"{name} (expiring snapshots)", functools.partial(expire, name))
    return expired


def watermarks(properties: Mapping[str, str]) -> dict[str, int]:
    """``{partition key: last sequence number appended}`` from a table's properties."""
    n = len(WATERMARK_PREFIX)
    return {k[n:]: int(v) for k, v in properties.items() if k.startswith(WATERMARK_PREFIX)}


def _summary(parts: Sequence[tuple[str | None, int, list[Row]]]) -> dict[str, str]:
    span: dict[str, list[int]] = {}
    for key, position, _ in parts:
        if key is not None:
            first_last = span.setdefault(key, [position, position])
            first_last[1] = max(first_last[1], position)
    return {BATCH_SUMMARY: ",".join(f"{k}={a}..{b}" for k, (a, b) in sorted(span.items()))} if span else {}


def to_arrow(table: Table, rows: Sequence[Row]) -> pa.Table:
    """Rows (tuples in column order) as an Arrow table with the Iceberg schema's nullability."""
    schema = arrow_schema(table)
    columns = pa.array(rows, type=pa.struct(list(schema))).flatten()
    return pa.Table.from_arrays(columns, schema=schema)
