"""Layer: built locally by pip cross-targeting Lambda (no Docker), pruned, size-checked, no boto3."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template
from infra.constructs import layer as layer_module
from infra.constructs.layer import LocalPipBundler, runtime_requirements


class FakePip:
    """Stands in for ``pip install --target``: records the command, drops wheel-like files."""

    def __init__(self, returncode: int = 0) -> None:
        self.returncode = returncode
        self.commands: list[list[str]] = []

    def __call__(self, command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        self.commands.append(command)
        target = Path(command[command.index("--target") + 1])
        pyarrow = target / "pyarrow"
        (pyarrow / "include").mkdir(parents=True)
        (pyarrow / "include" / "arrow.h").write_text("header")
        for name in (
            "lib.cpython-312-x86_64-linux-gnu.so", "libarrow.so.2000", "libarrow.so", "libarrow.so.2000.0.0",
            "libarrow_flight.so.2000", "_flight.cpython-312-x86_64-linux-gnu.so", "array.pxi", "__init__.py",
        ):  # fmt: skip
            (pyarrow / name).write_bytes(b"x" * 10)
        for name in (
            "zstandard/__init__.py", "zstandard/backend_c.cpython-312-x86_64-linux-gnu.so",
            "zstandard/_cffi.cpython-312-x86_64-linux-gnu.so", "zstandard/backend_cffi.py",
            "hive_metastore/ThriftHiveMetastore.py", "fb303/FacebookService.py", "pyiceberg/__init__.py",
        ):  # fmt: skip
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(b"x" * 10)
        return subprocess.CompletedProcess(command, self.returncode, "pip out", "pip err")


def test_layer_version_targets_python312_x86(template: Template) -> None:
    template.has_resource_properties(
        "AWS::Lambda::LayerVersion",
        {"CompatibleRuntimes": ["python3.12"], "CompatibleArchitectures": ["x86_64"]},
    )


def test_requirements_are_the_package_dependencies_without_boto3_or_pandas() -> None:
    requirements = runtime_requirements()
    names = " ".join(requirements)
    for dependency in ("websockets", "orjson", "pyarrow", "sqlalchemy", "pymysql", "requests"):
        assert dependency in names
    assert "boto3" not in names and "pandas" not in names


def test_requirements_add_pyiceberg_with_its_rust_transforms_and_pin_dateutil_for_botocore() -> None:
    requirements = runtime_requirements()
    (iceberg,) = [r for r in requirements if r.startswith("pyiceberg[")]
    extras = set(iceberg[iceberg.index("[") + 1 : iceberg.index("]")].split(","))
    assert {"pyarrow", "pyiceberg-core"} <= extras  # day()/bucket() writes need pyiceberg-core
    assert ">=0.12" in iceberg and "<0.13" in iceberg
    assert "python-dateutil<3" in requirements  # the runtime's botocore pins <3; strictyaml pulls 4.x


def test_a_forbidden_requirement_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layer_module, "EXTRA_REQUIREMENTS", ("boto3>=1.34",))
    with pytest.raises(ValueError, match="boto3"):
        runtime_requirements()


def test_local_bundler_cross_installs_copies_the_package_and_prunes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pip = FakePip()
    monkeypatch.setattr(layer_module.subprocess, "run", pip)
    assert LocalPipBundler().try_bundle(str(tmp_path), None) is True  # positional, as jsii calls it

    (command,) = pip.commands
    joined = " ".join(command)
    assert "--platform manylinux2014_x86_64" in joined
    assert "--only-binary=:all:" in command
    assert "--python-version 3.12" in joined
    assert "--implementation cp" in joined
    assert command[command.index("--target") + 1] == str(tmp_path / "python")
    assert set(runtime_requirements()) <= set(command)

    python = tmp_path / "python"
    assert (python / "marketpipe" / "tables" / "__init__.py").is_file()
    assert (python / "marketpipe" / "tables" / "schema.py").is_file()
    assert not list((python / "marketpipe").rglob("__pycache__"))
    # This machine's compiled book is built for its own CPython, not Lambda's: the layer runs the
    # pure-Python book (same rows) and ships neither the extension nor its sources.
    built = {".so", ".c", ".pyx", ".pyi"}
    assert not [p.name for p in (python / "marketpipe").iterdir() if p.suffix in built]
    assert (python / "marketpipe" / "book.py").is_file()
    kept = {p.name for p in (python / "pyarrow").iterdir()}
    assert kept == {"lib.cpython-312-x86_64-linux-gnu.so", "libarrow.so.2000", "__init__.py"}
    # pyiceberg's tree: zstandard keeps only its C backend; the Hive Thrift stubs go (Glue is the catalog).
    assert {p.name for p in (python / "zstandard").iterdir()} == {
        "__init__.py",
        "backend_c.cpython-312-x86_64-linux-gnu.so",
    }
    assert not (python / "hive_metastore").exists() and not (python / "fb303").exists()
    assert (python / "pyiceberg" / "__init__.py").is_file()


def test_pip_failure_is_reported_with_its_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layer_module.subprocess, "run", FakePip(returncode=1))
    with pytest.raises(RuntimeError, match="pip err"):
        LocalPipBundler().try_bundle(str(tmp_path), None)


def test_oversized_layer_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layer_module.subprocess, "run", FakePip())
    monkeypatch.setattr(layer_module, "MAX_UNZIPPED_BYTES", 10)
    with pytest.raises(RuntimeError, match="250 MiB"):
        LocalPipBundler().try_bundle(str(tmp_path), None)


def test_asset_hash_follows_requirements(monkeypatch: pytest.MonkeyPatch) -> None:
    before = layer_module._source_hash()
    assert layer_module._source_hash() == before
    monkeypatch.setattr(layer_module, "EXTRA_REQUIREMENTS", ("aws-lambda-powertools>=3,<5",))
    assert layer_module._source_hash() != before
