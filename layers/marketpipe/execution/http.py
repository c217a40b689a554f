"""The book client the Coinbase and Binance REST clients share: polite GETs plus ``fetch_book``.

Retries, ``Retry-After``, refusals and rate-limit skips are :class:`marketpipe.net.rest.RestClient`'s;
what this adds is the execution capability's port (one market's book) and its logger.
"""

from __future__ import annotations

import logging

from marketpipe.net.rest import RestAnswer, RestClient


class BookClient(RestClient):
    """A venue's REST book source; subclasses add the venue's own accounting and ``fetch_book``."""

    venue = "exchange"
    logger = logging.getLogger("marketpipe.execution")

    def fetch_book(self, symbol: str) -> tuple[str, RestAnswer]:
        """(path, answer) for one market's book."""
        raise NotImplementedError
