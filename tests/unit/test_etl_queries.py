"""Query files: declared parameters match placeholders, validation, and SQL both engines accept."""

from __future__ import annotations

import re
from datetime import date

import pytest

from marketpipe.aws.ledger_etl import handle, window_for_event
from marketpipe.errors import ConfigError
from marketpipe.etl.queries import duckdb_views, load_queries
from marketpipe.query import parse_query

QUESTIONS = {
    "users_active_on_day", "users_never_deposited", "users_with_more_than_5_deposits",
    "last_login_per_user", "logins_of_user_between", "currencies_deposited_on_day",
    "currencies_withdrawn_on_day", "total_deposited_on_day",
}  # fmt: skip
# DuckDB-only syntax that Athena (Trino) rejects, or Athena-only syntax DuckDB rejects
NOT_PORTABLE = [r"::", r"\bILIKE\b", r"\bQUALIFY\b", r"read_parquet", r"\bstrftime\b", r"\blist_",
                r"\bdate_format\b", r"\bEXCLUDE\b", r"\bGROUP BY ALL\b", r"\$\{", r"\"",
                r"\bLIMIT\s+\d+\s*,"]  # fmt: skip


def test_every_question_has_a_query() -> None:
    assert set(load_queries()) == QUESTIONS


@pytest.mark.parametrize("name", sorted(QUESTIONS))
def test_queries_are_portable(name: str) -> None:
    spec = load_queries()[name]
    assert spec.sql.count("?") == len(spec.params)
    body = "\n".join(line for line in spec.sql.splitlines() if not line.startswith("--"))
    for pattern in NOT_PORTABLE:
        assert not re.search(pattern, body, re.IGNORECASE), (name, pattern)
    assert "ORDER BY" in body or name == "total_deposited_on_day"


def test_parse_query_rejects_mismatches() -> None:
    with pytest.raises(ValueError, match="placeholders"):
        parse_query("q", "-- d\nSELECT ?")
    with pytest.raises(ValueError, match="unknown parameter type"):
        parse_query("q", "-- d\n-- param: x float  help\nSELECT ?")
    assert parse_query("q", "SELECT 1").description == "q"


def test_bind_normalises_values() -> None:
    spec = load_queries()["total_deposited_on_day"]
    assert spec.bind({"currency": " MXN ", "day": "2020-01-10"}) == ["mxn", "2020-01-10"]
    assert spec.signature() == "currency=<currency> day=<date>"


def test_views_cover_every_table_and_escape_paths() -> None:
    views = duckdb_views("/tmp/it's")
    assert "it''s" in views["dim_user"]
    assert "hive_types_autocast = false" in views["fact_transaction"]


def test_lambda_windows() -> None:
    assert window_for_event({"time": "2020-01-11T01:30:00Z"}, 2) == (date(2020, 1, 8), date(2020, 1, 10))
    assert window_for_event({"date": "2020-01-05"}, 2) == (date(2020, 1, 5), date(2020, 1, 5))
    assert window_for_event({"start": "2020-01-01", "end": "2020-01-31"}, 2) == (
        date(2020, 1, 1),
        date(2020, 1, 31),
    )
    for bad in ({}, {"start": "2020-01-01"}, {"date": "nope"}, {"time": "yesterday"}):
        with pytest.raises(ConfigError):
            window_for_event(bad, 0)
    with pytest.raises(ConfigError, match="LEDGER_RAW_URI"):
        handle({"date": "2020-01-01"}, {})


def test_query_catalog_lists_every_question_of_every_capability() -> None:
    """``marketpipe query`` answers the ledger and the execution questions, each named once."""
    from marketpipe.cli import query_questions
    from marketpipe.etl.queries import LEDGER_QUESTIONS
    from marketpipe.execution.queries import EXECUTION_QUESTIONS, QUERIES

    catalog = query_questions()
    assert list(catalog) == [*load_queries(), *QUERIES]  # ledger first, then execution (the --list order)
    assert set(catalog) == QUESTIONS | {
        "execution_mid_per_minute", "execution_preferred_exchange", "execution_cost_summary"
    }  # fmt: skip
    assert all(catalog[name] is LEDGER_QUESTIONS for name in QUESTIONS)
    assert all(catalog[name] is EXECUTION_QUESTIONS for name in QUERIES)
    assert all(catalog[name].queries[name].name == name for name in catalog)


def test_a_question_name_in_two_sets_is_refused() -> None:
    from marketpipe.etl.queries import LEDGER_QUESTIONS
    from marketpipe.query import QuestionSet, questions_by_name

    twin = QuestionSet("other", {"users_never_deposited": load_queries()["users_never_deposited"]}, dict, str)
    with pytest.raises(ValueError, match="in two question sets: ledger, other"):
        questions_by_name(LEDGER_QUESTIONS, twin)


def test_the_query_command_imports_no_capability() -> None:
    """The runner and the ledger's CLI know no execution code: the catalog is built in marketpipe.cli."""
    import ast
    import inspect

    import marketpipe.etl.cli
    import marketpipe.etl.queries
    import marketpipe.query

    for module in (marketpipe.query, marketpipe.etl.cli, marketpipe.etl.queries):
        imported = {
            node.module or ""
            for node in ast.walk(ast.parse(inspect.getsource(module)))
            if isinstance(node, ast.ImportFrom)
        }
        assert not any(name.startswith("marketpipe.execution") for name in imported), module.__name__
    query_imports = {
        node.module or ""
        for node in ast.walk(ast.parse(inspect.getsource(marketpipe.query)))
        if isinstance(node, ast.ImportFrom)
    }
    assert not any(name.startswith(("marketpipe.etl", "marketpipe.execution")) for name in query_imports)
