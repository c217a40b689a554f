"""``marketpipe status``: what a data dir and its database hold, how fresh it is, and what was said about it.

One table of every table with stored rows: its newest row (over the database, the CSV files and the
lake) and that row's age, the rows stored today (UTC) in each store, and the database's total; then each
exchange's raw capture (newest frame, today's files), the liveness state that ``marketpipe check``
persists (``<data-dir>/check-state.json``) and the last alerts: the market alerts a run recorded in
``<data-dir>/alerts.jsonl`` (:mod:`marketpipe.alerts.journal`) and the liveness check's texts.

It only reads: no table, file or folder is created. Costs: the database count is one scan per table, a
CSV count reads today's file, the lake count reads the Parquet footers of today's files.

Exit codes: 0 when the report is complete (also when nothing is stored yet: an empty data dir is a
state to report, not an error; ``marketpipe check`` is the health gate), 1 when some part could not be
read (listed under ``errors``), 2 for bad input (an invalid or unreachable ``--db``).
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from marketpipe.errors import ConfigError
from marketpipe.runstatus import arrival_column
from marketpipe.tables import TABLES, Kind, Table
from marketpipe.timeutil import iso_to_us, now_us, us_to_iso

log = logging.getLogger("marketpipe.status")

STORES = ("db", "csv", "lake")
ALERTS_SHOWN = 10
US_PER_DAY = 86_400_000_000
_CSV_TAIL_BYTES = 256 * 1024

EXIT_COMPLETE = 0
EXIT_PARTIAL = 1


@dataclass
class StoreCounts:
    """One table in one store."""

    newest_us: int | None = None
    rows_today: int | None = None
    rows_total: int | None = None


@dataclass
class Report:
    at_us: int
    data_dir: Path
    db: str
    lake: str
    tables: dict[str, dict[str, StoreCounts]] = field(default_factory=dict)
    """table name -> store -> counts, only for the stores that hold the table."""
    raw: list[dict[str, Any]] = field(default_factory=list)
    liveness: dict[str, Any] | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def day(self) -> str:
        return us_to_iso(self.at_us)[:10]

    @property
    def empty(self) -> bool:
        return not (self.tables or self.raw or self.liveness or self.alerts)


# -- reading --------------------------------------------------------------------------------------------


def collect(
    data_dir: Path,
    db_url: str | None = None,
    lake_uri: str | None = None,
    *,
    at_us: int | None = None,
    alerts: int = ALERTS_SHOWN,
) -> Report:
    """Read every store; a store that fails is an entry in ``errors``, except an explicit ``db_url``
    that is invalid or unreachable (ConfigError)."""
    from sqlalchemy.engine import make_url

    data_dir = Path(data_dir)
    url = db_url or f"sqlite:///{(data_dir / 'marketpipe.db').as_posix()}"
    try:
        shown_url = make_url(url).render_as_string(hide_password=True)
    except Exception as exc:
        raise ConfigError("invalid database URL (expected sqlite:///path or mysql+pymysql://…)") from exc
    lake = lake_uri or str(data_dir / "lake")
    report = Report(at_us if at_us is not None else now_us(), data_dir, shown_url, lake)
    today = report.at_us // US_PER_DAY * US_PER_DAY
    parts = (
        ("db", lambda: _read_db(url, today, explicit=db_url is not None)),
        ("csv", lambda: _read_csv(data_dir / "csv", report.day)),
        ("lake", lambda: _read_lake(lake, report.day)),
    )
    for store, read in parts:
        try:
            found = read()
        except ConfigError:
            raise
        except Exception as exc:  # one unreadable store: report it, show the others
            report.errors.append(f"cannot read {store}: {_reason(exc)}")
            continue
        for name, counts in found.items():
            report.tables.setdefault(name, {})[store] = counts
    report.tables = {name: report.tables[name] for name in TABLES if name in report.tables}
    for read_part in (_read_raw, _read_liveness, _read_alerts):
        try:
            read_part(report, alerts)
        except Exception as exc:
            report.errors.append(f"cannot read {read_part.__name__[6:]}: {_reason(exc)}")
    return report


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_db(url: str, today_us: int, explicit: bool) -> dict[str, StoreCounts]:
    """Per table: newest arrival, rows since ``today_us`` and all rows, in one scan."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from marketpipe.sinks.sql_sink import SqlSink, naive_to_us, sa_table, us_to_naive

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database or ""
        if db and not db.startswith("file:") and not Path(db).expanduser().exists():
            if explicit:
                raise ConfigError(f"--db: database file {db} does not exist")
            return {}  # no run wrote here yet (and reading must not create the file)
    sink = SqlSink(url, tables=[])
    try:
        existing = set(sa.inspect(sink.engine).get_table_names())
        metadata = sa.MetaData()
        found: dict[str, StoreCounts] = {}
        with sink.engine.connect() as conn:
            for name, table in TABLES.items():
                if name not in existing:
                    continue
                sat = sa_table(table, metadata)
                column = arrival_column(table)
                if column is None:
                    total = conn.execute(sa.select(sa.func.count()).select_from(sat)).scalar_one()
                    if total:
                        found[name] = StoreCounts(rows_total=int(total))
                    continue
                text = _is_text(table, column)
                since: Any = _day_text(today_us) if text else us_to_naive(today_us)
                col = sat.c[column]
                newest, total, today = conn.execute(
                    sa.select(
                        sa.func.max(col),
                        sa.func.count(),
                        sa.func.coalesce(sa.func.sum(sa.case((col >= since, 1), else_=0)), 0),
                    ).select_from(sat)
                ).one()
                if total:  # every table exists from the first run on; an empty one is not shown
                    found[name] = StoreCounts(_to_us(newest, text, naive_to_us), int(today or 0), int(total))
        return found
    finally:
        sink.engine.dispose()


def _is_text(table: Table, column: str) -> bool:
    return table.columns[table.index[column]].kind is Kind.STR


def _day_text(day_us: int) -> str:
    """The Bitso ``orderbook_timestamp`` of a day's first second (the column sorts as text)."""
    return datetime.fromtimestamp(day_us // 1_000_000, UTC).isoformat()


def _to_us(value: Any, text: bool, naive_to_us: Any) -> int | None:
    if value is None:
        return None
    if text:
        return iso_to_us(str(value))
    if isinstance(value, str):  # SQLite returns MAX() of a DATETIME as its stored text
        value = datetime.fromisoformat(value)
    return int(naive_to_us(value))


def _read_csv(root: Path, day: str) -> dict[str, StoreCounts]:
    """Per table folder: rows in today's file, newest arrival from the newest day file's last row."""
    found: dict[str, StoreCounts] = {}
    if not root.is_dir():
        return found
    for name, table in TABLES.items():
        folder = root / name
        files = sorted(folder.glob(f"{name}-????-??-??.csv")) if folder.is_dir() else []
        if not files:
            continue
        counts = StoreCounts()
        column = arrival_column(table)
        if column is None:  # reference rows filed under a fixed date: only their number means something
            counts.rows_total = sum(_csv_rows(path) for path in files)
        else:
            today = folder / f"{name}-{day}.csv"
            counts.rows_today = _csv_rows(today) if today.exists() else 0
            for path in reversed(files):  # the newest day with a row
                if (newest := _csv_newest(path, table, column)) is not None:
                    counts.newest_us = newest
                    break
        found[name] = counts
    return found


def _csv_rows(path: Path) -> int:
    """Complete lines after the header (a line still being written is not counted)."""
    lines = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
    return max(0, lines - 1)


def _csv_newest(path: Path, table: Table, column: str) -> int | None:
    """The arrival time in the file's last complete row (rows are appended in arrival order; a file
    marked ``.unordered`` is read whole)."""
    from marketpipe.sinks.csv_sink import UNORDERED_SUFFIX

    index = table.index[column]
    if path.with_name(path.name + UNORDERED_SUFFIX).exists():
        with open(path, newline="", encoding="utf-8") as f:
            values = [row[index] for row in _rows(f) if len(row) > index and row[index]]
        return max((us for v in values if (us := _iso_or_none(v)) is not None), default=None)
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        start = max(0, end - _CSV_TAIL_BYTES)
        f.seek(start)
        tail = f.read(end - start)
    lines = tail.split(b"\n")[:-1]  # the part after the last newline is unfinished
    for line in reversed(lines if start == 0 else lines[1:]):
        row = next(csv.reader([line.decode("utf-8", errors="replace").rstrip("\r")]), [])
        if len(row) > index and row[index] and row[index] != column:
            return _iso_or_none(row[index])
    return None


def _iso_or_none(text: str) -> int | None:
    try:
        return iso_to_us(text)
    except ValueError:  # a damaged line: no time to report
        return None


def _rows(f: io.TextIOBase) -> Iterator[list[str]]:
    reader = csv.reader(f)
    next(reader, None)  # header
    yield from reader


def _read_lake(uri: str, day: str) -> dict[str, StoreCounts]:
    """Per table: newest arrival (``marketpipe check``'s reader: the newest file's footer) and the rows
    of today's ``dt=`` partitions (footers only)."""
    from marketpipe.lake import open_location
    from marketpipe.liveness.sources import read_lake

    lake = open_location(uri, "lake URI")
    newest = {r.name: r.newest_us for r in read_lake(uri, None)}
    found: dict[str, StoreCounts] = {}
    for name, table in TABLES.items():
        today = _lake_rows(lake.fs, f"{lake.path}/{name}", len(table.partitions), day)
        if name in newest or today:
            dated = arrival_column(table) is not None
            found[name] = StoreCounts(newest.get(name) if dated else None, today if dated else None)
    return found


def _lake_rows(fs: Any, base: str, partition_levels: int, day: str) -> int:
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    def subdirs(path: str) -> list[str]:
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return [i.path for i in infos if i.type == pafs.FileType.Directory and "=" in i.base_name]

    leaves = [base]
    for _ in range(partition_levels):
        leaves = [d for leaf in leaves for d in subdirs(leaf)]
    rows = 0
    for leaf in leaves:
        selector = pafs.FileSelector(f"{leaf}/dt={day}", allow_not_found=True, recursive=True)
        for info in fs.get_file_info(selector):
            if info.type == pafs.FileType.File and info.base_name.endswith(".parquet"):
                if info.base_name.startswith("."):
                    continue
                with fs.open_input_file(info.path) as handle:
                    rows += pq.ParquetFile(handle).metadata.num_rows
    return rows


def _read_raw(report: Report, _alerts: int) -> None:
    from marketpipe.liveness.sources import read_raw

    root = report.data_dir / "raw"
    for reading in read_raw(report.data_dir, None):
        folder = root / reading.name / report.day
        files = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
        report.raw.append(
            {
                "exchange": reading.name,
                "newest_us": reading.newest_us,
                "files_today": len(files),
                "bytes_today": sum(p.stat().st_size for p in files),
            }
        )


def _read_liveness(report: Report, _alerts: int) -> None:
    from marketpipe.liveness.checker import StateStore

    path = report.data_dir / "check-state.json"
    if not path.exists():
        return
    state = StateStore(path).load()
    message = state.outbox
    report.liveness = {
        "status": state.status,
        "since_us": state.since_us,
        "what": state.what,
        "checked_us": state.checked_us,
        "last_data_us": state.last_data_us,
        "last_data": state.last_data,
        "last_message": None
        if message is None
        else {
            "kind": message.kind,
            "text": message.text,
            "delivery": message.delivery,
            "created_us": message.created_us,
        },
    }


def _read_alerts(report: Report, limit: int) -> None:
    """The journal's market alerts and the liveness check's texts, newest last. ``delivery``: how far
    a liveness text got (``sent``, ``pending``, ``unknown``…; see :mod:`marketpipe.liveness.state`)."""
    from marketpipe.alerts.journal import journal_path, read_journal
    from marketpipe.liveness.checker import StateStore

    alerts: list[tuple[int, dict[str, Any]]] = []
    for entry in read_journal(journal_path(report.data_dir), limit):
        try:
            at = iso_to_us(str(entry.get("at")))
        except ValueError:
            continue
        kind = "alert" if entry.get("alert", True) else "notice"
        source = str(entry.get("source", ""))
        alerts.append((at, {"source": source, "kind": kind, "text": entry["text"], "delivery": None}))
    path = report.data_dir / "check-state.json"
    if path.exists():
        state = StateStore(path).load()
        for message in (*state.history, *([state.outbox] if state.outbox else [])):
            alert = {
                "source": "liveness",
                "kind": message.kind,
                "text": message.text,
                "delivery": message.delivery,
            }
            alerts.append((message.created_us, alert))
    alerts.sort(key=lambda item: item[0])
    report.alerts = [{"at_us": at, **alert} for at, alert in alerts[-limit:]] if limit > 0 else []


# -- showing --------------------------------------------------------------------------------------------


def _iso(us: int | None) -> str | None:
    return None if us is None else us_to_iso(us)


def _age(report: Report, us: int | None) -> float | None:
    return None if us is None else round(max(0, report.at_us - us) / 1e6, 3)


def _newest(stores: dict[str, StoreCounts]) -> int | None:
    values = [c.newest_us for c in stores.values() if c.newest_us is not None]
    return max(values) if values else None


def to_json(report: Report) -> dict[str, Any]:
    """The ``--json`` document; its keys are stable (scripts read them)."""
    tables = []
    for name, stores in report.tables.items():
        newest = _newest(stores)
        tables.append(
            {
                "table": name,
                "newest": _iso(newest),
                "newest_age_s": _age(report, newest),
                "rows_today": {s: stores[s].rows_today if s in stores else None for s in STORES},
                "rows_total": {s: stores[s].rows_total if s in stores else None for s in STORES},
                "newest_by_store": {s: _iso(stores[s].newest_us) if s in stores else None for s in STORES},
            }
        )
    liveness = None
    if report.liveness is not None:
        live = report.liveness
        message = live["last_message"]
        liveness = {
            "status": live["status"],
            "since": _iso(live["since_us"]),
            "what": live["what"],
            "checked": _iso(live["checked_us"]),
            "checked_age_s": _age(report, live["checked_us"]),
            "last_data": _iso(live["last_data_us"]),
            "last_data_where": live["last_data"],
            "last_message": None
            if message is None
            else {
                "kind": message["kind"],
                "text": message["text"],
                "delivery": message["delivery"],
                "at": _iso(message["created_us"]),
            },
        }
    return {
        "at": us_to_iso(report.at_us),
        "day": report.day,
        "data_dir": str(report.data_dir),
        "db": report.db,
        "lake": report.lake,
        "empty": report.empty,
        "tables": tables,
        "raw": [
            {
                "exchange": r["exchange"],
                "newest": _iso(r["newest_us"]),
                "newest_age_s": _age(report, r["newest_us"]),
                "files_today": r["files_today"],
                "bytes_today": r["bytes_today"],
            }
            for r in report.raw
        ],
        "liveness": liveness,
        "alerts": [
            {
                "at": _iso(a["at_us"]),
                "source": a["source"],
                "kind": a["kind"],
                "text": a["text"],
                "delivery": a["delivery"],
            }
            for a in report.alerts
        ],
        "errors": list(report.errors),
    }


def _clock(us: int | None) -> str:
    return "-" if us is None else us_to_iso(us)[:19].replace("T", " ") + "Z"


def _ago(report: Report, us: int | None) -> str:
    from marketpipe.liveness.state import duration

    return "-" if us is None else duration(max(0, report.at_us - us) / 1e6)


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for row in [header, *rows]:
        cells = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return out


def render(report: Report) -> str:
    """The terminal report: aligned columns, UTC times, ages like ``42s`` / ``1m35s``."""
    lines = [
        f"marketpipe status at {_clock(report.at_us)}: data dir {report.data_dir}, database {report.db}, "
        f"lake {report.lake}"
    ]
    if report.empty and not report.errors:
        lines.append(
            f"nothing stored yet: no table rows, no raw capture, no liveness state in {report.data_dir} "
            "(start `marketpipe run`, or give --data-dir / --db)"
        )
        return "\n".join(lines)
    lines.append("")
    if report.tables:
        header = ("TABLE", "NEWEST ROW (UTC)", "AGE", *(f"TODAY {s.upper()}" for s in STORES), "TOTAL DB")
        rows = []
        for name, stores in report.tables.items():
            newest = _newest(stores)
            today = [_count(stores[s].rows_today) if s in stores else "-" for s in STORES]
            total = _count(stores["db"].rows_total) if "db" in stores else "-"
            rows.append((name, _clock(newest), _ago(report, newest), *today, total))
        lines += _grid(header, rows, right={2, 3, 4, 5, 6})
    else:
        lines.append("no table rows stored")
    if report.raw:
        lines.append("")
        rows = [
            (
                r["exchange"],
                _clock(r["newest_us"]),
                _ago(report, r["newest_us"]),
                f"{r['files_today']} file(s), {_size(r['bytes_today'])}",
            )
            for r in report.raw
        ]
        lines += _grid(("RAW CAPTURE", "NEWEST FRAME (UTC)", "AGE", "TODAY"), rows, right={2})
    lines.append("")
    live = report.liveness
    if live is None:
        lines.append("LIVENESS  no state: `marketpipe check` has not run on this data dir")
    else:
        status = str(live["status"]).upper()
        since = f" since {_clock(live['since_us'])}" if live["since_us"] is not None else ""
        what = f": {live['what']}" if live["what"] else ""
        lines.append(
            f"LIVENESS  {status}{since}{what} (checked {_clock(live['checked_us'])}, "
            f"{_ago(report, live['checked_us'])} ago)"
        )
    lines.append("")
    if report.alerts:
        lines.append(f"LAST ALERTS ({len(report.alerts)})")
        lines += _grid(
            ("AT (UTC)", "SOURCE", "KIND", "TEXT"),
            [
                (
                    _clock(a["at_us"]),
                    a["source"],
                    a["kind"] + (f" ({a['delivery']})" if a["delivery"] else ""),
                    a["text"],
                )
                for a in report.alerts
            ],
            right=set(),
        )
    else:
        lines.append("LAST ALERTS  none recorded")
    if report.errors:
        lines.append("")
        lines += [f"error: {e}" for e in report.errors]
    return "\n".join(lines)


# -- the command ----------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = subparsers.add_parser(
        "status",
        help="what is stored: each table's newest row, rows today, liveness state, last alerts",
        description=(
            "Reads the data dir and the database (nothing is created or changed) and prints one table: "
            "each table's newest row and its age, rows stored today (UTC) per store and the database's "
            "total; then the raw capture, the liveness state of `marketpipe check` and the last alerts. "
            "Exit 0 (also when nothing is stored yet), 1 when a store could not be read, 2 for bad input."
        ),
    )
    status.add_argument(
        "--data-dir", type=Path, default=Path("data"), help="the run's data dir (default ./data)"
    )
    status.add_argument(
        "--db", dest="db_url", help="SQLAlchemy URL (default sqlite:///<data-dir>/marketpipe.db)"
    )
    status.add_argument("--lake", dest="lake_uri", help="lake root: a folder or s3://bucket/prefix")
    status.add_argument(
        "--alerts",
        type=int,
        default=ALERTS_SHOWN,
        metavar="N",
        help=f"alerts to show (default {ALERTS_SHOWN})",
    )
    status.add_argument("--json", action="store_true", help="print the report as JSON (stable keys)")
    status.set_defaults(handler=_cmd_status)


def _cmd_status(args: argparse.Namespace) -> int:
    if args.alerts < 0:
        raise ConfigError(f"--alerts must be 0 or more, got {args.alerts}")
    report = collect(args.data_dir, args.db_url, args.lake_uri, alerts=args.alerts)
    if args.json:
        print(orjson.dumps(to_json(report), option=orjson.OPT_INDENT_2).decode())
    else:
        print(render(report))
    return EXIT_PARTIAL if report.errors else EXIT_COMPLETE
