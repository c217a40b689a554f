"""The ``marketpipe`` command.

Every user-facing failure is one readable line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marketpipe import __version__, envnames
from marketpipe.config import (
    CONFIG_FILE_NAME,
    OPAQUE_TABLES,
    STORES,
    RunConfig,
    Section,
    apply_stores,
    describe,
    load_config_file,
    split_list,
)
from marketpipe.errors import ConfigError, MarketpipeError

if TYPE_CHECKING:
    from marketpipe.query import QuestionSet

EXIT_CONFIG_ERROR = 2

Handler = Callable[[argparse.Namespace], int]


class _UtcFormatter(logging.Formatter):
    """ISO 8601 UTC timestamps with milliseconds, like every timestamp marketpipe writes."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("websockets", "urllib3", "botocore", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"config file (env {envnames.CONFIG}; default ./{CONFIG_FILE_NAME} if present). Precedence: "
        "flag > environment > file > default",
    )


def _config_from_args(args: argparse.Namespace, section: Section = STORES) -> RunConfig:
    """Flags over environment over the config file over defaults; ConfigError (one line) otherwise."""
    from marketpipe.capabilities import check_file

    file = load_config_file(getattr(args, "config", None))
    check_file(file)
    given = {k: v for k, v in vars(args).items() if v is not None}
    values = section.values(given, os.environ, file, whole_table=False)  # check_file saw the whole file
    config = apply_stores(RunConfig(), values)
    if "exchanges" in values:
        config.exchanges = list(values["exchanges"])
        config.compress_raw = bool(values["compress_raw"])
    config.duration = getattr(args, "duration", None)
    config.simulate = getattr(args, "simulate", False)
    config.transport = getattr(args, "transport", None) or config.transport
    config.options = {k: v for k, v in vars(args).items() if k.startswith("opt_") and v is not None}
    config.file = file
    return config.validate()


def _cmd_run(args: argparse.Namespace) -> int:
    from marketpipe.capabilities import RUN
    from marketpipe.pipeline import run_live

    asyncio.run(run_live(_config_from_args(args, RUN)))
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    """Print the effective configuration and where each value came from; ConfigError for a bad one."""
    from marketpipe.capabilities import check_file, sections

    file = load_config_file(args.config)
    check_file(file)
    given = {k: v for k, v in vars(args).items() if v is not None}
    where = str(file.path) if file.path is not None else f"none (no ./{CONFIG_FILE_NAME})"
    lines = [
        "# marketpipe: the effective configuration; precedence flag > environment > file > default",
        f"# config file: {where}",
    ]
    for section in sections():
        resolved = list(section.resolve(given, os.environ, file).values())
        lines += ["", f"[{section.name}]  # {section.title}", *describe(resolved)]
    for name in OPAQUE_TABLES:
        table = file.table(name)
        if table:
            lines += ["", f"[{name}]  # read by the CDK app (infra/config.py), not by this command"]
            lines += [f"{key} = {_toml(value)}  # file {file.label}" for key, value in table.items()]
    try:
        print("\n".join(lines), flush=True)
    except BrokenPipeError:  # `marketpipe config | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return str(value)


def _cmd_replay(args: argparse.Namespace) -> int:
    from marketpipe.progress import wanted
    from marketpipe.replay import replay

    replay(args.files, _config_from_args(args, STORES), progress=wanted(not args.no_progress))
    return 0


def _cmd_lake_push(args: argparse.Namespace) -> int:
    """Local Parquet lake -> the Iceberg tables (the AWS lake, or a local SQL catalog)."""
    from marketpipe.sinks.iceberg_push import push_lake
    from marketpipe.sinks.iceberg_sink import IcebergSink
    from marketpipe.tables import TABLES
    from marketpipe.tables.bitfinex import BITFINEX_TABLES

    iceberg_tables = {t.name: t for t in BITFINEX_TABLES}
    names = split_list(args.tables) if args.tables else list(iceberg_tables)
    unknown = [n for n in names if n not in iceberg_tables]
    if unknown:
        known = ", ".join(iceberg_tables)
        kind = "no table" if unknown[0] not in TABLES else "not an Iceberg table"
        raise ConfigError(f"--tables: {unknown[0]} is {kind} (Iceberg tables: {known})")
    sink = IcebergSink(args.to, BITFINEX_TABLES)
    local = args.lake_uri or str(args.data_dir / "lake")
    stats = push_lake(local, sink, [iceberg_tables[n] for n in names], split_list(args.symbols or ""))
    print(
        f"pushed {local} to {args.to}: {stats.days} table-symbol-days, {stats.rows_read} rows read, "
        f"{stats.rows_appended} appended, {stats.rows_already_there} already there"
    )
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    """Every loopback service a demo needs, with the exports that point ``marketpipe`` at them."""
    from marketpipe.binance.simulator import BinanceSimulator
    from marketpipe.bitfinex.simulator import BitfinexSimulator
    from marketpipe.bitfinex.wire import wire_symbol
    from marketpipe.bitso.simulator import BitsoSimulator
    from marketpipe.execution.binance_simulator import BinanceRestSimulator
    from marketpipe.execution.coinbase_simulator import CoinbaseRestSimulator
    from marketpipe.simulator.plivo import FakePlivo

    def port(offset: int) -> int:
        return args.port + offset if args.port else 0

    async def serve() -> None:
        symbols = tuple(wire_symbol(s) for s in split_list(args.symbols))
        bitfinex = BitfinexSimulator(symbols, host=args.host, port=port(0), seed=args.seed)
        bitso = BitsoSimulator(host=args.host, port=port(2), rest_port=port(3), seed=args.seed)
        plivo = FakePlivo(host=args.host, port=port(4))
        binance = BinanceSimulator(host=args.host, port=port(5), seed=args.seed)
        binance_rest = BinanceRestSimulator(seed=args.seed)
        coinbase = CoinbaseRestSimulator(seed=args.seed)
        for simulator in (bitfinex, bitso, binance, binance_rest, coinbase):
            await simulator.start()
        plivo.start()
        exports = {
            envnames.BITFINEX_WS_URL: bitfinex.ws_url,
            envnames.BITFINEX_API_URL: bitfinex.api_url,
            envnames.BITSO_WS_URL: bitso.ws_url,
            envnames.BITSO_API_URL: bitso.api_url,
            envnames.BINANCE_WS_URL: binance.ws_url,
            envnames.BINANCE_API_URL: binance_rest.api_url,
            envnames.COINBASE_API_URL: coinbase.api_url,
            **plivo.env(),
        }
        print("loopback simulators running (Ctrl-C stops); point marketpipe at them with:", flush=True)
        for name, value in exports.items():
            print(f"  export {name}={value}", flush=True)
        print(
            f"faults: POST {bitfinex.api_url}/_sim/fault/<name> (see marketpipe.bitfinex.simulator)",
            flush=True,
        )
        try:
            if args.duration:
                await asyncio.sleep(args.duration)
            else:
                await asyncio.Event().wait()
        finally:
            plivo.stop()
            for simulator in (coinbase, binance_rest, binance, bitso, bitfinex):
                await simulator.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


def _add_run_flags(parser: argparse.ArgumentParser, section: Section) -> None:
    _add_config_flag(parser)
    section.add_arguments(parser, "Run ([run] of the config file)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marketpipe",
        description="Crypto market data captured exactly: exchange books verified by their checksums, "
        "trades, and analytics into CSV, SQL and a Parquet lake.",
        epilog="Endpoints come from MARKETPIPE_<EXCHANGE>_WS_URL / _API_URL; see README.md.",
    )
    parser.add_argument("--version", action="version", version=f"marketpipe {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="stream live data into CSV, the database and the lake (every capability the config enables)",
    )
    from marketpipe.capabilities import RUN, add_run_arguments

    _add_run_flags(run, RUN)
    run.add_argument("--duration", type=float, metavar="SECONDS", help="stop cleanly after this many seconds")
    run.add_argument("--simulate", action="store_true", help="stream from the built-in simulators (offline)")
    run.add_argument(
        "--transport",
        choices=["local", "kinesis"],
        default="local",
        help=f"kinesis: publish frames to {envnames.KINESIS_STREAM} and archive them to {envnames.RAW_URI}"
        " (the AWS collector; no local sinks)",
    )
    add_run_arguments(run)
    run.set_defaults(handler=_cmd_run)

    cfg = sub.add_parser(
        "config",
        help="print the effective configuration and where each value came from (flag, env, file, default)",
    )
    _add_run_flags(cfg, RUN)
    add_run_arguments(cfg)
    cfg.set_defaults(handler=_cmd_config)

    rep = sub.add_parser("replay", help="rebuild every output from raw capture files")
    rep.add_argument("files", nargs="+", type=Path, help="capture files (.jsonl, .jsonl.gz) or folders")
    _add_config_flag(rep)
    STORES.add_arguments(rep, "Stores ([run] of the config file)")
    rep.add_argument(
        "--no-progress", action="store_true", help="never show the progress bar (shown on a terminal)"
    )
    from marketpipe.capabilities import add_replay_arguments

    add_replay_arguments(rep)
    rep.set_defaults(handler=_cmd_replay)

    lake = sub.add_parser("lake", help="the lake's Iceberg tables (the AWS lake)")
    lake_sub = lake.add_subparsers(dest="lake_command", required=True, metavar="ACTION")
    push = lake_sub.add_parser(
        "push",
        help="append a local Parquet lake's Bitfinex rows to Iceberg tables, skipping rows already there",
    )
    push.add_argument(
        "--to",
        required=True,
        metavar="CATALOG",
        help="glue://<database>?warehouse=s3://bucket/iceberg (the stack's output), or "
        "sqlite:///<file>?warehouse=file:///<folder>",
    )
    push.add_argument("--data-dir", type=Path, default=Path("data"), help="the local run's data folder")
    push.add_argument("--lake", dest="lake_uri", help="the local lake (default <data-dir>/lake)")
    push.add_argument("--tables", metavar="LIST", help="comma list (default the three Bitfinex tables)")
    push.add_argument("--symbols", metavar="LIST", help="comma list (default every symbol found)")
    push.set_defaults(handler=_cmd_lake_push)

    sim = sub.add_parser("simulate", help="run the loopback exchanges and fake Plivo in the foreground")
    sim.add_argument("--symbols", default="BTC-USD,ETH-USD")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8765, help="first of 6 ports (0: any free ports)")
    sim.add_argument("--seed", type=int)
    sim.add_argument("--duration", type=float, help="stop after this many seconds")
    sim.set_defaults(handler=_cmd_simulate)

    for register in _extension_registrars():
        register(sub)
    return parser


Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _extension_registrars() -> list[Registrar]:
    """Subcommands contributed by other capabilities (ledger ETL, …)."""
    from marketpipe.binance.api.server import register_serve
    from marketpipe.binance.service import register_watch
    from marketpipe.etl.cli import register as register_etl
    from marketpipe.liveness.cli import register as register_check
    from marketpipe.query import register as register_query
    from marketpipe.status import register as register_status

    return [
        register_etl,
        functools.partial(register_query, catalog=query_questions),
        register_check,
        register_status,
        register_watch,
        register_serve,
    ]


def query_questions() -> dict[str, QuestionSet]:
    """Every ``marketpipe query`` question by name: each capability's questions, listed here and only here."""
    from marketpipe.etl.queries import LEDGER_QUESTIONS
    from marketpipe.execution.queries import EXECUTION_QUESTIONS
    from marketpipe.query import questions_by_name

    return questions_by_name(LEDGER_QUESTIONS, EXECUTION_QUESTIONS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    handler: Handler = args.handler
    try:
        return handler(args)
    except MarketpipeError as exc:
        print(f"marketpipe: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
