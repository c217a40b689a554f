"""``marketpipe query``: named SQL questions, their typed parameters, and the one DuckDB runner.

A question is SQL text that names tables only and takes positional ``?`` parameters, so the same text
runs on DuckDB (views over the lake's Parquet files) and on Athena (Glue tables; named queries).
Parameters are validated and bound by the driver, never pasted into the text. The header comments are
the question's contract: the first line is its description, then one
``-- param: <name> <type>  <help>`` line per ``?`` in order.

This module knows no capability. Each capability that answers questions (the ledger, execution
prices) describes them as a :class:`QuestionSet` (its questions, the DuckDB views of the tables they
read, and what to say when those tables are not in the lake yet); :func:`marketpipe.cli.query_questions`
lists those sets in one place, and :func:`register` turns that catalog into the ``query`` subcommand.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import orjson

from marketpipe.errors import ConfigError

_PARAM_LINE = re.compile(r"--\s*param:\s*(\w+)\s+(\w+)\s+(.*)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CURRENCY = re.compile(r"[a-z][a-z0-9]{1,9}")
_USER_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
PARAM_TYPES = ("date", "currency", "user_id")


@dataclass(frozen=True, slots=True)
class QueryParam:
    name: str
    type: str
    help: str

    def parse(self, raw: str) -> str:
        """Validate a user's text; returns the value to bind (a date as ISO text, like ``dt``)."""
        text = raw.strip()
        if self.type == "date":
            try:
                if not _DATE.fullmatch(text):
                    raise ValueError
                return date.fromisoformat(text).isoformat()
            except ValueError:
                raise ConfigError(f"--param {self.name}={raw!r}: expected a date YYYY-MM-DD") from None
        if self.type == "currency":
            text = text.lower()
            if not _CURRENCY.fullmatch(text):
                raise ConfigError(f"--param {self.name}={raw!r}: expected a currency code such as mxn")
            return text
        if not _USER_ID.fullmatch(text):
            raise ConfigError(f"--param {self.name}={raw!r}: expected a user id")
        return text

    def athena_example(self) -> str:
        return {"date": "'2020-01-10'", "currency": "'mxn'"}.get(self.type, "'<user_id>'")


@dataclass(frozen=True, slots=True)
class QuerySpec:
    name: str
    description: str
    params: tuple[QueryParam, ...]
    sql: str

    def bind(self, raw: Mapping[str, str]) -> list[str]:
        """Positional values for the ``?`` placeholders; unknown or missing names are errors."""
        known = {p.name for p in self.params}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(
                f"query {self.name}: unknown parameter(s) {', '.join(unknown)}; "
                f"expected {', '.join(sorted(known)) or 'none'}"
            )
        missing = [p.name for p in self.params if p.name not in raw]
        if missing:
            raise ConfigError(f"query {self.name}: missing --param {', '.join(m + '=...' for m in missing)}")
        return [p.parse(raw[p.name]) for p in self.params]

    def signature(self) -> str:
        return " ".join(f"{p.name}=<{p.type}>" for p in self.params)


def parse_query(name: str, text: str) -> QuerySpec:
    lines = text.splitlines()
    description = lines[0].removeprefix("--").strip() if lines and lines[0].startswith("--") else name
    params = []
    for line in lines:
        m = _PARAM_LINE.fullmatch(line.strip())
        if m:
            if m.group(2) not in PARAM_TYPES:
                raise ValueError(f"{name}: unknown parameter type {m.group(2)!r}")
            params.append(QueryParam(m.group(1), m.group(2), m.group(3).strip()))
    placeholders = text.count("?")
    if placeholders != len(params):
        raise ValueError(f"{name}: {placeholders} placeholders but {len(params)} declared parameters")
    return QuerySpec(name, description, tuple(params), text.strip() + "\n")


@dataclass(frozen=True, slots=True)
class QuestionSet:
    """One capability's questions and how DuckDB sees the lake tables they read."""

    name: str
    queries: Mapping[str, QuerySpec]
    views: Callable[[str], Mapping[str, str]]
    """lake URI -> ``CREATE VIEW`` statement per table the questions name."""
    missing: Callable[[str], str | None]
    """lake URI -> what to tell the user when those tables are not in the lake yet (None: they are)."""


def questions_by_name(*sets: QuestionSet) -> dict[str, QuestionSet]:
    """Question name -> the set that answers it, in the sets' order; a name in two sets is an error."""
    catalog: dict[str, QuestionSet] = {}
    for questions in sets:
        for name in questions.queries:
            if name in catalog:
                first = catalog[name].name
                raise ValueError(f"query {name!r} is in two question sets: {first}, {questions.name}")
            catalog[name] = questions
    return catalog


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def run_query(questions: QuestionSet, lake_uri: str, spec: QuerySpec, values: Sequence[str]) -> QueryResult:
    """Run one question on the lake with DuckDB (an in-memory database, nothing persisted)."""
    try:
        import duckdb
    except ImportError:  # pragma: no cover - duckdb ships with the dev and ledger extras
        raise ConfigError("marketpipe query needs DuckDB: pip install 'marketpipe[ledger]'") from None

    problem = questions.missing(lake_uri)
    if problem:
        raise ConfigError(problem)
    con = duckdb.connect(":memory:")
    try:
        for statement in questions.views(lake_uri).values():
            con.execute(statement)
        cursor = con.execute(spec.sql, list(values))
        columns = tuple(d[0] for d in cursor.description or ())
        return QueryResult(columns, [tuple(r) for r in cursor.fetchall()])
    except duckdb.Error as exc:
        raise ConfigError(f"query {spec.name} failed: {str(exc).splitlines()[0]}") from exc
    finally:
        con.close()


# ----------------------------------------------------------------------------------------- the command
def plain_decimal(value: Decimal) -> str:
    """``12.500000000000000000`` -> ``12.5``; never scientific notation (Arrow's cast uses it)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return plain_decimal(value)
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def format_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    """Readable table, RFC 4180 CSV or a JSON array of objects."""
    cells = [[_text(v) for v in row] for row in rows]
    if fmt == "json":
        return orjson.dumps(
            [dict(zip(columns, row, strict=True)) for row in cells], option=orjson.OPT_INDENT_2
        ).decode()
    if fmt == "csv":
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(cells)
        return buffer.getvalue().rstrip("\n")
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.append(f"({len(cells)} row{'s' if len(cells) != 1 else ''})")
    return "\n".join(lines)


def _parse_params(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {pair!r}: expected KEY=VALUE")
        if key.strip() in out:
            raise ConfigError(f"--param {key.strip()} given twice")
        out[key.strip()] = value
    return out


Catalog = Callable[[], Mapping[str, QuestionSet]]
"""Builds the question catalog when ``query`` runs (capabilities are imported only then)."""


def register(subparsers: argparse._SubParsersAction, catalog: Catalog) -> None:
    """Add ``query`` to the main parser, answering every question of ``catalog``."""
    query = subparsers.add_parser(
        "query",
        help="answer a business question (ledger, execution prices) on the local lake (DuckDB)",
        description="Run one of the named SQL questions (the same text Athena runs) over the lake.",
    )
    query.add_argument("name", nargs="?", help="query name (see --list)")
    query.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="query parameter")
    query.add_argument("--list", action="store_true", help="list the queries and their parameters")
    query.add_argument("--data-dir", default="./data", metavar="DIR", help="default ./data")
    query.add_argument("--lake", metavar="URI", help="lake root (default <data-dir>/lake)")
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    query.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    query.set_defaults(handler=lambda args: cmd_query(args, catalog()))


def cmd_query(args: argparse.Namespace, catalog: Mapping[str, QuestionSet]) -> int:
    if args.list:
        for name, owner in catalog.items():
            spec = owner.queries[name]
            print(f"{spec.name} {spec.signature()}".rstrip())
            print(f"    {spec.description}")
            for p in spec.params:
                print(f"    --param {p.name}=<{p.type}>  {p.help}")
        return 0
    if not args.name:
        raise ConfigError("query: give a query name, or --list to see them")
    questions = catalog.get(args.name)
    if questions is None:
        raise ConfigError(f"unknown query {args.name!r}; known: {', '.join(catalog)}")
    spec = questions.queries[args.name]
    if args.sql:
        print(spec.sql, end="")
        return 0
    values = spec.bind(_parse_params(args.param))
    lake = args.lake or f"{args.data_dir.rstrip('/')}/lake"
    result = run_query(questions, lake, spec, values)
    print(format_rows(result.columns, result.rows, args.format))
    return 0
