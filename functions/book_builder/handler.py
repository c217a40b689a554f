"""Kinesis -> verified Bitfinex order books, trades and quotes in the lake and MySQL. Thin by design: the
logic is in ``marketpipe.aws.book_builder``."""

import os
from typing import Any

from marketpipe.aws import book_builder


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return book_builder.handle(event, os.environ)
