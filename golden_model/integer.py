"""Integer building blocks shared by every golden operator.

Everything here works on ``int64`` numpy arrays and spells out the hardware semantics:
``>>`` is an arithmetic shift right (floor), rounding is written out, saturation is explicit.
"""
import numpy as np

from .errors import ConfigError, IntvitError


def as_int_array(x, name: str = "input") -> np.ndarray:
    """Return ``x`` as an int64 array; refuse float, complex, object and bool input.

    ``astype`` keeps ndarray subclasses, so a test can pass an array type that traps float ops.
    """
    array = np.asanyarray(x)
    if not np.issubdtype(array.dtype, np.integer):
        raise IntvitError(f"{name} must be an integer array (got dtype {array.dtype}); "
                          "quantize it first")
    return array.astype(np.int64, copy=False)


def signed_range(bits: int) -> tuple[int, int]:
    """The two's-complement range of a ``bits``-bit signed integer."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def unsigned_range(bits: int) -> tuple[int, int]:
    """The range of a ``bits``-bit unsigned integer."""
    return 0, (1 << bits) - 1


def clamp(x: np.ndarray, lo: int, hi: int, out: np.ndarray | None = None) -> np.ndarray:
    """Saturate to ``[lo, hi]``: ``min(max(x, lo), hi)`` (``np.clip``, one pass); ``out`` (which
    may be ``x``) receives the result instead of a new array."""
    return np.clip(x, lo, hi, out=out)


_TABLES: dict = {}
"""``(function, config, lo, hi)`` -> ``function(config, arange(lo, hi + 1))``
(:func:`elementwise`)."""
MAX_TABLES = 4096
"""The table cache is emptied when it holds this many (one per layer and operator in a model)."""


def elementwise(function, config, x, lo: int, hi: int):
    """``function(config, x)`` for a function that acts on each integer of ``x`` alone, with
    ``x`` in ``[lo, hi]``: through a table of its values at every integer of ``[lo, hi]``
    (built once per config), ``table[x - lo]``, when ``x`` is a plain int64 ndarray with more
    elements than the table. The table holds ``function``'s own outputs, so the result is
    ``function(config, x)`` exactly, computed once per code instead of once per element.

    Anything else runs ``function(config, x)`` itself: a smaller input, another type or dtype, an
    ndarray subclass (the tests' integer-only trap, which must see the arithmetic), values
    outside ``[lo, hi]`` (the function raises its own error), an unhashable config."""
    if (type(x) is not np.ndarray or x.dtype != np.int64 or x.size <= hi - lo + 1
            or x.min() < lo or x.max() > hi):
        return function(config, x)
    table = code_table(function, config, lo, hi)
    if table is None:  # an unhashable config
        return function(config, x)
    return table[x - lo]


def _cached(key, make):
    """``_TABLES[key]``, made by ``make()`` the first time; ``None`` for an unhashable key (an
    unhashable config)."""
    try:
        table = _TABLES.get(key)
    except TypeError:
        return None
    if table is None:
        if len(_TABLES) >= MAX_TABLES:
            _TABLES.clear()
        table = _TABLES[key] = make()
    return table


def code_table(function, config, lo: int, hi: int):
    """``function(config, arange(lo, hi + 1))`` as an int64 array, built once per
    ``(function, config, lo, hi)`` and kept (the table :func:`elementwise` looks up); ``None``
    for an unhashable config."""
    return _cached((function, config, lo, hi), lambda: np.asarray(
        function(config, np.arange(lo, hi + 1, dtype=np.int64))))


def float_table(function, config, lo: int, hi: int, dtype):
    """The table of :func:`code_table` as ``dtype`` (``table[v - lo]`` is ``function(config,
    v)``), made once and kept; ``None`` for an unhashable config. For the float-code paths
    (issue 15): raises if ``dtype`` does not hold every value exactly."""
    def make():
        values = code_table(function, config, lo, hi)
        table = values.astype(dtype)
        if not np.array_equal(table.astype(values.dtype), values):
            raise ValueError(f"float_table: {np.dtype(dtype)} does not hold the table exactly")
        return table
    return _cached(("float", function, config, lo, hi, np.dtype(dtype).str), make)


def round_half_up_shift(x: np.ndarray, shift: int) -> np.ndarray:
    """``round(x / 2**shift)`` with ties towards +inf: ``(x + 2**(shift-1)) >> shift``.

    ``shift = 0`` returns ``x``. The adder is one bit wider than ``x``.
    """
    if shift == 0:
        return x
    return (x + (1 << (shift - 1))) >> shift


def check_int(owner: str, field: str, value, lo: int, hi: int, hint: str = "") -> None:
    """Raise :class:`ConfigError` unless ``value`` is an int in ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        extra = f"; {hint}" if hint else ""
        raise ConfigError(f"{owner}: {field} must be an integer in {lo}..{hi} (got {value!r}){extra}")


def check_scale(owner: str, field: str, value) -> float:
    """Raise :class:`ConfigError` unless ``value`` is a finite, positive real; return it."""
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{owner}: {field} must be a real number (got {value!r})") from None
    if not np.isfinite(scale) or scale <= 0.0:
        raise ConfigError(f"{owner}: {field} must be finite and > 0 (got {value!r}); "
                          "check the calibration statistics")
    return scale
