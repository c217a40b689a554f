"""The daily ledger ETL Lambda: an EventBridge event (or a manual backfill) -> one ETL run over S3.

A scheduled event (``detail-type: Scheduled Event``, ``time``) processes the UTC day before ``time``
and the ``LEDGER_LOOKBACK_DAYS`` days before it, so rows that arrive late in the snapshot are picked up
by the next runs (re-processing a day is idempotent). A manual invoke may pass ``{"date": ...}`` or
``{"start": ..., "end": ...}`` to backfill.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from marketpipe import envnames
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


def handle(event: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Run the ETL for the event's days with locations from the environment; returns the summary (also
    logged as one JSON line, for CloudWatch Logs Insights)."""
    try:
        raw, lake, quarantine = (
            env[envnames.LEDGER_RAW_URI],
            env[envnames.LEDGER_LAKE_URI],
            env[envnames.LEDGER_QUARANTINE_URI],
        )
    except KeyError as exc:
        raise ConfigError(f"missing environment variable {exc.args[0]}") from None
    lookback = int(env.get(envnames.LEDGER_LOOKBACK_DAYS, "2"))
    start, end = window_for_event(event, lookback)
    config = EtlConfig(
        input_uri=raw,
        lake_uri=lake,
        quarantine_uri=quarantine,
        csv_uri=env.get(envnames.LEDGER_CSV_URI) or None,
        start=start,
        end=end,
    )
    summary = run_etl(config).to_dict()
    print(json.dumps({"ledger_etl": summary}))
    return summary
