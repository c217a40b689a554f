"""open_location: the one way every lake reader and writer turns a URI into (filesystem, root)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from marketpipe.errors import ConfigError
from marketpipe.lake import Location, open_location
from marketpipe.sinks.lake_sink import LakeSink


def test_local_folders_absolute_relative_and_file_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    absolute = open_location(str(tmp_path / "lake"))
    assert absolute.is_local and absolute.path == str(tmp_path / "lake")
    assert absolute.uri() == str(tmp_path / "lake")
    monkeypatch.chdir(tmp_path)
    relative = open_location("data/lake/")
    assert relative.is_local and relative.path == str(tmp_path / "data" / "lake")
    monkeypatch.chdir("/")  # made absolute when opened: a later chdir does not move it
    assert relative.child("t", "x.parquet").path == f"{tmp_path}/data/lake/t/x.parquet"
    file_uri = open_location(f"file://{tmp_path}/lake/")
    assert file_uri.is_local and file_uri.path == str(tmp_path / "lake")


def test_nothing_is_created_until_written(tmp_path: Path) -> None:
    loc = open_location(str(tmp_path / "not" / "yet"))
    assert not (tmp_path / "not").exists()
    loc.fs.create_dir(loc.child("t").path, recursive=True)
    assert (tmp_path / "not" / "yet" / "t").is_dir()


def test_s3_uri_names_bucket_and_prefix_without_slashes() -> None:
    loc = open_location("s3://bucket/some/prefix/?region=us-east-1")  # region given: no network lookup
    assert isinstance(loc.fs, pafs.S3FileSystem) and not loc.is_local
    assert loc.path == "bucket/some/prefix"
    assert loc.child("t").uri() == "s3://bucket/some/prefix/t"


def test_bad_uris_are_config_errors_naming_their_use() -> None:
    with pytest.raises(ConfigError, match="empty location"):
        open_location("")
    with pytest.raises(ConfigError, match="invalid lake URI 'nosuchscheme://b/p'"):
        open_location("nosuchscheme://b/p", "lake URI")
    with pytest.raises(ConfigError, match="invalid lake URI"):
        LakeSink("nosuchscheme://bucket/prefix")


def test_every_lake_user_opens_the_same_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    sink = LakeSink("lake")
    assert (sink.root, sink.fs.type_name) == (os.path.abspath("lake"), "local")
    assert open_location("lake") == Location(open_location("lake").fs, sink.root)
