"""CSV sink: one RFC 4180 file per table and UTC day, ``csv/<table>/<table>-<YYYY-MM-DD>.csv``.

Idempotent without holding every key in memory: each open file keeps, per *stream* (the value of the
table's partition columns, e.g. the symbol, when they are part of the natural key), a *watermark* (the
largest ``table.order_by`` value stored for that stream) and the keys stored at exactly that value.
Rows above their stream's watermark are appended directly (the live path and a fresh replay: each
symbol's rows arrive in order, although the processor interleaves symbols batch by batch); a row at
or below it may be a replayed duplicate, so the file's key set is loaded once (lazily) and kept while
the file stays open.

The tail tells the watermarks only while each stream's rows are in order in the file. A row stored
below its stream's watermark (a gap filled by a replay, a re-priced history adding rows of a new
notional for past times) breaks that: before such a row is appended, an empty marker
``<file>.unordered`` is created beside the file, and a file with a marker has its key set read in full
whenever it is opened.

The hot path formats floats through a bounded dict in front of :func:`js_num_str_cached` (C-level
``map`` over the row instead of one Python call per value) and writes one string per batch. A book
row's 400 levels are formatted by difference with the symbol's previous row: by the compiled
``WideText`` (``marketpipe._cbook``) where it was built, else by slice comparisons in Python.
"""

from __future__ import annotations

import csv
import io
import logging
import operator
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from marketpipe.errors import ConfigError
from marketpipe.jsnum import js_num_str_cached
from marketpipe.records import Row
from marketpipe.tables import WIDE_FLOAT_RUN, Kind, Table, float_runs
from marketpipe.timeutil import iso_to_us, us_to_datetime

WideText: Any
try:  # the compiled wide-segment formatter, built with the compiled book: same text, ~3x faster
    from marketpipe._cbook import WideText
except ImportError:  # pragma: no cover - the tests run the pure-Python path with WideText = None
    WideText = None

log = logging.getLogger(__name__)

US_PER_DAY = 86_400_000_000
_CACHE_LIMIT = 1 << 17
_TAIL_BYTES = 256 * 1024
_SMALL_CHANGE = 6
_NEEDS_QUOTES = frozenset(',"\r\n')
UNORDERED_SUFFIX = ".unordered"
"""Marker beside a CSV file holding rows below their stream's watermark (see the module doc)."""
EOL = "\r\n"


class _FloatText(dict[Any, str]):
    """float -> JavaScript text; misses go to ``js_num_str_cached``. Bounded: cleared when full."""

    def __missing__(self, value: Any) -> str:
        if value is None:
            text = ""
        elif value != value or value in (float("inf"), float("-inf")):
            text = "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
        else:
            text = js_num_str_cached(value)
            if text == "-0":  # pragma: no cover - js_num_str already prints 0 for -0.0
                text = "0"
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        self[value] = text
        return text


class _StrText(dict[Any, str]):
    """str -> CSV field (quoted only when RFC 4180 needs it). Bounded like :class:`_FloatText`."""

    def __missing__(self, value: Any) -> str:
        if value is None:
            text = ""
        else:
            text = str(value)
            if not _NEEDS_QUOTES.isdisjoint(text):
                text = '"' + text.replace('"', '""') + '"'
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        self[value] = text
        return text


class TimestampText:
    """Int microseconds -> ``2026-11-22T04:10:26.123456Z`` (or ``.123Z``), caching the second prefix.

    ``strftime`` per value is the slow part of timestamp formatting; rows arrive in time order, so the
    ``YYYY-MM-DDTHH:MM:SS.`` prefix of the previous value is almost always reusable.
    """

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def prefix(self, seconds: int) -> str:
        if seconds != self._second:
            self._prefix = us_to_datetime(seconds * 1_000_000).strftime("%Y-%m-%dT%H:%M:%S.")
            self._second = seconds
        return self._prefix

    def us(self, value: int | None) -> str:
        if value is None:
            return ""
        seconds, micros = divmod(value, 1_000_000)
        return f"{self.prefix(seconds)}{micros:06d}Z"

    def ms(self, value: int | None) -> str:
        if value is None:
            return ""
        seconds, micros = divmod(value, 1_000_000)
        return f"{self.prefix(seconds)}{micros // 1000:03d}Z"


def parse_ts(text: str) -> int:
    """Inverse of :class:`TimestampText` (accepts any ISO 8601 UTC text)."""
    return iso_to_us(text)


def _int_text(value: Any) -> str:
    return "" if value is None else str(value)


def _field_parser(kind: Kind) -> Callable[[str], Any]:
    """Text read back from a file -> the typed value a row carries (so keys compare equal)."""
    if kind is Kind.STR:
        return lambda text: text
    if kind is Kind.INT:
        return lambda text: int(text) if text else None
    if kind is Kind.FLOAT:
        return lambda text: float(text) if text else None
    return lambda text: parse_ts(text) if text else None


class _Plan:
    """Per-table precomputed formatting and key extraction (built once, used for every row)."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.header = _header_line(table)
        self.floats = _FloatText()
        self.strs = _StrText()
        self.ts = TimestampText()
        kinds = [c.kind for c in table.columns]
        # Contiguous FLOAT columns become one C-level map; others get one formatter call each.
        self.segments: list[tuple[int, int, Callable[[Any], str] | None]] = []
        run_stops = dict(float_runs(table))
        i = 0
        while i < len(kinds):
            if i in run_stops:
                self.segments.append((i, run_stops[i], None))
                i = run_stops[i]
                continue
            fmt: Callable[[Any], str]
            if kinds[i] is Kind.STR:
                fmt = self.strs.__getitem__
            elif kinds[i] is Kind.INT:
                fmt = _int_text
            elif kinds[i] is Kind.TS_MS:
                fmt = self.ts.ms
            else:
                fmt = self.ts.us
            self.segments.append((i, i + 1, fmt))
            i += 1
        key_idx = [table.index[k] for k in table.key]
        self.key_idx = key_idx
        self.key: Callable[[Sequence[Any]], tuple[Any, ...]]
        if len(key_idx) == 1:
            only = key_idx[0]
            self.key = lambda row: (row[only],)
        else:
            self.key = operator.itemgetter(*key_idx)
        self.key_parsers = [(i, _field_parser(kinds[i])) for i in key_idx]
        self.order_idx = table.index[table.order_by]
        self.order_parser = _field_parser(kinds[self.order_idx])
        self.order_in_key = table.order_by in table.key
        self.part_idx = table.index[table.partition_ts]
        self.ncols = len(kinds)
        # Watermarks are kept per stream (partition values) when a key can only repeat within its
        # stream, i.e. the partition columns are part of the key; otherwise one stream per file.
        stream_idx = [table.index[p] for p in table.partitions]
        self.stream: Callable[[Sequence[Any]], Any]
        if not stream_idx or not set(table.partitions) <= set(table.key):
            self.stream = _one_stream
        elif len(stream_idx) == 1:
            self.stream = operator.itemgetter(stream_idx[0])
        else:
            self.stream = operator.itemgetter(*stream_idx)
        self.stream_parsers = [
            (i, _field_parser(kinds[i])) for i in (stream_idx if self.stream is not _one_stream else [])
        ]

        self.wide = any(fmt is None and stop - start >= WIDE_FLOAT_RUN for start, stop, fmt in self.segments)
        # stream -> segment start -> the stream's previous row there: its compiled WideText, or
        # (values, their tokens) for the pure-Python path
        self.previous: dict[Any, dict[int, Any]] = {}

    def line(self, row: Row) -> str:
        out: list[str] = []
        floats = self.floats.__getitem__
        previous = self.previous.setdefault(self.stream(row), {}) if self.wide else None
        for start, stop, fmt in self.segments:  # tokens are copied out: wide ones are reused
            if fmt is None:
                if previous is not None and stop - start >= WIDE_FLOAT_RUN:
                    if WideText is None:
                        out.extend(self._wide_tokens(previous, start, row[start:stop]))
                    else:
                        wide = previous.get(start)
                        if wide is None:
                            wide = previous[start] = WideText(self.floats, stop - start)
                        out.append(wide.text_of(row, start))
                else:
                    out.extend(map(floats, row[start:stop]))
            else:
                out.append(fmt(row[start]))
        return ",".join(out)

    def _wide_tokens(
        self, previous: dict[int, tuple[Sequence[Any], list[str]]], start: int, values: Sequence[Any]
    ) -> list[str]:
        """Tokens of a long float segment, reusing the stream's previous row where values are equal.

        Consecutive book rows of a symbol differ in a level or two: one changed in place, or one
        inserted or removed (the levels behind it shift by a price/size pair). The unchanged prefix
        and suffix are found with C-level slice comparisons (binary search), so only the changed
        values go through the float cache. Equal values have equal text (the text is a function of
        the value; 0.0 and -0.0 both print ``0``), so the output is what formatting every value gives.
        """
        floats = self.floats.__getitem__
        last = previous.get(start)
        n = len(values)
        if last is None or len(last[0]) != n:
            tokens = list(map(floats, values))
        else:
            old, tokens = last  # the previous row's token list, updated in place
            first = _common_prefix(values, old, 0, n)
            if first == n:
                pass
            elif values[first + 1 :] == old[first + 1 :]:  # one value changed (a size)
                tokens[first] = floats(values[first])
            elif values[first + 2 :] == old[first + 2 :]:  # a price/size pair changed in place
                tokens[first : first + 2] = map(floats, values[first : first + 2])
            else:
                end = _common_suffix(values, old, first, n)
                if end - first <= _SMALL_CHANGE:
                    tokens[first:end] = map(floats, values[first:end])
                elif values[first + 2 : end] == old[first : end - 2]:  # a pair inserted at first
                    del tokens[end - 2 : end]
                    tokens[first:first] = map(floats, values[first : first + 2])
                elif values[first : end - 2] == old[first + 2 : end]:  # a pair removed at first
                    del tokens[first : first + 2]
                    tokens[end - 2 : end - 2] = map(floats, values[end - 2 : end])
                else:
                    tokens[first:end] = map(floats, values[first:end])
        previous[start] = (values, tokens)
        return tokens

    def parse_key(self, fields: Sequence[str]) -> tuple[Any, ...]:
        return tuple(parse(fields[i]) for i, parse in self.key_parsers)

    def parse_stream(self, fields: Sequence[str]) -> Any:
        """The stream of a line read back (same value as :attr:`stream` gives for the row)."""
        parsers = self.stream_parsers
        if not parsers:
            return None
        if len(parsers) == 1:
            i, parse = parsers[0]
            return parse(fields[i])
        return tuple(parse(fields[i]) for i, parse in parsers)


def _one_stream(row: Sequence[Any]) -> None:
    return None


def _common_prefix(a: Sequence[Any], b: Sequence[Any], lo: int, hi: int) -> int:
    """The first index in ``[lo, hi)`` where ``a`` and ``b`` differ (``hi`` if none); a[:lo] == b[:lo]."""
    while hi - lo > 8:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    while lo < hi and a[lo] == b[lo]:
        lo += 1
    return lo


def _common_suffix(a: Sequence[Any], b: Sequence[Any], lo: int, hi: int) -> int:
    """The smallest ``j`` in ``[lo, hi]`` with ``a[j:hi] == b[j:hi]``."""
    while hi - lo > 8:
        mid = (lo + hi) // 2
        if a[mid:hi] == b[mid:hi]:
            hi = mid
        else:
            lo = mid
    while hi > lo and a[hi - 1] == b[hi - 1]:
        hi -= 1
    return hi


def _header_line(table: Table) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=EOL).writerow(table.column_names)
    return buf.getvalue()


def _records(lines: Iterator[str], ncols: int, use_csv: bool) -> Iterator[list[str]]:
    """Split data lines into fields; the csv module only when some field is quoted."""
    if use_csv:
        for rec in csv.reader(lines):
            if len(rec) == ncols:
                yield rec
        return
    for line in lines:
        fields = line.rstrip("\r\n").split(",")
        if len(fields) == ncols:
            yield fields


class _Stream:
    """Idempotency state of one stream in one file: its watermark and the keys stored at it."""

    __slots__ = ("watermark", "wm_complete", "wm_keys")

    def __init__(self) -> None:
        self.watermark: Any = None
        self.wm_keys: set[tuple[Any, ...]] = set()
        self.wm_complete = True  # wm_keys holds every key of the stream stored at the watermark


class _CsvFile:
    """One open day file plus its idempotency state."""

    def __init__(self, path: Path, plan: _Plan) -> None:
        self.path = path
        self.plan = plan
        self.streams: dict[Any, _Stream] = {}
        self.all_seen = True  # every stored row was scanned: a stream not in ``streams`` has no rows
        self.keys: set[tuple[Any, ...]] | None = None  # full key set, loaded lazily
        self.marker = path.with_name(path.name + UNORDERED_SUFFIX)
        self.unordered = False  # rows below their stream's watermark may be stored: no tail inference
        path.parent.mkdir(parents=True, exist_ok=True)
        exists = path.exists() and path.stat().st_size > 0
        if exists:
            self._check_header()
        self.handle = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - kept open
        if not exists:
            self.handle.write(plan.header)
            self.marker.unlink(missing_ok=True)  # left by a file removed since
        elif self.marker.exists():
            self.unordered = True
            self.load_keys()
        else:
            self._load_tail()

    def _check_header(self) -> None:
        with open(self.path, encoding="utf-8", newline="") as f:
            header = f.readline()
        if header != self.plan.header:
            raise ConfigError(
                f"{self.path}: header does not match table {self.plan.table.name}; move the file away"
            )

    def _load_tail(self) -> None:
        """Watermarks from the last lines of an existing file (cheap: one seek, one small read)."""
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            start = max(0, size - _TAIL_BYTES)
            f.seek(start)
            data = f.read().decode("utf-8", errors="replace")
        # Drop the first line: the header, or a partial line when the read started mid-file.
        lines = data.splitlines(keepends=True)[1:]
        self._scan(lines, full=start == 0, tail=True)

    def _scan(self, lines: list[str], full: bool, tail: bool) -> None:
        """Per-stream watermarks (and, unless ``tail``, every key) from stored lines.

        ``full``: the lines are the whole file. A tail's watermark keys are complete for a stream when
        the tail starts below its watermark (rows arrive in order per stream, so earlier lines hold no
        more rows at the watermark); streams absent from a partial tail stay unknown (``all_seen`` is
        false) until a full scan.
        """
        plan = self.plan
        use_csv = any('"' in line for line in lines)
        oi = plan.order_idx
        streams: dict[Any, _Stream] = {}
        first_order: dict[Any, Any] = {}
        keys: set[tuple[Any, ...]] = set()
        for rec in _records(iter(lines), plan.ncols, use_csv):
            try:
                order = plan.order_parser(rec[oi])
                key = plan.parse_key(rec)
                stream_value = plan.parse_stream(rec)
            except ValueError:
                log.warning("%s: unreadable line skipped: %.200s", self.path, ",".join(rec))
                continue
            if not tail:
                keys.add(key)
            stream = streams.get(stream_value)
            if stream is None:
                stream = streams[stream_value] = _Stream()
                first_order[stream_value] = order
            if order is None:
                continue
            wm = stream.watermark
            if wm is None or order > wm:
                stream.watermark = order
                stream.wm_keys = {key}
            elif order == wm:
                stream.wm_keys.add(key)
        if tail and not full:
            for stream_value, stream in streams.items():
                first = first_order[stream_value]
                wm = stream.watermark
                stream.wm_complete = first is not None and wm is not None and first < wm
        self.streams = streams
        self.all_seen = full
        if not tail:
            self.keys = keys

    def load_keys(self) -> set[tuple[Any, ...]]:
        """Read every key stored in the file (once); also makes every stream's watermark exact."""
        if self.keys is None:
            self.handle.flush()
            with open(self.path, encoding="utf-8", newline="") as f:
                f.readline()
                lines = f.readlines()
            self._scan(lines, full=True, tail=False)
        assert self.keys is not None
        return self.keys

    def _stream(self, value: Any) -> _Stream:
        """State of a stream not seen yet: empty, once every stored row has been scanned."""
        if not self.all_seen:
            self.load_keys()
            stream = self.streams.get(value)
            if stream is not None:
                return stream
        stream = self.streams[value] = _Stream()
        return stream

    def accept(self, rows: Sequence[Row]) -> list[str]:
        """Filter out stored keys; return the CSV lines to append."""
        plan = self.plan
        key_of = plan.key
        stream_of = plan.stream
        oi = plan.order_idx
        line = plan.line
        streams = self.streams
        out: list[str] = []
        for row in rows:
            order = row[oi]
            stream = streams.get(stream_of(row))
            if stream is None:
                stream = self._stream(stream_of(row))
                streams = self.streams  # a full scan replaces the dict
            wm = stream.watermark
            if order is not None and (wm is None or order > wm):
                key = key_of(row)
                stream.watermark = order
                stream.wm_keys = {key}
                if self.keys is not None:
                    self.keys.add(key)
            else:
                key = key_of(row)
                if order is not None and order == wm:
                    if key in stream.wm_keys:
                        continue
                    if self.keys is None and stream.wm_complete and plan.order_in_key:
                        stream.wm_keys.add(key)
                        out.append(line(row))
                        continue
                if self.keys is None:
                    self.load_keys()  # exact state of every stream, from the whole file
                    streams = self.streams
                    stream = streams.get(stream_of(row)) or self._stream(stream_of(row))
                keys = self.keys
                assert keys is not None
                if key in keys:
                    continue
                keys.add(key)
                wm = stream.watermark
                if order is not None and order == wm:
                    stream.wm_keys.add(key)
                elif order is not None and (wm is None or order > wm):
                    stream.watermark = order
                    stream.wm_keys = {key}
                elif order is not None and not self.unordered:  # below the watermark: out of order
                    self.unordered = True
                    self.marker.touch()
            out.append(line(row))
        return out

    def close(self) -> None:
        self.handle.close()


class CsvSink:
    """Rows to ``<data_dir>/csv/<table>/<table>-<YYYY-MM-DD>.csv`` (UTC day of ``partition_ts``)."""

    name = "csv"

    def __init__(self, data_dir: Path, max_open_files: int = 8) -> None:
        self.root = Path(data_dir) / "csv"
        self.max_open_files = max(1, max_open_files)
        self._files: OrderedDict[Path, _CsvFile] = OrderedDict()
        self._plans: dict[str, _Plan] = {}
        self._day_names: dict[int, str] = {}

    def path_for(self, table: Table, day: int) -> Path:
        """File for a UTC day number (days since the epoch)."""
        name = self._day_names.get(day)
        if name is None:
            name = us_to_datetime(day * US_PER_DAY).strftime("%Y-%m-%d")
            self._day_names[day] = name
        return self.root / table.name / f"{table.name}-{name}.csv"

    def _file(self, table: Table, day: int) -> _CsvFile:
        path = self.path_for(table, day)
        f = self._files.get(path)
        if f is not None:
            self._files.move_to_end(path)
            return f
        plan = self._plans.get(table.name)
        if plan is None or plan.table is not table:
            plan = self._plans[table.name] = _Plan(table)
        f = _CsvFile(path, plan)
        self._files[path] = f
        while len(self._files) > self.max_open_files:
            _, old = self._files.popitem(last=False)
            old.close()
        return f

    def write(self, table: Table, rows: Sequence[Row]) -> None:
        if not rows:
            return
        pi = table.index[table.partition_ts]
        # Split into runs of the same day (one run in the common case).
        start = 0
        day = rows[0][pi] // US_PER_DAY
        for i in range(1, len(rows)):
            d = rows[i][pi] // US_PER_DAY
            if d != day:
                self._write_day(table, day, rows[start:i])
                start, day = i, d
        self._write_day(table, day, rows[start:] if start else rows)

    def _write_day(self, table: Table, day: int, rows: Sequence[Row]) -> None:
        f = self._file(table, day)
        lines = f.accept(rows)
        if lines:
            lines.append("")
            f.handle.write(EOL.join(lines))

    def flush(self) -> None:
        for f in self._files.values():
            f.handle.flush()

    def close(self) -> None:
        while self._files:
            _, f = self._files.popitem(last=False)
            f.handle.flush()
            os.fsync(f.handle.fileno())
            f.close()
