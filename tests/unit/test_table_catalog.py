"""The table catalog is explicit: ``marketpipe.tables`` alone knows every table, whatever was imported.

Each check that depends on what was imported runs in a fresh interpreter, where nothing but the module
under test has been imported (the old catalog grew as capability modules registered their tables).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import sqlalchemy as sa

import marketpipe
from marketpipe import tables
from marketpipe.tables import TABLES, Table

LAYERS = Path(marketpipe.__file__).resolve().parents[1]
REPO_ROOT = LAYERS.parent
TABLES_DIR = LAYERS / "marketpipe" / "tables"

EVERY_TABLE = {
    "bitfinex_trades",
    "bitfinex_quotes",
    "bitfinex_book",
    "bitso_spreads",
    "binance_mini_tickers",
    "binance_depth20",
    "binance_book_metrics",
    "binance_price_alerts",
    "execution_snapshots",
    "execution_quotes",
    "execution_dim_exchange",
    "execution_dim_market",
    "execution_dim_date",
    "execution_dim_minute",
}
CAPABILITY_MODULES = ("bitfinex", "bitso", "binance", "execution")


def run_fresh(code: str, env: dict[str, str] | None = None) -> object:
    """Run ``code`` in a new interpreter (only ``layers`` on the path); it prints one JSON value."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(LAYERS), **(env or {})},
        cwd=LAYERS,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_the_catalog_alone_finds_all_14_tables() -> None:
    found = run_fresh(
        """
        import json, sys
        from marketpipe.tables import TABLES
        loaded = sorted(m for m in sys.modules if m.startswith("marketpipe"))
        print(json.dumps({"tables": list(TABLES), "loaded": loaded}))
        """
    )
    assert isinstance(found, dict)
    assert set(found["tables"]) == EVERY_TABLE and len(found["tables"]) == 14
    # nothing but the catalog itself was needed (no processor, sink or AWS module)
    assert {m for m in found["loaded"] if not m.startswith("marketpipe.tables")} == {"marketpipe"}


def test_catalog_is_every_capability_module_and_nothing_registers_itself() -> None:
    from marketpipe.tables import binance, bitfinex, bitso, execution

    groups = (
        bitfinex.BITFINEX_TABLES,
        bitso.BITSO_TABLES,
        binance.BINANCE_TABLES,
        execution.EXECUTION_TABLES,
    )
    listed = [t for group in groups for t in group]
    assert [t.name for t in listed] == list(TABLES)
    assert all(TABLES[t.name] is t for t in listed)
    assert set(execution.EXECUTION_TABLES) == {*execution.FACT_TABLES, *execution.DIM_TABLES}
    assert not hasattr(tables, "register")
    assert all(isinstance(t, Table) for t in TABLES.values())


def test_table_modules_import_only_the_schema_vocabulary() -> None:
    """A table definition must not pull a processor (or anything else) into the catalog."""
    for name in CAPABILITY_MODULES:
        tree = ast.parse((TABLES_DIR / f"{name}.py").read_text())
        imported = [
            node.module or ""
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module != "__future__"
        ] + [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        assert imported == ["marketpipe.tables.schema"], f"tables/{name}.py imports {imported}"


def test_check_config_knows_every_table_when_used_as_a_library() -> None:
    validated = run_fresh(
        """
        import json
        from marketpipe.liveness.checker import CheckConfig
        print(json.dumps(CheckConfig(tables=["binance_book_metrics", "execution_quotes"]).validate().tables))
        """
    )
    assert validated == ["binance_book_metrics", "execution_quotes"]


def test_db_migrate_handler_creates_every_table(tmp_path: Path) -> None:
    """The deploy-time migration (``functions/db_migrate``) creates all 14 tables, not only those of the
    modules its import happened to load. The RDS secret lookup is replaced by a SQLite file."""
    db = tmp_path / "marketpipe.db"
    names = run_fresh(
        f"""
        import importlib.util, json
        import marketpipe.aws.migrate as migrate
        migrate.database_url = lambda secret_arn, db_name=None, client=None: {f"sqlite:///{db}"!r}
        spec = importlib.util.spec_from_file_location(
            "db_migrate_handler", {str(REPO_ROOT / "functions" / "db_migrate" / "handler.py")!r}
        )
        handler = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(handler)
        response = handler.handler({{"RequestType": "Create", "ResourceProperties": {{}}}}, None)
        assert response == {{"PhysicalResourceId": "marketpipe-mysql-schema"}}, response
        print(json.dumps(migrate.migrate("arn:aws:secretsmanager:test")))
        """,
        env={"MARKETPIPE_DB_SECRET_ARN": "arn:aws:secretsmanager:test"},
    )
    assert names == sorted(EVERY_TABLE)
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        inspector = sa.inspect(engine)
        assert set(inspector.get_table_names()) == EVERY_TABLE
        for name in EVERY_TABLE:
            columns = [c["name"] for c in inspector.get_columns(name)]
            assert columns == list(TABLES[name].column_names), name
    finally:
        engine.dispose()
