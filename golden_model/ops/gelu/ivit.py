"""I-ViT ShiftGELU (``gelu/ivit``): config, integer function and operator record.

Li & Gu, "I-ViT: Integer-only Quantization for Efficient Vision Transformer Inference", ICCV
2023, ShiftGELU (their ``IntGELU``): ``x * sigmoid(1.702 x)`` by shifts and one integer division;
the steps as the authors' code runs them: ``docs/method.md`` sec. 4.2 (I-ViT,
ShiftGELU and Shiftmax). Float reference: exact GELU
(:func:`.common.reference`).
"""
import math
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError
from ...integer import check_int, check_scale
from ...operator import Operator
from ..requant import ACC_BITS, RequantConfig, requantize
from .common import (GeluPorts, check_bits, check_input, example_builder, output_scale,
                     product_range, reference, scale_only_calibration, sweep_inputs,
                     fast_tabulated, tabulated)

IVIT_SLOPE_SHIFTS = (0, 1, 3, 4)
"""1.702 ~= (1.1011)_2 = 1 + 2**-1 + 2**-3 + 2**-4 = 1.6875 (I-ViT, Li & Gu 2023, ShiftGELU)."""
IVIT_LOG2E_SHIFTS = (1, 4)
"""log2(e) ~= (1.0111)_2 as ``v + (v >> 1) - (v >> 4)`` = 1.4375 (I-ViT, Shiftmax)."""
IVIT_DIV_BITS = 31
"""The sigmoid's reciprocal numerator ``2**31 - 1`` (I-ViT reference code)."""
IVIT_PUBLISHED_SHIFT = 23
"""I-ViT's ``n = 23`` for ShiftGELU (reference code), also its clamp count."""
IVIT_PUBLISHED_SIGMOID_BITS = 8
"""I-ViT's sigmoid output bits (``output_bit = 8``: scale ``2**-7``)."""
IVIT_EXP_ONE_BITS = 15
"""``from_scale`` puts ``exp(0)`` near ``2**15``: the sum of two exponentials (<= 2**16) and the
reciprocal ``floor((2**31 - 1) / sum)`` (>= 2**15) then both keep 15 significant bits."""


@dataclass(frozen=True)
class ShiftGeluConfig(GeluPorts):
    """I-ViT ShiftGELU ``x * sigmoid(1.702 x)`` (Li & Gu, ICCV 2023; their IntGELU), element-wise.

    1. Slope: ``z = sum_s (q << align_shift) >> s`` over ``slope_shifts`` (1.702 ~= 1.1011b);
       scale ``S_z = S / 2**align_shift``. ``from_scale`` aligns by 4 bits so the shifts are exact
       (``z = 27 q``); the paper's form ``q + q>>1 + q>>3 + q>>4`` (``align_shift = 0``, floor)
       is the ``published`` preset.
    2. Element-wise sigmoid: the reference subtracts the row max; we use ``max(z, 0)`` per
       element instead, so one exponential ``e = E(-|z|)`` and the constant ``E(0)`` give
       ``sigma = E(0) / (E(0) + e)`` for ``z >= 0`` and ``e / (E(0) + e)`` for ``z < 0``.
    3. ``E(v)``, v <= 0 (I-ViT shift exponential): ``v += (v >> a1) - (v >> a2)`` (log2 e, floor);
       ``v = max(v, max_k * x0)`` with ``x0 = floor(-1 / S_z)``; ``k = v // x0``,
       ``r = v - k*x0`` in ``(x0, 0]``; ``E = ((r - 2*x0) << exp_shift) >> (k + 1)`` (floor),
       which is the reference's ``floor((r/2 - x0) * 2**(n - k))`` without halving an odd ``r``
       and is >= 0, so the reference's clamp at 0 is not needed. ``E(0) = -x0 << exp_shift``.
    4. ``sum = min(E(0) + e, div_limit)``, ``div_limit = 2**div_bits - 1``; ``f = div_limit //
       sum`` (floor division); ``sigma = (e1 * f) >> sigmoid_shift`` (floor), ``sigmoid_shift =
       div_bits + 1 - sigmoid_bits``, scale ``2**-(sigmoid_bits - 1)``, ``e1`` the numerator of
       step 2.
    5. ``h = q * sigma``; ``gelu_scale = S / 2**(sigmoid_bits - 1)``; then requantized.

    ``from_scale``: ``exp_shift = max(0, 15 - bitlen(-x0))`` (see :data:`IVIT_EXP_ONE_BITS`);
    ``max_k = exp_shift + bitlen(-x0)``, where ``E`` has reached 0; ``sigmoid_bits =
    min(out_bits + 2, 33 - in_bits)`` (sigma's step 1/4 output LSB at full-scale ``q``, ``h``
    within 32 bits). ``published``: the paper's ``n = 23`` (shift and clamp), 8 sigmoid bits,
    ``align_shift = 0``. Ranges (``ranges``): the slope and log2e steps are monotone in ``q``,
    so their ends bound them (``log2e`` is the range before the clamp); ``k <= max(min log2e,
    max_k*x0) // x0``; ``(r - 2*x0) << exp_shift <= -2*x0 << exp_shift``; ``E <= E(0)``;
    ``sum <= 2 E(0)`` (before the saturation at ``div_limit``); ``f <= div_limit //
    min(E(0), div_limit)``; ``e1 * f <= max(div_limit, E(0))``; ``h`` is the product of ranges.
    """

    in_bits: int
    align_shift: int
    slope_shifts: tuple
    log2e_shifts: tuple
    x0: int
    exp_shift: int
    max_k: int
    div_bits: int
    sigmoid_bits: int
    requant: RequantConfig
    in_scale: float
    out_scale: float
    gelu_scale: float

    def __post_init__(self):
        owner = "ShiftGeluConfig"
        self._check_common(owner)
        check_int(owner, "align_shift", self.align_shift, 0, 8)
        for field, count in (("slope_shifts", None), ("log2e_shifts", 2)):
            shifts = getattr(self, field)
            if (not isinstance(shifts, tuple) or not 1 <= len(shifts) <= 8
                    or (count is not None and len(shifts) != count)):
                raise ConfigError(f"{owner}: {field} must be a tuple of "
                                  f"{count or '1..8'} shifts (got {shifts!r})")
            for shift in shifts:
                check_int(owner, field, shift, 0, 16)
        check_int(owner, "x0", self.x0, -(1 << 30), -1, "x0 = floor(-1/S_z) is negative")
        check_int(owner, "exp_shift", self.exp_shift, 0, 30)
        check_int(owner, "max_k", self.max_k, 0, 60)
        check_int(owner, "div_bits", self.div_bits, 8, 31)
        check_int(owner, "sigmoid_bits", self.sigmoid_bits, 2, self.div_bits)
        self._check_widths(owner)

    @property
    def exp_one(self) -> int:
        """``E(0) = -x0 << exp_shift``, the exponential of 0 (a constant of the unit)."""
        return -self.x0 << self.exp_shift

    @property
    def div_limit(self) -> int:
        """``2**div_bits - 1``: the saturation of the sum and the reciprocal's numerator."""
        return (1 << self.div_bits) - 1

    @property
    def sigmoid_shift(self) -> int:
        """``div_bits + 1 - sigmoid_bits``: ``sigma = (e1 * f) >> sigmoid_shift``."""
        return self.div_bits + 1 - self.sigmoid_bits

    @property
    def exp_clamp(self) -> int:
        """``max_k * x0``: the exponential's input is clamped from below there (E is 0)."""
        return self.max_k * self.x0

    def slope(self, q):
        """``z = sum_s (q << align_shift) >> s`` (works on ints and int arrays)."""
        aligned = q << self.align_shift
        return sum(aligned >> shift for shift in self.slope_shifts)

    def log2e(self, v):
        """``v + (v >> a1) - (v >> a2)`` (floor shifts)."""
        first, second = self.log2e_shifts
        return v + (v >> first) - (v >> second)

    @property
    def ranges(self) -> dict:
        lo, hi = self.in_range
        z = (self.slope(lo), self.slope(hi))
        scaled = (self.log2e(-max(-z[0], z[1])), 0)
        operand = ((1 - self.x0) << self.exp_shift, (-2 * self.x0) << self.exp_shift)
        exp_one, limit = self.exp_one, self.div_limit
        total = (exp_one, 2 * exp_one)
        product = (0, max(limit, exp_one))
        sigma = (0, product[1] >> self.sigmoid_shift)
        return {"slope": z, "log2e": scaled, "k": (0, max(scaled[0], self.exp_clamp) // self.x0),
                "exp_operand": operand, "exp": (0, exp_one), "sum": total,
                "factor": (limit // min(total[1], limit), limit // min(total[0], limit)),
                "product": product, "sigmoid": sigma, "acc": product_range((lo, hi), sigma)}

    @classmethod
    def from_scale(cls, in_scale: float, in_bits: int = 8, out_bits: int = 8,
                   out_scale: float | None = None) -> "ShiftGeluConfig":
        """Exact 1.1011b slope (4-bit alignment) and precision constants derived from the scale."""
        owner = "ShiftGeluConfig.from_scale"
        in_scale = check_scale(owner, "in_scale", in_scale)
        check_bits(owner, in_bits, out_bits)
        align = max(IVIT_SLOPE_SHIFTS)
        x0 = _ivit_x0(owner, in_scale, align)
        exp_shift = max(0, IVIT_EXP_ONE_BITS - (-x0).bit_length())
        return cls._build(owner, in_scale, in_bits, out_bits, out_scale, align, x0, exp_shift,
                          exp_shift + (-x0).bit_length(),
                          min(out_bits + 2, ACC_BITS + 1 - in_bits))

    @classmethod
    def published(cls, in_scale: float, in_bits: int = 8, out_bits: int = 8,
                  out_scale: float | None = None) -> "ShiftGeluConfig":
        """The paper's form and constants: floor shifts on ``q``, ``n = 23``, 8 sigmoid bits."""
        owner = "ShiftGeluConfig.published"
        in_scale = check_scale(owner, "in_scale", in_scale)
        check_bits(owner, in_bits, out_bits)
        return cls._build(owner, in_scale, in_bits, out_bits, out_scale, 0,
                          _ivit_x0(owner, in_scale, 0), IVIT_PUBLISHED_SHIFT,
                          IVIT_PUBLISHED_SHIFT, IVIT_PUBLISHED_SIGMOID_BITS)

    @classmethod
    def _build(cls, owner, in_scale, in_bits, out_bits, out_scale, align, x0, exp_shift, max_k,
               sigmoid_bits):
        out_scale = output_scale(owner, in_scale, in_bits, out_bits, out_scale)
        gelu_scale = in_scale / 2.0 ** (sigmoid_bits - 1)
        return cls(in_bits=in_bits, align_shift=align, slope_shifts=IVIT_SLOPE_SHIFTS,
                   log2e_shifts=IVIT_LOG2E_SHIFTS, x0=x0, exp_shift=exp_shift, max_k=max_k,
                   div_bits=IVIT_DIV_BITS, sigmoid_bits=sigmoid_bits,
                   requant=RequantConfig.from_scale(gelu_scale / out_scale, bits=out_bits),
                   in_scale=in_scale, out_scale=out_scale, gelu_scale=gelu_scale)


def _ivit_x0(owner: str, in_scale: float, align: int) -> int:
    x0 = math.floor(-(2.0 ** align) / in_scale)
    if x0 < -(1 << 30):
        raise ConfigError(f"{owner}: in_scale {in_scale!r} is too small for ShiftGELU "
                          "(x0 = floor(-1/S) needs over 31 bits)")
    return x0


def shift_exp(config: ShiftGeluConfig, v: np.ndarray) -> np.ndarray:
    """I-ViT's shift exponential ``E(v)`` for ``v <= 0``, scale ``S_z / 2**exp_shift``."""
    v = np.maximum(config.log2e(v), config.exp_clamp)
    k = v // config.x0
    r = v - k * config.x0
    return ((r - 2 * config.x0) << config.exp_shift) >> (k + 1)


def shift_integer_gelu(config: ShiftGeluConfig, q) -> np.ndarray:
    """The integer GELU value ``h = q * sigma`` (scale ``config.gelu_scale``)."""
    q = check_input(config, q, "gelu/ivit input")
    z = config.slope(q)
    small = shift_exp(config, -np.abs(z))
    limit = config.div_limit
    factor = limit // np.minimum(small + config.exp_one, limit)
    numerator = np.where(z >= 0, config.exp_one, small)
    sigma = (numerator * factor) >> config.sigmoid_shift
    return q * sigma


@tabulated
def run_shift(config: ShiftGeluConfig, q) -> np.ndarray:
    """ShiftGELU then dyadic requantization to ``out_bits`` codes."""
    return requantize(config.requant, shift_integer_gelu(config, q))


example_shift = example_builder(ShiftGeluConfig)
calibrate_shift = scale_only_calibration(ShiftGeluConfig, "gelu/ivit")


OPERATOR = Operator(
    name="gelu/ivit", description="ShiftGELU x*sigmoid(1.702x) by shifts, element-wise",
    source="I-ViT (Li & Gu, ICCV 2023) ShiftGELU (reference IntGELU)",
    config_type=ShiftGeluConfig, run=run_shift, reference=reference,
    example_config=example_shift, sweep_inputs=sweep_inputs, calibrate=calibrate_shift,
    fast_run=fast_tabulated(run_shift))
