"""The ``marketpipe`` Lambda layer: the domain package plus its runtime dependencies.

Built on the synth machine with ``pip --platform manylinux2014_x86_64 --only-binary=:all:`` so that
``cdk synth``/``cdk deploy`` need no Docker engine; the Docker image is only a fallback CDK would use
if local bundling declined (it never does: failures raise with pip's output instead).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import cast

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from constructs import Construct

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO_ROOT / "layers" / "marketpipe"
PYTHON_VERSION = "3.12"
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.X86_64
PLATFORM = "manylinux2014_x86_64"
# Lambda's hard limit for function + layers, unzipped.
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024
# Iceberg lake writes (book builder, Glue catalog; boto3 comes from the runtime). Layer-only: the package
# runs without it. pyiceberg-core is the Rust extension that writing day()/bucket() partitions needs.
ICEBERG_REQUIREMENT = "pyiceberg[pyarrow,pyiceberg-core]>=0.12,<0.13"
# Available to handlers but not core dependencies of the package: Powertools (structured logs, EMF
# metrics), cryptography (PyMySQL needs it for MySQL 8.4's default caching_sha2_password auth) and
# pyiceberg. The python-dateutil pin: pyiceberg's strictyaml would pull 4.x, which shadows the
# runtime's and which the runtime's botocore (pinned <3) is not tested against.
EXTRA_REQUIREMENTS = (
    "aws-lambda-powertools>=3,<4",
    "cryptography>=42",
    ICEBERG_REQUIREMENT,
    "python-dateutil<3",
)
# Artefacts of this machine's own build: bytecode and the compiled book (``marketpipe._cbook``, built
# for the synth machine's CPython, not Lambda's). The layer runs the pure-Python book, which gives the
# same rows; the book-builder Lambda handles small Kinesis batches, where its speed does not matter.
LOCAL_BUILD_SUFFIXES = (".pyc", ".so", ".c", ".pyx", ".pyi")
# Never shipped: the runtime provides boto3; pandas would blow the size limit.
FORBIDDEN = ("boto3", "botocore", "pandas")
# Dead weight inside wheels that Lambda never loads: headers, Cython sources, test suites, Arrow
# Flight (RPC; nothing else links it), the unversioned/fully-versioned copies of each shared
# library (wheels cannot hold symlinks; the loader only asks for the ``.so.<ABI>`` soname),
# zstandard's CFFI backend (CPython uses its C backend) and the Hive-metastore Thrift stubs shipped
# in the pyiceberg wheel (we use Glue). The Glue write path was smoke-tested without them.
PRUNE_GLOBS = (
    "pyarrow/include", "pyarrow/src", "pyarrow/tests", "pyarrow/*.pyx", "pyarrow/*.pxi", "pyarrow/*.pxd",
    "pyarrow/_pyarrow_cpp_tests*", "pyarrow/_flight*", "pyarrow/flight.py", "pyarrow/libarrow_flight.so*",
    "pyarrow/libarrow_python_flight.so*", "pyarrow/libarrow*.so", "pyarrow/libparquet*.so",
    "pyarrow/libarrow*.so.*.*.*", "pyarrow/libparquet*.so.*.*.*", "**/__pycache__",
    "zstandard/_cffi*.so", "zstandard/backend_cffi.py", "hive_metastore", "fb303",
)  # fmt: skip


def runtime_requirements() -> list[str]:
    """The package's ``[project].dependencies`` (single source of truth) plus the layer extras."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *EXTRA_REQUIREMENTS]
    for req in requirements:
        name = req.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower()
        if name in FORBIDDEN:
            raise ValueError(f"{name} must not go into the Lambda layer (size / provided by runtime)")
    return requirements


def _source_hash() -> str:
    """Hash of everything that changes the layer: the package sources and the requirement list."""
    digest = hashlib.sha256()
    digest.update("\n".join(runtime_requirements()).encode())
    digest.update(f"{PYTHON_VERSION}/{PLATFORM}/{PRUNE_GLOBS}/{EXTRA_REQUIREMENTS}".encode())
    for path in sorted(PACKAGE_DIR.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in LOCAL_BUILD_SUFFIXES:
            digest.update(str(path.relative_to(PACKAGE_DIR)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


@jsii.implements(ILocalBundling)
class LocalPipBundler:
    """Builds the layer with the synth machine's pip, cross-targeting Lambda's Linux/x86_64 CPython.

    jsii calls ``try_bundle(output_dir, options)`` positionally (the generated ``*, image=...``
    signature in the docs is wrong for implementations), hence the plain two-argument method.
    """

    def try_bundle(self, output_dir: str, options: object) -> bool:
        target = Path(output_dir) / "python"
        target.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--target", str(target),
            "--platform", PLATFORM, "--implementation", "cp", "--python-version", PYTHON_VERSION,
            "--only-binary=:all:", "--upgrade",
            *runtime_requirements(),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"layer bundling failed: {' '.join(command)}\n{result.stdout}\n{result.stderr}"
            )
        shutil.copytree(
            PACKAGE_DIR,
            target / "marketpipe",
            ignore=shutil.ignore_patterns("__pycache__", *(f"*{suffix}" for suffix in LOCAL_BUILD_SUFFIXES)),
        )
        for pattern in PRUNE_GLOBS:
            for path in list(target.glob(pattern)):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                elif path.exists():
                    path.unlink()
        size = _tree_size(target)
        if size > MAX_UNZIPPED_BYTES:
            raise RuntimeError(f"layer is {size / 2**20:.0f} MiB unzipped, over Lambda's 250 MiB limit")
        return True


class MarketpipeLayer(Construct):
    """One layer shared by every marketpipe Lambda, so handlers stay a few lines each."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        docker_command = (
            f"pip install --target /asset-output/python {' '.join(repr(r) for r in runtime_requirements())}"
            " && cp -r /asset-input/marketpipe /asset-output/python/marketpipe"
        )
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            description="marketpipe domain package and runtime dependencies",
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            code=lambda_.Code.from_asset(
                str(PACKAGE_DIR.parent),
                exclude=["*.egg-info", "**/__pycache__", *(f"**/*{s}" for s in LOCAL_BUILD_SUFFIXES)],
                asset_hash_type=AssetHashType.CUSTOM,
                asset_hash=_source_hash(),
                bundling=BundlingOptions(
                    image=DockerImage.from_registry(f"public.ecr.aws/sam/build-python{PYTHON_VERSION}"),
                    command=["bash", "-c", docker_command],
                    local=cast(ILocalBundling, LocalPipBundler()),
                ),
            ),
        )
