"""``softmax/iptq``: Bit-exp softmax, intvit's definition of IPTQ-ViT's "Efficient Bit-exp"
(docs/method.md sec. 1: the paper's formula was not available; this algorithm is ours). The float
reference is :func:`~.common.softmax_reference`."""
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

import numpy as np

from ...errors import ConfigError
from ...integer import check_int, elementwise, round_half_up_shift
from .common import (GUARD_BITS, INT64_BITS, LOG2E_FOLD, LOG2E_FRAC_BITS,
                     ReciprocalSoftmaxConfig, ScoreScale, ceil_log2, check_common, check_fits,
                     log2e_times16, masked, normalize, row_offsets, softmax_operator)

BIT_EXP_COEFFS = (Fraction(1) - Fraction(1, 1 << 9) - Fraction(1, 1 << 10),
                  -(Fraction(1, 2) + Fraction(1, 8) + Fraction(1, 32)),
                  Fraction(1, 8) + Fraction(1, 32) + Fraction(1, 1 << 9))
"""``2**-f ~ c0 + c1*f + c2*f**2`` on ``f in [0, 1)``: each coefficient a sum of three powers of
two (``1 - 2**-9 - 2**-10``, ``-(2**-1 + 2**-3 + 2**-5)``, ``2**-3 + 2**-5 + 2**-9``), chosen by
exhaustive search over such sums (exponents 0..-12) for least max relative error: 0.293 %
(I-ViT's ``1 - f/2``: 6.1 %). intvit's definition (docs/method.md sec. 1)."""
BIT_EXP_COEFF_FRAC_BITS = 10
"""The finest power of two in :data:`BIT_EXP_COEFFS`; ``exp_bits`` is at least this."""
BIT_EXP_FRAC_BITS = 12
"""``F``: fraction bits of the base-2 exponent; quantizing it costs at most ``ln2 * 2**-12``
= 0.017 % relative error."""
BIT_EXP_MULT_BITS = 16
"""The scale multiplier ``R`` has 16 significant bits (relative error <= 2**-16)."""


@dataclass(frozen=True)
class BitExpSoftmaxConfig(ReciprocalSoftmaxConfig):
    """Bit-exp softmax, intvit's definition of IPTQ-ViT's "Efficient Bit-exp" (docs/method.md
    sec. 1: the paper's formula was not available; this algorithm is ours).

    Per row, with ``d = q - max(q) <= 0``:

    1. ``u = round(23*(-d) * R / 2**s)`` (half up): the base-2 exponent ``-d*S*log2(e)`` with
       ``F = frac_bits`` fraction bits. ``23*x = 2**4 * (1.0111)_2 * x`` by shifts and adds
       (I-ViT's log2(e), :data:`~.common.LOG2E_TERMS`, kept exact); ``R = round(S * 2**(F - 4 +
       s))`` (``scale_mult``, 16 significant bits), ``s = scale_shift``.
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
    < ``2**-4`` LSB). Worst cases: ``u <= u_max``; ``e <= exp_max = C0 < 2**exp_bits``; the row
    sum is ``<= max_row * exp_max`` (``sum_bits``); ``f_row <= 2**recip_bits / C0``
    (``quotient_bits``); ``e * f_row <= 2**recip_bits``.
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
    round_output: ClassVar[bool] = True

    def __post_init__(self):
        owner = type(self).__name__
        check_common(owner, self.in_bits, self.out_bits, self.max_row, self.in_scale)
        check_int(owner, "frac_bits", self.frac_bits, 1, 16)
        check_int(owner, "scale_mult", self.scale_mult, 1, (1 << (BIT_EXP_MULT_BITS + 1)) - 1)
        check_int(owner, "scale_shift", self.scale_shift, 0, 40)
        check_int(owner, "exp_bits", self.exp_bits, BIT_EXP_COEFF_FRAC_BITS, 40)
        one = 1 << self.exp_bits
        check_int(owner, "coef0", self.coef0, one // 2, one, "2**-f at f = 0 is 1.0")
        check_int(owner, "coef1", self.coef1, -one, 0, "2**-f falls with f")
        check_int(owner, "coef2", self.coef2, 0, one)
        check_int(owner, "recip_bits", self.recip_bits, self.exp_bits, INT64_BITS)
        if bit_exp_poly(self, np.arange(1 << self.frac_bits, dtype=np.int64)).min() < 0:
            raise ConfigError(f"{owner}: the 2**-f polynomial goes negative for some f; its "
                              "coefficients do not approximate 2**-f")
        check_fits(owner, "sum_bits", self.sum_bits, INT64_BITS, "lower max_row or exp_bits")

    @classmethod
    def from_scale(cls, in_scale: float, in_bits: int = 8, out_bits: int = 8,
                   max_row: int = 1024) -> "BitExpSoftmaxConfig":
        """Derive every constant from ``in_scale`` and the widths (see the class docstring)."""
        scale = check_common(cls.__name__, in_bits, out_bits, max_row, in_scale)
        frac = BIT_EXP_FRAC_BITS
        target = Fraction(scale) * 2 ** (frac - LOG2E_FRAC_BITS)  # R / 2**s, exactly
        shift = 0
        while math.floor(target * 2 ** shift + Fraction(1, 2)) < 1 << (BIT_EXP_MULT_BITS - 1):
            shift += 1
        mult = math.floor(target * 2 ** shift + Fraction(1, 2))
        exp_bits = max(BIT_EXP_COEFF_FRAC_BITS, ceil_log2(max_row) + out_bits + GUARD_BITS)
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
    def u_max(self) -> int:
        """Largest exponent ``u``, at ``d = 1 - 2**in_bits`` (step 1 grows with ``-d``)."""
        return int(bit_exp_exponent(self, (1 << self.in_bits) - 1))

    @property
    def exp_max(self) -> int:
        """Largest ``e``: the polynomial's maximum over every fraction ``f`` (``k = 0``)."""
        return int(bit_exp_poly(self, np.arange(1 << self.frac_bits, dtype=np.int64)).max())

    @property
    def quotient_bits(self) -> int:
        """``f_row <= 2**recip_bits // e(d=0)``: the row's maximum always contributes ``C0``."""
        return (self.recip_numerator // self.coef0).bit_length()


def snap_scale(scale: float, fold_log2e: bool = False) -> ScoreScale:
    """A score scale that suits Bit-exp's constants (intvit's definition, issue 16).

    Bit-exp multiplies by ``R / 2**s ~ S * 2**(F - 4)`` with a 16-bit ``R``: the snap rounds
    the config's scale up to 16 significant bits, so that ``R`` is exact; with ``fold_log2e``
    the codes are worth ``LOG2E_FOLD`` times it, which makes ``23/16 = 1.4375`` the exact
    ``log2(e)`` of the codes. The config's scale is chosen so that the code scale is never
    finer than ``scale``."""
    factor = LOG2E_FOLD if fold_log2e else 1.0
    fraction, exponent = math.frexp(scale / factor)
    mantissa = math.ceil(fraction * (1 << BIT_EXP_MULT_BITS))
    config = math.ldexp(mantissa, exponent - BIT_EXP_MULT_BITS)
    return ScoreScale(codes=factor * config, config=config)


def bit_exp_exponent(cfg: BitExpSoftmaxConfig, x):
    """Step 1 on ``x = -d >= 0``: ``u = round(23*x * R / 2**s)``, half up."""
    return round_half_up_shift(log2e_times16(x) * cfg.scale_mult, cfg.scale_shift)


def bit_exp_horner_inner(cfg: BitExpSoftmaxConfig, f):
    """Step 3, inner Horner term: ``C1 + (C2*f >> F)``, ``|.| <= 2**exp_bits``."""
    return cfg.coef1 + ((cfg.coef2 * f) >> cfg.frac_bits)


def bit_exp_horner_outer(cfg: BitExpSoftmaxConfig, inner_times_f):
    """Step 3, outer Horner term: ``C0 + (inner*f >> F)``."""
    return cfg.coef0 + (inner_times_f >> cfg.frac_bits)


def bit_exp_poly(cfg: BitExpSoftmaxConfig, f: np.ndarray) -> np.ndarray:
    """Step 3: ``C0 + ((C1 + (C2*f >> F)) * f >> F)``, ``2**-f`` in ``2**-exp_bits`` units."""
    return bit_exp_horner_outer(cfg, bit_exp_horner_inner(cfg, f) * f)


def bit_exp(cfg: BitExpSoftmaxConfig, d: np.ndarray) -> np.ndarray:
    """Steps 1-4: ``e ~ 2**exp_bits * exp(d * S)`` for ``d <= 0``."""
    u = bit_exp_exponent(cfg, -d)
    k = np.minimum(u >> cfg.frac_bits, cfg.k_max)
    return bit_exp_poly(cfg, u & ((1 << cfg.frac_bits) - 1)) >> k


def bit_exp_softmax(cfg: BitExpSoftmaxConfig, q, keep=None) -> np.ndarray:
    """``softmax/iptq`` on signed codes ``q`` (rows on the last axis). Steps 1-4 act on each
    ``d`` alone, ``d`` in ``[1 - 2**in_bits, 0]``: a large input looks them up in a table of
    :func:`bit_exp` at every ``d`` (:func:`~intvit.golden_model.integer.elementwise`). Elements
    where ``keep`` is false are excluded (:func:`~.common.masked`)."""
    d = row_offsets(cfg, q, keep)
    return normalize(cfg, masked(elementwise(bit_exp, cfg, d, 1 - (1 << cfg.in_bits), 0), keep))


OPERATOR = softmax_operator(
    BitExpSoftmaxConfig, bit_exp_softmax,
    description="Bit-exp softmax: shift-add log2(e), 3-term 2**-f polynomial, one reciprocal "
                "per row (intvit's definition)",
    source="IPTQ-ViT (arXiv 2511.15369) Efficient Bit-exp; algorithm defined by intvit "
           "(docs/method.md sec. 1)",
    exp=bit_exp)
