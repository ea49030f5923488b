"""``softmax/ivit``: I-ViT Shiftmax (Li & Gu, ICCV 2023, Sec. 3.3; reference ``IntSoftmax``;
docs/method.md sec. 4.2, Shiftmax). The float reference is :func:`~.common.softmax_reference`."""
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ...errors import ConfigError
from ...integer import check_int
from .common import (INT64_BITS, LOG2E_FOLD, ReciprocalSoftmaxConfig, ScoreScale, check_common,
                     check_fits, log2e_shift_add, masked, normalize, row_offsets,
                     softmax_operator)

IVIT_N = 15
"""I-ViT's ``n`` for Shiftmax (reference ``IntSoftmax.n``), the ``published`` preset."""
IVIT_SUM_LIMIT = (1 << 31) - 1
"""I-ViT clamps the row sum to ``2**31 - 1`` and divides ``2**31 - 1`` by it."""
IVIT_RECIP_BITS = 31
"""I-ViT's reciprocal has 31 bits: ``y = (e * f) >> (31 - out_bits)``."""
IVIT_RECIP_GUARD = 2
"""Derived ``n`` keeps ``exp_max * 2**(out_bits + 2) <= 2**31 - 1``: the reciprocal's floor then
costs < 1/4 LSB."""
IVIT_N_MAX = 30


@dataclass(frozen=True)
class ShiftmaxConfig(ReciprocalSoftmaxConfig):
    """I-ViT Shiftmax (Li & Gu, ICCV 2023, Sec. 3.3; reference ``IntSoftmax``), their constants:

    1. ``t = d + (d>>1) - (d>>4)``: ``d * log2(e)`` with ``log2(e) ~ (1.0111)_2`` (floors kept;
       :func:`~.common.log2e_shift_add`).
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
    ``published`` uses I-ViT's ``n = 15``. Worst cases: ``t >= t_min``; ``exp_max = -x0 * 2**n``;
    the unclamped row sum ``max_row * exp_max`` (``sum_bits``); ``f <= (2**31 - 1) // exp_max``.
    """

    in_bits: int
    out_bits: int
    max_row: int
    x0: int
    n: int
    in_scale: float

    OP_NAME: ClassVar[str] = "softmax/ivit"
    sum_limit: ClassVar[int] = IVIT_SUM_LIMIT
    recip_numerator: ClassVar[int] = IVIT_SUM_LIMIT
    recip_bits: ClassVar[int] = IVIT_RECIP_BITS

    def __post_init__(self):
        owner = type(self).__name__
        check_common(owner, self.in_bits, self.out_bits, self.max_row, self.in_scale)
        check_int(owner, "x0", self.x0, -(1 << 17), -1, "x0 = floor(-1/S) is negative")
        check_int(owner, "n", self.n, 1, IVIT_N_MAX)
        check_fits(owner, "sum_bits", self.sum_bits, INT64_BITS, "lower n or max_row")

    @classmethod
    def _build(cls, in_scale, in_bits, out_bits, max_row, n) -> "ShiftmaxConfig":
        scale = check_common(cls.__name__, in_bits, out_bits, max_row, in_scale)
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
    def t_min(self) -> int:
        """Smallest clamped ``t`` (step 1 is non-decreasing in ``d``): at ``d = 1 - 2**in_bits``,
        or ``n*x0`` when the clamp acts."""
        return max(log2e_shift_add(1 - (1 << self.in_bits)), self.n * self.x0)

    @property
    def exp_max(self) -> int:
        return -self.x0 << self.n

    @property
    def quotient_bits(self) -> int:
        return (self.recip_numerator // min(self.exp_max, self.sum_limit)).bit_length()


def snap_scale(scale: float, fold_log2e: bool = False) -> ScoreScale:
    """A score scale that suits Shiftmax's constants (intvit's definition, issue 16).

    Shiftmax reads ``t / -x0`` as the base-2 exponent, ``x0 = floor(-1/S)``: unless ``1/S`` is
    an integer, ``-x0 * S > 1`` and every exponent is off by that factor (up to ``1/m`` with
    ``m = -x0``: 5 % at ``S = 0.05``). The snap builds the config at ``S = 1/m``, so that
    ``x0 = -m`` and ``-x0 * S = 1`` exactly; with ``fold_log2e`` the codes are worth
    ``LOG2E_FOLD / m``, which also makes ``1.4375 / m`` the exact ``log2(e) * codes``.
    ``m = floor(f / scale)`` (at least 1), ``f`` being ``LOG2E_FOLD`` or 1, so the snapped code
    scale is never finer than ``scale``: nothing clips that did not clip before."""
    factor = LOG2E_FOLD if fold_log2e else 1.0
    m = max(1, math.floor(factor / scale))
    config = 1.0 / m
    while math.floor(-1.0 / config) != -m:  # 1 / (1/m) may round just above m
        config = math.nextafter(config, math.inf)
    return ScoreScale(codes=factor * config, config=config)


def shift_exp_mantissa(cfg: ShiftmaxConfig, r):
    """Step 4's ``v = r - 2*x0`` in ``-x0+1 .. -2*x0``: ``2 * (1 + r*S/2)`` in units of ``-x0``."""
    return r - 2 * cfg.x0


def shift_exp_power(v, shift):
    """Step 4's ``e = (v << shift) >> 1``, ``shift = n - k``: the halving of ``r/2`` done last,
    so nothing is lost."""
    return (v << shift) >> 1


def shift_exp(cfg: ShiftmaxConfig, d: np.ndarray) -> np.ndarray:
    """Steps 1-4 of Shiftmax: ``e ~ 2**n * (-x0) * exp(d * S)``."""
    t = np.maximum(log2e_shift_add(d), cfg.n * cfg.x0)
    k = t // cfg.x0
    return shift_exp_power(shift_exp_mantissa(cfg, t - cfg.x0 * k), cfg.n - k)


def shiftmax(cfg: ShiftmaxConfig, q, keep=None) -> np.ndarray:
    """``softmax/ivit`` on signed codes ``q`` (rows on the last axis), the elements where
    ``keep`` is false excluded (:func:`~.common.masked`)."""
    return normalize(cfg, masked(shift_exp(cfg, row_offsets(cfg, q, keep)), keep))


OPERATOR = softmax_operator(
    ShiftmaxConfig, shiftmax,
    description="I-ViT Shiftmax: log2(e) = 1.0111b by shifts, 2**-f ~ 1 - f/2, (2**31-1)/sum",
    source="I-ViT (Li & Gu, ICCV 2023) Sec. 3.3, reference IntSoftmax", exp=shift_exp)
