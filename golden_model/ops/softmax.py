"""Integer softmax candidates over the last axis: Bit-exp (ours, for IPTQ-ViT), I-ViT Shiftmax,
I-BERT i-exp softmax and FQ-ViT Log-Int-Softmax.

Shared interface (every candidate):

- Input: signed ``in_bits`` (2..16) codes ``q`` of the attention scores, real value ``q * in_scale``.
  A row is the last axis; any leading shape; row length ``1 .. max_row`` (a config field, so the
  hardware can size its row buffer); a longer row is a one-line :class:`IntvitError`.
- Step 1 of every method: ``d = q - max_row(q)`` (``in_bits + 1``-bit signed, ``d <= 0``).
- Output of ``iptq``/``ivit``/``ibert``: unsigned ``out_bits`` codes ``y``, probability
  ``y / 2**out_bits``, saturated at ``2**out_bits - 1``. Normalization is one integer reciprocal
  per row, ``f = floor(N / sum)`` (the floor quotient a restoring divider produces), then
  ``y = (e * f) >> shift``, rounded as each method states.
- Output of ``fqvit``: the log2 code ``k`` (probability ``2**-k``; the top code means 0).

Widths: each config states ``exp_max`` (the largest exponential), ``sum_bits`` (width of the
worst-case row sum ``max_row * exp_max``) and ``quotient_bits`` (divider output). ``run`` is int64
numpy: every config refuses constants whose worst case exceeds ``2**62``.

Precision constants are derived from ``in_scale`` and the bit widths (``from_scale``); the papers'
fixed values are the ``published`` presets (REFERENCE_KERNELS.md, "derive them").
"""
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

import numpy as np

from ..errors import ConfigError, IntvitError
from ..integer import (as_int_array, check_int, check_scale, clamp, round_half_up_shift,
                       signed_range)
from ..operator import Operator

MAX_ROW_LIMIT = 1 << 16
"""Largest ``max_row`` a config accepts (a ViT attention row is 197..1025 tokens)."""
MIN_SCALE = 2.0 ** -16
MAX_SCALE = 1.0
"""``in_scale`` range: below 2**-16 the derived constants (``1/S``, ``1/S**2``) leave int64 room
for nothing; above 1 an 8-bit score cannot resolve the exponential at all."""
GUARD_BITS = 4
"""Extra bits kept below the output LSB by the derived widths: each rounding step then adds at
most ``2**-4`` LSB."""
INT64_BITS = 62
"""Worst-case sums and products of the golden model must stay below ``2**62`` (int64)."""


# ---------------------------------------------------------------------------------------------
# shared pieces


def _ceil_log2(n: int) -> int:
    return (n - 1).bit_length()


def _check_common(owner: str, in_bits, out_bits, max_row, in_scale, out_max: int = 16) -> float:
    check_int(owner, "in_bits", in_bits, 2, 16)
    check_int(owner, "out_bits", out_bits, 2, out_max)
    check_int(owner, "max_row", max_row, 1, MAX_ROW_LIMIT, "the longest row the unit accepts")
    scale = check_scale(owner, "in_scale", in_scale)
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise ConfigError(f"{owner}: in_scale must be in 2**-16..1 (got {in_scale!r}); "
                          "requantize the attention scores to a usable grid")
    return scale


def _check_fits(owner: str, field: str, bits: int, limit: int, hint: str) -> None:
    if bits > limit:
        raise ConfigError(f"{owner}: {field} is {bits} bits, above the {limit}-bit limit; {hint}")


def _row_offsets(cfg, q, name: str) -> np.ndarray:
    """``d = q - max_row(q)`` after checking type, shape, row length and input range."""
    q = as_int_array(q, f"{name} input")
    if q.ndim == 0 or q.shape[-1] == 0:
        raise IntvitError(f"{name}: input must have rows (last axis) of length >= 1 "
                          f"(got shape {q.shape})")
    if q.shape[-1] > cfg.max_row:
        raise IntvitError(f"{name}: row length {q.shape[-1]} exceeds max_row {cfg.max_row} of "
                          "the config; build the config with a larger max_row")
    lo, hi = signed_range(cfg.in_bits)
    if q.min() < lo or q.max() > hi:
        raise IntvitError(f"{name}: input codes must be signed {cfg.in_bits}-bit ({lo}..{hi}), "
                          f"got {int(q.min())}..{int(q.max())}; requantize the scores first")
    return q - q.max(axis=-1, keepdims=True)


def _normalize(e: np.ndarray, total: np.ndarray, numerator: int, shift: int, out_bits: int,
               rounded: bool) -> np.ndarray:
    """``clamp((e * floor(numerator / total)) >> shift, 0, 2**out_bits - 1)``; ``rounded`` adds
    ``2**(shift-1)`` before the shift (round half up), else the shift floors."""
    factor = numerator // total
    product = e * factor
    y = round_half_up_shift(product, shift) if rounded else product >> shift
    return clamp(y, 0, (1 << out_bits) - 1)


def _row_sum(e: np.ndarray) -> np.ndarray:
    return e.sum(axis=-1, keepdims=True)


def softmax_reference(cfg, x) -> np.ndarray:
    """The real function every candidate approximates: softmax over the last axis of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _probability(cfg, y) -> np.ndarray:
    return np.asarray(y, dtype=np.float64) / float(1 << cfg.out_bits)


def log2e_shift_add(d: np.ndarray) -> np.ndarray:
    """I-ViT's ``d * log2(e)`` with ``log2(e) ~ (1.0111)_2 = 1.4375``: ``d + (d>>1) - (d>>4)``
    (two floor shifts; I-ViT Sec. 3.3, reference ``int_exp_shift``)."""
    return d + (d >> 1) - (d >> 4)


def log2e_times16(d: np.ndarray) -> np.ndarray:
    """``16 * 1.4375 * d = 23 * d`` exactly, as ``(d<<4) + (d<<3) - d``: the same (1.0111)_2
    constant as :func:`log2e_shift_add` without its two floor errors (4 fraction bits kept)."""
    return (d << 4) + (d << 3) - d


# ---------------------------------------------------------------------------------------------
# softmax/iptq: Bit-exp (intvit's definition)

BIT_EXP_COEFFS = (Fraction(1) - Fraction(1, 1 << 9) - Fraction(1, 1 << 10),
                  -(Fraction(1, 2) + Fraction(1, 8) + Fraction(1, 32)),
                  Fraction(1, 8) + Fraction(1, 32) + Fraction(1, 1 << 9))
"""``2**-f ~ c0 + c1*f + c2*f**2`` on ``f in [0, 1)``: each coefficient a sum of three powers of
two (``1 - 2**-9 - 2**-10``, ``-(2**-1 + 2**-3 + 2**-5)``, ``2**-3 + 2**-5 + 2**-9``), chosen by
exhaustive search over such sums (exponents 0..-12) for least max relative error: 0.293 %
(I-ViT's ``1 - f/2``: 6.1 %). intvit's definition (PAPERS.md Sec. 1)."""
BIT_EXP_COEFF_FRAC_BITS = 10
"""The finest power of two in :data:`BIT_EXP_COEFFS`; ``exp_bits`` is at least this."""
BIT_EXP_FRAC_BITS = 12
"""``F``: fraction bits of the base-2 exponent; quantizing it costs at most ``ln2 * 2**-12``
= 0.017 % relative error."""
BIT_EXP_MULT_BITS = 16
"""The scale multiplier ``R`` has 16 significant bits (relative error <= 2**-16)."""


@dataclass(frozen=True)
class BitExpSoftmaxConfig:
    """Bit-exp softmax, intvit's definition of IPTQ-ViT's "Efficient Bit-exp" (PAPERS.md Sec. 1:
    the paper's formula was not available; this algorithm is ours).

    Per row, with ``d = q - max(q) <= 0``:

    1. ``u = round(-23*d * R / 2**s)`` (half up): the base-2 exponent ``-d*S*log2(e)`` with
       ``F = frac_bits`` fraction bits. ``23*d = 16 * (1.0111)_2 * d`` by shifts and adds (I-ViT's
       log2(e) constant, kept exact); ``R = round(S * 2**(F - 4 + s))`` (``scale_mult``, 16
       significant bits), ``s = scale_shift``.
    2. ``k = min(u >> F, exp_bits + 1)``, ``f = u & (2**F - 1)``: integer part and fraction are
       bit fields (no divider).
    3. ``p = C0 + ((C1 + (C2*f >> F)) * f >> F)``: ``2**-f`` in ``2**-exp_bits`` units, with
       ``Ci = ci * 2**exp_bits`` from :data:`BIT_EXP_COEFFS` (``C2*f`` is shift-add; one
       multiplier). Floor shifts; each adds at most one unit.
    4. ``e = p >> k`` (0 once ``k > exp_bits``; no floor value for tiny elements).
    5. ``f_row = floor(2**recip_bits / sum(e))``; ``y = round((e * f_row) / 2**(recip_bits -
       out_bits))`` half up, saturated at ``2**out_bits - 1`` (a row of one element gives 1.0).

    Derived widths: ``exp_bits = max(10, ceil(log2 max_row) + out_bits + 4)`` (the floors of
    step 4 then move a row's sum by at most ``2**-(out_bits+4)`` of it);
    ``recip_bits = exp_bits + out_bits + 4`` (``f_row >= 2**(out_bits+3)``, its floor costs
    < ``2**-4`` LSB). Worst cases: ``e <= exp_max = C0 < 2**exp_bits``; the row sum is
    ``<= max_row * exp_max`` (``sum_bits``); ``f_row <= 2**recip_bits / C0`` (``quotient_bits``);
    ``e * f_row <= 2**recip_bits``.
    """

    in_bits: int
    out_bits: int
    max_row: int
    frac_bits: int
    scale_mult: int
    scale_shift: int
    exp_bits: int
    coef0: int
    coef1: int
    coef2: int
    recip_bits: int
    in_scale: float

    OP_NAME: ClassVar[str] = "softmax/iptq"
    in_signed: ClassVar[bool] = True
    out_signed: ClassVar[bool] = False

    def __post_init__(self):
        owner = type(self).__name__
        _check_common(owner, self.in_bits, self.out_bits, self.max_row, self.in_scale)
        check_int(owner, "frac_bits", self.frac_bits, 1, 16)
        check_int(owner, "scale_mult", self.scale_mult, 1, (1 << (BIT_EXP_MULT_BITS + 1)) - 1)
        check_int(owner, "scale_shift", self.scale_shift, 0, 40)
        check_int(owner, "exp_bits", self.exp_bits, BIT_EXP_COEFF_FRAC_BITS, 40)
        one = 1 << self.exp_bits
        check_int(owner, "coef0", self.coef0, one // 2, one, "2**-f at f = 0 is 1.0")
        check_int(owner, "coef1", self.coef1, -one, 0, "2**-f falls with f")
        check_int(owner, "coef2", self.coef2, 0, one)
        check_int(owner, "recip_bits", self.recip_bits, self.exp_bits, INT64_BITS)
        _check_fits(owner, "sum_bits", self.sum_bits, INT64_BITS, "lower max_row or exp_bits")

    @classmethod
    def from_scale(cls, in_scale: float, in_bits: int = 8, out_bits: int = 8,
                   max_row: int = 1024) -> "BitExpSoftmaxConfig":
        """Derive every constant from ``in_scale`` and the widths (see the class docstring)."""
        scale = _check_common(cls.__name__, in_bits, out_bits, max_row, in_scale)
        frac = BIT_EXP_FRAC_BITS
        target = Fraction(scale) * 2 ** (frac - 4)  # R / 2**s, exactly
        shift = 0
        while math.floor(target * 2 ** shift + Fraction(1, 2)) < 1 << (BIT_EXP_MULT_BITS - 1):
            shift += 1
        mult = math.floor(target * 2 ** shift + Fraction(1, 2))
        exp_bits = max(BIT_EXP_COEFF_FRAC_BITS, _ceil_log2(max_row) + out_bits + GUARD_BITS)
        coef0, coef1, coef2 = (int(c * 2 ** exp_bits) for c in BIT_EXP_COEFFS)
        return cls(in_bits=in_bits, out_bits=out_bits, max_row=max_row, frac_bits=frac,
                   scale_mult=mult, scale_shift=shift, exp_bits=exp_bits, coef0=coef0,
                   coef1=coef1, coef2=coef2, recip_bits=exp_bits + out_bits + GUARD_BITS,
                   in_scale=scale)

    @property
    def k_max(self) -> int:
        """The shift ``k`` saturates here; every larger shift gives ``e = 0`` as well."""
        return self.exp_bits + 1

    @property
    def exp_max(self) -> int:
        """Largest ``e``: the polynomial's maximum over every fraction ``f`` (``k = 0``)."""
        return int(bit_exp_poly(self, np.arange(1 << self.frac_bits, dtype=np.int64)).max())

    @property
    def sum_bits(self) -> int:
        return (self.max_row * self.exp_max).bit_length()

    @property
    def quotient_bits(self) -> int:
        """``f_row <= 2**recip_bits // e(d=0)``: the row's maximum always contributes ``C0``."""
        return ((1 << self.recip_bits) // self.coef0).bit_length()

    def dequantize_output(self, y) -> np.ndarray:
        return _probability(self, y)


def bit_exp_poly(cfg: BitExpSoftmaxConfig, f: np.ndarray) -> np.ndarray:
    """Step 3: ``C0 + ((C1 + (C2*f >> F)) * f >> F)``, ``2**-f`` in ``2**-exp_bits`` units."""
    inner = cfg.coef1 + ((cfg.coef2 * f) >> cfg.frac_bits)
    return cfg.coef0 + ((inner * f) >> cfg.frac_bits)


def bit_exp(cfg: BitExpSoftmaxConfig, d: np.ndarray) -> np.ndarray:
    """Steps 1-4: ``e ~ 2**exp_bits * exp(d * S)`` for ``d <= 0``."""
    u = round_half_up_shift(-log2e_times16(d) * cfg.scale_mult, cfg.scale_shift)
    k = np.minimum(u >> cfg.frac_bits, cfg.k_max)
    return bit_exp_poly(cfg, u & ((1 << cfg.frac_bits) - 1)) >> k


def bit_exp_softmax(cfg: BitExpSoftmaxConfig, q) -> np.ndarray:
    """``softmax/iptq`` on signed codes ``q`` (rows on the last axis)."""
    e = bit_exp(cfg, _row_offsets(cfg, q, cfg.OP_NAME))
    return _normalize(e, _row_sum(e), 1 << cfg.recip_bits, cfg.recip_bits - cfg.out_bits,
                      cfg.out_bits, rounded=True)


# ---------------------------------------------------------------------------------------------
# softmax/ivit: Shiftmax

IVIT_N = 15
"""I-ViT's ``n`` for Shiftmax (reference ``IntSoftmax.n``), the ``published`` preset."""
IVIT_SUM_LIMIT = (1 << 31) - 1
"""I-ViT clamps the row sum to ``2**31 - 1`` and divides ``2**31 - 1`` by it."""
IVIT_RECIP_GUARD = 2
"""Derived ``n`` keeps ``exp_max * 2**(out_bits + 2) <= 2**31 - 1``: the reciprocal's floor then
costs < 1/4 LSB."""
IVIT_N_MAX = 30


@dataclass(frozen=True)
class ShiftmaxConfig:
    """I-ViT Shiftmax (Li & Gu, ICCV 2023, Sec. 3.3; reference ``IntSoftmax``), their constants:

    1. ``t = d + (d>>1) - (d>>4)``: ``d * log2(e)`` with ``log2(e) ~ (1.0111)_2`` (floors kept).
    2. ``x0 = floor(-1/S)`` (the integer for -1, < 0); ``t = max(t, n*x0)``.
    3. ``k = floor(t / x0)`` in ``0..n`` (a constant divider), ``r = t - x0*k`` in ``(x0, 0]``.
    4. ``e = floor((r/2 - x0) * 2**(n-k))``, computed exactly as ``((r - 2*x0) << (n-k)) >> 1``
       (``2**(r*S) ~ 1 + r*S/2``, then ``>> k``). ``e >= 1`` always (I-ViT's clamp at 0 never
       acts): elements below ``2**-n`` of the maximum all get ``-x0`` (I-ViT's floor value).
    5. ``sum = min(sum_row(e), 2**31 - 1)``; ``f = floor((2**31 - 1) / sum)``.
    6. ``y = (e * f) >> (31 - out_bits)`` (floor). I-ViT shifts by one more and reads ``y`` with
       scale ``2**-(b-1)``; our output scale is ``2**-out_bits`` (shared interface). ``e <= sum``
       makes ``e * f <= 2**31 - 1``, so ``y <= 2**out_bits - 1`` without saturating.

    ``from_scale`` derives ``n``: the largest ``n <= 30`` with ``exp_max * max(max_row,
    2**(out_bits+2)) <= 2**31 - 1`` (the sum never clamps; the reciprocal keeps 2 guard bits).
    ``published`` uses I-ViT's ``n = 15``. Worst cases: ``exp_max = -x0 * 2**n``; the unclamped
    row sum ``max_row * exp_max`` (``sum_bits``); ``f <= (2**31 - 1) // exp_max``.
    """

    in_bits: int
    out_bits: int
    max_row: int
    x0: int
    n: int
    in_scale: float

    OP_NAME: ClassVar[str] = "softmax/ivit"
    in_signed: ClassVar[bool] = True
    out_signed: ClassVar[bool] = False
    sum_limit: ClassVar[int] = IVIT_SUM_LIMIT
    recip_numerator: ClassVar[int] = IVIT_SUM_LIMIT
    recip_bits: ClassVar[int] = 31

    def __post_init__(self):
        owner = type(self).__name__
        _check_common(owner, self.in_bits, self.out_bits, self.max_row, self.in_scale)
        check_int(owner, "x0", self.x0, -(1 << 17), -1, "x0 = floor(-1/S) is negative")
        check_int(owner, "n", self.n, 1, IVIT_N_MAX)
        _check_fits(owner, "sum_bits", self.sum_bits, INT64_BITS, "lower n or max_row")

    @classmethod
    def _build(cls, in_scale, in_bits, out_bits, max_row, n) -> "ShiftmaxConfig":
        scale = _check_common(cls.__name__, in_bits, out_bits, max_row, in_scale)
        x0 = math.floor(-1.0 / scale)  # float64, as the reference
        if n is None:
            reach = max(max_row, 1 << (out_bits + IVIT_RECIP_GUARD))
            n = max((m for m in range(1, IVIT_N_MAX + 1) if -x0 * reach << m <= IVIT_SUM_LIMIT),
                    default=None)
            if n is None:
                raise ConfigError(f"{cls.__name__}.from_scale: in_scale {scale!r} is too fine for "
                                  f"I-ViT's 31-bit row sum at max_row {max_row} and out_bits "
                                  f"{out_bits}; use a coarser scale or a shorter max_row")
        return cls(in_bits=in_bits, out_bits=out_bits, max_row=max_row, x0=x0, n=n,
                   in_scale=scale)

    @classmethod
    def from_scale(cls, in_scale: float, in_bits: int = 8, out_bits: int = 8,
                   max_row: int = 1024) -> "ShiftmaxConfig":
        """``x0 = floor(-1/S)`` and the derived ``n`` (class docstring)."""
        return cls._build(in_scale, in_bits, out_bits, max_row, None)

    @classmethod
    def published(cls, in_scale: float, in_bits: int = 8, out_bits: int = 8,
                  max_row: int = 1024) -> "ShiftmaxConfig":
        """I-ViT's reference constants: ``n = 15``."""
        return cls._build(in_scale, in_bits, out_bits, max_row, IVIT_N)

    @property
    def exp_max(self) -> int:
        return -self.x0 << self.n

    @property
    def sum_bits(self) -> int:
        return (self.max_row * self.exp_max).bit_length()

    @property
    def quotient_bits(self) -> int:
        return (IVIT_SUM_LIMIT // min(self.exp_max, IVIT_SUM_LIMIT)).bit_length()

    def dequantize_output(self, y) -> np.ndarray:
        return _probability(self, y)


def shift_exp(cfg: ShiftmaxConfig, d: np.ndarray) -> np.ndarray:
    """Steps 1-4 of Shiftmax: ``e ~ 2**n * (-x0) * exp(d * S)``."""
    t = np.maximum(log2e_shift_add(d), cfg.n * cfg.x0)
    k = t // cfg.x0
    r = t - cfg.x0 * k
    return ((r - 2 * cfg.x0) << (cfg.n - k)) >> 1


def shiftmax(cfg: ShiftmaxConfig, q) -> np.ndarray:
    """``softmax/ivit`` on signed codes ``q`` (rows on the last axis)."""
    e = shift_exp(cfg, _row_offsets(cfg, q, cfg.OP_NAME))
    total = np.minimum(_row_sum(e), cfg.sum_limit)
    return _normalize(e, total, cfg.recip_numerator, cfg.recip_bits - cfg.out_bits, cfg.out_bits,
                      rounded=False)


# ---------------------------------------------------------------------------------------------
# i-exp (I-BERT), shared by softmax/ibert and softmax/fqvit

IBERT_A, IBERT_B, IBERT_C = 0.3585, 1.353, 0.344
"""I-BERT (Kim et al., ICML 2021) eq. 13 / Algorithm 2: ``exp(p) ~ a*(p + b)**2 + c`` on
``p in (-ln2, 0]`` (max abs error 2.1e-3)."""
IBERT_X0 = -0.6931
"""``-ln 2`` as written in I-BERT's and FQ-ViT's reference code (``x0``)."""
IBERT_N = 30
"""I-BERT's and FQ-ViT's ``n``: octave clamp and precision shift (reference ``const``/``n``)."""
IBERT_REQUANT_BITS = 16
"""I-BERT requantizes ``e`` to int16 (``QuantAct(16)``) before the row sum."""
IBERT_RECIP_BITS = 32
"""I-BERT's ``max_bit``: ``f = floor(2**32 / sum)``."""


def _i_exp_constants(scale: float) -> dict:
    """``x0_int = floor(x0/S)``, ``b_int = floor(b/S)``, ``c_int = floor(c / (a*S**2))``, in
    float64 as the references compute them (so decimal ties such as 1.353 / 0.0123 = 110 land on
    the integer, not one below it as the binary-exact quotient would)."""
    return dict(x0_int=math.floor(IBERT_X0 / scale), b_int=math.floor(IBERT_B / scale),
                c_int=math.floor(IBERT_C / (IBERT_A * scale * scale)))


def _poly_max(x0_int: int, b_int: int, c_int: int) -> int:
    """``max z = (r + b_int)**2 + c_int`` over ``r in (x0_int, 0]``: a parabola, so an end."""
    return max(b_int * b_int, (x0_int + 1 + b_int) ** 2) + c_int


def _scale_pow2(value: int, shift: int) -> int:
    """``floor(value * 2**shift)`` for a signed ``shift``."""
    return value << shift if shift >= 0 else value >> -shift


def _check_i_exp(cfg) -> None:
    owner = type(cfg).__name__
    check_int(owner, "x0_int", cfg.x0_int, -(1 << 17), -1, "x0_int = floor(-0.6931/S) is negative")
    check_int(owner, "b_int", cfg.b_int, 0, 1 << 18)
    check_int(owner, "c_int", cfg.c_int, 1, 1 << 34)
    check_int(owner, "k_max", cfg.k_max, 1, INT64_BITS)
    check_int(owner, "exp_shift", cfg.exp_shift, -INT64_BITS, INT64_BITS)
    if _scale_pow2(cfg.b_int * cfg.b_int + cfg.c_int, cfg.exp_shift) < 1:
        raise ConfigError(f"{owner}: exp_shift {cfg.exp_shift} rounds the row maximum's "
                          "exponential to 0; raise exp_shift")
    _check_fits(owner, "sum_bits", cfg.sum_bits, INT64_BITS - 1,
                "lower exp_shift or max_row (I-BERT's n = 30 overflows for fine scales)")


def _i_exp_exp_max(cfg) -> int:
    return _scale_pow2(_poly_max(cfg.x0_int, cfg.b_int, cfg.c_int), cfg.exp_shift)


def _derived_exp_shift(consts: dict, exp_bits: int) -> int:
    """The largest ``p`` with ``max z * 2**p < 2**exp_bits``."""
    return exp_bits - _poly_max(**consts).bit_length()


def i_exp(cfg, d: np.ndarray) -> np.ndarray:
    """I-BERT i-exp on ``d <= 0``: ``e = floor(z * 2**(exp_shift - k))``, scale
    ``a * S**2 / 2**exp_shift``.

    ``d = max(d, k_max * x0_int)``; ``k = floor(d / x0_int)`` (constant divider), ``r = d -
    x0_int*k`` in ``(x0_int, 0]``; ``z = (r + b_int)**2 + c_int`` (I-BERT Algorithm 1, I-POLY).
    The shift is one barrel shift, left by ``exp_shift - k`` or right by ``k - exp_shift``.
    """
    d = np.maximum(d, cfg.k_max * cfg.x0_int)
    k = d // cfg.x0_int
    r = d - cfg.x0_int * k
    z = (r + cfg.b_int) * (r + cfg.b_int) + cfg.c_int
    return (z << np.maximum(cfg.exp_shift - k, 0)) >> np.maximum(k - cfg.exp_shift, 0)


# ---------------------------------------------------------------------------------------------
# softmax/ibert


@dataclass(frozen=True)
class IBertSoftmaxConfig:
    """I-BERT softmax (Kim et al., ICML 2021, Sec. 3.5, Algorithm 2; reference ``IntSoftmax``).

    1. i-exp (:func:`i_exp`): range reduction by ``x0 = -0.6931`` as the reference code
       (``x0_int = floor(x0/S)``; the paper writes ``floor(ln2/S)``), the paper's polynomial
       ``a*(p + b)**2 + c`` with ``a, b, c = 0.3585, 1.353, 0.344`` (the reference code's
       ``0.35815147 p**2 + 0.96963238 p + 1`` is the same to 3e-4), octave clamp ``k <= k_max``,
       ``e = floor(z * 2**(exp_shift - k))``.
    2. ``f = floor(2**recip_bits / sum_row(e))``; ``y = (e * f) >> (recip_bits - out_bits)``
       (floor, as the reference), saturated at ``2**out_bits - 1`` (``e * f`` can reach
       ``2**recip_bits``).

    ``from_scale`` derives the widths: ``exp_bits = ceil(log2 max_row) + out_bits + 4``,
    ``exp_shift`` the largest with ``exp_max < 2**exp_bits``, ``k_max = exp_bits + 1`` (where
    ``e`` is 0 anyway), ``recip_bits = exp_bits + out_bits + 4``. The reference's int16
    requantization of ``e`` (step 5 of REFERENCE_KERNELS.md) is not needed: ``exp_bits`` is
    the width. ``published`` reproduces the reference: ``k_max = n = 30``, ``e`` computed at
    ``2**30`` and then requantized to int16 — our stand-in for ``QuantAct(16)`` is a floor right
    shift by the ``t`` that brings ``exp_max`` below ``2**15`` (``exp_shift = 30 - t``; floor
    shifts compose exactly), ``recip_bits = 32``.
    Worst cases: ``exp_max = floor(max z * 2**exp_shift)``; row sum ``max_row * exp_max``
    (``sum_bits``); ``f <= 2**recip_bits // e(d=0)`` (``quotient_bits``).
    """

    in_bits: int
    out_bits: int
    max_row: int
    x0_int: int
    b_int: int
    c_int: int
    k_max: int
    exp_shift: int
    recip_bits: int
    in_scale: float

    OP_NAME: ClassVar[str] = "softmax/ibert"
    in_signed: ClassVar[bool] = True
    out_signed: ClassVar[bool] = False

    def __post_init__(self):
        owner = type(self).__name__
        _check_common(owner, self.in_bits, self.out_bits, self.max_row, self.in_scale)
        _check_i_exp(self)
        check_int(owner, "recip_bits", self.recip_bits, self.out_bits, INT64_BITS,
                  "e * f <= 2**recip_bits must fit int64")

    @classmethod
    def from_scale(cls, in_scale: float, in_bits: int = 8, out_bits: int = 8,
                   max_row: int = 1024) -> "IBertSoftmaxConfig":
        """Derived widths (class docstring)."""
        scale = _check_common(cls.__name__, in_bits, out_bits, max_row, in_scale)
        consts = _i_exp_constants(scale)
        exp_bits = _ceil_log2(max_row) + out_bits + GUARD_BITS
        return cls(in_bits=in_bits, out_bits=out_bits, max_row=max_row, k_max=exp_bits + 1,
                   exp_shift=_derived_exp_shift(consts, exp_bits),
                   recip_bits=exp_bits + out_bits + GUARD_BITS, in_scale=scale, **consts)

    @classmethod
    def published(cls, in_scale: float, in_bits: int = 8, out_bits: int = 8,
                  max_row: int = 1024) -> "IBertSoftmaxConfig":
        """The reference: ``n = 30``, int16 ``e`` (floor shift stand-in), ``2**32 / sum``."""
        scale = _check_common(cls.__name__, in_bits, out_bits, max_row, in_scale)
        consts = _i_exp_constants(scale)
        full = _poly_max(**consts) << IBERT_N
        requant = max(0, full.bit_length() - (IBERT_REQUANT_BITS - 1))
        return cls(in_bits=in_bits, out_bits=out_bits, max_row=max_row, k_max=IBERT_N,
                   exp_shift=IBERT_N - requant, recip_bits=IBERT_RECIP_BITS, in_scale=scale,
                   **consts)

    @property
    def exp_max(self) -> int:
        return _i_exp_exp_max(self)

    @property
    def exp_one(self) -> int:
        """``e`` of the row maximum (``d = 0``): every row sum is at least this."""
        return _scale_pow2(self.b_int * self.b_int + self.c_int, self.exp_shift)

    @property
    def sum_bits(self) -> int:
        return (self.max_row * self.exp_max).bit_length()

    @property
    def quotient_bits(self) -> int:
        return ((1 << self.recip_bits) // self.exp_one).bit_length()

    def dequantize_output(self, y) -> np.ndarray:
        return _probability(self, y)


def ibert_softmax(cfg: IBertSoftmaxConfig, q) -> np.ndarray:
    """``softmax/ibert`` on signed codes ``q`` (rows on the last axis)."""
    e = i_exp(cfg, _row_offsets(cfg, q, cfg.OP_NAME))
    return _normalize(e, _row_sum(e), 1 << cfg.recip_bits, cfg.recip_bits - cfg.out_bits,
                      cfg.out_bits, rounded=False)


# ---------------------------------------------------------------------------------------------
# softmax/fqvit: Log-Int-Softmax

FQVIT_OUT_BITS = 4
"""FQ-ViT's 4-bit log2 attention probabilities (paper Sec. 4.2; the Mixed-NLQ code uses 6)."""
FQVIT_MAX_EXP_BITS = 40
"""Derived ``exp_bits`` cap: the row sum stays below 2**57 at ``max_row = 2**16``."""


@dataclass(frozen=True)
class LogIntSoftmaxConfig:
    """FQ-ViT Log-Int-Softmax (Lin et al., IJCAI 2022, Sec. 3.3; reference ``QIntSoftmax``).

    1. i-exp exactly as ``softmax/ibert`` (:func:`i_exp`, same constants), ``sum = sum_row(e)``.
    2. ``t = round(sum / e)`` as ``(2*sum + e) // (2*e)`` (round half up; the reference's
       ``torch.round`` is half-even: they differ only on exact ties).
    3. ``l = floor(log2 t)`` (leading one), plus 1 when the bit below the leading one is set
       (``t - 2**l >= 2**(l-1)``, the reference's ``log_round``).
    4. ``code = min(l, 2**out_bits - 1)``; ``e = 0`` gives the top code. The top code means
       probability 0 (:meth:`dequantize_output`), else ``2**-code``. The reference dequantizes
       ``l >= 2**out_bits`` to 0 but ``l = 2**out_bits - 1`` to ``2**-(2**out_bits - 1)``; a
       single code cannot carry both, so ours differs there by at most ``2**-(2**out_bits-1)``.

    ``from_scale`` derives ``exp_bits = min(max(2**out_bits - 2, 8) + 4, 40)`` (the smallest
    nonzero code is ``2**out_bits - 2``; 4 guard bits resolve ``e`` there), ``exp_shift`` and
    ``k_max = exp_bits + 1`` as ``softmax/ibert``. ``published`` is the reference: ``k_max =
    exp_shift = 30``, no requantization (its worst case overflows int64 for fine scales, FQ-ViT
    issue 21: refused). Worst cases: row sum ``max_row * exp_max`` (``sum_bits``); the rounding
    division's dividend ``2*sum + e`` needs ``sum_bits + 1`` bits; ``t <= sum``.
    """

    in_bits: int
    out_bits: int
    max_row: int
    x0_int: int
    b_int: int
    c_int: int
    k_max: int
    exp_shift: int
    in_scale: float

    OP_NAME: ClassVar[str] = "softmax/fqvit"
    in_signed: ClassVar[bool] = True
    out_signed: ClassVar[bool] = False

    def __post_init__(self):
        owner = type(self).__name__
        _check_common(owner, self.in_bits, self.out_bits, self.max_row, self.in_scale, out_max=8)
        _check_i_exp(self)

    @classmethod
    def from_scale(cls, in_scale: float, in_bits: int = 8, out_bits: int = FQVIT_OUT_BITS,
                   max_row: int = 1024) -> "LogIntSoftmaxConfig":
        """Derived widths (class docstring)."""
        scale = _check_common(cls.__name__, in_bits, out_bits, max_row, in_scale, out_max=8)
        consts = _i_exp_constants(scale)
        exp_bits = min(max((1 << out_bits) - 2, 8) + GUARD_BITS, FQVIT_MAX_EXP_BITS)
        return cls(in_bits=in_bits, out_bits=out_bits, max_row=max_row, k_max=exp_bits + 1,
                   exp_shift=_derived_exp_shift(consts, exp_bits), in_scale=scale, **consts)

    @classmethod
    def published(cls, in_scale: float, in_bits: int = 8, out_bits: int = FQVIT_OUT_BITS,
                  max_row: int = 1024) -> "LogIntSoftmaxConfig":
        """The reference: ``n = 30`` as both the octave clamp and the precision shift."""
        scale = _check_common(cls.__name__, in_bits, out_bits, max_row, in_scale, out_max=8)
        return cls(in_bits=in_bits, out_bits=out_bits, max_row=max_row, k_max=IBERT_N,
                   exp_shift=IBERT_N, in_scale=scale, **_i_exp_constants(scale))

    @property
    def top_code(self) -> int:
        return (1 << self.out_bits) - 1

    @property
    def exp_max(self) -> int:
        return _i_exp_exp_max(self)

    @property
    def sum_bits(self) -> int:
        return (self.max_row * self.exp_max).bit_length()

    def dequantize_output(self, y) -> np.ndarray:
        """``2**-y``, and 0 for the top code."""
        y = np.asarray(y)
        return np.where(y == self.top_code, 0.0, np.exp2(-y.astype(np.float64)))


def floor_log2(x: np.ndarray) -> np.ndarray:
    """Leading-one position of ``x >= 1`` (``< 2**63``) by a 6-step binary search."""
    position = x - x
    for step in (32, 16, 8, 4, 2, 1):
        above = (x >> step) > 0
        x = x >> (above * step)
        position = position + above * step
    return position


def log_int_softmax(cfg: LogIntSoftmaxConfig, q) -> np.ndarray:
    """``softmax/fqvit`` on signed codes ``q``: log2 codes of the probabilities."""
    e = i_exp(cfg, _row_offsets(cfg, q, cfg.OP_NAME))
    total = _row_sum(e)
    ratio = (2 * total + e) // (2 * np.maximum(e, 1))
    log = floor_log2(ratio)
    below = (ratio >> np.maximum(log - 1, 0)) & 1
    log = log + below * (log >= 1)
    return np.maximum(np.minimum(log, cfg.top_code), (e == 0) * cfg.top_code)


# ---------------------------------------------------------------------------------------------
# registration

EXAMPLE_SCALE = 0.05
"""A typical int8 attention-score scale: codes -128..127 span -6.4..6.35."""
SWEEP_ROW = 197
"""Row length of :func:`sweep_inputs` (a DeiT/ViT-224 attention row: 196 patches + CLS)."""
SWEEP_RANDOM_ROWS = 240


def sweep_inputs(cfg, rng: np.random.Generator) -> np.ndarray:
    """A 2-D array of rows, all of length ``min(max_row, 197)``: corner rows (all equal at the
    top, zero and bottom code; one outlier first/last; a tie at the top; alternating extremes;
    a ramp) and random rows (uniform over the input range, Gaussian with spreads from 0.5 to 4
    real units, and peaked rows). Rows of other lengths are the tests' business."""
    length = min(cfg.max_row, SWEEP_ROW)
    lo, hi = signed_range(cfg.in_bits)
    full = lambda value: np.full(length, value, dtype=np.int64)
    outlier_first, outlier_last, tie = full(lo), full(lo), full(lo)
    outlier_first[0] = outlier_last[-1] = hi
    tie[: min(2, length)] = hi
    alternating = np.where(np.arange(length) % 2 == 0, hi, lo)
    ramp = np.linspace(lo, hi, length).round().astype(np.int64)
    corners = [full(hi), full(0), full(lo), outlier_first, outlier_last, tie, alternating, ramp]
    third = SWEEP_RANDOM_ROWS // 3
    uniform = rng.integers(lo, hi, size=(third, length), endpoint=True)
    spread = rng.uniform(0.5, 4.0, size=(third, 1)) / cfg.in_scale
    centre = rng.uniform(lo, hi, size=(third, 1))
    gaussian = np.clip(np.round(rng.normal(centre, spread, size=(third, length))), lo, hi)
    peaked = np.clip(np.round(rng.normal(lo / 2, spread, size=(third, length))), lo, hi)
    peaked[np.arange(third), rng.integers(0, length, third)] = hi
    return np.concatenate([np.stack(corners), uniform, gaussian.astype(np.int64),
                           peaked.astype(np.int64)])


def _calibrate(config_type, out_bits_default: int):
    def calibrate(in_scale, samples, *, in_bits=8, out_bits=out_bits_default, max_row=1024):
        """The layer's config from its input scale; ``samples`` are not needed (every constant
        follows from the scale and the widths)."""
        return config_type.from_scale(in_scale, in_bits=in_bits, out_bits=out_bits,
                                      max_row=max_row)
    return calibrate


def _example(config_type):
    def example_config(in_scale=EXAMPLE_SCALE, **options):
        """``from_scale(0.05)`` with the given options (``in_bits``, ``out_bits``, ``max_row``)."""
        return config_type.from_scale(in_scale, **options)
    return example_config


OPERATORS = [
    Operator(name="softmax/iptq",
             description="Bit-exp softmax: shift-add log2(e), 3-term 2**-f polynomial, one "
                         "reciprocal per row (intvit's definition)",
             source="IPTQ-ViT (arXiv 2511.15369) Efficient Bit-exp; algorithm defined by intvit "
                    "(PAPERS.md Sec. 1)",
             config_type=BitExpSoftmaxConfig, run=bit_exp_softmax, reference=softmax_reference,
             example_config=_example(BitExpSoftmaxConfig), sweep_inputs=sweep_inputs,
             row_wise=True, calibrate=_calibrate(BitExpSoftmaxConfig, 8)),
    Operator(name="softmax/ivit",
             description="I-ViT Shiftmax: log2(e) = 1.0111b by shifts, 2**-f ~ 1 - f/2, "
                         "(2**31-1)/sum",
             source="I-ViT (Li & Gu, ICCV 2023) Sec. 3.3, reference IntSoftmax",
             config_type=ShiftmaxConfig, run=shiftmax, reference=softmax_reference,
             example_config=_example(ShiftmaxConfig), sweep_inputs=sweep_inputs,
             row_wise=True, calibrate=_calibrate(ShiftmaxConfig, 8)),
    Operator(name="softmax/ibert",
             description="I-BERT softmax: i-exp (ln2 range reduction, 0.3585(p+1.353)^2+0.344), "
                         "2**M/sum",
             source="I-BERT (Kim et al., ICML 2021) Sec. 3.5, Algorithm 2",
             config_type=IBertSoftmaxConfig, run=ibert_softmax, reference=softmax_reference,
             example_config=_example(IBertSoftmaxConfig), sweep_inputs=sweep_inputs,
             row_wise=True, calibrate=_calibrate(IBertSoftmaxConfig, 8)),
    Operator(name="softmax/fqvit",
             description="FQ-ViT Log-Int-Softmax: i-exp, then log2-rounded sum/e codes (4-bit)",
             source="FQ-ViT (Lin et al., IJCAI 2022) Sec. 3.3, reference QIntSoftmax",
             config_type=LogIntSoftmaxConfig, run=log_int_softmax, reference=softmax_reference,
             example_config=_example(LogIntSoftmaxConfig), sweep_inputs=sweep_inputs,
             row_wise=True, calibrate=_calibrate(LogIntSoftmaxConfig, FQVIT_OUT_BITS)),
]
