"""LayerNorm candidates over the last axis: I-BERT, I-ViT (shift-based) and FQ-ViT (PTF).

Shared interface (all three):

- Input: signed ``in_bits`` codes (2..16), row = last axis = the ``C`` channels of ``gamma`` and
  ``beta``; any leading shape. Real input ``x_c = q_c * channel_scales[c]`` (``in_scale`` for
  I-BERT and I-ViT; ``in_scale * 2**alpha_c`` for FQ-ViT).
- Output: signed ``out_bits`` codes at ``out_scale``, saturated; real ``y = code * out_scale``.
- Float reference: ``gamma * (x - mean) / sqrt(var + eps) + beta``, biased variance,
  ``eps = 1e-6`` (timm ViT). The integer paths have no eps (as in all three papers): they agree
  with it unless the row's real variance is near ``eps``.
- All-equal row (variance 0): the integer root is clamped to (the code of) 1 before the
  division, the centred values are 0, so the output is ``round(beta_c / out_scale)`` -- what
  the float reference gives.
- Rounding at build time is half up (``floor(v + 1/2)``); at run time ``>>`` is floor and every
  ``//`` is floor division of non-negative operands unless stated.

I-BERT and I-ViT share the affine fold (``norm_scale`` is the real value of one ``z`` step):
``mult_c = round(gamma_c * norm_scale * 2**p / out_scale)`` (signed, ``|mult_c| < 2**15``, ``p``
the largest shift that allows it) and ``bias_c = round(beta_c * 2**p / out_scale) + 2**(p-1)``
(the rounding constant folded in), so ``out_c = clamp((z * mult_c + bias_c) >> p)`` is
``round(z * gamma_c * norm_scale / out_scale + beta_c / out_scale)`` half up. I-ViT folds
``floor(beta/gamma / norm_scale)`` into ``z`` and leaves ``gamma * norm_scale`` to the next
quantizer; that is unbounded as ``gamma -> 0``, so both use this fold.
"""
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import ConfigError, IntvitError
from ..integer import as_int_array, check_int, check_scale, clamp, signed_range
from ..operator import Operator

EPS = 1e-6
"""LayerNorm eps of the float reference (timm ViT ``nn.LayerNorm(eps=1e-6)``)."""
MAX_CHANNELS = 1 << 16
"""Largest row length; keeps every accumulator below 2**63 for 16-bit inputs."""
AFFINE_MULT_BITS = 16
"""I-BERT/I-ViT fold: ``mult_c`` is a signed 16-bit constant (one DSP operand)."""
MAX_AFFINE_SHIFT = 56
"""Largest fold shift ``p``; ``|z * mult| < 2**46``, ``|bias| <= 2**61``: the sum fits int64."""
MAX_BIAS = 1 << 61
IBERT_MAX_VAR_BITS = 32
"""I-BERT ``max_bit = 32``: the shifted variance stays below 2**32 (I-BERT code, IntLayerNorm)."""
RECIP_BITS = 31
"""Reciprocal numerator ``2**31`` (I-BERT) or ``2**31 - 1`` (I-ViT), both reference codes."""
PTF_ALPHA_MAX = 3
"""FQ-ViT PTF factors ``alpha_c`` in 0..3 (FQ-ViT ``observer/ptf.py``: scales s, 2s, 4s, 8s)."""
PTF_MULT_BITS = 8
"""FQ-ViT ``get_MN``: ``bit = 7``, ``M = clamp(floor(|A| * 2**N), 0, 255)`` (8-bit multiplier)."""
PTF_SHIFT_MAX = 31
"""FQ-ViT ``get_MN``: ``N = clamp(7 - floor(log2 |A|), 0, 31)``."""
PTF_GAMMA_BITS = 16
"""``|gamma_int_c| < 2**16``: the per-channel gain constant of the FQ-ViT path."""
PTF_RECIP_EXTRA = 16
"""Row reciprocal ``floor(2**recip_shift / r)`` keeps at least 16 significant bits."""
MAX_PTF_RECIP_SHIFT = 46
"""``|gamma_int| * 2**(recip_shift - root_frac) < 2**62``."""
PTF_ROOT_FRAC = 8
"""Fraction bits of the FQ-ViT path's integer root (fewer where int64 runs out)."""


# --- integer building blocks ------------------------------------------------------------------

def bit_length(x):
    """``int.bit_length`` elementwise for ``0 <= x < 2**63``: a binary search for the leading one
    (a priority encoder in hardware); integer ops only."""
    count = x - x
    for step in (32, 16, 8, 4, 2, 1):
        shift = ((x >> step) > 0) * step
        count = count + shift
        x = x >> shift
    return count + (x > 0)


def newton_isqrt(v, iterations: int):
    """``floor(sqrt(v))`` by I-BERT's integer Newton (i-sqrt, Kim et al. 2021, Algorithm 4).

    Start ``x0 = 2**ceil(bit_length(v)/2) >= sqrt(v)``; step ``x <- min(x, (x + v // x) >> 1)``
    (I-BERT stops at the first step that does not decrease; keeping the minimum is the same with
    a fixed count). Exact after :func:`newton_iterations` ``(max v)`` steps.
    """
    x = 1 << ((bit_length(v) + 1) >> 1)
    for _ in range(iterations):
        x = np.minimum(x, (x + v // np.maximum(x, 1)) >> 1)
    return x


def newton_iterations(bound: int) -> int:
    """Steps after which :func:`newton_isqrt` is exact for every ``0 <= v <= bound``.

    Real Newton from ``x0 <= 2 sqrt(v)`` has relative error ``e0 <= 1``,
    ``e_{k+1} = e_k**2 / (2 (1 + e_k))``; the integer iterate (floors, ``>= isqrt(v)``) is never
    above it. Once ``sqrt(bound) * e_k < 1`` the iterate is ``isqrt(v)`` or ``isqrt(v) + 1``, and
    one more step removes the ``+ 1``. Returns that ``k + 1`` (at least 1, for ``v = 0``).
    """
    error, steps = Fraction(1), 0
    while bound * error * error >= 1:
        error = error * error / (2 * (1 + error))
        steps += 1
    return steps + 1


def bitserial_isqrt(v, steps: int):
    """``floor(sqrt(v))`` for ``0 <= v < 4**steps`` digit by digit (restoring, one result bit per
    step, shifts and subtractions only): exact by construction."""
    root = v - v
    remainder = v
    bit = 1 << (2 * (steps - 1))
    for _ in range(steps):
        trial = root + bit
        take = remainder >= trial
        remainder = remainder - trial * take
        root = (root >> 1) + bit * take
        bit >>= 2
    return root


def bitserial_steps(bound: int) -> int:
    """Steps of :func:`bitserial_isqrt` for every ``0 <= v <= bound``: ``ceil(bit_length/2)``."""
    return max(1, (bound.bit_length() + 1) // 2)


def signed_bits(lo: int, hi: int) -> int:
    """Smallest two's-complement width holding ``lo..hi``."""
    return max((-lo - 1).bit_length(), hi.bit_length()) + 1


def centred_sumsq_bound(in_bits: int, channels: int) -> int:
    """Largest ``sum_c (q_c - mu)**2`` for ``in_bits`` codes, ``mu`` the rounded row mean:
    ``C ((2**b - 1)**2 + 1) / 4`` (Popoviciu: ``sum (q - mean)**2 <= C (hi - lo)**2 / 4``, plus
    ``C (mean - mu)**2 <= C/4``); attained for even ``C`` by half the row at each extreme."""
    return channels * (((1 << in_bits) - 1) ** 2 + 1) // 4


def shifted_sumsq_bound(in_bits: int, channels: int, shift: int) -> int:
    """Largest ``sum_c ((q_c - mu) >> shift)**2``: ``(q - mu) >> s = (q - mu)/2**s - f``,
    ``0 <= f < 1``, so by Minkowski its norm is below ``sqrt(V)/2**s + sqrt(C)``
    (``V`` = :func:`centred_sumsq_bound`); ``V`` itself for ``shift = 0``."""
    bound = centred_sumsq_bound(in_bits, channels)
    if shift == 0:
        return bound
    root = math.isqrt(bound - 1) + 1 + (math.isqrt(channels - 1) + 1 << shift)
    return -(-root * root >> 2 * shift)


# --- build-time helpers -----------------------------------------------------------------------

def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _check_bits(owner: str, in_bits, out_bits) -> None:
    check_int(owner, "in_bits", in_bits, 2, 16)
    check_int(owner, "out_bits", out_bits, 2, 16)


def _affine_vectors(owner: str, gamma, beta) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``gamma`` and ``beta`` as equal-length tuples of finite floats."""
    try:
        gamma = np.asarray(gamma, dtype=np.float64)
        beta = np.asarray(beta, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{owner}: gamma and beta must be 1-D real arrays") from None
    if gamma.ndim != 1 or beta.shape != gamma.shape or not 1 <= gamma.size <= MAX_CHANNELS:
        raise ConfigError(f"{owner}: gamma {gamma.shape} and beta {beta.shape} must be 1-D of the "
                          f"same length 1..{MAX_CHANNELS} (the channel count C)")
    if not (np.all(np.isfinite(gamma)) and np.all(np.isfinite(beta))):
        raise ConfigError(f"{owner}: gamma and beta must be finite (found NaN or inf)")
    return tuple(float(g) for g in gamma), tuple(float(b) for b in beta)


def _check_records(owner: str, cfg, channels: int) -> None:
    check_scale(owner, "in_scale", cfg.in_scale)
    check_scale(owner, "out_scale", cfg.out_scale)
    check_scale(owner, "eps", cfg.eps)
    for name in ("gamma", "beta"):
        values = getattr(cfg, name)
        if len(values) != channels or not all(math.isfinite(v) for v in values):
            raise ConfigError(f"{owner}: {name} must hold {channels} finite values (one per "
                              "channel)")


def _check_ints(owner: str, name: str, values, lo: int, hi: int, channels: int) -> None:
    if not isinstance(values, tuple) or len(values) != channels:
        raise ConfigError(f"{owner}: {name} must be a tuple of {channels} ints (one per channel)")
    for index, value in enumerate(values):
        check_int(owner, f"{name}[{index}]", value, lo, hi)


def _default_out_scale(gamma, beta, out_bits: int) -> float:
    """No saturation: ``|(x - mean)/std| <= sqrt(C - 1)``, so ``|y_c| <= |gamma_c| sqrt(C-1) +
    |beta_c|``; the largest over channels maps to ``2**(out_bits-1) - 1``."""
    reach = max(abs(g) * math.sqrt(len(gamma) - 1) + abs(b) for g, b in zip(gamma, beta))
    return reach / ((1 << (out_bits - 1)) - 1)


def _fold_affine(owner: str, gamma, beta, norm_scale: float, out_scale: float):
    """``(mult, bias, shift)`` of the shared fold (module docstring)."""
    ratios = [g * norm_scale / out_scale for g in gamma]
    largest = max(abs(r) for r in ratios)
    limit = (1 << (AFFINE_MULT_BITS - 1)) - 1
    shift = 0 if largest == 0.0 else min(MAX_AFFINE_SHIFT,
                                         AFFINE_MULT_BITS - 1 - math.frexp(largest)[1])
    while shift > 0 and max(abs(_round_half_up(r * 2.0 ** shift)) for r in ratios) > limit:
        shift -= 1
    if shift < 0:
        raise ConfigError(f"{owner}: gamma / out_scale is too large for a 16-bit multiplier; "
                          "check out_scale")
    mult = tuple(_round_half_up(r * 2.0 ** shift) for r in ratios)
    half = (1 << shift) >> 1
    bias = tuple(_round_half_up(b * 2.0 ** shift / out_scale) + half for b in beta)
    if any(abs(b) > MAX_BIAS for b in bias):
        raise ConfigError(f"{owner}: beta / out_scale is too large (> 2**{61 - shift}); "
                          "check out_scale")
    return mult, bias, shift


def _float_layernorm(x, gamma, beta, eps: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * np.asarray(gamma) + np.asarray(beta)


def _calibration_samples(owner: str, samples, channels: int) -> np.ndarray:
    try:
        samples = np.asarray(samples, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{owner}: samples must be a real array") from None
    if samples.ndim < 1 or samples.shape[-1] != channels or samples.size == 0:
        raise ConfigError(f"{owner}: samples {samples.shape} must be non-empty rows of "
                          f"{channels} channels (len(gamma))")
    if not np.all(np.isfinite(samples)):
        raise ConfigError(f"{owner}: samples contain NaN or inf; clean the calibration data")
    return samples.reshape(-1, channels)


def _calibrated_out_scale(owner: str, samples, gamma, beta, out_bits: int) -> float:
    """``max |LayerNorm(samples)| / (2**(out_bits-1) - 1)`` (float LayerNorm, eps 1e-6)."""
    reach = float(np.max(np.abs(_float_layernorm(samples, gamma, beta, EPS))))
    return check_scale(owner, "out_scale (max |LayerNorm(samples)|)",
                       reach / ((1 << (out_bits - 1)) - 1))


# --- shared run-time steps --------------------------------------------------------------------

def _row_input(cfg, q, name: str) -> np.ndarray:
    q = as_int_array(q, f"{name} input")
    if q.ndim == 0 or q.shape[-1] != cfg.channels:
        raise IntvitError(f"{name}: rows have length {q.shape[-1] if q.ndim else 0} but the config "
                          f"has {cfg.channels} channels (len(gamma)); pass rows of C values")
    lo, hi = signed_range(cfg.in_bits)
    if q.size and (q.min() < lo or q.max() > hi):
        raise IntvitError(f"{name}: input codes must be {cfg.in_bits}-bit signed ({lo}..{hi}); "
                          "requantize the input first")
    return q


def _centred(q, channels: int):
    """``y = q - mu``, ``mu = round(sum/C)`` half up: ``(2 sum + C) // (2 C)`` (floor division)."""
    total = q.sum(axis=-1, keepdims=True)
    return q - (2 * total + channels) // (2 * channels)


def _fold_output(cfg, z):
    """``clamp((z * mult_c + bias_c) >> out_shift)`` (module docstring)."""
    mult = np.array(cfg.mult, dtype=np.int64)
    bias = np.array(cfg.bias, dtype=np.int64)
    return clamp((z * mult + bias) >> cfg.out_shift, *signed_range(cfg.out_bits))


class _RowConfig:
    """Protocol properties shared by the three configs."""

    in_signed = True
    out_signed = True

    @property
    def channels(self) -> int:
        return len(self.gamma)

    @property
    def channel_scales(self) -> np.ndarray:
        """Real value of one input step per channel."""
        return np.full(self.channels, self.in_scale)

    def dequantize_output(self, y) -> np.ndarray:
        return np.asarray(y, dtype=np.float64) * self.out_scale

    @property
    def sum_bits(self) -> int:
        """Signed width of the row sum ``sum q``: ``C * lo .. C * hi``."""
        lo, hi = signed_range(self.in_bits)
        return signed_bits(self.channels * lo, self.channels * hi)


# --- I-BERT -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class IBertLayerNormConfig(_RowConfig):
    """I-BERT integer LayerNorm (Kim et al., ICML 2021, Sec. 3.5 and Algorithm 4; the authors'
    ``IntLayerNorm``).

    Per row: ``mu = round(sum q / C)`` (half up); ``y = q - mu``;
    ``v = sum ((y >> var_shift)**2)`` with ``var_shift`` the smallest shift keeping ``v`` below
    ``2**max_var_bits`` (I-BERT ``max_bit = 32``; the paper calibrates it, ours is derived from
    the worst case :func:`shifted_sumsq_bound`); ``sigma = max(isqrt(v), 1) << var_shift`` with
    the exact Newton :func:`newton_isqrt` (``sqrt_iterations`` steps; the authors' code uses a
    float sqrt); ``f = 2**31 // sigma``; ``z = (y * f) >> 1`` (real value ``z * sqrt(C)/2**30``
    in units of the row's std); then the affine fold.

    Widths: ``sum q`` is ``sum_bits`` signed; ``v < 2**sumsq_bits <= 2**32``; ``f <= 2**31``;
    ``|y| < 2 sigma`` so ``|z| < 2**31``; ``|z * mult| < 2**46``; the fold sum is below 2**62.
    """

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
    max_var_bits: int = IBERT_MAX_VAR_BITS

    def __post_init__(self):
        owner = "IBertLayerNormConfig"
        _check_bits(owner, self.in_bits, self.out_bits)
        check_int(owner, "max_var_bits", self.max_var_bits, 16, 62)
        channels = len(self.gamma)
        check_int(owner, "channels (len(gamma))", channels, 1, MAX_CHANNELS)
        _check_records(owner, self, channels)
        check_int(owner, "var_shift", self.var_shift, ibert_var_shift(self.in_bits, channels,
                                                                      self.max_var_bits),
                  self.in_bits + 1, f"the shifted variance must stay below 2**{self.max_var_bits}")
        check_int(owner, "sqrt_iterations", self.sqrt_iterations,
                  newton_iterations(self.sumsq_bound), 64, "fewer steps are not exact")
        check_int(owner, "out_shift", self.out_shift, 0, MAX_AFFINE_SHIFT)
        limit = (1 << (AFFINE_MULT_BITS - 1)) - 1
        _check_ints(owner, "mult", self.mult, -limit, limit, channels)
        _check_ints(owner, "bias", self.bias, -MAX_BIAS, MAX_BIAS, channels)

    @property
    def sumsq_bound(self) -> int:
        return shifted_sumsq_bound(self.in_bits, self.channels, self.var_shift)

    @property
    def sumsq_bits(self) -> int:
        """Unsigned width of ``v = sum ((y >> var_shift)**2)``."""
        return self.sumsq_bound.bit_length()

    @classmethod
    def from_scale(cls, in_scale, gamma, beta, out_scale=None, in_bits: int = 8,
                   out_bits: int = 8) -> "IBertLayerNormConfig":
        """Constants from the input scale, LayerNorm ``gamma``/``beta`` and the output scale
        (``None``: :func:`_default_out_scale`, no saturation possible)."""
        owner = "IBertLayerNormConfig.from_scale"
        _check_bits(owner, in_bits, out_bits)
        in_scale = check_scale(owner, "in_scale", in_scale)
        gamma, beta = _affine_vectors(owner, gamma, beta)
        out_scale = check_scale(owner, "out_scale", _default_out_scale(gamma, beta, out_bits)
                                if out_scale is None else out_scale)
        channels = len(gamma)
        var_shift = ibert_var_shift(in_bits, channels, IBERT_MAX_VAR_BITS)
        norm_scale = math.sqrt(channels) / (1 << (RECIP_BITS - 1))
        mult, bias, shift = _fold_affine(owner, gamma, beta, norm_scale, out_scale)
        iterations = newton_iterations(shifted_sumsq_bound(in_bits, channels, var_shift))
        return cls(in_bits=in_bits, out_bits=out_bits, var_shift=var_shift,
                   sqrt_iterations=iterations, mult=mult, bias=bias, out_shift=shift,
                   in_scale=in_scale, out_scale=out_scale, gamma=gamma, beta=beta)

    @classmethod
    def calibrate(cls, in_scale, samples, *, in_bits: int = 8, out_bits: int = 8, gamma,
                  beta) -> "IBertLayerNormConfig":
        """``from_scale`` with ``out_scale`` from the samples (:func:`_calibrated_out_scale`)."""
        owner = "IBertLayerNormConfig.calibrate"
        gamma, beta = _affine_vectors(owner, gamma, beta)
        samples = _calibration_samples(owner, samples, len(gamma))
        _check_bits(owner, in_bits, out_bits)
        out_scale = _calibrated_out_scale(owner, samples, gamma, beta, out_bits)
        return cls.from_scale(in_scale, gamma, beta, out_scale, in_bits, out_bits)


def ibert_var_shift(in_bits: int, channels: int, max_var_bits: int) -> int:
    """Smallest shift with :func:`shifted_sumsq_bound` ``< 2**max_var_bits``."""
    shift = 0
    while shifted_sumsq_bound(in_bits, channels, shift) >= 1 << max_var_bits:
        shift += 1
    return shift


def run_ibert(cfg: IBertLayerNormConfig, q) -> np.ndarray:
    """I-BERT integer LayerNorm of each row (class docstring)."""
    q = _row_input(cfg, q, "layernorm/ibert")
    y = _centred(q, cfg.channels)
    shifted = y >> cfg.var_shift
    v = (shifted * shifted).sum(axis=-1, keepdims=True)
    sigma = np.maximum(newton_isqrt(v, cfg.sqrt_iterations), 1) << cfg.var_shift
    z = (y * ((1 << RECIP_BITS) // sigma)) >> 1
    return _fold_output(cfg, z)


# --- I-ViT ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShiftLayerNormConfig(_RowConfig):
    """I-ViT I-LayerNorm (Li & Gu, ICCV 2023, Sec. 3.4; the authors' ``IntLayerNorm``).

    Per row: ``mu = round(sum q / C)`` (half up); ``y = q - mu``; ``v = sum y**2`` (no shift);
    ``sigma = max(isqrt(v), 1)``; ``f = (2**31 - 1) // sigma``; ``z = (y * f) >> 1`` (real value
    ``z * 2 sqrt(C) / (2**31 - 1)`` in units of the row's std); then the affine fold.

    Square root: the authors run 10 Newton steps from ``2**16``, which is not exact (``v = 0``
    ends at 64; it is off by more than 1 for ``v < 2**15`` and ``v >= 2**45``: on the example
    config's rows it changes 79% of the outputs, by up to 60 LSB). I-ViT's premise is shift
    arithmetic, so ours is the digit-by-digit root :func:`bitserial_isqrt` (shifts and
    subtractions, no divider), exact in ``sqrt_steps = ceil(sumsq_bits / 2)`` steps.

    Widths: ``sum q`` is ``sum_bits`` signed; ``v <= sumsq_bound`` (:func:`centred_sumsq_bound`,
    ``sumsq_bits`` unsigned); ``|y| <= sigma`` so ``|z| < 2**30``; the fold sum is below 2**62.
    """

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
        _check_bits(owner, self.in_bits, self.out_bits)
        channels = len(self.gamma)
        check_int(owner, "channels (len(gamma))", channels, 1, MAX_CHANNELS)
        _check_records(owner, self, channels)
        check_int(owner, "sqrt_steps", self.sqrt_steps, bitserial_steps(self.sumsq_bound), 31,
                  "fewer steps do not cover the variance")
        check_int(owner, "out_shift", self.out_shift, 0, MAX_AFFINE_SHIFT)
        limit = (1 << (AFFINE_MULT_BITS - 1)) - 1
        _check_ints(owner, "mult", self.mult, -limit, limit, channels)
        _check_ints(owner, "bias", self.bias, -MAX_BIAS, MAX_BIAS, channels)

    @property
    def sumsq_bound(self) -> int:
        return centred_sumsq_bound(self.in_bits, self.channels)

    @property
    def sumsq_bits(self) -> int:
        """Unsigned width of ``v = sum y**2``."""
        return self.sumsq_bound.bit_length()

    @classmethod
    def from_scale(cls, in_scale, gamma, beta, out_scale=None, in_bits: int = 8,
                   out_bits: int = 8) -> "ShiftLayerNormConfig":
        """Constants from the scales and ``gamma``/``beta`` (``out_scale=None``: no saturation)."""
        owner = "ShiftLayerNormConfig.from_scale"
        _check_bits(owner, in_bits, out_bits)
        in_scale = check_scale(owner, "in_scale", in_scale)
        gamma, beta = _affine_vectors(owner, gamma, beta)
        out_scale = check_scale(owner, "out_scale", _default_out_scale(gamma, beta, out_bits)
                                if out_scale is None else out_scale)
        channels = len(gamma)
        norm_scale = 2.0 * math.sqrt(channels) / ((1 << RECIP_BITS) - 1)
        mult, bias, shift = _fold_affine(owner, gamma, beta, norm_scale, out_scale)
        steps = bitserial_steps(centred_sumsq_bound(in_bits, channels))
        return cls(in_bits=in_bits, out_bits=out_bits, sqrt_steps=steps, mult=mult, bias=bias,
                   out_shift=shift, in_scale=in_scale, out_scale=out_scale, gamma=gamma,
                   beta=beta)

    @classmethod
    def calibrate(cls, in_scale, samples, *, in_bits: int = 8, out_bits: int = 8, gamma,
                  beta) -> "ShiftLayerNormConfig":
        """``from_scale`` with ``out_scale`` from the samples (:func:`_calibrated_out_scale`)."""
        owner = "ShiftLayerNormConfig.calibrate"
        gamma, beta = _affine_vectors(owner, gamma, beta)
        samples = _calibration_samples(owner, samples, len(gamma))
        _check_bits(owner, in_bits, out_bits)
        out_scale = _calibrated_out_scale(owner, samples, gamma, beta, out_bits)
        return cls.from_scale(in_scale, gamma, beta, out_scale, in_bits, out_bits)


def run_ivit(cfg: ShiftLayerNormConfig, q) -> np.ndarray:
    """I-ViT integer LayerNorm of each row (class docstring)."""
    q = _row_input(cfg, q, "layernorm/ivit")
    y = _centred(q, cfg.channels)
    v = (y * y).sum(axis=-1, keepdims=True)
    sigma = np.maximum(bitserial_isqrt(v, cfg.sqrt_steps), 1)
    z = (y * (((1 << RECIP_BITS) - 1) // sigma)) >> 1
    return _fold_output(cfg, z)


# --- FQ-ViT -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PTFLayerNormConfig(_RowConfig):
    """FQ-ViT Power-of-Two-Factor LayerNorm (Lin et al., IJCAI 2022, Sec. 3.2; the authors'
    ``QIntLayerNorm`` and ``PtfObserver``), integer statistics.

    Channel ``c`` is quantized at ``in_scale * 2**alpha_c`` (``alpha_c`` in ``0..alpha_max``);
    ``in_scale`` is the finest step. Per row: ``q' = q << alpha`` (all channels on ``in_scale``);
    ``S1 = sum q'``, ``S2 = sum q'**2``; ``D = C*S2 - S1**2`` (``C**2`` times the variance, exact);
    ``d = C*q' - S1`` (``C`` times the centred value, exact), so the normalized value is
    ``d / sqrt(D)``. Root with ``k = root_frac`` fraction bits:
    ``r = max(isqrt(D << 2k), 2**k)`` (:func:`bitserial_isqrt`, ``sqrt_steps``).
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
    ``R <= 2**(recip_shift - root_frac)``, ``P < 2**62``;
    ``|M d| <= 255 * 2 C * 2**(in_bits-1+alpha_max)``.
    """

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
        _check_bits(owner, self.in_bits, self.out_bits)
        channels = len(self.gamma)
        check_int(owner, "channels (len(gamma))", channels, 1, MAX_CHANNELS)
        _check_records(owner, self, channels)
        check_int(owner, "alpha_max", self.alpha_max, 0, 8)
        _check_ints(owner, "alpha", self.alpha, 0, self.alpha_max, channels)
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
                  self.root_frac + MAX_PTF_RECIP_SHIFT,
                  "needs gamma_frac + recip_shift - root_frac >= max_shift")
        limit = (1 << PTF_GAMMA_BITS) - 1
        _check_ints(owner, "gamma_int", self.gamma_int, -limit, limit, channels)
        _check_ints(owner, "beta_int", self.beta_int, -MAX_BIAS, MAX_BIAS, channels)

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
        return _ptf_sumsq_bound(self.in_bits, self.alpha)

    @property
    def sumsq_bits(self) -> int:
        return self.sumsq_bound.bit_length()

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

    @classmethod
    def from_scale(cls, in_scale, gamma, beta, out_scale=None, in_bits: int = 8,
                   out_bits: int = 8, alpha=None,
                   alpha_max: int = PTF_ALPHA_MAX) -> "PTFLayerNormConfig":
        """Constants from the finest input step ``in_scale``, the factors ``alpha`` (default all
        0), ``gamma``/``beta`` and the output scale (``None``: no saturation possible)."""
        owner = "PTFLayerNormConfig.from_scale"
        _check_bits(owner, in_bits, out_bits)
        in_scale = check_scale(owner, "in_scale", in_scale)
        gamma, beta = _affine_vectors(owner, gamma, beta)
        out_scale = check_scale(owner, "out_scale", _default_out_scale(gamma, beta, out_bits)
                                if out_scale is None else out_scale)
        channels = len(gamma)
        check_int(owner, "alpha_max", alpha_max, 0, 8)
        alpha = (0,) * channels if alpha is None else tuple(alpha)
        _check_ints(owner, "alpha", alpha, 0, alpha_max, channels)
        alpha = tuple(int(a) for a in alpha)
        max_shift = PTF_SHIFT_MAX + (channels - 1).bit_length()
        largest = max(abs(g) for g in gamma) / out_scale
        gamma_frac = 0 if largest == 0.0 else PTF_GAMMA_BITS - math.frexp(largest)[1]
        if _round_half_up(largest * 2.0 ** gamma_frac) >= 1 << PTF_GAMMA_BITS:
            gamma_frac -= 1
        gamma_int = tuple(_round_half_up(g / out_scale * 2.0 ** gamma_frac) for g in gamma)
        half = 1 << (max_shift - 1)
        beta_int = tuple(_round_half_up(b / out_scale * 2.0 ** max_shift) + half for b in beta)
        var_bound = channels * _ptf_sumsq_bound(in_bits, alpha)
        root_frac = max(0, min(PTF_ROOT_FRAC, (62 - var_bound.bit_length()) // 2))
        root_bits = math.isqrt(var_bound << 2 * root_frac).bit_length()
        recip_shift = max(root_bits + PTF_RECIP_EXTRA, max_shift - gamma_frac + root_frac)
        return cls(in_bits=in_bits, out_bits=out_bits, alpha=alpha, alpha_max=alpha_max,
                   root_frac=root_frac, sqrt_steps=bitserial_steps(var_bound << 2 * root_frac),
                   gamma_int=gamma_int, gamma_frac=gamma_frac, recip_shift=recip_shift,
                   beta_int=beta_int, max_shift=max_shift, in_scale=in_scale,
                   out_scale=out_scale, gamma=gamma, beta=beta)

    @classmethod
    def calibrate(cls, in_scale, samples, *, in_bits: int = 8, out_bits: int = 8, gamma, beta,
                  alpha_max: int = PTF_ALPHA_MAX) -> "PTFLayerNormConfig":
        """Factors and ``out_scale`` from the samples.

        ``in_scale`` is the layer's per-tensor step (FQ-ViT's coarsest scale, ``alpha = K``);
        the finest step is ``in_scale / 2**K``. Per channel, ``alpha_c`` minimizes the squared
        error of symmetric ``in_bits`` quantization of the channel's samples at
        ``in_scale * 2**(alpha - K)``; ties go to the smaller ``alpha`` (FQ-ViT ``PtfObserver``,
        L2 score, first minimum).
        """
        owner = "PTFLayerNormConfig.calibrate"
        gamma, beta = _affine_vectors(owner, gamma, beta)
        samples = _calibration_samples(owner, samples, len(gamma))
        _check_bits(owner, in_bits, out_bits)
        check_int(owner, "alpha_max", alpha_max, 0, 8)
        base = check_scale(owner, "in_scale", in_scale) / (1 << alpha_max)
        lo, hi = signed_range(in_bits)
        errors = []
        for factor in range(alpha_max + 1):
            step = base * (1 << factor)
            restored = np.clip(np.floor(samples / step + 0.5), lo, hi) * step
            errors.append(((samples - restored) ** 2).sum(axis=0))
        alpha = tuple(int(a) for a in np.argmin(np.array(errors), axis=0))
        out_scale = _calibrated_out_scale(owner, samples, gamma, beta, out_bits)
        return cls.from_scale(base, gamma, beta, out_scale, in_bits, out_bits, alpha, alpha_max)


def _ptf_sumsq_bound(in_bits: int, alpha) -> int:
    return sum(1 << 2 * (in_bits - 1 + a) for a in alpha)


def run_fqvit(cfg: PTFLayerNormConfig, q) -> np.ndarray:
    """FQ-ViT PTF LayerNorm of each row, integer statistics (class docstring)."""
    q = _row_input(cfg, q, "layernorm/fqvit")
    aligned = q << np.array(cfg.alpha, dtype=np.int64)
    s1 = aligned.sum(axis=-1, keepdims=True)
    s2 = (aligned * aligned).sum(axis=-1, keepdims=True)
    spread = (cfg.channels * s2 - s1 * s1) << 2 * cfg.root_frac
    root = np.maximum(bitserial_isqrt(spread, cfg.sqrt_steps), 1 << cfg.root_frac)
    magnitude = np.array([abs(g) for g in cfg.gamma_int], dtype=np.int64)
    gain = magnitude * ((1 << cfg.recip_shift) // root)
    point = cfg.gamma_frac + cfg.recip_shift - cfg.root_frac
    shift = clamp(point + PTF_MULT_BITS - bit_length(gain), 0, cfg.max_shift)
    mult = clamp(gain >> (point - shift), 0, (1 << PTF_MULT_BITS) - 1)
    sign = np.array([(g > 0) - (g < 0) for g in cfg.gamma_int], dtype=np.int64)
    beta = np.array(cfg.beta_int, dtype=np.int64) >> (cfg.max_shift - shift)
    centred = cfg.channels * aligned - s1
    return clamp((sign * mult * centred + beta) >> shift, *signed_range(cfg.out_bits))


# --- reference, examples, sweep ---------------------------------------------------------------

def reference(cfg, x) -> np.ndarray:
    """Float LayerNorm ``gamma * (x - mean) / sqrt(var + eps) + beta`` over the last axis."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] != cfg.channels:
        raise IntvitError(f"layernorm reference: rows have length {x.shape[-1] if x.ndim else 0} "
                          f"but the config has {cfg.channels} channels")
    return _float_layernorm(x, cfg.gamma, cfg.beta, cfg.eps)


def example_affine(channels: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded ``gamma = 1 + 0.3 N(0,1)``, ``beta = 0.1 N(0,1)`` (trained-ViT-like)."""
    rng = np.random.default_rng([seed, 1])
    return 1.0 + 0.3 * rng.standard_normal(channels), 0.1 * rng.standard_normal(channels)


def example_samples(channels: int = 64, rows: int = 256, seed: int = 0) -> np.ndarray:
    """Seeded residual-stream-like rows: per-channel offset and spread (0.25..2), one channel in
    16 an 8x outlier channel (the inter-channel variation PTF targets)."""
    rng = np.random.default_rng([seed, 2])
    spread = np.exp2(rng.uniform(-2.0, 1.0, channels))
    spread[rng.choice(channels, max(1, channels // 16), replace=False)] *= 8.0
    offset = 0.2 * rng.standard_normal(channels)
    return offset + spread * rng.standard_normal((rows, channels))


def _example(cls, in_bits: int, out_bits: int, channels: int, seed: int, **extra):
    samples = example_samples(channels, seed=seed)
    gamma, beta = example_affine(channels, seed)
    in_scale = float(np.max(np.abs(samples))) / ((1 << (in_bits - 1)) - 1)
    return cls.calibrate(in_scale, samples, in_bits=in_bits, out_bits=out_bits, gamma=gamma,
                         beta=beta, **extra)


def example_ibert(in_bits: int = 8, out_bits: int = 8, channels: int = 64, seed: int = 0):
    """I-BERT config calibrated on :func:`example_samples` with :func:`example_affine`."""
    return _example(IBertLayerNormConfig, in_bits, out_bits, channels, seed)


def example_ivit(in_bits: int = 8, out_bits: int = 8, channels: int = 64, seed: int = 0):
    """I-ViT config calibrated on :func:`example_samples` with :func:`example_affine`."""
    return _example(ShiftLayerNormConfig, in_bits, out_bits, channels, seed)


def example_fqvit(in_bits: int = 8, out_bits: int = 8, channels: int = 64, seed: int = 0,
                  alpha_max: int = PTF_ALPHA_MAX):
    """FQ-ViT config calibrated on :func:`example_samples` (``alpha`` from the samples)."""
    return _example(PTFLayerNormConfig, in_bits, out_bits, channels, seed, alpha_max=alpha_max)


def corner_rows(cfg) -> np.ndarray:
    """All-equal rows (0, max, most negative), one large outlier (on zeros and on noise), one
    most negative value, alternating extremes, a single +1 (tiny variance), a full ramp."""
    lo, hi = signed_range(cfg.in_bits)
    channels = cfg.channels
    noise = np.arange(channels) % 7 - 3
    rows = [np.zeros(channels), np.full(channels, hi), np.full(channels, lo),
            np.zeros(channels), noise.copy(), noise.copy(),
            np.where(np.arange(channels) % 2, hi, lo), np.where(np.arange(channels) % 2, lo, hi),
            np.zeros(channels), np.linspace(lo, hi, channels).round()]
    rows[3][channels // 2] = hi
    rows[4][channels // 3] = hi
    rows[5][channels - 1] = lo
    rows[8][0] = 1
    return np.clip(np.array(rows), lo, hi).astype(np.int64)


def sweep_inputs(cfg, rng: np.random.Generator, count: int = 512) -> np.ndarray:
    """:func:`corner_rows`, then ``count`` random rows: Gaussian, std ``2**U(1, in_bits-2)``
    codes, mean ``U(-1,1) * 2**(in_bits-3)`` codes, rounded and saturated to the input range."""
    lo, hi = signed_range(cfg.in_bits)
    spread = np.exp2(rng.uniform(1.0, max(1.0, cfg.in_bits - 2.0), (count, 1)))
    centre = rng.uniform(-1.0, 1.0, (count, 1)) * 2.0 ** (cfg.in_bits - 3)
    rows = np.clip(np.round(centre + spread * rng.standard_normal((count, cfg.channels))), lo, hi)
    return np.concatenate([corner_rows(cfg), rows.astype(np.int64)])


OPERATORS = [
    Operator(name="layernorm/ibert",
             description="I-BERT LayerNorm: rounded mean, overflow shift, Newton isqrt, 2^31/sigma",
             source="I-BERT (Kim et al., ICML 2021) Sec. 3.5, Algorithm 4 (i-sqrt)",
             config_type=IBertLayerNormConfig, run=run_ibert, reference=reference,
             example_config=example_ibert, sweep_inputs=sweep_inputs, row_wise=True,
             calibrate=IBertLayerNormConfig.calibrate),
    Operator(name="layernorm/ivit",
             description="I-ViT I-LayerNorm: rounded mean, bit-serial isqrt, (2^31-1)/sigma",
             source="I-ViT (Li & Gu, ICCV 2023) Sec. 3.4 I-LayerNorm",
             config_type=ShiftLayerNormConfig, run=run_ivit, reference=reference,
             example_config=example_ivit, sweep_inputs=sweep_inputs, row_wise=True,
             calibrate=ShiftLayerNormConfig.calibrate),
    Operator(name="layernorm/fqvit",
             description="FQ-ViT PTF LayerNorm: per-channel 2^alpha inputs, C*S2-S1^2, 8-bit M/2^N",
             source="FQ-ViT (Lin et al., IJCAI 2022) Sec. 3.2 Power-of-Two Factor",
             config_type=PTFLayerNormConfig, run=run_fqvit, reference=reference,
             example_config=example_fqvit, sweep_inputs=sweep_inputs, row_wise=True,
             calibrate=PTFLayerNormConfig.calibrate),
]
