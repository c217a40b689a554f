"""The Bitso spreads Lambda: EventBridge each minute (``sample``) and each 10 minutes (``compact``).

``sample`` covers the UTC minute that is starting (EventBridge fires within seconds of it): the same
collector, sampler and alert logic as ``marketpipe run`` (:func:`marketpipe.bitso.service.sample_span`)
hold the websocket for that minute, then the observations are stored as a staging chunk and the
threshold state (edge-triggered crossings) is saved for the next invocation. ``compact`` writes the lake
file of the window that ended at least a minute before the event's ``time`` (so its last minute's chunk
is complete).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from marketpipe import envnames
from marketpipe.errors import ConfigError


def handle(event: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """``{"action": "sample"|"compact", "time": ...}`` -> a summary of what was written (also logged as one
    JSON line, for CloudWatch Logs Insights)."""
    summary = _run(event, env)
    print(json.dumps({"bitso_spreads": summary}, default=str))
    return summary


def _run(event: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    from marketpipe.alerts.service import alert_channels
    from marketpipe.bitso import lake as bitso_lake
    from marketpipe.bitso.processor import second_text
    from marketpipe.bitso.service import sample_span, settings_from, sns_channel
    from marketpipe.timeutil import iso_to_us, now_us

    settings = settings_from({}, env)
    staging, lake = env[envnames.BITSO_STAGING_URI], env[envnames.BITSO_LAKE_URI]
    state_uri = env.get(envnames.BITSO_STATE_URI) or f"{staging}/state/thresholds.json"
    action = str(event.get("action", "sample"))
    at = iso_to_us(str(event["time"])) // 1_000_000 if event.get("time") else now_us() // 1_000_000
    if action == "compact":
        window = settings.window_seconds
        start = (at - 60) // window * window - window
        return bitso_lake.compact_window(staging, lake, start, settings.books, window)
    if action != "sample":
        raise ConfigError(f"unknown action {action!r} (expected sample or compact)")
    minute = (at + 2) // 60 * 60  # fired a little early or late: the minute starting around now
    channels = alert_channels(settings.webhooks, env, sms=False)
    if env.get(envnames.ALERT_TOPIC_ARN):
        channels.append(sns_channel(env[envnames.ALERT_TOPIC_ARN]))
    state = bitso_lake.load_state(state_uri)
    observations, state = asyncio.run(
        sample_span(settings, minute, minute + 60, state=state, channels=channels)
    )
    path = bitso_lake.write_minute(staging, minute, observations, settings.window_seconds)
    bitso_lake.save_state(state_uri, state)
    sources: dict[str, int] = {}
    for obs in observations:
        sources[obs.source] = sources.get(obs.source, 0) + 1
    return {"minute": second_text(minute), "chunk": path, "rows": len(observations), "sources": sources}
