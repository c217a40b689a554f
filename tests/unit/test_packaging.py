"""pyproject.toml's packaging metadata: nothing setuptools warns about on `pip install`."""

from __future__ import annotations

import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())


def test_license_is_an_spdx_string_with_a_setuptools_that_reads_it() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"  # a table is deprecated (PEP 639)
    # PEP 639: a license expression and a license classifier together are an error
    assert not [c for c in project.get("classifiers", []) if c.startswith("License ::")]
    assert "setuptools>=77" in PYPROJECT["build-system"]["requires"]
