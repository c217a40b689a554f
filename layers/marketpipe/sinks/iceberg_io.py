"""Two adjustments to pyiceberg 0.12 for the lake's commits (both pinned and tested).

``SinglePutFileIO``: pyiceberg's Arrow FileIO writing each small file to S3 with one ``PutObject``.

pyarrow's S3 output stream starts a multipart upload as soon as a file is opened, so every data,
manifest and metadata file of an append costs three requests (create, one part, complete). With
``allow_delayed_open`` a file that fits one part is sent as a single PUT: measured on moto, 78 -> 48
S3 requests per two-symbol book-builder batch (benchmarks/aws_scale.py). pyiceberg has no property for
it, hence this subclass (selected with the catalog property ``py-io-impl``); it relies on pyiceberg's
``_initialize_s3_fs`` and on pyarrow's pickling arguments, both pinned and covered by a test.
"""

from __future__ import annotations

from pyarrow.fs import FileSystem, S3FileSystem
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.table import Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import update_table_metadata


class SinglePutFileIO(PyArrowFileIO):
    def _initialize_s3_fs(self, netloc: str | None) -> FileSystem:
        fs = super()._initialize_s3_fs(netloc)
        kwargs = dict(fs.__reduce__()[1][0])  # the constructor's keyword arguments
        kwargs["allow_delayed_open"] = True
        return S3FileSystem(**kwargs)


class CheckedTransaction(Transaction):
    """The transaction every marketpipe commit uses: it never retries on its own, and it computes its
    pending metadata once per change.

    * pyiceberg retries a conflicting commit by rebasing it on the new head, without the caller's
      checks: an append that another writer already made (a duplicate delivery) would land twice. So a
      conflict goes back to the caller (``IcebergSink``), which reloads, re-checks its watermarks and
      commits again. Turning retries off with the table property ``commit.retry.num-retries`` instead
      would also switch them off for every other engine (Glue compaction, Athena).
    * pyiceberg 0.12 rebuilds ``Transaction.table_metadata`` (apply the staged updates, then a deep copy)
      each time it is read, about 19 times per append: for a 404-column book table that was 40 % of a
      book-builder batch. The metadata objects are frozen pydantic models, so one copy per (base
      metadata, staged updates) can be shared safely.
    """

    _cached: tuple[TableMetadata, tuple[object, ...], TableMetadata] | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        base, updates = self._table.metadata, self._updates
        if self._cached is None or self._cached[0] is not base or self._cached[1] is not updates:
            self._cached = (base, updates, update_table_metadata(base, updates))
        return self._cached[2]

    def _rebuild_snapshot_updates(self) -> None:
        """pyiceberg's retry step: refuse it, so the conflict reaches the caller (files cleaned up)."""
        raise CommitFailedException("concurrent commit: retried by the caller after re-checking")
