"""What the exchange adapters share when they read the wire: the bad-frame error, a JSON object, and
the level-2 REST book body (``bids``/``asks`` lists of ``[price, size, …]``)."""

from __future__ import annotations

from typing import Any

import orjson

from marketpipe.execution.walk import Book, build_book


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


def level2_book(text: str, what: str) -> tuple[dict[str, Any], Book, int]:
    """(body, book, dropped levels) of a REST book body; ValueError when it is not ``what``."""
    body: Any = orjson.loads(text)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("bids"), list)
        or not isinstance(body.get("asks"), list)
    ):
        raise ValueError(f"not a {what} (no bids/asks lists)")

    def pairs(levels: list[Any]) -> list[tuple[str, str]]:
        return [(str(lv[0]), str(lv[1])) for lv in levels if isinstance(lv, list) and len(lv) >= 2]

    book, dropped = build_book(pairs(body["bids"]), pairs(body["asks"]))
    return body, book, dropped
