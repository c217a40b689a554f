"""Read the four source snapshots, validate every row, and set the bad ones aside with a reason.

Validation runs over the whole snapshot (not one day) so that decisions such as "which copy of a
duplicated id is kept" never depend on the date range being processed: that is what makes day-by-day
runs equal a backfill. Each bad row gets exactly one reason, the first rule it fails, in this order:
malformed_row, bad_id, bad_timestamp, unknown_user, bad_amount, negative_amount, bad_currency,
bad_status, bad_event_name; duplicate_id is decided last, among rows that passed every other rule,
and keeps the first one in file order.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import NamedTuple

from marketpipe.errors import ConfigError
from marketpipe.etl import storage
from marketpipe.etl.model import CALENDAR_END, CALENDAR_START
from marketpipe.lake import Location, open_location

MALFORMED_ROW = "malformed_row"
BAD_ID = "bad_id"
BAD_USER_ID = "bad_user_id"
DUPLICATE_ID = "duplicate_id"
BAD_TIMESTAMP = "bad_timestamp"
UNKNOWN_USER = "unknown_user"
BAD_AMOUNT = "bad_amount"
NEGATIVE_AMOUNT = "negative_amount"
BAD_CURRENCY = "bad_currency"
BAD_STATUS = "bad_status"
BAD_EVENT_NAME = "bad_event_name"

REASONS: tuple[str, ...] = (
    MALFORMED_ROW,
    BAD_ID,
    BAD_USER_ID,
    BAD_TIMESTAMP,
    UNKNOWN_USER,
    BAD_AMOUNT,
    NEGATIVE_AMOUNT,
    BAD_CURRENCY,
    BAD_STATUS,
    BAD_EVENT_NAME,
    DUPLICATE_ID,
)

SOURCE_COLUMNS: dict[str, tuple[str, ...]] = {
    "user": ("user_id",),
    "deposit": ("id", "event_timestamp", "user_id", "amount", "currency", "tx_status"),
    "withdrawal": ("id", "event_timestamp", "user_id", "amount", "interface", "currency", "tx_status"),
    "event": ("id", "event_timestamp", "user_id", "event_name"),
}
"""The input contract: required header names per source (order free, extra columns ignored)."""

_TS = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}(:?\d{2})?)?")
_ID = re.compile(r"\d{1,18}")
_AMOUNT = re.compile(r"([+-]?)(\d*)(?:\.(\d*))?")
_CODE = re.compile(r"[a-z][a-z0-9]{1,9}")
_TOKEN = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,63}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
US_PER_DAY = 86_400_000_000
MAX_INT_DIGITS = 20
MAX_FRACTION_DIGITS = 18


class Transaction(NamedTuple):
    transaction_type: str
    transaction_id: int
    user_id: str
    currency: str
    day: date
    event_us: int
    amount: Decimal
    tx_status: str
    interface: str | None


class Event(NamedTuple):
    event_id: int
    user_id: str
    day: date
    event_us: int
    event_name: str


@dataclass(frozen=True, slots=True)
class QuarantinedRow:
    """A rejected row: where it was, why, and its original text values (in the contract's order)."""

    source: str
    line: int
    reason: str
    detail: str
    day: date | None
    values: tuple[str, ...]


@dataclass(slots=True)
class Snapshot:
    """The validated content of one set of source files."""

    users: tuple[str, ...] = ()
    transactions: list[Transaction] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    quarantine: list[QuarantinedRow] = field(default_factory=list)
    rows_read: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def data_days(self) -> tuple[date, date] | None:
        """First and last UTC day with a valid transaction or event."""
        days = [t.day for t in self.transactions] + [e.day for e in self.events]
        if not days:
            return None
        return min(days), max(days)


def parse_timestamp_us(text: str) -> int | None:
    """``2020-01-10 14:11:05.63+00`` (any offset, ``Z``, or none = UTC) -> UTC microseconds, else None."""
    if not _TS.fullmatch(text):
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_amount(text: str) -> tuple[Decimal | None, str | None]:
    """An exact decimal or the reason it is rejected (bad_amount / negative_amount)."""
    m = _AMOUNT.fullmatch(text)
    if m is None or not (m.group(2) or m.group(3)):
        return None, BAD_AMOUNT
    sign, whole, fraction = m.group(1), m.group(2), m.group(3) or ""
    if len(whole.lstrip("0")) > MAX_INT_DIGITS or len(fraction) > MAX_FRACTION_DIGITS:
        return None, BAD_AMOUNT
    value = Decimal(text)
    if sign == "-" and value != 0:
        return None, NEGATIVE_AMOUNT
    return abs(value), None


def find_source_file(input_dir: Location, source: str) -> Location:
    """``<source>.csv[.gz]``, else the one file named ``<source>*.csv[.gz]`` (``withdrawals_2020.csv``)."""
    names = storage.list_files(input_dir)
    for exact in (f"{source}.csv", f"{source}.csv.gz"):
        if exact in names:
            return input_dir.child(exact)
    candidates = [n for n in names if n.startswith(source) and n.endswith((".csv", ".csv.gz"))]
    if len(candidates) == 1:
        return input_dir.child(candidates[0])
    if not candidates:
        raise ConfigError(f"no {source}.csv in {input_dir.uri()}")
    raise ConfigError(f"several {source} files in {input_dir.uri()}: {', '.join(candidates)}")


def _records(loc: Location, source: str) -> Iterator[tuple[int, list[str], tuple[int, ...]]]:
    """Yield (line number, fields, column positions) for each non-blank data record."""
    required = SOURCE_COLUMNS[source]
    with storage.open_text(loc) as text:
        reader = csv.reader(text)
        try:
            header = next(reader)
        except StopIteration:
            raise ConfigError(f"{loc.uri()}: empty file, expected a header row") from None
        except csv.Error as exc:
            raise ConfigError(f"{loc.uri()}: unreadable header: {exc}") from exc
        names = [h.strip().lower() for h in header]
        missing = [c for c in required if c not in names]
        if missing:
            raise ConfigError(f"{loc.uri()}: missing column(s) {', '.join(missing)}; header is {header}")
        positions = tuple(names.index(c) for c in required)
        width = len(header)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, [f"<unreadable: {exc}>"], ()
                continue
            if not row or (len(row) == 1 and not row[0].strip() and width > 1):
                continue
            if len(row) != width:
                yield reader.line_num, row, ()
                continue
            yield reader.line_num, row, positions


def _values(row: list[str], positions: tuple[int, ...], source: str) -> tuple[str, ...]:
    if positions:
        return tuple(row[p] for p in positions)
    # malformed: keep what lines up, so the quarantine file still shows the record
    n = len(SOURCE_COLUMNS[source])
    return tuple((row + [""] * n)[:n])


class _Loader:
    """One pass over each source; collects valid records and quarantined rows."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()
        self._day_cache: dict[int, date] = {}

    def _day(self, us: int) -> date:
        n = us // US_PER_DAY
        d = self._day_cache.get(n)
        if d is None:
            d = self._day_cache[n] = date.fromordinal(_EPOCH_ORDINAL + n)
        return d

    def _reject(
        self, source: str, line: int, reason: str, detail: str, day: date | None, v: tuple[str, ...]
    ) -> None:
        self.snapshot.quarantine.append(QuarantinedRow(source, line, reason, detail, day, v))

    def _malformed(self, source: str, line: int, row: list[str]) -> None:
        expected = len(SOURCE_COLUMNS[source])
        detail = f"expected the header's fields, found {len(row)}: {','.join(row)[:200]}"
        if len(row) == 1 and row[0].startswith("<unreadable"):
            detail = row[0]
        self._reject(source, line, MALFORMED_ROW, detail, None, _values(row[:expected], (), source))

    def load_users(self, loc: Location) -> None:
        seen: dict[str, int] = {}
        count = 0
        for line, row, pos in _records(loc, "user"):
            count += 1
            if not pos:
                self._malformed("user", line, row)
                continue
            v = _values(row, pos, "user")
            user_id = v[0].strip()
            if not user_id or len(user_id) > 64 or "," in user_id:
                self._reject("user", line, BAD_USER_ID, f"user_id {v[0]!r} is empty or not an id", None, v)
            elif user_id in seen:
                self._reject(
                    "user", line, DUPLICATE_ID, f"user_id first seen on line {seen[user_id]}", None, v
                )
            else:
                seen[user_id] = line
        self.snapshot.users = tuple(sorted(seen))
        self.snapshot.rows_read["user"] = count

    def _common(
        self, source: str, line: int, v: tuple[str, ...], users: set[str] | frozenset[str]
    ) -> tuple[int, int, date, str] | None:
        """id, timestamp and user checks shared by every dated source."""
        raw_id, raw_ts, raw_user = v[0].strip(), v[1].strip(), v[2].strip()
        us = parse_timestamp_us(raw_ts)
        day = self._day(us) if us is not None else None
        if not _ID.fullmatch(raw_id):
            self._reject(source, line, BAD_ID, f"id {v[0]!r} is not a non-negative integer", day, v)
            return None
        if us is None or day is None:
            self._reject(source, line, BAD_TIMESTAMP, f"cannot parse event_timestamp {v[1]!r}", None, v)
            return None
        if not CALENDAR_START <= day <= CALENDAR_END:
            self._reject(
                source,
                line,
                BAD_TIMESTAMP,
                f"event_timestamp {v[1]!r} is outside the calendar {CALENDAR_START}..{CALENDAR_END}",
                None,
                v,
            )
            return None
        if raw_user not in users:
            self._reject(source, line, UNKNOWN_USER, f"user_id {v[2]!r} is not in the user file", day, v)
            return None
        return int(raw_id), us, day, raw_user

    def load_transactions(self, loc: Location, source: str, users: frozenset[str]) -> None:
        """Deposits and withdrawals share every rule; withdrawals also carry an interface."""
        is_withdrawal = source == "withdrawal"
        kept: dict[int, tuple[int, Transaction]] = {}
        count = 0
        out = self.snapshot.transactions
        for line, row, pos in _records(loc, source):
            count += 1
            if not pos:
                self._malformed(source, line, row)
                continue
            v = _values(row, pos, source)
            common = self._common(source, line, v, users)
            if common is None:
                continue
            tx_id, us, day, user_id = common
            amount, why = parse_amount(v[3].strip())
            if amount is None:
                assert why is not None
                what = "is negative" if why == NEGATIVE_AMOUNT else "is not a decimal number in range"
                self._reject(source, line, why, f"amount {v[3]!r} {what}", day, v)
                continue
            if is_withdrawal:
                interface: str | None = v[4].strip().lower() or None
                currency, status = v[5].strip().lower(), v[6].strip().lower()
            else:
                interface = None
                currency, status = v[4].strip().lower(), v[5].strip().lower()
            if not _CODE.fullmatch(currency):
                self._reject(
                    source, line, BAD_CURRENCY, f"currency {currency!r} is not a currency code", day, v
                )
                continue
            if not _TOKEN.fullmatch(status):
                self._reject(source, line, BAD_STATUS, f"tx_status {status!r} is empty or malformed", day, v)
                continue
            record = Transaction(source, tx_id, user_id, currency, day, us, amount, status, interface)
            first = kept.get(tx_id)
            if first is not None:
                same = "identical to" if first[1] == record else "conflicts with"
                self._reject(source, line, DUPLICATE_ID, f"id {tx_id} {same} line {first[0]}", day, v)
                continue
            kept[tx_id] = (line, record)
            out.append(record)
        self.snapshot.rows_read[source] = count

    def load_events(self, loc: Location, users: frozenset[str]) -> None:
        kept: dict[int, tuple[int, Event]] = {}
        count = 0
        out = self.snapshot.events
        for line, row, pos in _records(loc, "event"):
            count += 1
            if not pos:
                self._malformed("event", line, row)
                continue
            v = _values(row, pos, "event")
            common = self._common("event", line, v, users)
            if common is None:
                continue
            event_id, us, day, user_id = common
            name = v[3].strip().lower()
            if not _TOKEN.fullmatch(name):
                self._reject(
                    "event", line, BAD_EVENT_NAME, f"event_name {v[3]!r} is empty or malformed", day, v
                )
                continue
            record = Event(event_id, user_id, day, us, name)
            first = kept.get(event_id)
            if first is not None:
                same = "identical to" if first[1] == record else "conflicts with"
                self._reject("event", line, DUPLICATE_ID, f"id {event_id} {same} line {first[0]}", day, v)
                continue
            kept[event_id] = (line, record)
            out.append(record)
        self.snapshot.rows_read["event"] = count


def load_snapshot(input_uri: str) -> Snapshot:
    """Validate the four files under ``input_uri`` (local folder or ``s3://``)."""
    folder = open_location(input_uri)
    if not folder.exists():
        raise ConfigError(f"input folder {input_uri!r} does not exist")
    files = {s: find_source_file(folder, s) for s in SOURCE_COLUMNS}
    loader = _Loader()
    loader.snapshot.files = {s: f.uri() for s, f in files.items()}
    loader.load_users(files["user"])
    users = frozenset(loader.snapshot.users)
    loader.load_transactions(files["deposit"], "deposit", users)
    loader.load_transactions(files["withdrawal"], "withdrawal", users)
    loader.load_events(files["event"], users)
    return loader.snapshot
