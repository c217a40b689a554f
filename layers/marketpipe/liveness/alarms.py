"""CloudWatch alarm state changes as SMS texts (pure: the AWS notifier Lambda sends them).

The text for ALARM says what stopped (the alarm description) and since when; for OK it says how long
the outage lasted, given the time the alarm went off. Texts stay in the GSM-friendly ASCII range.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from marketpipe.liveness.state import duration

_REASON_CHARS = 160


@dataclass(frozen=True)
class AlarmChange:
    """The fields of a CloudWatch alarm notification (metric or composite) that a text needs."""

    name: str
    description: str
    new_state: str
    old_state: str
    reason: str
    change_time: str
    region: str

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> AlarmChange:
        try:
            return cls(
                name=str(message["AlarmName"]),
                description=str(message.get("AlarmDescription") or message["AlarmName"]),
                new_state=str(message["NewStateValue"]),
                old_state=str(message.get("OldStateValue") or ""),
                reason=str(message.get("NewStateReason") or ""),
                change_time=str(message["StateChangeTime"]),
                region=str(message.get("Region") or ""),
            )
        except KeyError as exc:
            raise ValueError(f"not a CloudWatch alarm notification: missing {exc}") from exc

    @property
    def changed_at(self) -> datetime:
        return parse_change_time(self.change_time)


def parse_change_time(text: str) -> datetime:
    """``2026-11-22T04:10:26.123+0000`` (CloudWatch's format) -> aware datetime."""
    for pattern in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(text, pattern).astimezone(UTC)
        except ValueError:
            continue
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _ascii(text: str) -> str:
    """Keep texts in the GSM-friendly ASCII range (one segment = 160 characters, not 70)."""
    return text.encode("ascii", "replace").decode()


def alarm_text(change: AlarmChange, outage_since: str | None = None) -> str:
    """The SMS for a state change: what stopped and since when, or how long the outage lasted."""
    where = f"AWS {change.region}".strip()
    if change.new_state == "ALARM":
        reason = (
            change.reason if len(change.reason) <= _REASON_CHARS else change.reason[:_REASON_CHARS] + "..."
        )
        return _ascii(
            f"marketpipe DOWN ({where}): {change.description}. Since {_when(change.changed_at)}. "
            f"Alarm {change.name}: {reason}"
        )
    text = f"marketpipe RECOVERED ({where}): {change.description} - OK again at {_when(change.changed_at)}."
    if outage_since:
        since = parse_change_time(outage_since)
        lasted = duration((change.changed_at - since).total_seconds())
        text += f" Outage lasted {lasted} (since {_when(since)})."
    return _ascii(text)
