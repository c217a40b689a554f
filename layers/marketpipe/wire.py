"""What every exchange's wire module shares: the bad-frame error and reading a frame's JSON object."""

from __future__ import annotations

from typing import Any

import orjson


class BadFrame(ValueError):
    """Not a frame of the documented shapes (logged with its text and skipped)."""


def json_object(text: str | bytes) -> dict[str, Any]:
    """A frame's JSON object; :class:`BadFrame` for invalid JSON or any other JSON value."""
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadFrame("invalid JSON") from exc
    if not isinstance(msg, dict):
        raise BadFrame("not a JSON object")
    return msg
