"""Validated records -> Arrow tables of the star schema, one UTC day at a time.

The periodic snapshot needs running totals; they are rebuilt from the snapshot's records before the
first processed day, so a one-day run computes exactly what a backfill computed for that day.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.etl.loader import Event, Transaction
from marketpipe.etl.model import (
    CALENDAR_END,
    CALENDAR_START,
    CURRENCIES,
    DIM_CURRENCY,
    DIM_DATE,
    DIM_USER,
    FACT_DAILY_USER_ACTIVITY,
    FACT_EVENT,
    FACT_TRANSACTION,
    ColumnType,
    ModelTable,
)
from marketpipe.query import plain_decimal

LOGIN = "login"
COMPLETE = "complete"
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def date_key(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _table(model: ModelTable, columns: dict[str, Sequence[object] | pa.Array]) -> pa.Table:
    schema = model.arrow_schema
    arrays = [
        col if isinstance(col, pa.Array) else pa.array(col, type=schema.field(name).type)
        for name, col in ((n, columns[n]) for n in schema.names)
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def dim_date_table() -> pa.Table:
    days = days_between(CALENDAR_START, CALENDAR_END)
    return _table(
        DIM_DATE,
        {
            "date_key": [date_key(d) for d in days],
            "calendar_date": days,
            "year": [d.year for d in days],
            "quarter": [(d.month - 1) // 3 + 1 for d in days],
            "month": [d.month for d in days],
            "month_name": [_MONTHS[d.month - 1] for d in days],
            "day_of_month": [d.day for d in days],
            "day_of_week": [d.isoweekday() for d in days],
            "day_name": [_DAYS[d.weekday()] for d in days],
            "iso_week": [d.isocalendar().week for d in days],
            "is_weekend": [d.isoweekday() >= 6 for d in days],
        },
    )


def dim_user_table(users: Sequence[str]) -> pa.Table:
    return _table(DIM_USER, {"user_id": sorted(users)})


def dim_currency_table(seen: Iterable[str]) -> pa.Table:
    codes = sorted(set(CURRENCIES) | set(seen))
    unknown = ("unknown", "unknown")
    info = [(CURRENCIES[c].name, CURRENCIES[c].type) if c in CURRENCIES else unknown for c in codes]
    return _table(
        DIM_CURRENCY,
        {
            "currency_code": codes,
            "currency_name": [i[0] for i in info],
            "currency_type": [i[1] for i in info],
        },
    )


def fact_transaction_table(rows: Sequence[Transaction]) -> pa.Table:
    rows = sorted(rows, key=lambda t: (t.event_us, t.transaction_type, t.transaction_id))
    return _table(
        FACT_TRANSACTION,
        {
            "transaction_type": [t.transaction_type for t in rows],
            "transaction_id": [t.transaction_id for t in rows],
            "user_id": [t.user_id for t in rows],
            "currency_code": [t.currency for t in rows],
            "date_key": [date_key(t.day) for t in rows],
            "event_ts": [t.event_us for t in rows],
            "amount": [t.amount for t in rows],
            "tx_status": [t.tx_status for t in rows],
            "interface": [t.interface for t in rows],
        },
    )


def fact_event_table(rows: Sequence[Event]) -> pa.Table:
    rows = sorted(rows, key=lambda e: (e.event_us, e.event_id))
    return _table(
        FACT_EVENT,
        {
            "event_id": [e.event_id for e in rows],
            "user_id": [e.user_id for e in rows],
            "date_key": [date_key(e.day) for e in rows],
            "event_ts": [e.event_us for e in rows],
            "event_name": [e.event_name for e in rows],
        },
    )


class DailyActivity:
    """Running per-user totals that produce one dense snapshot partition per day, in day order."""

    def __init__(
        self, users: Sequence[str], transactions: Iterable[Transaction], events: Iterable[Event]
    ) -> None:
        self._users = sorted(users)
        self._index = {u: i for i, u in enumerate(self._users)}
        self._user_array = pa.array(self._users, pa.string())
        n = len(self._users)
        self._tx_by_day: dict[date, list[Transaction]] = defaultdict(list)
        self._ev_by_day: dict[date, list[Event]] = defaultdict(list)
        first_seen: dict[int, date] = {}
        for t in transactions:
            self._tx_by_day[t.day].append(t)
            i = self._index[t.user_id]
            if i not in first_seen or t.day < first_seen[i]:
                first_seen[i] = t.day
        for e in events:
            self._ev_by_day[e.day].append(e)
            i = self._index[e.user_id]
            if i not in first_seen or e.day < first_seen[i]:
                first_seen[i] = e.day
        self._first_seen = first_seen
        self._deposits_to_date = [0] * n
        self._withdrawals_to_date = [0] * n
        self._logins_to_date = [0] * n
        self._last_login: list[int | None] = [None] * n
        self._members: list[int] = []
        self._next_day: date | None = None

    def _apply(self, day: date) -> tuple[list[int], list[int], list[int]]:
        n = len(self._users)
        deposits, withdrawals, logins = [0] * n, [0] * n, [0] * n
        for t in self._tx_by_day.get(day, ()):
            i = self._index[t.user_id]
            if t.transaction_type == "deposit":
                deposits[i] += 1
                if t.tx_status == COMPLETE:
                    self._deposits_to_date[i] += 1
            else:
                withdrawals[i] += 1
                if t.tx_status == COMPLETE:
                    self._withdrawals_to_date[i] += 1
        for e in self._ev_by_day.get(day, ()):
            if e.event_name != LOGIN:
                continue
            i = self._index[e.user_id]
            logins[i] += 1
            self._logins_to_date[i] += 1
            last = self._last_login[i]
            if last is None or e.event_us > last:
                self._last_login[i] = e.event_us
        return deposits, withdrawals, logins

    def start(self, first_day: date) -> None:
        """Fold in every record before ``first_day`` (the history a one-day run needs)."""
        for day in sorted(d for d in set(self._tx_by_day) | set(self._ev_by_day) if d < first_day):
            self._apply(day)
        self._members = sorted(i for i, d in self._first_seen.items() if d < first_day)
        self._next_day = first_day

    def day(self, day: date) -> pa.Table:
        """The snapshot partition of ``day``; days must come in order after :meth:`start`."""
        if self._next_day is None:
            self.start(day)
        if day != self._next_day:
            raise ValueError(f"snapshot days must be consecutive: expected {self._next_day}, got {day}")
        self._next_day = day + timedelta(days=1)
        for i, d in self._first_seen.items():
            if d == day:
                bisect.insort(self._members, i)
        deposits, withdrawals, logins = self._apply(day)
        idx = pa.array(self._members, pa.int64())
        count = len(self._members)
        dep = pa.array(deposits, pa.int32()).take(idx)
        wd = pa.array(withdrawals, pa.int32()).take(idx)
        return _table(
            FACT_DAILY_USER_ACTIVITY,
            {
                "date_key": pa.array([date_key(day)] * count, pa.int32()),
                "snapshot_date": pa.array([day] * count, pa.date32()),
                "user_id": self._user_array.take(idx),
                "deposit_count": dep,
                "withdrawal_count": wd,
                "login_count": pa.array(logins, pa.int32()).take(idx),
                "is_active": pc.greater(pc.add(dep, wd), 0),
                "completed_deposits_to_date": pa.array(self._deposits_to_date, pa.int64()).take(idx),
                "completed_withdrawals_to_date": pa.array(self._withdrawals_to_date, pa.int64()).take(idx),
                "logins_to_date": pa.array(self._logins_to_date, pa.int64()).take(idx),
                "last_login_ts": pa.array(self._last_login, pa.timestamp("us")).take(idx),
            },
        )


def to_csv_table(model: ModelTable, table: pa.Table) -> pa.Table:
    """CSV conventions: ISO 8601 UTC timestamps with ``Z``; amounts as plain decimals without padding."""
    arrays: list[pa.Array | pa.ChunkedArray] = []
    for col in model.columns:
        values = table.column(col.name)
        if col.type is ColumnType.TIMESTAMP:
            values = pc.strftime(values, format="%Y-%m-%dT%H:%M:%SZ")
        elif col.type is ColumnType.AMOUNT:
            values = pa.array(
                [None if v is None else plain_decimal(v) for v in values.to_pylist()], pa.string()
            )
        arrays.append(values)
    return pa.Table.from_arrays(arrays, names=list(model.column_names))
