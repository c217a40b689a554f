# Type stub of the compiled book (marketpipe/_cbook.pyx): the same interface as the pure-Python one.
from marketpipe.book import PyOrderBook

class OrderBook(PyOrderBook): ...
