"""Where a lake (or any folder of objects) lives: a local folder or ``s3://bucket/prefix``.

Every reader and writer of the lake (the lake sinks, the ledger ETL, the execution snapshots, the
liveness check, ``marketpipe query``) opens its root with :func:`open_location`, so a relative folder,
an absolute one, ``file://`` and ``s3://`` mean the same thing everywhere. On S3 pyarrow's client
honours ``AWS_ENDPOINT_URL`` (a moto server in the tests) and the usual AWS credentials chain.
Nothing is created here: writers create the folders they write into.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.fs as pafs

from marketpipe.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Location:
    """A folder (or file) on some filesystem: ``fs`` plus a path without trailing slash."""

    fs: pafs.FileSystem
    path: str

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def child(self, *parts: str) -> Location:
        return Location(self.fs, "/".join([self.path.rstrip("/"), *parts]))

    def read_json(self) -> Any:
        """The JSON document stored at this path, or None when there is none (a small state object)."""
        if self.fs.get_file_info(self.path).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(self.path) as f:
            return orjson.loads(f.read())

    def write_bytes(self, data: bytes) -> None:
        """Replace the file atomically: written beside it and renamed on a local disk (its folder
        created), one PUT on an object store. Readers never see half a file."""
        if not self.is_local:
            with self.fs.open_output_stream(self.path) as out:
                out.write(data)
            return
        parent = self.path.rsplit("/", 1)[0]
        make_dirs(self.fs, parent)
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        os.replace(tmp, self.path)

    def write_json(self, document: Any) -> None:
        """Store a JSON document at this path, replacing it atomically."""
        self.write_bytes(orjson.dumps(document))

    def uri(self) -> str:
        """The location as a URI DuckDB and pyarrow accept: a local path or ``s3://bucket/key``."""
        if self.is_local:
            return self.path
        return f"{self.fs.type_name}://{self.path}"


def make_dirs(fs: pafs.FileSystem, directory: str) -> None:
    """Create a folder on a local disk; nothing on an object store, where a folder is only a key prefix.

    pyarrow's ``S3FileSystem.create_dir(recursive=True)`` PUTs a marker object per level at every call:
    5 of the ~14 S3 requests of a lake file rewrite (measured by ``benchmarks/aws_scale.py``).
    """
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(directory, recursive=True)


def open_location(uri: str, what: str = "location") -> Location:
    """``./data/lake``, ``/abs/lake``, ``file:///abs/lake`` or ``s3://bucket/prefix`` -> Location.

    A relative folder is made absolute (against the working directory now, so a later ``chdir`` does
    not move it). An empty or unusable URI is a :class:`ConfigError` naming ``what`` it was for.
    """
    if not uri:
        raise ConfigError(f"empty {what}")
    if "://" not in uri:
        return Location(pafs.LocalFileSystem(), os.path.abspath(uri))
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise ConfigError(f"invalid {what} {uri!r}: {exc}") from exc
    return Location(fs, path.rstrip("/"))
