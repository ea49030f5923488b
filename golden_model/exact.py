"""Exact integer matrix products through a float BLAS (issue 15).

numpy's ``@`` on int64 arrays has no BLAS kernel: a DeiT-Tiny forward spends most of its time
there. :func:`exact_matmul` computes the same int64 product with a float32 or float64 GEMM
whenever a bound proves that the float GEMM cannot round:

**Why it is exact.** Let ``K`` be the inner dimension, ``A >= max|a|`` and ``B >= max|b|``, and
``p`` the float format's significand width (24 for float32, 53 for float64). Every integer of
magnitude at most ``2**p`` is a float of that format. If ``K * A * B < 2**p``, then every
operand (``|a| <= A``, ``|b| <= B``, each at most ``K A B`` when the other bound is >= 1), every
product ``a_ik b_kj`` (``|.| <= A B``) and every sum of any subset of the ``K`` products of one
output (``|.| <= K A B``) is an integer below ``2**p`` in magnitude, hence a float. IEEE
arithmetic rounds correctly, so an operation (multiply, add, or a fused multiply-add) whose
operands are floats and whose exact result is a float returns that exact result. A GEMM forms
each output by such operations on the products of one row and column, in whatever order,
blocking, vector-lane split or FMA use it likes; by induction every intermediate is an exact
partial sum, and so is the output. (This holds for every classical GEMM, which is what BLAS
libraries run; it would not hold for a Strassen-type algorithm, which none of them uses for
these shapes, nor for reduced-precision modes such as TF32 or bfloat16, which numpy never
uses.) If ``A`` or ``B`` is 0 every product is an exact 0, whatever the other operand.

**When no single format fits.** ``K`` is split into chunks of ``c`` columns with
``c * A * B < 2**p``; each chunk's product is exact as above and the chunk results are added in
int64. Integer addition is associative modulo ``2**64``, so the sum equals numpy's int64
product bit for bit, also where that product wraps around. If not even one column fits
(``A * B >= 2**53``), the product is numpy's int64 ``@``.

Bounds are the measured max-abs of each operand unless the caller passes a proven bound (a
layer's weights, cached at build time). Operands that are ndarray subclasses (the tests'
integer-only trap, ``tests/integer_trap.py``) keep numpy's int64 ``@``: a subclass may define
its own arithmetic, which a float copy would bypass, so the integer-only proof covers the int64
path and the argument above covers the float path.

**Requantizing the float product.** :func:`exact_requant_product` goes one step further: the
per-channel dyadic requantizer that follows a GEMM runs in float64 on the float GEMM output
(:class:`FloatRequant`, whose docstring states its bounds), with no int64 round trip in between;
where a bound fails it declines and the caller runs the int64 requantizer on the int64 product.
:func:`int64_requantizers` turns only this step off, :func:`int64_products` both.

**Float codes.** The integer ViT's fast forward (:func:`fast_codes`) carries its activation
codes as *float codes* (:func:`float_codes`): float32 or float64 arrays holding the integer
codes, which are at most 16 bits wide and hence exact in either format. :class:`FloatRequant`
returns them (``codes``), :func:`float_gemm`, :func:`exact_requant_product` and
:func:`exact_requant` accept them as the integers they hold (the bounds above are unchanged), so
a code goes from one requantizer to the next GEMM without an int64 round trip; the operators'
``fast_run`` (:class:`~.operator.Operator`) read and return them likewise.
"""
from contextlib import contextmanager

import numpy as np
import torch

from .integer import signed_range

FLOAT32_EXACT = 1 << 24
"""Integers of magnitude below this are exact float32 values and sums (24-bit significand)."""
FLOAT64_EXACT = 1 << 53
"""Integers of magnitude below this are exact float64 values and sums (53-bit significand)."""
FLOAT32_MIN_CHUNK = 256
"""Split ``K`` into float32 chunks only when every chunk has at least this many columns; below
that, one float64 GEMM is faster (float32 GEMMs run about twice as fast as float64 ones here)."""


_FLOAT_PATH = [True]
"""Whether :func:`exact_matmul` may take a float path (see :func:`int64_products`)."""


@contextmanager
def int64_products():
    """Within this context :func:`exact_matmul` is numpy's int64 ``@`` everywhere: the plain
    integer reference that tests and benchmarks compare the float paths with."""
    previous = _FLOAT_PATH[0]
    _FLOAT_PATH[0] = False
    try:
        yield
    finally:
        _FLOAT_PATH[0] = previous


def max_abs(x: np.ndarray) -> int:
    """``max |x|`` as a Python int (no overflow at the most negative int64); 0 when empty."""
    if x.size == 0:
        return 0
    if type(x) is np.ndarray and x.dtype.type in _TORCH_TYPES and x.size >= 1 << 16:
        low, high = torch.aminmax(torch.from_numpy(x))  # one multithreaded pass
        return max(-int(low), int(high))
    return max(-int(x.min()), int(x.max()))


def is_plain(*arrays) -> bool:
    """True when every operand is a base-class ``np.ndarray`` (not a subclass such as the
    integer-only trap), so that :func:`exact_matmul` may take its float path."""
    return all(type(array) is np.ndarray for array in arrays)


def exact_matmul(a: np.ndarray, b: np.ndarray, a_max: int | None = None,
                 b_max: int | None = None) -> np.ndarray:
    """``a @ b`` of integer arrays (numpy ``matmul`` shapes and broadcasting) as int64, equal to
    numpy's int64 product bit for bit, through a float BLAS GEMM where the module docstring's
    bound proves it exact:

    - float32 when ``K * A * B < 2**24``,
    - float64 when ``K * A * B < 2**53`` (or float32 chunks of at least
      :data:`FLOAT32_MIN_CHUNK` columns with ``c * A * B < 2**24``, added in int64, when that
      takes at most two chunks),
    - float64 chunks with ``c * A * B < 2**53`` added in int64 otherwise,
    - numpy's int64 ``@`` when ``A * B >= 2**53``, an operand is not a plain ndarray, or
      inside :func:`int64_products`,

    with ``K = a.shape[-1]``, ``A = a_max`` and ``B = b_max`` (the measured max-abs when
    ``None``; a given bound must hold, else the result is not exact)."""
    if not (_FLOAT_PATH[0] and is_plain(a, b)):
        return a @ b
    if a.dtype.kind not in "iu" or b.dtype.kind not in "iu":
        raise TypeError(f"exact_matmul needs integer arrays (got {a.dtype} and {b.dtype})")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("exact_matmul: operands must have at least one dimension (as matmul)")
    bound_a = max_abs(a) if a_max is None else int(a_max)
    bound_b = max_abs(b) if b_max is None else int(b_max)
    term = bound_a * bound_b
    depth = a.shape[-1]
    if depth * term < FLOAT32_EXACT:
        return _float_product(a, b, np.float32)
    if term >= FLOAT64_EXACT:
        return a.astype(np.int64, copy=False) @ b.astype(np.int64, copy=False)
    chunk32 = (FLOAT32_EXACT - 1) // term
    if chunk32 >= FLOAT32_MIN_CHUNK and -(-depth // chunk32) <= 2:
        return _chunked_product(a, b, np.float32, chunk32)
    if depth * term < FLOAT64_EXACT:
        return _float_product(a, b, np.float64)
    return _chunked_product(a, b, np.float64, (FLOAT64_EXACT - 1) // term)


def _float_product(a: np.ndarray, b: np.ndarray, dtype) -> np.ndarray:
    """``a @ b`` computed in ``dtype`` and returned as int64 (exact under the caller's bound).

    The GEMM is torch's (the float model's BLAS and thread pool: numpy's OpenBLAS threads and
    torch's OpenMP threads in one process slow each other down several times on a small
    machine). A float32 GEMM goes to numpy when torch's float32 matmul precision is not
    ``"highest"``, where torch may compute it in reduced precision (TF32, bfloat16)."""
    if dtype == np.float32 and torch.get_float32_matmul_precision() != "highest":
        return np.matmul(a.astype(dtype), b.astype(dtype)).astype(np.int64)
    product = torch.matmul(torch.from_numpy(a.astype(dtype)), torch.from_numpy(b.astype(dtype)))
    return product.numpy().astype(np.int64)  # numpy converts several times faster than torch


def _chunked_product(a: np.ndarray, b: np.ndarray, dtype, chunk: int) -> np.ndarray:
    """``sum_j a[..., K_j] @ b[..., K_j, :]`` over chunks ``K_j`` of ``chunk`` columns, each
    computed in ``dtype`` and added in int64. A 1-D ``b`` (a vector) is treated as numpy does."""
    depth = a.shape[-1]
    total = None
    for start in range(0, depth, chunk):
        stop = min(start + chunk, depth)
        rows = b[start:stop] if b.ndim == 1 else b[..., start:stop, :]
        part = _float_product(a[..., start:stop], rows, dtype)
        total = part if total is None else np.add(total, part, out=total)
    return total


# --- Requantization on the float GEMM output (issue 15) ------------------------------------------

_FLOAT_REQUANT = [True]
"""Whether :func:`exact_linear` may requantize in float64 (see :func:`int64_requantizers`)."""


@contextmanager
def int64_requantizers():
    """Within this context :func:`exact_linear` and :func:`exact_requant_product` return ``None``
    (their callers then take the int64 requantizer on the int64 GEMM result), while
    :func:`exact_matmul` keeps its float GEMMs: the reference that isolates the float64
    requantizer. :func:`int64_products` turns both off."""
    previous = _FLOAT_REQUANT[0]
    _FLOAT_REQUANT[0] = False
    try:
        yield
    finally:
        _FLOAT_REQUANT[0] = previous


def float_gemm(a: np.ndarray, b: np.ndarray, a_max: int | None = None,
               b_max: int | None = None):
    """``(product, bound)``: ``a @ b`` as a float32 or float64 torch tensor holding the exact
    integer product, and ``bound = K * A * B >= max |a @ b|``; ``None`` where
    :func:`exact_matmul` would not take a single float format (``K * A * B >= 2**53``), an
    operand is not a plain integer ndarray, or inside :func:`int64_products`.

    Same bounds as :func:`exact_matmul`: float32 when ``K A B < 2**24``; two float32 chunks
    (each ``c A B < 2**24``, so each chunk's result is exact) added in float64, whose sum is an
    integer of magnitude ``<= K A B < 2**53`` and hence exact; float64 when ``K A B < 2**53``."""
    if not (_FLOAT_PATH[0] and is_plain(a, b)) or not _code_operands(a, b) \
            or a.ndim == 0 or b.ndim == 0:
        return None
    bound_a = max_abs(a) if a_max is None else int(a_max)
    bound_b = max_abs(b) if b_max is None else int(b_max)
    term = bound_a * bound_b
    depth = a.shape[-1]
    bound = depth * term
    if bound < FLOAT32_EXACT:
        return _float_array_product(a, b, np.float32), bound
    if bound >= FLOAT64_EXACT:
        return None
    chunk32 = (FLOAT32_EXACT - 1) // term
    if chunk32 >= FLOAT32_MIN_CHUNK and -(-depth // chunk32) <= 2 and b.ndim > 1:
        first = _float_array_product(a[..., :chunk32], b[..., :chunk32, :], np.float32)
        total = first.double()
        total += _float_array_product(a[..., chunk32:], b[..., chunk32:, :], np.float32)
        return total, bound
    return _float_array_product(a, b, np.float64), bound


def float_codes(x) -> bool:
    """Whether ``x`` is an array of *float codes*: a plain float32 or float64 ndarray that holds
    integer codes (of magnitude below ``2**24`` for float32), the form in which the integer ViT's
    fast forward passes activation codes from a requantizer to the next GEMM (issue 15). Every
    producer of float codes (:class:`FloatRequant` with ``codes=True``, the operators'
    ``fast_run``) makes integers by construction; the functions here that accept them take the
    values as the integers they are."""
    return type(x) is np.ndarray and x.dtype.type in (np.float32, np.float64)


def as_codes(y: np.ndarray, codes) -> np.ndarray:
    """Integer codes ``y`` (at most 24 bits) as the float codes ``codes`` asks for: float32
    (``True``) or float64 (``np.float64``); ``y`` itself when ``codes`` is false."""
    if not codes:
        return y
    return y.astype(np.float64 if codes is np.float64 else np.float32)


def _code_operands(*arrays) -> bool:
    """Every operand an integer array or float codes (:func:`float_codes`)."""
    return all(x.dtype.kind in "iu" or float_codes(x) for x in arrays)


def _float_array_product(a: np.ndarray, b: np.ndarray, dtype) -> torch.Tensor:
    """``a @ b`` computed in ``dtype`` (exact under the caller's bound), as a float torch
    tensor; the GEMM as in :func:`_float_product`."""
    if dtype == np.float32 and torch.get_float32_matmul_precision() != "highest":
        return torch.from_numpy(np.matmul(a.astype(dtype, copy=False),
                                          b.astype(dtype, copy=False)))
    kind = torch.float32 if dtype == np.float32 else torch.float64
    return torch.matmul(_as_float_tensor(a, kind), _as_float_tensor(b, kind))


_TORCH_INTS = (np.int8, np.int16, np.int32, np.int64, np.uint8)
"""Integer dtypes that ``torch.from_numpy`` takes."""
_TORCH_TYPES = _TORCH_INTS + (np.float32, np.float64)


def _as_float_tensor(x: np.ndarray, kind) -> torch.Tensor:
    """``x`` (integers of magnitude below the format's exact bound, which the caller proved)
    converted to a float tensor: torch converts several times faster than numpy's ``astype``
    here (multithreaded); other dtypes go through numpy."""
    if x.dtype.type in _TORCH_TYPES:  # float codes: integers, exact in either format
        return torch.from_numpy(x).to(kind)
    return torch.from_numpy(x.astype(np.float32 if kind == torch.float32 else np.float64))


class FloatRequant:
    """A per-channel dyadic requantizer ``y = clamp((acc*m + 2**(e-1)) >> e, lo, hi)`` (the
    :class:`~.ops.requant.ChannelRequant` semantics: round half up, ``2**(e-1)`` read as 0 when
    ``e = 0``, saturation to signed ``out_bits``) evaluated in float64 on an accumulator that a
    float GEMM produced, equal to the int64 evaluation bit for bit:

        y = clamp(floor(acc * r + h), lo, hi),   r = m * 2**-e,   h = 2**(e-1) * 2**-e

    **Why it is exact.** ``r`` is ``m`` (below ``2**31``) times a power of two: a float64, and
    ``h`` is 0.5 or 0. Per channel let ``X`` be the largest integer with
    ``X * m + 2**(e-1) < 2**53`` (negative when ``e >= 54``: such a channel is never exact
    here, and the requantizer declines), ``acc_hi`` the smallest accumulator whose exact output
    reaches ``hi``, ``acc_lo`` the largest whose output is at most ``lo`` (all three computed in
    Python integers), and ``T = max(|acc_lo|, |acc_hi|)``. A call with accumulators bounded by
    ``B`` (``max |acc| <= B``) is exact when every channel has ``T <= X`` or ``B <= X``
    (:attr:`limit` is the least ``X`` of the channels with ``T > X``; ``m = 0`` channels have
    ``X`` infinite: their output is 0). If ``B <= X``, every accumulator of the channel is in
    the exact range below. If ``T <= X``,
    for every integer ``|acc| <= T``: ``acc * m`` and ``acc * m + 2**(e-1)`` are integers
    below ``2**53`` in magnitude, so ``acc * r`` and ``acc * r + h`` are those integers times
    ``2**-e`` -- float64 values (no underflow: ``e <= 62``) -- and correctly rounded IEEE
    multiplication and addition return them exactly; ``floor`` then is the exact arithmetic shift.
    For ``acc`` beyond ``[acc_lo, acc_hi]`` the float result may round, but rounding to nearest is
    monotone, so ``floor(fl(fl(acc * r) + h))`` is monotone in ``acc`` and lies at or beyond its
    exact value at ``acc_hi`` (``>= hi``) or ``acc_lo`` (``<= lo``), which the clamp maps to ``hi``
    or ``lo``, the exact output. The accumulator itself must be an exact float64 integer:
    :meth:`__call__` requires ``bound + max|bias| < 2**31`` (``bound`` the GEMM's proven
    ``max |a @ b|``), so the float GEMM result is exact (:func:`float_gemm`), its float64 copy is
    exact, the bias add is an exact integer sum below ``2**31 < 2**53``, and the int64
    requantizer's int32 check could not fail; otherwise it declines.

    Where ``B = bound + max|bias|`` is at most every channel's ``X``, the bias is folded into the
    constant: ``acc * r + (bias * r + h)``, all three terms and the sum being integers of
    magnitude below ``2**53`` times ``2**-e`` (``|acc|, |bias| <= B <= X``), hence exact.
    The element-wise steps are torch's in-place float64 ``mul_``, ``add_``, ``floor_`` and
    ``clamp_`` (separate IEEE operations, multithreaded; values far above the subnormal range),
    then a conversion to int64 of integers already in ``[lo, hi]``."""

    def __init__(self, requant):
        lo, hi = signed_range(requant.out_bits)
        self.lo, self.hi = lo, hi
        self.limit = None  # no channel needs a bound on the accumulators
        self.all_exact = None  # the least X (None: every multiplier is 0)
        scales, halves = [], []
        for m, e in zip(requant.multipliers, requant.shifts):
            m, e = int(m), int(e)
            rounding = (1 << e) >> 1
            if m:
                exact_range = (FLOAT64_EXACT - 1 - rounding) // m  # X
                self.all_exact = exact_range if self.all_exact is None else min(self.all_exact,
                                                                                exact_range)
                acc_hi = -((rounding - (hi << e)) // m)
                acc_lo = (((lo + 1) << e) - rounding - 1) // m
                if max(abs(acc_hi), abs(acc_lo)) > exact_range:
                    self.limit = exact_range if self.limit is None else min(self.limit,
                                                                            exact_range)
            scales.append(np.ldexp(np.float64(m), -e))
            halves.append(np.ldexp(np.float64(rounding), -e))
        self.scale = np.array(scales, dtype=np.float64)
        self.half = np.array(halves, dtype=np.float64)
        if np.all(self.half == self.half[0]):
            self.half = self.half[0]
        self._scale = torch.from_numpy(self.scale)
        self._half = self.half if np.ndim(self.half) == 0 else torch.from_numpy(self.half)

    def usable(self, bound: int) -> bool:
        """Whether accumulators with ``max |acc| <= bound`` requantize exactly here."""
        return bound < 1 << 31 and (self.limit is None or bound <= self.limit)

    def __call__(self, acc, bound: int, bias: np.ndarray | None = None,
                 bias_max: int | None = None, codes=False):
        """int64 output codes (an ndarray) of ``acc (+ bias)``, ``acc`` an exact float32 or
        float64 integer torch tensor or ndarray with ``max |acc| <= bound`` (a float64 ``acc``
        is overwritten; element-wise work in torch, in place); ``None`` (the caller takes the
        int64 path) when
        ``B = bound + max|bias|`` exceeds :attr:`limit` or may leave int32 (the int64
        requantizer then checks the accumulator and raises). ``codes``: the same codes as
        float codes (:func:`float_codes`; ``|y| <= 2**15``, exact) instead of int64, float32
        (``True``) or float64 (``np.float64``)."""
        acc = torch.as_tensor(acc)
        if not acc.is_floating_point():
            acc = acc.double()  # integers below 2**31: exact
        if bias is not None and bias_max is None:
            bias_max = max_abs(bias)
        total = bound + (bias_max if bias is not None else 0)
        if not self.usable(total):
            return None
        if self.all_exact is None or total <= self.all_exact:
            # Every |acc| and |bias| is at most total <= X of every channel: acc * r,
            # bias * r + h and their sum ((acc + bias) * m + 2**(e-1)) * 2**-e are integers below
            # 2**53 times 2**-e, float64 values, so each operation returns them exactly.
            offset = self._half if bias is None else \
                torch.from_numpy(bias * self.scale + self.half)
            y = acc.double()  # a copy of float32; float64 itself (then overwritten)
            y.mul_(self._scale)
            y.add_(offset)
        else:  # the saturation argument: acc + bias exact first, then as in the docstring
            y = acc.double()
            if bias is not None:
                y.add_(torch.from_numpy(bias))  # integers below 2**31 in magnitude: exact
            y.mul_(self._scale)
            y.add_(self._half)
        y.floor_()
        y.clamp_(self.lo, self.hi)
        if codes is np.float64:
            return y.numpy()
        return y.to(torch.float32 if codes else torch.int64).numpy()


_REQUANT_PLANS: dict = {}
"""``ChannelRequant -> FloatRequant`` (the requantizers are frozen, hashable dataclasses)."""


def float_requant(requant) -> FloatRequant:
    plan = _REQUANT_PLANS.get(requant)
    if plan is None:
        if len(_REQUANT_PLANS) >= 4096:
            _REQUANT_PLANS.clear()
        plan = _REQUANT_PLANS[requant] = FloatRequant(requant)
    return plan


def exact_requant_product(requant, a: np.ndarray, b: np.ndarray, bias: np.ndarray | None = None,
                          a_max: int | None = None, b_max: int | None = None,
                          bias_max: int | None = None, codes=False):
    """``requant(a @ b + bias)`` as int64 codes, equal bit for bit to the int64 requantizer on
    numpy's int64 product: the GEMM by :func:`float_gemm`, the requantizer by
    :class:`FloatRequant` on its float result. ``None`` where either declines (a bound fails,
    a subclass operand such as the integer-only trap, inside :func:`int64_products` or
    :func:`int64_requantizers`): the caller then runs the int64 requantizer itself. ``a_max``,
    ``b_max`` and ``bias_max`` are bounds on the max-abs of ``a``, ``b`` and ``bias`` (measured
    when ``None``; a given bound must hold, else the result is not exact). Operands may be float
    codes (:func:`float_codes`); ``codes`` returns float codes (:meth:`FloatRequant.__call__`)."""
    if not (_FLOAT_REQUANT[0] and _FLOAT_PATH[0] and is_plain(a, b)) or a.ndim == 0 \
            or b.ndim == 0 or not _code_operands(a, b):
        return None
    plan = float_requant(requant)
    a_max = max_abs(a) if a_max is None else int(a_max)
    b_max = max_abs(b) if b_max is None else int(b_max)
    if bias is None:
        bias_max = 0
    elif bias_max is None:
        bias_max = max_abs(bias)
    if not plan.usable(a.shape[-1] * a_max * b_max + bias_max):
        return None  # decided before the GEMM, which the caller then runs in int64
    product = float_gemm(a, b, a_max, b_max)
    if product is None:
        return None
    return plan(product[0], product[1], bias, bias_max, codes)


def exact_requant(requant, acc: np.ndarray, bound: int | None = None, codes=False):
    """``requant(acc)`` of an integer array as int64 codes by :class:`FloatRequant` (``acc``
    converted to float64, exact since ``|acc| <= bound < 2**31``), equal bit for bit to the
    int64 requantizer; ``bound`` (``>= max |acc|``) is measured when ``None``. ``None`` where it
    declines (a bound fails, a subclass operand such as the integer-only trap, inside
    :func:`int64_products` or :func:`int64_requantizers`). ``acc`` may be float codes
    (:func:`float_codes`); ``codes`` returns float codes (:meth:`FloatRequant.__call__`)."""
    if not (_FLOAT_REQUANT[0] and _FLOAT_PATH[0] and is_plain(acc)) \
            or not _code_operands(acc):
        return None
    plan = float_requant(requant)
    bound = max_abs(acc) if bound is None else int(bound)
    if not plan.usable(bound):
        return None
    tensor = torch.from_numpy(acc)
    if tensor.dtype == torch.float64:  # the plan overwrites a float64 accumulator
        tensor = tensor.clone()
    return plan(tensor, bound, codes=codes)


def fast_codes(x) -> bool:
    """Whether the integer ViT's forward on ``x`` may carry its activations as float codes
    (:func:`float_codes`): a plain ndarray (not the integer-only trap) outside
    :func:`int64_products` and :func:`int64_requantizers`."""
    return _FLOAT_REQUANT[0] and _FLOAT_PATH[0] and is_plain(x)
