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
"""
from contextlib import contextmanager

import numpy as np
import torch

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
