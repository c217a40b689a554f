"""Realistic ledger sample data in exactly the source shape, with known dirty rows.

The project ships no third-party data, so this stands in for the exchange's export: users sign up
through the period, behave according to a persona (dormant, browser, casual, trader, whale), churn,
log in before they move money, deposit mostly pesos, withdraw more crypto, and sometimes fail. A
small share of rows is corrupted on purpose, one fault per row, and each fault is listed in
``_generator_faults.csv`` (source, line, reason) so tests can check the quarantine exactly.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from marketpipe.errors import ConfigError
from marketpipe.etl.loader import (
    BAD_AMOUNT,
    BAD_CURRENCY,
    BAD_EVENT_NAME,
    BAD_ID,
    BAD_STATUS,
    BAD_TIMESTAMP,
    DUPLICATE_ID,
    MALFORMED_ROW,
    NEGATIVE_AMOUNT,
    SOURCE_COLUMNS,
    UNKNOWN_USER,
)
from marketpipe.lake import open_location

FAULTS_FILE = "_generator_faults.csv"
DAY_US = 86_400_000_000


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    users: int = 20_000
    start: date = date(2020, 1, 1)
    days: int = 365
    seed: int = 7
    dirty_rate: float = 0.002
    """Share of rows per fault kind and source (0.002 x ~6 kinds ~ 1 % dirty rows)."""

    def __post_init__(self) -> None:
        if self.users < 1:
            raise ConfigError("--users must be at least 1")
        if self.days < 1:
            raise ConfigError("--days must be at least 1")
        if not 0 <= self.dirty_rate <= 0.05:
            raise ConfigError("--dirty-rate must be between 0 and 0.05")


@dataclass(frozen=True, slots=True)
class Persona:
    name: str
    share: float
    logins: float  # per active day
    deposits: float
    withdrawals: float
    size: float  # amount multiplier


PERSONAS: tuple[Persona, ...] = (
    Persona("dormant", 0.18, 0.0, 0.0, 0.0, 1.0),
    Persona("browser", 0.30, 0.05, 0.002, 0.0, 0.5),
    Persona("casual", 0.35, 0.15, 0.03, 0.015, 1.0),
    Persona("trader", 0.15, 0.6, 0.2, 0.12, 3.0),
    Persona("whale", 0.02, 0.5, 0.15, 0.1, 40.0),
)

# code, weight for deposits, weight for withdrawals, median amount, decimals
CURRENCY_MIX: tuple[tuple[str, float, float, float, int], ...] = (
    ("mxn", 55, 30, 2_000.0, 2),
    ("btc", 15, 22, 0.01, 8),
    ("usd", 8, 6, 200.0, 2),
    ("eth", 7, 12, 0.2, 8),
    ("xrp", 5, 9, 500.0, 6),
    ("usdt", 4, 8, 150.0, 6),
    ("ltc", 2, 4, 1.0, 8),
    ("bch", 1.5, 3, 0.5, 8),
    ("dai", 1, 2, 100.0, 6),
    ("mana", 0.8, 2, 300.0, 6),
    ("bat", 0.7, 2, 300.0, 6),
)
STATUSES = (("complete", 0.88), ("failed", 0.07), ("pending", 0.05))
INTERFACES = (("app", 0.55), ("web", 0.35), ("api", 0.10))
OTHER_EVENTS = (("logout", 0.5), ("2fa_enabled", 0.1), ("password_reset", 0.15), ("email_verified", 0.25))
# UTC hour weights: Mexico City daytime (UTC-6) peaks at 15-02 UTC
HOUR_WEIGHTS = (6, 5, 4, 3, 2, 1, 1, 1, 1, 1, 1, 2, 3, 5, 7, 9, 10, 10, 10, 9, 9, 8, 8, 7)


@dataclass(slots=True)
class GeneratedData:
    rows: dict[str, int] = field(default_factory=dict)
    faults: list[tuple[str, int, str]] = field(default_factory=list)


def format_timestamp(us: int) -> str:
    """Postgres text output: ``2020-01-10 14:11:05.63+00`` (fraction trimmed, absent when zero)."""
    seconds, micros = divmod(us, 1_000_000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
    if micros:
        text += "." + f"{micros:06d}".rstrip("0")
    return text + "+00"


class _Builder:
    def __init__(self, cfg: GeneratorConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.start_us = (
            int(datetime(cfg.start.year, cfg.start.month, cfg.start.day, tzinfo=UTC).timestamp()) * 1_000_000
        )
        self.end_us = self.start_us + cfg.days * DAY_US
        self.hours = list(range(24))
        self.deposits: list[tuple[int, str, str, str, str]] = []  # ts, user, amount, currency, status
        self.withdrawals: list[tuple[int, str, str, str, str, str]] = []  # + interface
        self.events: list[tuple[int, str, str]] = []  # ts, user, name

    def _weighted(self, pairs: Sequence[tuple[str, float]]) -> str:
        return self.rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]

    def _time_in_day(self, day_us: int) -> int:
        hour = self.rng.choices(self.hours, weights=HOUR_WEIGHTS)[0]
        micros = self.rng.randrange(3_600_000_000)
        if self.rng.random() < 0.5:
            micros -= micros % 10_000  # centisecond precision, like ``05.63``
        return day_us + hour * 3_600_000_000 + micros

    def _poisson_days(self, rate: float, first: int, last: int) -> list[int]:
        """Active-day indexes of a Poisson process with ``rate`` events per day over [first, last)."""
        out: list[int] = []
        if rate <= 0:
            return out
        t = float(first)
        while True:
            t += self.rng.expovariate(rate)
            if t >= last:
                return out
            out.append(int(t))

    def _amount(self, median: float, decimals: int, size: float) -> str:
        value = median * size * math.exp(self.rng.gauss(0.0, 1.1))
        value = max(value, 10**-decimals)
        text = f"{value:.{decimals}f}"
        if decimals > 2:
            text = text.rstrip("0").rstrip(".")
        return text

    def _money(self, for_deposit: bool, size: float) -> tuple[str, str]:
        weights = [c[1] if for_deposit else c[2] for c in CURRENCY_MIX]
        code, _, _, median, decimals = self.rng.choices(CURRENCY_MIX, weights=weights)[0]
        return self._amount(median, decimals, size), code

    def user(self, user_id: str) -> None:
        cfg, rng = self.cfg, self.rng
        persona = rng.choices(PERSONAS, weights=[p.share for p in PERSONAS])[0]
        signup = int(cfg.days * rng.random() ** 0.8)
        churn = min(cfg.days, signup + 1 + int(rng.expovariate(1 / 220)))
        day0 = self.start_us
        for d in self._poisson_days(persona.logins, signup, churn):
            name = "login" if rng.random() < 0.88 else self._weighted(OTHER_EVENTS)
            self.events.append((self._time_in_day(day0 + d * DAY_US), user_id, name))
        for kind, rate in (("deposit", persona.deposits), ("withdrawal", persona.withdrawals)):
            for d in self._poisson_days(rate, signup, churn):
                ts = self._time_in_day(day0 + d * DAY_US)
                amount, code = self._money(kind == "deposit", persona.size)
                status = self._weighted(STATUSES)
                if kind == "deposit":
                    self.deposits.append((ts, user_id, amount, code, status))
                else:
                    self.withdrawals.append((ts, user_id, amount, self._weighted(INTERFACES), code, status))
                if rng.random() < 0.8:  # people log in right before they move money
                    login_ts = max(day0, ts - rng.randrange(60_000_000, 1_800_000_000))
                    self.events.append((login_ts, user_id, "login"))


def _unknown_user(rng: random.Random, users: set[str]) -> str:
    while True:
        candidate = f"{rng.getrandbits(128):032x}"
        if candidate not in users:
            return candidate


_BAD_TIMESTAMPS = (
    "2020-13-45 25:61:00+00",
    "",
    "not a timestamp",
    "10/01/2020 14:11",
    "2020-02-30 10:00:00+00",
)
_BAD_AMOUNTS = ("abc", "", "1,000.50", "NaN", "12.3.4", "1e5")

FAULT_KINDS: dict[str, tuple[str, ...]] = {
    "user": (DUPLICATE_ID,),
    "deposit": (
        BAD_TIMESTAMP,
        UNKNOWN_USER,
        NEGATIVE_AMOUNT,
        BAD_AMOUNT,
        DUPLICATE_ID,
        BAD_ID,
        BAD_CURRENCY,
        MALFORMED_ROW,
    ),
    "withdrawal": (BAD_TIMESTAMP, UNKNOWN_USER, NEGATIVE_AMOUNT, BAD_AMOUNT, DUPLICATE_ID, BAD_STATUS),
    "event": (BAD_TIMESTAMP, UNKNOWN_USER, DUPLICATE_ID, BAD_EVENT_NAME, BAD_ID),
}


def _corrupt(
    rng: random.Random, source: str, rows: list[list[str]], users: set[str], rate: float
) -> tuple[list[list[str]], list[tuple[str, int, str]]]:
    """Apply one fault to distinct rows; duplicates are inserted after their original."""
    cols = SOURCE_COLUMNS[source]
    n = len(rows)
    per_kind = max(1, round(n * rate)) if rate > 0 and n >= 20 else 0
    kinds = FAULT_KINDS[source]
    picks = rng.sample(range(n), min(n, per_kind * len(kinds))) if per_kind else []
    keyed: list[tuple[float, list[str], str | None]] = [(float(i), r, None) for i, r in enumerate(rows)]
    for j, idx in enumerate(picks):
        kind = kinds[j % len(kinds)]
        row = list(rows[idx])
        if kind == DUPLICATE_ID:
            copy = list(row)
            if source != "user" and rng.random() < 0.5:
                copy[cols.index("user_id")] = rows[rng.randrange(n)][
                    cols.index("user_id")
                ]  # conflicting copy
            keyed.append((rng.uniform(idx + 0.25, n), copy, kind))
            continue
        if kind == BAD_TIMESTAMP:
            row[1] = rng.choice(_BAD_TIMESTAMPS)
        elif kind == UNKNOWN_USER:
            row[2] = _unknown_user(rng, users)
        elif kind == NEGATIVE_AMOUNT:
            row[3] = "-" + row[3]
        elif kind == BAD_AMOUNT:
            row[3] = rng.choice(_BAD_AMOUNTS)
        elif kind == BAD_ID:
            row[0] = rng.choice(("", "abc", "-5", "12.5"))
        elif kind == BAD_CURRENCY:
            row[cols.index("currency")] = rng.choice(("", "$$", "b"))
        elif kind == BAD_STATUS:
            row[cols.index("tx_status")] = ""
        elif kind == BAD_EVENT_NAME:
            row[3] = rng.choice(("", "   ", "Log In!"))
        elif kind == MALFORMED_ROW:
            row = [*row, "unexpected"]
        keyed[idx] = (float(idx), row, kind)
    keyed.sort(key=lambda k: k[0])
    faults = [(source, line, kind) for line, (_, _, kind) in enumerate(keyed, start=2) if kind is not None]
    return [k[1] for k in keyed], faults


def _csv_text(columns: Sequence[str], rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def generate(out_uri: str, cfg: GeneratorConfig | None = None) -> GeneratedData:
    """Write ``user.csv``, ``deposit.csv``, ``withdrawal.csv``, ``event.csv`` (+ the fault list)."""
    cfg = cfg or GeneratorConfig()
    builder = _Builder(cfg)
    rng = builder.rng
    user_ids: list[str] = []
    seen: set[str] = set()
    while len(user_ids) < cfg.users:
        uid = f"{rng.getrandbits(128):032x}"
        if uid not in seen:
            seen.add(uid)
            user_ids.append(uid)
    for uid in user_ids:
        builder.user(uid)

    tables: dict[str, list[list[str]]] = {"user": [[u] for u in user_ids]}
    builder.deposits.sort()
    builder.withdrawals.sort()
    builder.events.sort()
    tables["deposit"] = [
        [str(i), format_timestamp(ts), u, a, c, s]
        for i, (ts, u, a, c, s) in enumerate(builder.deposits, start=1)
    ]
    tables["withdrawal"] = [
        [str(i), format_timestamp(ts), u, a, itf, c, s]
        for i, (ts, u, a, itf, c, s) in enumerate(builder.withdrawals, start=1)
    ]
    tables["event"] = [
        [str(i), format_timestamp(ts), u, name] for i, (ts, u, name) in enumerate(builder.events, start=1)
    ]
    # cosmetic variations that must load unchanged: upper-case codes, padded values
    for row in tables["deposit"][5::997]:
        row[4] = row[4].upper()
    for row in tables["withdrawal"][7::991]:
        row[2] = f" {row[2]} "

    out = open_location(out_uri)
    result = GeneratedData()
    for source, rows in tables.items():
        rows, faults = _corrupt(rng, source, rows, seen, cfg.dirty_rate)
        out.child(f"{source}.csv").write_bytes(_csv_text(SOURCE_COLUMNS[source], rows))
        result.rows[source] = len(rows)
        result.faults.extend(faults)
    out.child(FAULTS_FILE).write_bytes(
        _csv_text(("source", "line", "reason"), [[s, str(n), r] for s, n, r in result.faults]),
    )
    return result
