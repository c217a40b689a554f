"""Price-level alerts: one alert each time a symbol's last price crosses a watched level.

Pure logic (no I/O, no clock), so the live service, ``marketpipe watch`` and replays agree.

Semantics, per (symbol, level, direction): the watch is *armed* until the price is beyond the level
(``price > level`` for ``above``, ``price < level`` for ``below``); then one alert fires and the watch
stays quiet until the price is back on the other side (``<=`` / ``>=``), which re-arms it. A watch starts
armed, so a price that is already beyond the level when watching starts alerts at once (the user asked
to know while it is there), like the spread thresholds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from marketpipe.alerts.message import AlertMessage
from marketpipe.errors import ConfigError
from marketpipe.timeutil import us_to_iso

ABOVE = "above"
BELOW = "below"
_SPEC = re.compile(r"^\s*([A-Za-z0-9]+)\s*(?::\s*(above|below)\s*:|([<>]))\s*([0-9.eE+-]+)\s*$")


@dataclass(frozen=True, slots=True)
class Watch:
    symbol: str
    level: Decimal
    direction: str

    def spec(self) -> str:
        return f"{self.symbol}:{self.direction}:{self.level}"


def make_watch(symbol: str, level: str | Decimal, direction: str) -> Watch:
    """Validated watch; ConfigError for a bad symbol, level or direction."""
    from marketpipe.binance.wire import validate_symbol

    if direction not in (ABOVE, BELOW):
        raise ConfigError(f"invalid direction {direction!r}: expected above or below")
    try:
        value = Decimal(str(level))
    except InvalidOperation as exc:
        raise ConfigError(f"invalid price level {level!r}: expected a number such as 43680") from exc
    if not value.is_finite() or value <= 0:
        raise ConfigError(f"invalid price level {level!r}: must be a positive number")
    return Watch(validate_symbol(symbol), value, direction)


def parse_watch(text: str) -> Watch:
    """``BTCUSDT>43680``, ``BTCUSDT<40000`` or ``BTCUSDT:above:43680``."""
    match = _SPEC.match(text)
    if match is None:
        raise ConfigError(
            f"invalid watch {text!r}: expected SYMBOL>LEVEL, SYMBOL<LEVEL or SYMBOL:above:LEVEL"
        )
    symbol, word, sign, level = match.groups()
    direction = word or (ABOVE if sign == ">" else BELOW)
    return make_watch(symbol, level, direction)


def parse_watch_list(items: Iterable[str]) -> tuple[Watch, ...]:
    """Comma lists allowed inside each item; duplicates removed, order kept."""
    watches: dict[Watch, None] = {}
    for item in items:
        for part in item.split(","):
            if part.strip():
                watches[parse_watch(part)] = None
    return tuple(watches)


@dataclass(frozen=True, slots=True)
class PriceAlert:
    watch: Watch
    price: Decimal
    event_us: int

    @property
    def text(self) -> str:
        return (
            f"{us_to_iso(self.event_us, millis=True)} {self.watch.symbol} price has gone "
            f"{self.watch.direction} {_plain(self.watch.level)} Last price: {_plain(self.price)}"
        )

    def message(self, exchange: str = "binance") -> AlertMessage:
        """The alert for the shared channels (log, webhook, SMS, SNS); the key is stable across retries."""
        body = {
            "event": "price_level_alert",
            "exchange": exchange,
            "symbol": self.watch.symbol,
            "level": str(self.watch.level),
            "direction": self.watch.direction,
            "last_price": str(self.price),
            "time": us_to_iso(self.event_us, millis=True),
            "text": self.text,
        }
        raw = f"{exchange}|{self.watch.spec()}|{self.event_us}"
        return AlertMessage(self.text, body, hashlib.sha256(raw.encode()).hexdigest()[:32], True)


class PriceLevelTracker:
    """Armed/fired state per watch; :meth:`observe` returns the alerts a new last price causes."""

    def __init__(self, watches: Iterable[Watch]) -> None:
        self.watches = tuple(dict.fromkeys(watches))
        self._by_symbol: dict[str, list[Watch]] = {}
        for watch in self.watches:
            self._by_symbol.setdefault(watch.symbol, []).append(watch)
        self.fired: set[Watch] = set()
        """Watches that alerted and wait for the price to come back (exported by stateless runtimes)."""

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._by_symbol)

    def observe(self, symbol: str, price: Decimal, event_us: int) -> list[PriceAlert]:
        alerts = []
        for watch in self._by_symbol.get(symbol, ()):
            beyond = price > watch.level if watch.direction == ABOVE else price < watch.level
            if beyond and watch not in self.fired:
                self.fired.add(watch)
                alerts.append(PriceAlert(watch, price, event_us))
            elif not beyond:
                self.fired.discard(watch)
        return alerts


def _plain(value: Decimal) -> str:
    """``43649.90000000`` -> ``43649.9`` (no exponent: ``43680`` stays ``43680``)."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
