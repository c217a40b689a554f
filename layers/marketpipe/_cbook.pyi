# Type stub of the compiled book (marketpipe/_cbook.pyx): the same interface as the pure-Python one.
from typing import Any

from marketpipe.book import PyOrderBook

class OrderBook(PyOrderBook): ...

def js_num_text(value: float | int) -> str: ...
def apply_update(
    book: PyOrderBook, body: Any, quotes: list[tuple[Any, ...]], head: tuple[Any, ...], set_action: str
) -> int: ...
