# Type stub of the compiled book (marketpipe/_cbook.pyx): the same interface as the pure-Python one.
from typing import Any

from marketpipe.book import PyOrderBook

class OrderBook(PyOrderBook): ...

def js_num_text(value: float | int) -> str: ...
def apply_update(
    book: PyOrderBook, body: Any, quotes: list[tuple[Any, ...]], head: tuple[Any, ...], set_action: str
) -> int: ...

class WideText:
    """A stream's long float segment as CSV text, rebuilt by difference from the previous row's."""

    def __init__(self, floats: Any, n: int) -> None: ...
    def text_of(self, row: Any, start: int) -> str: ...
