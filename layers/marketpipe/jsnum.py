"""JavaScript number text.

Bitfinex is a JavaScript server: every price and amount on the wire is ``Number.prototype.toString()``
of a double. Its checksum is computed over that exact text, and Python's ``repr`` differs from it
(``5e-05`` vs ``0.00005``, ``7255.0`` vs ``7255``). Because both languages print the *shortest*
round-trip digits, formatting the parsed double with the JavaScript rules reproduces the wire token
exactly; that lets the hot path parse with orjson (floats) and still verify checksums.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["js_num_str", "js_num_str_cached"]


def js_num_str(x: float | int) -> str:
    """Return JavaScript's ``String(x)`` for a finite number (ECMA-262 Number::toString)."""
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"not a finite number: {x!r}")
    if x == 0:
        return "0"
    if x == int(x) and abs(x) < 1e21:
        return str(int(x))
    sign = "-" if x < 0 else ""
    mantissa, _, exp_text = repr(abs(x)).partition("e")
    exponent = int(exp_text) if exp_text else 0
    int_part, _, frac_part = mantissa.partition(".")
    all_digits = int_part + frac_part
    leading_zeros = len(all_digits) - len(all_digits.lstrip("0"))
    digits = all_digits.lstrip("0").rstrip("0") or "0"
    n = len(int_part) + exponent - leading_zeros  # position of the decimal point (ECMA-262 'n')
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    exponent_text = ("+" if e >= 0 else "-") + str(abs(e))
    return sign + (digits if k == 1 else digits[0] + "." + digits[1:]) + "e" + exponent_text


js_num_str_cached = lru_cache(maxsize=1 << 16)(js_num_str)
"""Same as :func:`js_num_str`; prices repeat endlessly in a book, so caching pays."""
