"""Measure Lambda layer size like infra/constructs/layer.py does (pip --target, manylinux2014_x86_64, cp3.12,
prune globs), baseline vs + pyiceberg. Usage: venv/bin/python layer_size.py"""
import shutil, subprocess, sys
from pathlib import Path

BASE = ["websockets>=13,<18", "orjson>=3.9", "pyarrow>=15", "sqlalchemy>=2.0,<3", "pymysql>=1.1",
        "requests>=2.31", "tqdm>=4.66", "plivo>=4.59", "aws-lambda-powertools>=3,<4", "cryptography>=42"]
PRUNE_GLOBS = (
    "pyarrow/include", "pyarrow/src", "pyarrow/tests", "pyarrow/*.pyx", "pyarrow/*.pxi", "pyarrow/*.pxd",
    "pyarrow/_pyarrow_cpp_tests*", "pyarrow/_flight*", "pyarrow/flight.py", "pyarrow/libarrow_flight.so*",
    "pyarrow/libarrow_python_flight.so*", "pyarrow/libarrow*.so", "pyarrow/libparquet*.so",
    "pyarrow/libarrow*.so.*.*.*", "pyarrow/libparquet*.so.*.*.*", "**/__pycache__",
)
def build(name, reqs):
    target = Path("layer") / name / "python"
    shutil.rmtree(target.parent, ignore_errors=True); target.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--target", str(target), "--platform", "manylinux2014_x86_64", "--implementation", "cp",
        "--python-version", "3.12", "--only-binary=:all:", "--upgrade", *reqs], check=True)
    for pattern in PRUNE_GLOBS:
        for p in list(target.glob(pattern)):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()
    sizes = {}
    for p in target.iterdir():
        sizes[p.name] = sum(f.stat().st_size for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())
    total = sum(sizes.values())
    print(f"{name}: {total/2**20:.1f} MiB")
    return sizes
# Extra prune candidates for pyiceberg's dependency tree (all verified unused by the Glue/append/scan path
# in layer_smoke.py): zstandard's CFFI backend (the C backend is used on CPython), the Hive-metastore
# Thrift stubs shipped inside the pyiceberg wheel, and pyarrow's Flight/dataset-less extras stay as above.
EXTRA_PRUNE = ("zstandard/_cffi*.so", "zstandard/backend_cffi.py", "hive_metastore", "fb303", "**/__pycache__")


def prune_more(name: str) -> None:
    target = Path("layer") / name / "python"
    for pattern in EXTRA_PRUNE:
        for p in list(target.glob(pattern)):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()
    total = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    print(f"{name} after extra prune: {total/2**20:.1f} MiB")


def delta(a, b, label):
    extra = {k: v for k, v in b.items() if k not in a or a[k] != v}
    print(f"delta {label}: {(sum(b.values())-sum(a.values()))/2**20:.1f} MiB")
    for k, v in sorted(extra.items(), key=lambda kv: -kv[1])[:14]:
        if v > 100_000: print(f"  {k}: {v/2**20:.2f} MiB")


a = build("base", BASE)
b = build("iceberg", BASE + ["pyiceberg[pyarrow]>=0.12"])
delta(a, b, "pyiceberg[pyarrow]")
c = build("iceberg_core", BASE + ["pyiceberg[pyarrow,pyiceberg-core]>=0.12", "python-dateutil<3"])
delta(a, c, "pyiceberg[pyarrow,pyiceberg-core] + python-dateutil<3")
prune_more("iceberg_core")
