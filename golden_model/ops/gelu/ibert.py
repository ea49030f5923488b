"""I-BERT i-GELU (``gelu/ibert``): config, integer function and operator record.

Kim et al., "I-BERT: Integer-only BERT Quantization", ICML 2021, i-GELU; the steps as the
authors' code runs them: ``docs/method.md`` sec. 4.1 (I-BERT,
i-GELU). Float reference: exact GELU (:func:`.common.reference`).
"""
import math
from dataclasses import dataclass

import numpy as np

from ...integer import check_int, check_scale
from ...operator import Operator
from ..requant import RequantConfig, requantize
from .common import (GeluPorts, check_bits, check_input, clipped_distance, distance_ranges,
                     erf_tail, erf_tail_ranges, example_builder, output_scale, reference,
                     scale_only_calibration, smallest_fitting_shift, sweep_inputs,
                     fast_tabulated, tabulated)

IBERT_A = -0.2888
"""I-BERT i-GELU erf polynomial ``a`` (Kim et al., ICML 2021, i-GELU section)."""
IBERT_B = -1.769
"""I-BERT ``b``: ``L(u) = sign(u) * (a * (min(|u|, -b) + b)**2 + 1)``."""
IBERT_C = 1.0
"""I-BERT ``c`` (the constant term; the reference stores ``c / a``)."""
IBERT_SQRT2 = 1.4142
"""I-BERT's ``k``: the erf input is ``x / 1.4142`` (the constant as written in their code)."""
IBERT_PUBLISHED_SHIFT = 14
"""I-BERT's ``n = 14`` right shift of ``L`` (tuned for int32 FC1 accumulators)."""


@dataclass(frozen=True)
class IBertGeluConfig(GeluPorts):
    """I-BERT i-GELU (Kim et al., ICML 2021, integer-only GELU) on ``in_bits`` codes.

    With ``S_e = S / 1.4142`` (S = in_scale), ``a = -0.2888``, ``b = -1.769``, ``c = 1``:

    1. ``t = min(|q|, -b_int)``, ``b_int = floor(b / S_e)``;
    2. ``poly = (t + b_int)**2 + c_int``, ``c_int = floor((c/a) / S_e**2)``; scale ``a*S_e**2``;
    3. ``L = sign(q) * poly >> shift`` (floor, the reference's floor of ``/ 2**n``);
    4. ``h = -(q * (L + one))``, ``one = floor(1 / (a * S_e**2 * 2**shift))`` (negative); scale
       ``gelu_scale = S * |a| * S_e**2 * 2**shift / 2``; then requantized.

    Ranges (``ranges``), with ``T = min(2**(in_bits-1), -b_int)``: ``t + b_int`` in
    ``[b_int, T + b_int]`` (<= 0); square in ``[(T + b_int)**2, b_int**2]``; ``poly`` is the
    square plus ``c_int``; ``L`` is ``+-poly``; ``h`` is the product of ``q``'s and
    ``L >> shift + one``'s ranges taken sign by sign. ``from_scale`` picks the smallest
    ``shift`` with ``acc_bits <= 32``; ``published`` uses the paper's ``n = 14``.

    Fields: ``b_int``, ``c_int``, ``shift``, ``one`` (integers above), ``requant``, and the
    build-time records ``in_scale``, ``out_scale``, ``gelu_scale``.
    """

    in_bits: int
    b_int: int
    c_int: int
    shift: int
    one: int
    requant: RequantConfig
    in_scale: float
    out_scale: float
    gelu_scale: float

    def __post_init__(self):
        owner = "IBertGeluConfig"
        self._check_common(owner)
        check_int(owner, "b_int", self.b_int, -(1 << 40), -1, "b = -1.769 is negative")
        check_int(owner, "c_int", self.c_int, -(1 << 62), -1, "c / a is negative")
        check_int(owner, "shift", self.shift, 0, 62)
        check_int(owner, "one", self.one, -(1 << 62), -1, "1 / a is negative")
        self._check_widths(owner)

    @property
    def ranges(self) -> dict:
        return _ibert_ranges(self.in_bits, self.b_int, self.c_int, self.shift, self.one)

    @classmethod
    def from_scale(cls, in_scale: float, in_bits: int = 8, out_bits: int = 8,
                   out_scale: float | None = None) -> "IBertGeluConfig":
        """Paper constants, with ``shift`` the smallest that keeps ``h`` within 32 bits."""
        return cls._build("IBertGeluConfig.from_scale", in_scale, in_bits, out_bits, out_scale,
                          None)

    @classmethod
    def published(cls, in_scale: float, in_bits: int = 8, out_bits: int = 8,
                  out_scale: float | None = None) -> "IBertGeluConfig":
        """The paper's ``n = 14`` (wipes out small-scale 8-bit inputs; kept for comparison)."""
        return cls._build("IBertGeluConfig.published", in_scale, in_bits, out_bits, out_scale,
                          IBERT_PUBLISHED_SHIFT)

    @classmethod
    def _build(cls, owner, in_scale, in_bits, out_bits, out_scale, shift):
        in_scale = check_scale(owner, "in_scale", in_scale)
        check_bits(owner, in_bits, out_bits)
        out_scale = output_scale(owner, in_scale, in_bits, out_bits, out_scale)
        s_e = in_scale / IBERT_SQRT2
        b_int = math.floor(IBERT_B / s_e)
        c_int = math.floor((IBERT_C / IBERT_A) / s_e ** 2)

        def one_for(n):
            return math.floor(1.0 / (IBERT_A * s_e ** 2 * 2.0 ** n))

        if shift is None:
            shift = smallest_fitting_shift(
                lambda n: _ibert_ranges(in_bits, b_int, c_int, n, one_for(n)))
        gelu_scale = in_scale * -IBERT_A * s_e ** 2 * 2.0 ** shift / 2
        return cls(in_bits=in_bits, b_int=b_int, c_int=c_int, shift=shift, one=one_for(shift),
                   requant=RequantConfig.from_scale(gelu_scale / out_scale, bits=out_bits),
                   in_scale=in_scale, out_scale=out_scale, gelu_scale=gelu_scale)


def _ibert_ranges(in_bits, b_int, c_int, shift, one) -> dict:
    ranges = distance_ranges(in_bits, b_int)
    square = ranges["square"]
    poly = (square[0] + c_int, square[1] + c_int)
    return {**ranges, "poly": poly, **erf_tail_ranges(in_bits, poly, shift, one)}


def ibert_integer_gelu(config: IBertGeluConfig, q) -> np.ndarray:
    """The integer GELU value ``h`` (scale ``config.gelu_scale``) before requantization."""
    q = check_input(config, q, "gelu/ibert input")
    diff = clipped_distance(q, config.b_int)
    return erf_tail(q, diff * diff + config.c_int, config.shift, config.one)


@tabulated
def run_ibert(config: IBertGeluConfig, q) -> np.ndarray:
    """I-BERT i-GELU then dyadic requantization to ``out_bits`` codes."""
    return requantize(config.requant, ibert_integer_gelu(config, q))


example_ibert = example_builder(IBertGeluConfig)
calibrate_ibert = scale_only_calibration(IBertGeluConfig, "gelu/ibert")


OPERATOR = Operator(
    name="gelu/ibert", description="i-GELU: second-order erf polynomial",
    source="I-BERT (Kim et al., ICML 2021) i-GELU (reference IntGELU)",
    config_type=IBertGeluConfig, run=run_ibert, reference=reference,
    example_config=example_ibert, sweep_inputs=sweep_inputs, calibrate=calibrate_ibert,
    fast_run=fast_tabulated(run_ibert))
