"""``layernorm/fqvit``: FQ-ViT Power-of-Two-Factor LayerNorm (Lin et al., IJCAI 2022, Sec. 3.2;
the authors' ``QIntLayerNorm`` and ``PtfObserver``) with integer row statistics. Config,
integer function, Operator record; the float reference is :func:`.common.reference`, the unit
``intvit.hw.layernorm.fqvit``. What comes from the paper and what is intvit's definition:
docs/method.md, section 4.3."""
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ...integer import check_int, check_scale, clamp, signed_range
from ...operator import Operator
from .common import (EPS, MAX_BIAS, RowConfig, affine_vectors, bit_length, bitserial_isqrt,
                     bitserial_steps, calibrated_out_scale, calibration_samples, check_bits,
                     check_ints, checked_scales, example_config, reference, round_half_up,
                     row_input, signed_bits, sweep_inputs)

NAME = "layernorm/fqvit"
ALPHA_MAX = 3
"""FQ-ViT PTF factors ``alpha_c`` in 0..3 (FQ-ViT ``observer/ptf.py``: scales s, 2s, 4s, 8s)."""
SHIFT_MAX = 31
"""FQ-ViT ``get_MN``: ``N = clamp(7 - floor(log2 |A|), 0, 31)``."""
GAMMA_BITS = 16
"""``|gamma_int_c| < 2**16``: the per-channel gain constant of the FQ-ViT path."""
RECIP_EXTRA = 16
"""Row reciprocal ``floor(2**recip_shift / r)`` keeps at least 16 significant bits."""
MAX_RECIP_SHIFT = 46
"""``|gamma_int| * 2**(recip_shift - root_frac) < 2**62``."""
ROOT_FRAC = 8
"""Fraction bits of the integer root (fewer where int64 runs out)."""


@dataclass(frozen=True)
class PTFLayerNormConfig(RowConfig):
    """FQ-ViT Power-of-Two-Factor LayerNorm (Lin et al., IJCAI 2022, Sec. 3.2; the authors'
    ``QIntLayerNorm`` and ``PtfObserver``), integer statistics.

    Channel ``c`` is quantized at ``in_scale * 2**alpha_c`` (``alpha_c`` in ``0..alpha_max``);
    ``in_scale`` is the finest step. Per row: ``q' = q << alpha`` (all channels on ``in_scale``);
    ``S1 = sum q'``, ``S2 = sum q'**2``; ``D = C*S2 - S1**2`` (``C**2`` times the variance, exact);
    ``d = C*q' - S1`` (``C`` times the centred value, exact), so the normalized value is
    ``d / sqrt(D)``. Root with ``k = root_frac`` fraction bits:
    ``r = max(isqrt(D << 2k), 2**k)`` (:func:`.common.bitserial_isqrt`, ``sqrt_steps``).
    FQ-ViT's gain ``A = gamma / (sigma * out_scale)`` is encoded per row and channel as
    ``sign_c * M / 2**N`` with an 8-bit ``M`` (their ``get_MN``), in integers: one reciprocal per
    row ``R = 2**recip_shift // r``; ``P = |gamma_int_c| * R`` (the gain times ``2**point``,
    ``point = gamma_frac + recip_shift - root_frac``,
    ``gamma_int_c = round(gamma_c / out_scale * 2**gamma_frac)``);
    ``N = clamp(point + 7 - (bit_length(P) - 1), 0, max_shift)`` (leading one);
    ``M = clamp(P >> (point - N), 0, 255)``;
    ``out = clamp((sign_c * M * d + (beta_int_c >> (max_shift - N))) >> N)`` with
    ``beta_int_c = round(beta_c / out_scale * 2**max_shift) + 2**(max_shift - 1)``: one rounding,
    half up, of ``sign_c * M * d / 2**N + beta_c / out_scale`` (``floor((a + floor(b/2**j))/2**N)
    = floor((a 2**j + b)/2**(j+N))``).

    Choices where FQ-ViT computes in float: ``M`` multiplies the exact centred ``d`` (FQ-ViT
    multiplies ``q`` and puts the mean into ``B`` with the float ``A``; with an 8-bit ``M`` that
    leaves up to ``|mean|/sigma * |A|/128`` LSB of uncancelled mean); this gain is per ``d``, ``C``
    times smaller than FQ-ViT's, so ``max_shift = 31 + ceil(log2 C)`` where FQ-ViT clamps ``N``
    to 31; ``root_frac`` (up to 8, as int64 allows) keeps the floor of the root from costing
    ``1/r`` on low-variance rows.

    Widths: ``|S1| < 2**(sum_bits-1)``; ``S2 <= sumsq_bound``;
    ``0 <= D <= C*S2 <= var_bound < 2**var_bits``, ``var_bits + 2 root_frac <= 62``;
    ``R <= 2**(recip_shift - root_frac)`` (``recip_bits``), ``P < 2**62``;
    ``|M d| <= 255 * 2 C * 2**(in_bits-1+alpha_max)``.
    """

    mult_bits: ClassVar[int] = 8
    """FQ-ViT ``get_MN``: ``bit = 7``, ``M = clamp(floor(|A| * 2**N), 0, 255)`` (8 bits)."""

    in_bits: int
    out_bits: int
    alpha: tuple
    alpha_max: int
    root_frac: int
    sqrt_steps: int
    gamma_int: tuple
    gamma_frac: int
    recip_shift: int
    beta_int: tuple
    max_shift: int
    in_scale: float
    out_scale: float
    gamma: tuple
    beta: tuple
    eps: float = EPS

    def __post_init__(self):
        owner = "PTFLayerNormConfig"
        self.check_row_fields(owner)
        check_int(owner, "alpha_max", self.alpha_max, 0, 8)
        check_ints(owner, "alpha", self.alpha, 0, self.alpha_max, self.channels)
        check_int(owner, "var_bits", self.var_bits, 1, 62,
                  "C**2 * 4**(in_bits-1+alpha) overflows int64; use fewer bits or channels")
        check_int(owner, "root_frac", self.root_frac, 0, (62 - self.var_bits) // 2)
        check_int(owner, "sqrt_steps", self.sqrt_steps,
                  bitserial_steps(self.var_bound << 2 * self.root_frac), 31,
                  "fewer steps do not cover (C*S2 - S1**2) << 2*root_frac")
        check_int(owner, "max_shift", self.max_shift, 0, 48)
        check_int(owner, "gamma_frac", self.gamma_frac, -64, 64)
        check_int(owner, "recip_shift", self.recip_shift,
                  max(self.max_shift - self.gamma_frac + self.root_frac, self.root_bits),
                  self.root_frac + MAX_RECIP_SHIFT,
                  "needs gamma_frac + recip_shift - root_frac >= max_shift")
        limit = (1 << GAMMA_BITS) - 1
        check_ints(owner, "gamma_int", self.gamma_int, -limit, limit, self.channels)
        check_ints(owner, "beta_int", self.beta_int, -MAX_BIAS, MAX_BIAS, self.channels)

    @property
    def channel_scales(self) -> np.ndarray:
        """``in_scale * 2**alpha_c``: the step of each channel's input codes."""
        return self.in_scale * np.exp2(np.array(self.alpha, dtype=np.float64))

    @property
    def sum_bits(self) -> int:
        """Signed width of ``S1 = sum (q << alpha)``."""
        lo, hi = signed_range(self.in_bits)
        return signed_bits(sum(lo << a for a in self.alpha), sum(hi << a for a in self.alpha))

    @property
    def sumsq_bound(self) -> int:
        """Largest ``S2``: every ``q_c`` at ``-2**(in_bits-1)``."""
        return ptf_sumsq_bound(self.in_bits, self.alpha)

    @property
    def var_bound(self) -> int:
        """Largest ``C*S2`` (the widest product; ``0 <= D <= C*S2``)."""
        return self.channels * self.sumsq_bound

    @property
    def var_bits(self) -> int:
        return self.var_bound.bit_length()

    @property
    def root_bits(self) -> int:
        """Width of ``r = isqrt(D << 2 root_frac)``."""
        return math.isqrt(self.var_bound << 2 * self.root_frac).bit_length()

    def spread(self, s1, s2):
        """``(C*S2 - S1**2) << 2 root_frac``: the radicand (ints, numpy arrays or hardware
        values alike)."""
        return (self.channels * s2 - s1 * s1) << 2 * self.root_frac

    @property
    def root_floor(self) -> int:
        """``2**root_frac``: the root is clamped to 1 (an all-equal row has ``D = 0``)."""
        return 1 << self.root_frac

    @property
    def recip_numerator(self) -> int:
        """``2**recip_shift``: ``R = recip_numerator // r``."""
        return 1 << self.recip_shift

    @property
    def recip_bits(self) -> int:
        """Unsigned width of ``R <= 2**(recip_shift - root_frac)`` (``r >= root_floor``)."""
        return (self.recip_numerator // self.root_floor).bit_length()

    @property
    def point(self) -> int:
        """Binary point of ``P = |gamma_int_c| R``: ``gamma_frac + recip_shift - root_frac``."""
        return self.gamma_frac + self.recip_shift - self.root_frac

    @property
    def gamma_magnitude(self) -> tuple:
        """``|gamma_int_c|``."""
        return tuple(abs(g) for g in self.gamma_int)

    @property
    def gamma_sign(self) -> tuple:
        """``sign(gamma_int_c)`` in -1, 0, 1."""
        return tuple((g > 0) - (g < 0) for g in self.gamma_int)

    @classmethod
    def from_scale(cls, in_scale, gamma, beta, out_scale=None, in_bits: int = 8,
                   out_bits: int = 8, alpha=None, alpha_max: int = ALPHA_MAX,
                   eps: float = EPS) -> "PTFLayerNormConfig":
        """Constants from the finest input step ``in_scale``, the factors ``alpha`` (default all
        0), ``gamma``/``beta`` and the output scale (``None``: no saturation possible); ``eps``
        is the float reference's."""
        owner = "PTFLayerNormConfig.from_scale"
        in_scale, gamma, beta, out_scale = checked_scales(owner, in_scale, gamma, beta,
                                                          out_scale, in_bits, out_bits)
        channels = len(gamma)
        check_int(owner, "alpha_max", alpha_max, 0, 8)
        alpha = (0,) * channels if alpha is None else tuple(alpha)
        check_ints(owner, "alpha", alpha, 0, alpha_max, channels)
        alpha = tuple(int(a) for a in alpha)
        max_shift = SHIFT_MAX + (channels - 1).bit_length()
        largest = max(abs(g) for g in gamma) / out_scale
        gamma_frac = 0 if largest == 0.0 else GAMMA_BITS - math.frexp(largest)[1]
        if round_half_up(largest * 2.0 ** gamma_frac) >= 1 << GAMMA_BITS:
            gamma_frac -= 1
        gamma_int = tuple(round_half_up(g / out_scale * 2.0 ** gamma_frac) for g in gamma)
        half = 1 << (max_shift - 1)
        beta_int = tuple(round_half_up(b / out_scale * 2.0 ** max_shift) + half for b in beta)
        var_bound = channels * ptf_sumsq_bound(in_bits, alpha)
        root_frac = max(0, min(ROOT_FRAC, (62 - var_bound.bit_length()) // 2))
        root_bits = math.isqrt(var_bound << 2 * root_frac).bit_length()
        recip_shift = max(root_bits + RECIP_EXTRA, max_shift - gamma_frac + root_frac)
        return cls(in_bits=in_bits, out_bits=out_bits, alpha=alpha, alpha_max=alpha_max,
                   root_frac=root_frac, sqrt_steps=bitserial_steps(var_bound << 2 * root_frac),
                   gamma_int=gamma_int, gamma_frac=gamma_frac, recip_shift=recip_shift,
                   beta_int=beta_int, max_shift=max_shift, in_scale=in_scale,
                   out_scale=out_scale, gamma=gamma, beta=beta, eps=eps)

    @classmethod
    def calibrate(cls, in_scale, samples, *, in_bits: int = 8, out_bits: int = 8, gamma, beta,
                  alpha_max: int = ALPHA_MAX, eps: float = EPS) -> "PTFLayerNormConfig":
        """Factors and ``out_scale`` from the samples (``out_scale``: the float LayerNorm with
        ``eps``, the model's).

        ``in_scale`` is the layer's per-tensor step (FQ-ViT's coarsest scale, ``alpha = K``);
        the finest step is ``in_scale / 2**K``. Per channel, ``alpha_c`` minimizes the squared
        error of symmetric ``in_bits`` quantization of the channel's samples at
        ``in_scale * 2**(alpha - K)``; ties go to the smaller ``alpha`` (FQ-ViT ``PtfObserver``,
        L2 score, first minimum).
        """
        owner = "PTFLayerNormConfig.calibrate"
        gamma, beta = affine_vectors(owner, gamma, beta)
        samples = calibration_samples(owner, samples, len(gamma))
        check_bits(owner, in_bits, out_bits)
        check_int(owner, "alpha_max", alpha_max, 0, 8)
        base = check_scale(owner, "in_scale", in_scale) / (1 << alpha_max)
        lo, hi = signed_range(in_bits)
        errors = []
        for factor in range(alpha_max + 1):
            step = base * (1 << factor)
            restored = np.clip(np.floor(samples / step + 0.5), lo, hi) * step
            errors.append(((samples - restored) ** 2).sum(axis=0))
        alpha = tuple(int(a) for a in np.argmin(np.array(errors), axis=0))
        out_scale = calibrated_out_scale(owner, samples, gamma, beta, out_bits, eps)
        return cls.from_scale(base, gamma, beta, out_scale, in_bits, out_bits, alpha, alpha_max,
                              eps)


def ptf_sumsq_bound(in_bits: int, alpha) -> int:
    """Largest ``S2 = sum (q_c << alpha_c)**2``: every ``q_c = -2**(in_bits-1)``."""
    return sum(1 << 2 * (in_bits - 1 + a) for a in alpha)


def run_fqvit(cfg: PTFLayerNormConfig, q) -> np.ndarray:
    """FQ-ViT PTF LayerNorm of each row, integer statistics (class docstring)."""
    q = row_input(cfg, q, NAME)
    aligned = q << np.array(cfg.alpha, dtype=np.int64)
    s1 = aligned.sum(axis=-1, keepdims=True)
    s2 = (aligned * aligned).sum(axis=-1, keepdims=True)
    root = np.maximum(bitserial_isqrt(cfg.spread(s1, s2), cfg.sqrt_steps), cfg.root_floor)
    gain = np.array(cfg.gamma_magnitude, dtype=np.int64) * (cfg.recip_numerator // root)
    shift = clamp(cfg.point + cfg.mult_bits - bit_length(gain), 0, cfg.max_shift)
    mult = clamp(gain >> (cfg.point - shift), 0, (1 << cfg.mult_bits) - 1)
    sign = np.array(cfg.gamma_sign, dtype=np.int64)
    beta = np.array(cfg.beta_int, dtype=np.int64) >> (cfg.max_shift - shift)
    centred = cfg.channels * aligned - s1
    return clamp((sign * mult * centred + beta) >> shift, *signed_range(cfg.out_bits))


def example_fqvit(in_bits: int = 8, out_bits: int = 8, channels: int = 64, seed: int = 0,
                  alpha_max: int = ALPHA_MAX):
    """FQ-ViT config calibrated on :func:`.common.example_samples` (``alpha`` from the
    samples)."""
    return example_config(PTFLayerNormConfig, in_bits, out_bits, channels, seed,
                          alpha_max=alpha_max)


OPERATOR = Operator(
    name=NAME,
    description="FQ-ViT PTF LayerNorm: per-channel 2^alpha inputs, C*S2-S1^2, 8-bit M/2^N",
    source="FQ-ViT (Lin et al., IJCAI 2022) Sec. 3.2 Power-of-Two Factor",
    config_type=PTFLayerNormConfig, run=run_fqvit, reference=reference,
    example_config=example_fqvit, sweep_inputs=sweep_inputs, row_wise=True,
    calibrate=PTFLayerNormConfig.calibrate)
