"""The ETL Lambda's domain entry: turn an EventBridge event into a run over S3.

A scheduled event (``detail-type: Scheduled Event``, ``time``) processes the UTC day before ``time``
and the ``LEDGER_LOOKBACK_DAYS`` days before it, so rows that arrive late in the snapshot are picked up
by the next runs (re-processing a day is idempotent). A manual invoke may pass ``{"date": ...}`` or
``{"start": ..., "end": ...}`` to backfill.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from marketpipe.errors import ConfigError
from marketpipe.etl.runner import EtlConfig, run_etl


def _day(value: Any, what: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{what}: expected YYYY-MM-DD, got {value!r}") from None


def window_for_event(event: Mapping[str, Any], lookback_days: int) -> tuple[date, date]:
    """The days an event asks for."""
    if "date" in event:
        day = _day(event["date"], "date")
        return day, day
    if "start" in event or "end" in event:
        if "start" not in event or "end" not in event:
            raise ConfigError("a backfill event needs both start and end")
        return _day(event["start"], "start"), _day(event["end"], "end")
    if "time" in event:
        try:
            fired = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"time: not an ISO 8601 timestamp: {event['time']!r}") from None
        last = fired.date() - timedelta(days=1)
        return last - timedelta(days=lookback_days), last
    raise ConfigError("event has neither time (schedule) nor date/start/end (manual run)")


def handle_event(event: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Run the ETL for the event's days with locations from the environment; returns the summary."""
    try:
        raw, lake, quarantine = (
            environ["LEDGER_RAW_URI"],
            environ["LEDGER_LAKE_URI"],
            environ["LEDGER_QUARANTINE_URI"],
        )
    except KeyError as exc:
        raise ConfigError(f"missing environment variable {exc.args[0]}") from None
    lookback = int(environ.get("LEDGER_LOOKBACK_DAYS", "2"))
    start, end = window_for_event(event, lookback)
    config = EtlConfig(
        input_uri=raw,
        lake_uri=lake,
        quarantine_uri=quarantine,
        csv_uri=environ.get("LEDGER_CSV_URI") or None,
        start=start,
        end=end,
    )
    return run_etl(config).to_dict()
