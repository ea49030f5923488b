"""``layernorm/ivit``: I-ViT I-LayerNorm (Li & Gu, ICCV 2023, Sec. 3.4; the authors'
``IntLayerNorm``). Config, integer function, Operator record; the float reference is
:func:`.common.reference`, the unit ``intvit.hw.layernorm.ivit``. What comes from the paper
and what is intvit's definition: docs/method.md, section 4.2."""
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ...integer import check_int
from ...operator import Operator
from .common import (EPS, RECIP_BITS, CentredConfig, bitserial_isqrt, bitserial_steps, centre,
                     centred_sumsq_bound, checked_scales, example_config, fast_centred,
                     fold_affine, fold_output, normalize, reference, row_input, shifted_sumsq,
                     sweep_inputs)

NAME = "layernorm/ivit"


@dataclass(frozen=True)
class ShiftLayerNormConfig(CentredConfig):
    """I-ViT I-LayerNorm (Li & Gu, ICCV 2023, Sec. 3.4; the authors' ``IntLayerNorm``), the row
    steps of :class:`.common.CentredConfig` without an overflow shift.

    Per row: ``mu = round(sum q / C)`` (half up); ``y = q - mu``; ``v = sum y**2``;
    ``sigma = max(isqrt(v), 1)``; ``f = recip_numerator // sigma`` with I-ViT's ``2**31 - 1``;
    ``z = (y * f) >> 1`` (real value ``z * 2 sqrt(C) / (2**31 - 1)`` in units of the row's
    std); then the affine fold.

    Square root: the authors run 10 Newton steps from ``2**16``, which is not exact (``v = 0``
    ends at 64; it is off by more than 1 for ``v < 2**15`` and ``v >= 2**45``: on the example
    config's rows it changes 79% of the outputs, by up to 60 LSB). I-ViT's premise is shift
    arithmetic, so ours is the digit-by-digit root :func:`.common.bitserial_isqrt` (shifts and
    subtractions, no divider), exact in ``sqrt_steps = ceil(sumsq_bits / 2)`` steps.

    Widths: ``sum q`` is ``sum_bits`` signed; ``v <= sumsq_bound``
    (:func:`.common.centred_sumsq_bound`, ``sumsq_bits`` unsigned); ``|y| <= sigma`` so
    ``|z| < 2**30``; the fold sum is below 2**62.
    """

    recip_numerator: ClassVar[int] = (1 << RECIP_BITS) - 1
    """I-ViT ``factor = floor((2**31 - 1) / std_int)``."""
    var_shift: ClassVar[int] = 0
    """I-ViT sums ``y**2`` unshifted (no overflow guard)."""

    in_bits: int
    out_bits: int
    sqrt_steps: int
    mult: tuple
    bias: tuple
    out_shift: int
    in_scale: float
    out_scale: float
    gamma: tuple
    beta: tuple
    eps: float = EPS

    def __post_init__(self):
        owner = "ShiftLayerNormConfig"
        self.check_row_fields(owner)
        check_int(owner, "sqrt_steps", self.sqrt_steps, bitserial_steps(self.sumsq_bound), 31,
                  "fewer steps do not cover the variance")
        self.check_fold(owner)

    @property
    def sumsq_bound(self) -> int:
        return centred_sumsq_bound(self.in_bits, self.channels)

    @classmethod
    def from_scale(cls, in_scale, gamma, beta, out_scale=None, in_bits: int = 8,
                   out_bits: int = 8, eps: float = EPS) -> "ShiftLayerNormConfig":
        """Constants from the scales and ``gamma``/``beta`` (``out_scale=None``: no saturation);
        ``eps`` is the float reference's."""
        owner = "ShiftLayerNormConfig.from_scale"
        in_scale, gamma, beta, out_scale = checked_scales(owner, in_scale, gamma, beta,
                                                          out_scale, in_bits, out_bits)
        channels = len(gamma)
        mult, bias, shift = fold_affine(owner, gamma, beta, cls.norm_scale(channels), out_scale)
        steps = bitserial_steps(centred_sumsq_bound(in_bits, channels))
        return cls(in_bits=in_bits, out_bits=out_bits, sqrt_steps=steps, mult=mult, bias=bias,
                   out_shift=shift, in_scale=in_scale, out_scale=out_scale, gamma=gamma,
                   beta=beta, eps=eps)


def run_ivit(cfg: ShiftLayerNormConfig, q) -> np.ndarray:
    """I-ViT integer LayerNorm of each row (class docstring)."""
    q = row_input(cfg, q, NAME)
    y = centre(cfg, q)
    root = bitserial_isqrt(shifted_sumsq(cfg, y), cfg.sqrt_steps)
    return fold_output(cfg, normalize(cfg, y, root))


def example_ivit(in_bits: int = 8, out_bits: int = 8, channels: int = 64, seed: int = 0):
    """I-ViT config calibrated on :func:`.common.example_samples`."""
    return example_config(ShiftLayerNormConfig, in_bits, out_bits, channels, seed)


OPERATOR = Operator(
    name=NAME,
    description="I-ViT I-LayerNorm: rounded mean, bit-serial isqrt, (2^31-1)/sigma",
    source="I-ViT (Li & Gu, ICCV 2023) Sec. 3.4 I-LayerNorm",
    config_type=ShiftLayerNormConfig, run=run_ivit, reference=reference,
    example_config=example_ivit, sweep_inputs=sweep_inputs, row_wise=True,
    calibrate=ShiftLayerNormConfig.calibrate,
    fast_run=fast_centred(lambda cfg, v: bitserial_isqrt(v, cfg.sqrt_steps)))
