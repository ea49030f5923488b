"""``layernorm/ibert``: I-BERT integer LayerNorm (Kim et al., ICML 2021, Sec. 3.5 and
Algorithm 4 i-sqrt; the authors' ``IntLayerNorm``). Config, integer function, Operator record;
the float reference is :func:`.common.reference`, the unit ``intvit.hw.layernorm.ibert``.
What comes from the paper and what is intvit's definition: docs/method.md, section 4.1."""
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ...integer import check_int
from ...operator import Operator
from .common import (EPS, RECIP_BITS, CentredConfig, centre, checked_scales, example_config,
                     fast_centred, fold_affine, fold_output, newton_isqrt, newton_iterations,
                     normalize, reference, row_input, shifted_sumsq, shifted_sumsq_bound,
                     sweep_inputs)

NAME = "layernorm/ibert"
MAX_VAR_BITS = 32
"""I-BERT ``max_bit = 32``: the shifted variance stays below 2**32 (I-BERT code, IntLayerNorm)."""


@dataclass(frozen=True)
class IBertLayerNormConfig(CentredConfig):
    """I-BERT integer LayerNorm (Kim et al., ICML 2021, Sec. 3.5 and Algorithm 4; the authors'
    ``IntLayerNorm``), the row steps of :class:`.common.CentredConfig`.

    Per row: ``mu = round(sum q / C)`` (half up); ``y = q - mu``;
    ``v = sum ((y >> var_shift)**2)`` with ``var_shift`` the smallest shift keeping ``v`` below
    ``2**max_var_bits`` (I-BERT ``max_bit = 32``; the paper calibrates it, ours is derived from
    the worst case :func:`.common.shifted_sumsq_bound`); ``sigma = max(isqrt(v), 1) << var_shift``
    with the exact Newton :func:`.common.newton_isqrt` (``sqrt_iterations`` steps; the authors'
    code uses a float sqrt); ``f = recip_numerator // sigma`` with I-BERT's ``2**31``;
    ``z = (y * f) >> 1`` (real value ``z * sqrt(C)/2**30`` in units of the row's std); then the
    affine fold.

    Widths: ``sum q`` is ``sum_bits`` signed; ``v < 2**sumsq_bits <= 2**32``; ``f <= 2**31``;
    ``|y| < 2 sigma`` so ``|z| < 2**31`` (``z_bits``); ``|z * mult| < 2**46``; the fold sum is
    below 2**62.
    """

    recip_numerator: ClassVar[int] = 1 << RECIP_BITS
    """I-BERT ``factor = floor(2**31 / std_int)``."""

    in_bits: int
    out_bits: int
    var_shift: int
    sqrt_iterations: int
    mult: tuple
    bias: tuple
    out_shift: int
    in_scale: float
    out_scale: float
    gamma: tuple
    beta: tuple
    eps: float = EPS
    max_var_bits: int = MAX_VAR_BITS

    def __post_init__(self):
        owner = "IBertLayerNormConfig"
        check_int(owner, "max_var_bits", self.max_var_bits, 16, 62)
        self.check_row_fields(owner)
        check_int(owner, "var_shift", self.var_shift,
                  ibert_var_shift(self.in_bits, self.channels, self.max_var_bits),
                  self.in_bits + 1, f"the shifted variance must stay below 2**{self.max_var_bits}")
        check_int(owner, "sqrt_iterations", self.sqrt_iterations,
                  newton_iterations(self.sumsq_bound), 64, "fewer steps are not exact")
        self.check_fold(owner)

    @property
    def sumsq_bound(self) -> int:
        return shifted_sumsq_bound(self.in_bits, self.channels, self.var_shift)

    @classmethod
    def from_scale(cls, in_scale, gamma, beta, out_scale=None, in_bits: int = 8,
                   out_bits: int = 8, eps: float = EPS) -> "IBertLayerNormConfig":
        """Constants from the input scale, LayerNorm ``gamma``/``beta`` and the output scale
        (``None``: :func:`.common.default_out_scale`, no saturation possible); ``eps`` is the
        float reference's."""
        owner = "IBertLayerNormConfig.from_scale"
        in_scale, gamma, beta, out_scale = checked_scales(owner, in_scale, gamma, beta,
                                                          out_scale, in_bits, out_bits)
        channels = len(gamma)
        var_shift = ibert_var_shift(in_bits, channels, MAX_VAR_BITS)
        mult, bias, shift = fold_affine(owner, gamma, beta, cls.norm_scale(channels), out_scale)
        iterations = newton_iterations(shifted_sumsq_bound(in_bits, channels, var_shift))
        return cls(in_bits=in_bits, out_bits=out_bits, var_shift=var_shift,
                   sqrt_iterations=iterations, mult=mult, bias=bias, out_shift=shift,
                   in_scale=in_scale, out_scale=out_scale, gamma=gamma, beta=beta, eps=eps)


def ibert_var_shift(in_bits: int, channels: int, max_var_bits: int) -> int:
    """Smallest shift with :func:`.common.shifted_sumsq_bound` ``< 2**max_var_bits``."""
    shift = 0
    while shifted_sumsq_bound(in_bits, channels, shift) >= 1 << max_var_bits:
        shift += 1
    return shift


def run_ibert(cfg: IBertLayerNormConfig, q) -> np.ndarray:
    """I-BERT integer LayerNorm of each row (class docstring)."""
    q = row_input(cfg, q, NAME)
    y = centre(cfg, q)
    root = newton_isqrt(shifted_sumsq(cfg, y), cfg.sqrt_iterations)
    return fold_output(cfg, normalize(cfg, y, root))


def example_ibert(in_bits: int = 8, out_bits: int = 8, channels: int = 64, seed: int = 0):
    """I-BERT config calibrated on :func:`.common.example_samples`."""
    return example_config(IBertLayerNormConfig, in_bits, out_bits, channels, seed)


OPERATOR = Operator(
    name=NAME,
    description="I-BERT LayerNorm: rounded mean, overflow shift, Newton isqrt, 2^31/sigma",
    source="I-BERT (Kim et al., ICML 2021) Sec. 3.5, Algorithm 4 (i-sqrt)",
    config_type=IBertLayerNormConfig, run=run_ibert, reference=reference,
    example_config=example_ibert, sweep_inputs=sweep_inputs, row_wise=True,
    calibrate=IBertLayerNormConfig.calibrate,
    fast_run=fast_centred(lambda cfg, v: newton_isqrt(v, cfg.sqrt_iterations)))
