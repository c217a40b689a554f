# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The compiled order book: :class:`marketpipe.book.PyOrderBook`'s behaviour, several times faster.

Book maintenance runs once per wire frame, a million times an hour on a busy pair, so it is the one
place where interpreted Python is the bottleneck (docs/PERFORMANCE.md). Each side is a C array of
levels kept best first (a binary search over at most a few hundred doubles, then one ``memmove``), and
each level holds the very float objects the wire gave, so a 404-value row is reference copies and the
stored values are bit-for-bit the ones the pure-Python book would store. Each level also caches its
JavaScript text for the checksum, computed only when a checksum needs it.

``marketpipe.book`` imports this module when it was compiled at install time and falls back to the
pure-Python class otherwise; the unit and property tests run both and compare them operation by
operation.

The same goes for what the sinks do with each 400-level book row: :class:`WideText` formats the levels
for CSV by difference with the previous row, :func:`float_columns` turns them into Arrow buffers for
the lake. Both have pure-Python equivalents in their sinks, and property tests compare the two.
"""

from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.ref cimport PyObject
from libc.math cimport fabs, floor
from libc.stdio cimport snprintf
from libc.string cimport memcpy, memmove, strlen

from zlib import crc32

from marketpipe.jsnum import js_num_str

cdef extern from "Python.h":
    char* PyOS_double_to_string(double, char, int, int, int*) except NULL
    void Py_INCREF_PTR "Py_INCREF" (PyObject*)
    void Py_XDECREF_PTR "Py_XDECREF" (PyObject*)
    PyObject* PyTuple_New_PTR "PyTuple_New" (Py_ssize_t) except NULL
    void PyTuple_SET_ITEM_PTR "PyTuple_SET_ITEM" (PyObject*, Py_ssize_t, PyObject*)
    PyObject* Py_None_PTR "Py_None"

cdef enum:
    CHECKSUM_DEPTH = 25


cdef struct Level:
    double key          # price for asks, -price for bids: ascending order is best first on both sides
    double amount       # signed wire amount (bids > 0, asks < 0)
    PyObject* price     # the wire's price object (owned reference)
    PyObject* size      # positive size object (owned): the wire amount for bids, its negation for asks
    PyObject* price_text   # JavaScript text of price, or NULL until a checksum needs it (owned)
    PyObject* amount_text  # JavaScript text of the signed amount, or NULL (owned)


cdef struct Side:
    Level* levels
    Py_ssize_t count
    Py_ssize_t capacity


cdef inline void _release(Level* level) noexcept:
    Py_XDECREF_PTR(level.price)
    Py_XDECREF_PTR(level.size)
    Py_XDECREF_PTR(level.price_text)
    Py_XDECREF_PTR(level.amount_text)


cdef inline Py_ssize_t _lower_bound(Side* side, double key) noexcept:
    """Index of the first level whose key is >= ``key`` (``count`` when there is none)."""
    cdef Py_ssize_t lo = 0, hi = side.count, mid
    cdef Level* levels = side.levels
    while lo < hi:
        mid = (lo + hi) >> 1
        if levels[mid].key < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef int _grow(Side* side) except -1:
    cdef Py_ssize_t capacity = side.capacity * 2 if side.capacity else 128
    cdef Level* levels = <Level*>PyMem_Realloc(side.levels, capacity * sizeof(Level))
    if levels is NULL:
        raise MemoryError()
    side.levels = levels
    side.capacity = capacity
    return 0


cdef void _clear(Side* side) noexcept:
    cdef Py_ssize_t i
    for i in range(side.count):
        _release(&side.levels[i])
    side.count = 0


cdef class OrderBook:
    """One symbol's book. Amounts are signed as on the wire: bids > 0, asks < 0."""

    cdef Side _bids
    cdef Side _asks
    cdef readonly Py_ssize_t depth
    """Levels per side that count as 'the top' for change detection and rows."""

    def __cinit__(self, Py_ssize_t depth=100):
        self.depth = depth

    def __dealloc__(self):
        _clear(&self._bids)
        _clear(&self._asks)
        PyMem_Free(self._bids.levels)
        PyMem_Free(self._asks.levels)

    def clear(self):
        _clear(&self._bids)
        _clear(&self._asks)

    def __len__(self):
        return self._bids.count + self._asks.count

    cdef bint _set(self, Side* side, double key, object price, double amount, object size) except -1:
        cdef Py_ssize_t index = _lower_bound(side, key)
        cdef Level* level
        if index < side.count and side.levels[index].key == key:
            level = &side.levels[index]
            if level.amount == amount:
                return False
            Py_INCREF_PTR(<PyObject*>size)
            Py_XDECREF_PTR(level.size)
            Py_XDECREF_PTR(level.amount_text)
            level.size = <PyObject*>size
            level.amount_text = NULL
            level.amount = amount
            return index < self.depth
        if side.count == side.capacity:
            _grow(side)
        level = &side.levels[index]
        memmove(level + 1, level, (side.count - index) * sizeof(Level))
        side.count += 1
        Py_INCREF_PTR(<PyObject*>price)
        Py_INCREF_PTR(<PyObject*>size)
        level.key = key
        level.amount = amount
        level.price = <PyObject*>price
        level.size = <PyObject*>size
        level.price_text = NULL
        level.amount_text = NULL
        return index < self.depth

    cdef bint _delete(self, Side* side, double key) noexcept:
        cdef Py_ssize_t index = _lower_bound(side, key)
        if index == side.count or side.levels[index].key != key:
            return False
        _release(&side.levels[index])
        side.count -= 1
        memmove(&side.levels[index], &side.levels[index + 1], (side.count - index) * sizeof(Level))
        return index < self.depth

    cpdef bint apply(self, object price, object count, object amount) except -1:
        """Apply one Bitfinex level ``[PRICE, COUNT, AMOUNT]``.

        Returns True when a price or size among the top ``depth`` levels changed. ``COUNT > 0`` sets
        the level to AMOUNT (absolute, sign gives the side); ``COUNT == 0`` deletes it (AMOUNT is the
        marker 1 for bids, -1 for asks); deleting an absent level is a no-op.
        """
        cdef double p = price
        cdef double c = count
        cdef double a = amount
        if c > 0:
            if a > 0:
                return self._set(&self._bids, -p, price, a, amount)
            if a < 0:
                return self._set(&self._asks, p, price, a, -amount)
            return False  # a zero amount with orders is malformed; nothing to apply
        if a > 0:
            return self._delete(&self._bids, -p)
        return self._delete(&self._asks, p)

    cdef object _best(self, Side* side):
        if side.count == 0:
            return None
        return (<object>side.levels[0].price, <object>side.levels[0].size)

    def best_bid(self):
        return self._best(&self._bids)

    def best_ask(self):
        return self._best(&self._asks)

    cdef list _top(self, Side* side, Py_ssize_t n):
        cdef Py_ssize_t i
        cdef list out = []
        for i in range(min(max(n, 0), side.count)):
            out.append((<object>side.levels[i].price, <object>side.levels[i].size))
        return out

    def top_bids(self, Py_ssize_t n):
        """Best-first ``(price, size)`` with positive sizes."""
        return self._top(&self._bids, n)

    def top_asks(self, Py_ssize_t n):
        return self._top(&self._asks, n)

    def levels(self):
        """``(bids, asks)``, each a best-first list of ``(price, signed amount)``: a checkpoint's view."""
        cdef Py_ssize_t i
        bids = [(<object>self._bids.levels[i].price, <object>self._bids.levels[i].size)
                for i in range(self._bids.count)]
        asks = [(<object>self._asks.levels[i].price, -<object>self._asks.levels[i].size)
                for i in range(self._asks.count)]
        return bids, asks

    def level_values(self, depth=None):
        """Flat ``bid_1_price, bid_1_size, …, ask_N_size`` values, ``None`` past the last level."""
        return list(self.row((), depth))

    cpdef tuple row(self, tuple head, object depth=None):
        """``head`` followed by the top levels as one tuple (a ``bitfinex_book`` row), padded with None."""
        cdef Py_ssize_t width = self.depth if depth is None else depth
        cdef Py_ssize_t n_head = len(head)
        cdef PyObject* out = PyTuple_New_PTR(n_head + 4 * width)
        cdef Py_ssize_t position = 0, i
        cdef PyObject* item
        for i in range(n_head):
            item = <PyObject*>head[i]
            Py_INCREF_PTR(item)
            PyTuple_SET_ITEM_PTR(out, position, item)
            position += 1
        position = self._fill(out, position, &self._bids, width)
        self._fill(out, position, &self._asks, width)
        return _steal(out)

    cdef Py_ssize_t _fill(self, PyObject* out, Py_ssize_t position, Side* side, Py_ssize_t width) noexcept:
        cdef Py_ssize_t i, filled = min(width, side.count)
        cdef Level* level
        for i in range(filled):
            level = &side.levels[i]
            Py_INCREF_PTR(level.price)
            PyTuple_SET_ITEM_PTR(out, position, level.price)
            Py_INCREF_PTR(level.size)
            PyTuple_SET_ITEM_PTR(out, position + 1, level.size)
            position += 2
        for i in range(2 * (width - filled)):
            Py_INCREF_PTR(Py_None_PTR)
            PyTuple_SET_ITEM_PTR(out, position, Py_None_PTR)
            position += 1
        return position

    cdef object _price_text(self, Level* level):
        if level.price_text is NULL:
            text = js_num_text(<object>level.price)
            Py_INCREF_PTR(<PyObject*>text)
            level.price_text = <PyObject*>text
        return <object>level.price_text

    cdef object _amount_text(self, Level* level, bint negate):
        if level.amount_text is NULL:
            size = <object>level.size
            text = js_num_text(-size if negate else size)
            Py_INCREF_PTR(<PyObject*>text)
            level.amount_text = <PyObject*>text
        return <object>level.amount_text

    def checksum_text(self):
        """The interleaved top-25 text Bitfinex hashes: ``bid0p:bid0a:ask0p:ask0a:bid1p:…``."""
        cdef list parts = []
        cdef Py_ssize_t i
        for i in range(CHECKSUM_DEPTH):
            if i < self._bids.count:
                parts.append(self._price_text(&self._bids.levels[i]))
                parts.append(self._amount_text(&self._bids.levels[i], False))
            if i < self._asks.count:
                parts.append(self._price_text(&self._asks.levels[i]))
                parts.append(self._amount_text(&self._asks.levels[i], True))
        return ":".join(parts)

    def checksum(self):
        """Signed CRC-32 of :meth:`checksum_text`, comparable with the ``cs`` frame value."""
        cdef long long value = crc32(self.checksum_text().encode())
        return value - 4294967296 if value >= 2147483648 else value


cdef inline tuple _steal(PyObject* owned):
    """Hand a new reference made with the C API to Cython without an extra INCREF."""
    cdef tuple result = <tuple>owned
    Py_XDECREF_PTR(owned)
    return result


cpdef int apply_update(OrderBook book, object body, list quotes, tuple head, str set_action) except -1:
    """:func:`marketpipe.book.py_apply_update` in C: one book update frame's levels, quote rows appended."""
    cdef list entries
    cdef Py_ssize_t invalid = 0
    cdef bint changed = False
    if type(body) is list and len(<list>body) > 0 and type((<list>body)[0]) is list:
        entries = <list>body
    else:
        entries = [body]
    symbol, exchange_ts, received_ts, seq = head
    for entry in entries:
        if len(entry) < 3:
            invalid += 1
            continue
        price, count, amount = entry[0], entry[1], entry[2]
        if count > 0:
            if amount > 0:
                quotes.append((symbol, exchange_ts, received_ts, seq, "bid", price, count, amount, set_action))
            else:
                quotes.append((symbol, exchange_ts, received_ts, seq, "ask", price, count, -amount, set_action))
        else:
            quotes.append(
                (symbol, exchange_ts, received_ts, seq, "bid" if amount > 0 else "ask", price, 0, 0, "delete")
            )
        if book.apply(price, count, amount):
            changed = True
    return changed | (invalid << 1)


cpdef str js_num_text(object value):
    """:func:`marketpipe.jsnum.js_num_str` in C (same text for every input; a property test checks it).

    A checksum needs the JavaScript text of up to 100 numbers, and most amounts are new numbers, so a
    cache does not help: this formats Python's shortest round-trip digits (``repr``) with the
    ECMA-262 Number::toString layout without building intermediate Python strings.
    """
    if type(value) is not float:
        return js_num_str(value)  # ints print as themselves; anything else gets the reference's error
    cdef double x = value
    if x != x or fabs(x) == float("inf"):
        return js_num_str(value)
    if x == 0:
        return "0"
    cdef char out[48]
    if x == floor(x) and fabs(x) < 9.2e18:
        snprintf(out, sizeof(out), "%lld", <long long>x)
        return out.decode("ascii")
    if x == floor(x) and fabs(x) < 1e21:
        return js_num_str(value)  # integral beyond long long: the reference prints the exact integer
    cdef char* text = PyOS_double_to_string(fabs(x), b"r", 0, 0, NULL)
    cdef char digits[32]
    cdef int k = 0, leading = 0, int_len = 0, exponent = 0, n, i, position = 0, e
    cdef bint seen_point = False, seen_nonzero = False
    cdef char* c = text
    try:
        while c[0] != 0 and c[0] != b"e":
            if c[0] == b".":
                seen_point = True
            else:
                if not seen_point:
                    int_len += 1
                if c[0] == b"0" and not seen_nonzero:
                    leading += 1
                else:
                    seen_nonzero = True
                    digits[k] = c[0]
                    k += 1
            c += 1
        if c[0] == b"e":
            exponent = int(c[1:].decode("ascii"))
    finally:
        PyMem_Free(text)
    while k > 1 and digits[k - 1] == b"0":
        k -= 1
    n = int_len + exponent - leading  # position of the decimal point (ECMA-262 'n')
    if x < 0:
        out[position] = b"-"
        position += 1
    if k <= n <= 21:
        for i in range(k):
            out[position] = digits[i]
            position += 1
        for i in range(n - k):
            out[position] = b"0"
            position += 1
    elif 0 < n <= 21:
        for i in range(k):
            if i == n:
                out[position] = b"."
                position += 1
            out[position] = digits[i]
            position += 1
    elif -6 < n <= 0:
        out[position] = b"0"
        out[position + 1] = b"."
        position += 2
        for i in range(-n):
            out[position] = b"0"
            position += 1
        for i in range(k):
            out[position] = digits[i]
            position += 1
    else:
        out[position] = digits[0]
        position += 1
        if k > 1:
            out[position] = b"."
            position += 1
            for i in range(1, k):
                out[position] = digits[i]
                position += 1
        e = n - 1
        out[position] = b"e"
        out[position + 1] = b"+" if e >= 0 else b"-"
        position += 2
        position += snprintf(out + position, sizeof(out) - position, "%d", abs(e))
    return out[:position].decode("ascii")


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL
    object PyUnicode_FromStringAndSize(const char*, Py_ssize_t)


cdef enum:
    CELL_NONE = 0
    CELL_NUMBER = 1      # a float, or an int of magnitude at most 2**53 (exact as a double)
    CELL_BIG_INT = 2     # an int a double can't hold exactly
    CELL_OTHER = 3

cdef long long EXACT_INT = 1LL << 53


cdef inline int _read_number(object value, double* number) noexcept:
    """What a level cell holds; for CELL_NUMBER its double in ``number`` (how pyarrow converts it)."""
    cdef long long integer
    cdef int overflow
    if value is None:
        return CELL_NONE
    if PyFloat_CheckExact(value):
        number[0] = PyFloat_AS_DOUBLE(value)
        return CELL_NUMBER
    if PyLong_CheckExact(value):  # the wire's integral numbers
        integer = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow or not -EXACT_INT <= integer <= EXACT_INT:
            return CELL_BIG_INT
        number[0] = <double>integer
        return CELL_NUMBER
    return CELL_OTHER


cdef class WideText:
    """CSV text of a long float segment (a book row's 400 levels), kept from one row of a stream to the next.

    Consecutive book rows of a symbol differ in a level or two: one changed in place, or one inserted
    or removed so that the levels behind it shift by a price/size pair. This compares the new values
    with the previous row's as C doubles, finds the unchanged prefix and suffix (and a shifted pair),
    and rebuilds the text from the previous text with ``memcpy``; only new values are looked up in
    ``floats`` (the sink's value -> text cache). Equal values have equal text (``0.0`` and ``-0.0``
    both print ``0``; the int ``5`` and the float ``5.0`` both ``5``), so the result is exactly what
    formatting every value gives; anything else (a NaN, an int beyond 2**53, any other object) is
    simply treated as changed. The pure-Python sink does the same with slices.
    """

    cdef object floats
    cdef Py_ssize_t n
    cdef double* values
    cdef char* kinds          # CELL_NONE, CELL_NUMBER (not NaN) or CELL_OTHER (NaN, big int, other)
    cdef Py_ssize_t* starts   # offset of each token in text (tokens are joined by commas)
    cdef Py_ssize_t* ends
    cdef char* text
    cdef Py_ssize_t size, capacity
    cdef object last          # the str of the previous row's segment, or None before the first row
    # scratch for the next row
    cdef double* new_values
    cdef char* new_kinds
    cdef Py_ssize_t* new_starts
    cdef Py_ssize_t* new_ends
    cdef char* new_text
    cdef Py_ssize_t new_capacity

    def __cinit__(self, object floats, Py_ssize_t n):
        if n <= 0:
            raise ValueError("a wide segment has at least one value")
        self.floats = floats
        self.n = n
        self.last = None
        self.values = <double*>PyMem_Realloc(NULL, n * sizeof(double))
        self.new_values = <double*>PyMem_Realloc(NULL, n * sizeof(double))
        self.kinds = <char*>PyMem_Realloc(NULL, n)
        self.new_kinds = <char*>PyMem_Realloc(NULL, n)
        self.starts = <Py_ssize_t*>PyMem_Realloc(NULL, n * sizeof(Py_ssize_t))
        self.ends = <Py_ssize_t*>PyMem_Realloc(NULL, n * sizeof(Py_ssize_t))
        self.new_starts = <Py_ssize_t*>PyMem_Realloc(NULL, n * sizeof(Py_ssize_t))
        self.new_ends = <Py_ssize_t*>PyMem_Realloc(NULL, n * sizeof(Py_ssize_t))
        self.capacity = self.new_capacity = 32 * n
        self.text = <char*>PyMem_Realloc(NULL, self.capacity)
        self.new_text = <char*>PyMem_Realloc(NULL, self.new_capacity)
        if (
            not self.values or not self.new_values or not self.kinds or not self.new_kinds
            or not self.starts or not self.ends or not self.new_starts or not self.new_ends
            or not self.text or not self.new_text
        ):
            raise MemoryError()
        self.size = 0

    def __dealloc__(self):
        PyMem_Free(self.values)
        PyMem_Free(self.new_values)
        PyMem_Free(self.kinds)
        PyMem_Free(self.new_kinds)
        PyMem_Free(self.starts)
        PyMem_Free(self.ends)
        PyMem_Free(self.new_starts)
        PyMem_Free(self.new_ends)
        PyMem_Free(self.text)
        PyMem_Free(self.new_text)

    cdef inline bint _same(self, Py_ssize_t new, Py_ssize_t old) noexcept:
        cdef char kind = self.new_kinds[new]
        if kind != self.kinds[old] or kind == CELL_OTHER:
            return False
        return kind == CELL_NONE or self.new_values[new] == self.values[old]

    cdef int _append(self, object value) except -1:
        """Format ``value`` through the cache onto the end of new_text (no comma)."""
        cdef Py_ssize_t length
        cdef const char* data = PyUnicode_AsUTF8AndSize(self.floats[value], &length)
        self._reserve(length)
        memcpy(self.new_text + self.size, data, length)
        self.size += length
        return 0

    cdef int _reserve(self, Py_ssize_t more) except -1:
        cdef char* grown
        if self.size + more + 1 > self.new_capacity:
            grown = <char*>PyMem_Realloc(self.new_text, 2 * (self.size + more + 1))
            if not grown:
                raise MemoryError()
            self.new_text = grown
            self.new_capacity = 2 * (self.size + more + 1)
        return 0

    cdef int _fresh(self, Py_ssize_t i, object value) except -1:
        """Token ``i`` of the new row, formatted (after a comma unless it is the first)."""
        if i:
            self._reserve(1)
            self.new_text[self.size] = b","
            self.size += 1
        self.new_starts[i] = self.size
        self._append(value)
        self.new_ends[i] = self.size
        return 0

    cdef int _block(self, Py_ssize_t new_first, Py_ssize_t old_first, Py_ssize_t count) except -1:
        """New tokens ``new_first…`` copied from the previous row's ``old_first…`` in one ``memcpy``."""
        cdef Py_ssize_t i, delta, length
        if count <= 0:
            return 0
        if new_first:
            self._reserve(1)
            self.new_text[self.size] = b","
            self.size += 1
        length = self.ends[old_first + count - 1] - self.starts[old_first]
        self._reserve(length)
        memcpy(self.new_text + self.size, self.text + self.starts[old_first], length)
        delta = self.size - self.starts[old_first]
        for i in range(count):
            self.new_starts[new_first + i] = self.starts[old_first + i] + delta
            self.new_ends[new_first + i] = self.ends[old_first + i] + delta
        self.size += length
        return 0

    def text_of(self, object row, Py_ssize_t start):
        """The comma-joined text of ``row[start:start + n]``; becomes the previous row of the next call."""
        cdef Py_ssize_t n = self.n, i, first = 0, end = n, shift = 0, offset = start
        cdef tuple items
        cdef int cell
        if type(row) is tuple:
            items = row
        else:
            items = tuple(row)
        if len(items) < start + n:
            raise ValueError(f"row has {len(items)} values, the segment needs {start + n}")
        for i in range(n):
            cell = _read_number(items[offset + i], &self.new_values[i])
            if cell == CELL_BIG_INT or (cell == CELL_NUMBER and self.new_values[i] != self.new_values[i]):
                cell = CELL_OTHER  # never equal to anything: a NaN, or an int a double can't hold
            self.new_kinds[i] = cell
        if self.last is not None:
            while first < n and self._same(first, first):
                first += 1
            if first == n:
                return self.last
            while end > first and self._same(end - 1, end - 1):
                end -= 1
            if end - first > 2:
                shift = -2  # a pair inserted at first: new[first+2:end] == old[first:end-2]
                for i in range(first + 2, end):
                    if not self._same(i, i - 2):
                        shift = 0
                        break
                if shift == 0:
                    shift = 2  # a pair removed at first: new[first:end-2] == old[first+2:end]
                    for i in range(first, end - 2):
                        if not self._same(i, i + 2):
                            shift = 0
                            break
        self.size = 0
        if self.last is None:
            for i in range(n):
                self._fresh(i, items[offset + i])
        else:
            self._block(0, 0, first)
            if shift == -2:
                self._fresh(first, items[offset + first])
                self._fresh(first + 1, items[offset + first + 1])
                self._block(first + 2, first, end - first - 2)
            elif shift == 2:
                self._block(first, first + 2, end - first - 2)
                self._fresh(end - 2, items[offset + end - 2])
                self._fresh(end - 1, items[offset + end - 1])
            else:
                for i in range(first, end):
                    self._fresh(i, items[offset + i])
            self._block(end, end, n - end)
        self.values, self.new_values = self.new_values, self.values
        self.kinds, self.new_kinds = self.new_kinds, self.kinds
        self.starts, self.new_starts = self.new_starts, self.starts
        self.ends, self.new_ends = self.new_ends, self.ends
        self.text, self.new_text = self.new_text, self.text
        self.capacity, self.new_capacity = self.new_capacity, self.capacity
        self.last = PyUnicode_FromStringAndSize(self.text, self.size)
        return self.last


def float_columns(list rows, Py_ssize_t start, Py_ssize_t count):
    """``row[start:start + count]`` of every row as Arrow float64 column buffers, column by column.

    Returns ``(values, validity, null_counts)``: ``values`` holds ``count`` columns of ``len(rows)``
    doubles each; ``validity`` one bitmap per column of :func:`bitmap_bytes` bytes (bit set = not null);
    ``null_counts`` per column. The lake sink wraps slices of them with ``pa.Array.from_buffers``
    instead of converting 400 Python values per book row one by one (what ``pa.array`` does). Values
    are converted as ``pa.array(..., pa.float64())`` converts them: floats as they are, ints of at
    most 2**53 exactly (larger ones are a ValueError, as in pyarrow), None as null; anything else is a
    TypeError.
    """
    cdef Py_ssize_t n = len(rows), r, j, stride = bitmap_bytes(n)
    cdef bytearray values = bytearray(n * count * sizeof(double))
    cdef bytearray validity = bytearray(stride * count)
    cdef double* out = <double*><char*>values
    cdef unsigned char* bits = <unsigned char*><char*>validity
    cdef list null_counts = [0] * count
    cdef Py_ssize_t* nulls = <Py_ssize_t*>PyMem_Realloc(NULL, (count or 1) * sizeof(Py_ssize_t))
    cdef tuple items
    cdef object row, value
    cdef int cell
    if not nulls:
        raise MemoryError()
    try:
        for j in range(count):
            nulls[j] = 0
        for r in range(n):
            row = rows[r]
            items = row if type(row) is tuple else tuple(row)
            if len(items) < start + count:
                raise ValueError(f"row has {len(items)} values, the columns need {start + count}")
            for j in range(count):
                value = items[start + j]
                cell = _read_number(value, &out[j * n + r])
                if cell == CELL_NUMBER:
                    bits[j * stride + (r >> 3)] |= 1 << (r & 7)
                elif cell == CELL_NONE:
                    nulls[j] += 1  # its value stays 0.0 (the buffer starts zeroed)
                elif cell == CELL_BIG_INT:
                    raise ValueError(f"integer {value} is not exactly representable as a double")
                else:
                    raise TypeError(f"expected a number or None, got {type(value).__name__}: {value!r}")
        for j in range(count):
            null_counts[j] = nulls[j]
    finally:
        PyMem_Free(nulls)
    return values, validity, null_counts


cpdef Py_ssize_t bitmap_bytes(Py_ssize_t rows):
    """Bytes of one column's validity bitmap in :func:`float_columns` (rounded up to 8 for alignment)."""
    return ((rows + 63) // 64) * 8
