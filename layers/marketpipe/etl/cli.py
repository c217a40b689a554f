"""The ledger subcommands of ``marketpipe``: ``etl`` and ``ledger-generate``.

The ledger's questions are answered by ``marketpipe query`` (:mod:`marketpipe.query`), which gets them
from :data:`marketpipe.etl.queries.LEDGER_QUESTIONS`.

``marketpipe.cli`` calls :func:`register`; each handler returns an exit code and raises
``ConfigError`` for bad input (printed as one line, exit 2).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date

import orjson

from marketpipe.errors import ConfigError


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"invalid date {text!r}: expected YYYY-MM-DD") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``etl`` and ``ledger-generate`` to the main parser."""
    etl = subparsers.add_parser(
        "etl",
        help="run the ledger ETL for a day or a range of days (default: every day in the input)",
        description="Validate the deposit, withdrawal, event and user CSVs and write the ledger's star "
        "schema (CSV per table and day, Parquet lake tables, quarantine of bad rows). Idempotent.",
    )
    etl.add_argument("--input", required=True, metavar="DIR", help="folder (or s3:// URI) with the four CSVs")
    when = etl.add_mutually_exclusive_group()
    when.add_argument("--date", metavar="DATE", help="process one UTC day (YYYY-MM-DD)")
    when.add_argument("--start", metavar="DATE", help="first UTC day (default: first day in the input)")
    etl.add_argument("--end", metavar="DATE", help="last UTC day (default: last day in the input)")
    etl.add_argument(
        "--data-dir", default="./data", metavar="DIR", help="CSV and quarantine root (default ./data)"
    )
    etl.add_argument("--lake", metavar="URI", help="lake root (default <data-dir>/lake; s3:// works)")
    etl.add_argument("--no-csv", action="store_true", help="write only the Parquet lake tables")
    etl.add_argument("--json", action="store_true", help="print the run summary as JSON")
    etl.add_argument("--no-progress", action="store_true", help="never show the progress bar")
    etl.set_defaults(handler=cmd_etl, func=cmd_etl)

    gen = subparsers.add_parser(
        "ledger-generate",
        help="write realistic sample ledger CSVs (with some dirty rows)",
        description="Generate user.csv, deposit.csv, withdrawal.csv and event.csv in the input shape.",
    )
    gen.add_argument("--out", required=True, metavar="DIR", help="output folder (or s3:// URI)")
    gen.add_argument("--users", type=int, default=20_000, help="number of users (default 20000)")
    gen.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    gen.add_argument("--start", default="2020-01-01", metavar="DATE", help="first day (default 2020-01-01)")
    gen.add_argument("--days", type=int, default=365, help="days of activity (default 365)")
    gen.add_argument("--dirty-rate", type=float, default=0.002, help="share of bad rows per fault kind")
    gen.set_defaults(handler=cmd_generate, func=cmd_generate)


def cmd_etl(args: argparse.Namespace) -> int:
    from marketpipe.etl.runner import EtlConfig, run_etl

    if args.date and args.end:
        raise ConfigError("--end goes with --start, not with --date")
    start = _date(args.date or args.start) if (args.date or args.start) else None
    end = _date(args.date or args.end) if (args.date or args.end) else None
    data_dir = args.data_dir.rstrip("/")
    config = EtlConfig(
        input_uri=args.input,
        lake_uri=args.lake or f"{data_dir}/lake",
        quarantine_uri=f"{data_dir}/ledger/quarantine",
        csv_uri=None if args.no_csv else f"{data_dir}/csv/ledger",
        start=start,
        end=end,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    summary = run_etl(config)
    if args.json:
        print(orjson.dumps(summary.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(summary.render())
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from marketpipe.etl.generator import GeneratorConfig, generate

    cfg = GeneratorConfig(
        users=args.users, start=_date(args.start), days=args.days, seed=args.seed, dirty_rate=args.dirty_rate
    )
    result = generate(args.out, cfg)
    rows = ", ".join(f"{source} {n:,}" for source, n in result.rows.items())
    print(f"wrote {rows} rows ({len(result.faults):,} deliberately bad) to {os.fspath(args.out)}")
    return 0
