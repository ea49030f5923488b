"""Steps shared by the LayerNorm candidates: integer roots, accumulator bounds, the affine fold,
config checks, the float reference and the example, corner and sweep inputs.

Shared interface (all three candidates):

- Input: signed ``in_bits`` codes (2..16), row = last axis = the ``C`` channels of ``gamma`` and
  ``beta``; any leading shape. Real input ``x_c = q_c * channel_scales[c]`` (``in_scale`` for
  I-BERT and I-ViT; ``in_scale * 2**alpha_c`` for FQ-ViT).
- Output: signed ``out_bits`` codes at ``out_scale``, saturated; real ``y = code * out_scale``.
- Float reference: ``gamma * (x - mean) / sqrt(var + eps) + beta``, biased variance, the
  config's ``eps`` (default :data:`EPS`, timm ViT; a model passes its ``layer_norm_eps``, e.g.
  Hugging Face ViT's 1e-12, to ``calibrate``). The integer paths have no eps (as in all three
  papers): they agree with it unless the row's real variance is near ``eps``.
- All-equal row (variance 0): the integer root is clamped to the config's ``root_floor`` before
  the division, the centred values are 0, so the output is ``round(beta_c / out_scale)`` -- what
  the float reference gives.
- Rounding at build time is half up (``floor(v + 1/2)``); at run time ``>>`` is floor and every
  ``//`` is floor division of non-negative operands unless stated.

I-BERT and I-ViT share the row steps of :class:`CentredConfig` and the affine fold
(``norm_scale`` is the real value of one ``z`` step):
``mult_c = round(gamma_c * norm_scale * 2**p / out_scale)`` (signed, ``|mult_c| < 2**15``, ``p``
the largest shift that allows it) and ``bias_c = round(beta_c * 2**p / out_scale) + 2**(p-1)``
(the rounding constant folded in), so ``out_c = clamp((z * mult_c + bias_c) >> p)`` is
``round(z * gamma_c * norm_scale / out_scale + beta_c / out_scale)`` half up. I-ViT folds
``floor(beta/gamma / norm_scale)`` into ``z`` and leaves ``gamma * norm_scale`` to the next
quantizer; that is unbounded as ``gamma -> 0``, so both use this fold (intvit's definition,
docs/method.md section 4.1).
"""
import math
from dataclasses import fields
from fractions import Fraction
from typing import ClassVar

import numpy as np
import torch

from ...errors import ConfigError, IntvitError
from ...integer import as_int_array, check_int, check_scale, clamp, signed_range

EPS = 1e-6
"""LayerNorm eps of the float reference (timm ViT ``nn.LayerNorm(eps=1e-6)``)."""
MAX_CHANNELS = 1 << 16
"""Largest row length; keeps every accumulator below 2**63 for 16-bit inputs."""
AFFINE_MULT_BITS = 16
"""I-BERT/I-ViT fold: ``mult_c`` is a signed 16-bit constant (one DSP operand)."""
MAX_AFFINE_SHIFT = 56
"""Largest fold shift ``p``; ``|z * mult| < 2**46``, ``|bias| <= 2**61``: the sum fits int64."""
MAX_BIAS = 1 << 61
RECIP_BITS = 31
"""The reciprocal numerator is ``2**31`` (I-BERT) or ``2**31 - 1`` (I-ViT), both reference codes."""


# --- integer roots and accumulator bounds -----------------------------------------------------

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

def round_half_up(value: float) -> int:
    """``floor(value + 1/2)``: the build-time rounding of every constant."""
    return math.floor(value + 0.5)


def check_bits(owner: str, in_bits, out_bits) -> None:
    check_int(owner, "in_bits", in_bits, 2, 16)
    check_int(owner, "out_bits", out_bits, 2, 16)


def affine_vectors(owner: str, gamma, beta) -> tuple[tuple[float, ...], tuple[float, ...]]:
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


def checked_scales(owner: str, in_scale, gamma, beta, out_scale, in_bits, out_bits):
    """``(in_scale, gamma, beta, out_scale)`` checked; ``out_scale=None`` becomes
    :func:`default_out_scale`. The first step of every ``from_scale``."""
    check_bits(owner, in_bits, out_bits)
    in_scale = check_scale(owner, "in_scale", in_scale)
    gamma, beta = affine_vectors(owner, gamma, beta)
    out_scale = check_scale(owner, "out_scale", default_out_scale(gamma, beta, out_bits)
                            if out_scale is None else out_scale)
    return in_scale, gamma, beta, out_scale


def check_ints(owner: str, name: str, values, lo: int, hi: int, channels: int) -> None:
    if not isinstance(values, tuple) or len(values) != channels:
        raise ConfigError(f"{owner}: {name} must be a tuple of {channels} ints (one per channel)")
    for index, value in enumerate(values):
        check_int(owner, f"{name}[{index}]", value, lo, hi)


def default_out_scale(gamma, beta, out_bits: int) -> float:
    """No saturation: ``|(x - mean)/std| <= sqrt(C - 1)``, so ``|y_c| <= |gamma_c| sqrt(C-1) +
    |beta_c|``; the largest over channels maps to ``2**(out_bits-1) - 1``."""
    reach = max(abs(g) * math.sqrt(len(gamma) - 1) + abs(b) for g, b in zip(gamma, beta))
    return reach / ((1 << (out_bits - 1)) - 1)


def fold_affine(owner: str, gamma, beta, norm_scale: float, out_scale: float):
    """``(mult, bias, shift)`` of the I-BERT/I-ViT fold (module docstring)."""
    ratios = [g * norm_scale / out_scale for g in gamma]
    largest = max(abs(r) for r in ratios)
    limit = (1 << (AFFINE_MULT_BITS - 1)) - 1
    shift = 0 if largest == 0.0 else min(MAX_AFFINE_SHIFT,
                                         AFFINE_MULT_BITS - 1 - math.frexp(largest)[1])
    while shift > 0 and max(abs(round_half_up(r * 2.0 ** shift)) for r in ratios) > limit:
        shift -= 1
    if shift < 0:
        raise ConfigError(f"{owner}: gamma / out_scale is too large for a 16-bit multiplier; "
                          "check out_scale")
    mult = tuple(round_half_up(r * 2.0 ** shift) for r in ratios)
    half = (1 << shift) >> 1
    bias = tuple(round_half_up(b * 2.0 ** shift / out_scale) + half for b in beta)
    if any(abs(b) > MAX_BIAS for b in bias):
        raise ConfigError(f"{owner}: beta / out_scale is too large (> 2**{61 - shift}); "
                          "check out_scale")
    return mult, bias, shift


def float_layernorm(x, gamma, beta, eps: float) -> np.ndarray:
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` over the last axis, biased variance."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * np.asarray(gamma) + np.asarray(beta)


def calibration_samples(owner: str, samples, channels: int) -> np.ndarray:
    """``samples`` as finite float rows of ``channels`` values."""
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


def calibrated_out_scale(owner: str, samples, gamma, beta, out_bits: int,
                         eps: float = EPS) -> float:
    """``max |LayerNorm(samples)| / (2**(out_bits-1) - 1)`` (float LayerNorm with ``eps``)."""
    reach = float(np.max(np.abs(float_layernorm(samples, gamma, beta, eps))))
    return check_scale(owner, "out_scale (max |LayerNorm(samples)|)",
                       reach / ((1 << (out_bits - 1)) - 1))


# --- config bases -----------------------------------------------------------------------------

class RowConfig:
    """Protocol properties and checks shared by the three configs."""

    in_signed = True
    out_signed = True
    channel_tables: ClassVar[tuple] = ()
    """Per-channel integer tables that a unit reads at the element's index: layers whose
    configs differ only in these (and the float records) share one unit (:func:`same_datapath`)."""

    @property
    def sumsq_bits(self) -> int:
        """Unsigned width of the row's sum of squares (each config's ``sumsq_bound``)."""
        return self.sumsq_bound.bit_length()

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

    def check_row_fields(self, owner: str) -> None:
        """Bit widths, channel count, scales and the float ``gamma``/``beta`` records."""
        check_bits(owner, self.in_bits, self.out_bits)
        check_int(owner, "channels (len(gamma))", self.channels, 1, MAX_CHANNELS)
        check_scale(owner, "in_scale", self.in_scale)
        check_scale(owner, "out_scale", self.out_scale)
        check_scale(owner, "eps", self.eps)
        for name in ("gamma", "beta"):
            values = getattr(self, name)
            if len(values) != self.channels or not all(math.isfinite(v) for v in values):
                raise ConfigError(f"{owner}: {name} must hold {self.channels} finite values (one "
                                  "per channel)")


FLOAT_RECORDS = ("gamma", "beta", "in_scale", "out_scale")
"""Build-time float records of a LayerNorm config; the unit never reads them."""


def same_datapath(a, b) -> bool:
    """Whether one unit computes both LayerNorm configs: the same type, and every field equal
    but the per-channel tables (``channel_tables``) and the float records."""
    if type(a) is not type(b):
        return False
    skip = set(a.channel_tables) | set(FLOAT_RECORDS)
    return all(getattr(a, f.name) == getattr(b, f.name) for f in fields(a) if f.name not in skip)


class CentredConfig(RowConfig):
    """Row steps of I-BERT (Kim et al., ICML 2021, Sec. 3.5) and I-ViT (Li & Gu, ICCV 2023,
    Sec. 3.4), both after the authors' ``IntLayerNorm``; docs/method.md sections 4.1, 4.2.

    ``mu = mean_numerator(sum q) // mean_divisor`` (the rounded mean, half up);
    ``y = q - mu``; ``v = sum ((y >> var_shift)**2)``;
    ``sigma = max(isqrt(v), root_floor) << var_shift``; ``f = recip_numerator // sigma``;
    ``z = (y * f) >> norm_shift`` (``y * factor / 2`` in both reference codes); the affine fold.
    A subclass sets ``recip_numerator`` and ``var_shift`` and the root's step count.
    """

    channel_tables: ClassVar[tuple] = ("mult", "bias")
    norm_shift = 1
    """``z = (y f) >> 1``: both reference codes halve ``y * factor``."""
    root_floor = 1
    """``isqrt(v)`` is clamped to 1: an all-equal row (``v = 0``) divides by 1, not 0."""

    @property
    def mean_divisor(self) -> int:
        """``2 C``: ``round(sum / C)`` half up is ``(2 sum + C) // (2 C)``."""
        return 2 * self.channels

    def mean_numerator(self, total):
        """``2 sum + C`` (ints, numpy arrays or hardware values alike)."""
        return 2 * total + self.channels

    @property
    def z_bits(self) -> int:
        """Signed width of ``z``: ``|y| < 2 sigma`` (``|y >> var_shift| <= isqrt(v)``) and
        ``f <= recip_numerator / sigma``, so ``|y f| < 2 recip_numerator``."""
        reach = 2 * self.recip_numerator - 1
        return signed_bits(-reach >> self.norm_shift, reach >> self.norm_shift)

    @property
    def recip_bits(self) -> int:
        """Unsigned width of ``f``: ``sigma >= root_floor << var_shift``."""
        return (self.recip_numerator // (self.root_floor << self.var_shift)).bit_length()

    @classmethod
    def norm_scale(cls, channels: int) -> float:
        """Real value of one ``z`` step in units of the row's std: ``sigma ~ sqrt(C) std``, so
        ``z ~ (x - mean)/std * recip_numerator / (sqrt(C) 2**norm_shift)``."""
        return math.sqrt(channels) * 2 ** cls.norm_shift / cls.recip_numerator

    def check_fold(self, owner: str) -> None:
        check_int(owner, "out_shift", self.out_shift, 0, MAX_AFFINE_SHIFT)
        limit = (1 << (AFFINE_MULT_BITS - 1)) - 1
        check_ints(owner, "mult", self.mult, -limit, limit, self.channels)
        check_ints(owner, "bias", self.bias, -MAX_BIAS, MAX_BIAS, self.channels)

    @classmethod
    def calibrate(cls, in_scale, samples, *, in_bits: int = 8, out_bits: int = 8, gamma,
                  beta, eps: float = EPS):
        """``from_scale`` with ``out_scale`` from the samples (:func:`calibrated_out_scale`,
        the model's LayerNorm ``eps``)."""
        owner = f"{cls.__name__}.calibrate"
        gamma, beta = affine_vectors(owner, gamma, beta)
        samples = calibration_samples(owner, samples, len(gamma))
        check_bits(owner, in_bits, out_bits)
        out_scale = calibrated_out_scale(owner, samples, gamma, beta, out_bits, eps)
        return cls.from_scale(in_scale, gamma, beta, out_scale, in_bits, out_bits, eps=eps)


# --- run-time steps ---------------------------------------------------------------------------

def row_input(cfg, q, name: str) -> np.ndarray:
    """``q`` as int64 rows of ``cfg.channels`` codes in the ``in_bits`` range."""
    q = as_int_array(q, f"{name} input")
    if q.ndim == 0 or q.shape[-1] != cfg.channels:
        raise IntvitError(f"{name}: rows have length {q.shape[-1] if q.ndim else 0} but the config "
                          f"has {cfg.channels} channels (len(gamma)); pass rows of C values")
    lo, hi = signed_range(cfg.in_bits)
    if q.size and (q.min() < lo or q.max() > hi):
        raise IntvitError(f"{name}: input codes must be {cfg.in_bits}-bit signed ({lo}..{hi}); "
                          "requantize the input first")
    return q


def centre(cfg: CentredConfig, q):
    """``y = q - mu``, ``mu = mean_numerator(sum q) // mean_divisor`` (floor division)."""
    return q - cfg.mean_numerator(q.sum(axis=-1, keepdims=True)) // cfg.mean_divisor


def shifted_sumsq(cfg: CentredConfig, y):
    """``v = sum ((y >> var_shift)**2)`` over the row (``sumsq_bits`` unsigned)."""
    shifted = y >> cfg.var_shift
    return (shifted * shifted).sum(axis=-1, keepdims=True)


def normalize(cfg: CentredConfig, y, root):
    """``z = (y * (recip_numerator // sigma)) >> norm_shift``,
    ``sigma = max(root, root_floor) << var_shift``."""
    sigma = np.maximum(root, cfg.root_floor) << cfg.var_shift
    return (y * (cfg.recip_numerator // sigma)) >> cfg.norm_shift


def fold_output(cfg: CentredConfig, z):
    """``clamp((z * mult_c + bias_c) >> out_shift)`` (module docstring)."""
    mult = np.array(cfg.mult, dtype=np.int64)
    bias = np.array(cfg.bias, dtype=np.int64)
    return clamp((z * mult + bias) >> cfg.out_shift, *signed_range(cfg.out_bits))


FLOAT64_EXACT = 1 << 53
"""Integers of magnitude below this are exact float64 values, sums and products."""


def fast_centred(root):
    """The ``fast_run`` (:class:`~intvit.golden_model.operator.Operator`) of a
    :class:`CentredConfig` candidate whose integer square root is ``root(cfg, v)`` (the golden
    row function): the steps of :func:`centre`, :func:`shifted_sumsq`, :func:`normalize` and
    :func:`fold_output` on float codes ``q`` that the caller guarantees lie in the signed
    ``in_bits`` range (the integer ViT's requantizer saturates to it), without the input checks;
    element-wise in float64 torch, per row in int64 with the golden code, equal to ``run`` bit
    for bit:

    - ``sum q``: integers, ``|.| <= C 2**(in_bits-1) <= 2**31``, exact in any order; the
      rounded mean ``mu`` is the golden int64 step on the row sums;
    - ``y = q - mu``: ``|y| < 2**in_bits``; ``y >> var_shift`` as ``floor(y * 2**-var_shift)``
      (exact: a power of two), of magnitude at most ``Y = (2**in_bits >> var_shift) + 1``;
      with ``C Y**2 < 2**53`` (checked) every square and partial sum of the row sum of squares
      is an exact integer; root, ``sigma`` and ``f = recip_numerator // sigma`` are the golden
      int64 steps on the rows;
    - ``z = (y f) >> norm_shift`` as ``floor(y * (f * 2**-norm_shift))``: ``(y >>
      var_shift)**2`` is one term of ``v``, so ``|y >> var_shift| <= isqrt(v)`` and
      ``|y| < (isqrt(v) + 1) << var_shift <= 2 sigma``; with ``f <= recip_numerator / sigma``,
      ``|y f| < 2 recip_numerator`` (checked ``<= 2**53``), so the product is an integer below
      ``2**53`` times a power of two, exact; ``|z| <= Z = (2 recip_numerator >> norm_shift) +
      1``;
    - ``(z mult_c + bias_c) >> out_shift`` as ``floor(z * (mult_c 2**-p) + bias_c 2**-p)``:
      with ``Z max|mult| + max|bias| < 2**53`` (checked) both terms and their sum are integers
      below ``2**53`` times ``2**-p``, exact; then the clamp.

    ``None`` (the caller runs ``run``) for rows of another length or where a bound fails.
    Returns float32 codes (at most 16 bits: exact)."""

    def fast_run(cfg, q):
        shifted_max = ((1 << cfg.in_bits) >> cfg.var_shift) + 1
        if q.ndim == 0 or q.shape[-1] != cfg.channels \
                or cfg.channels * shifted_max * shifted_max >= FLOAT64_EXACT:
            return None
        codes = torch.from_numpy(q).to(torch.float64)
        total = codes.sum(dim=-1, keepdim=True).to(torch.int64).numpy()
        mu = cfg.mean_numerator(total) // cfg.mean_divisor
        y = codes - torch.from_numpy(mu.astype(np.float64))
        shifted = y if not cfg.var_shift else torch.floor(y * 2.0 ** -cfg.var_shift)
        v = (shifted.unsqueeze(-2) @ shifted.unsqueeze(-1)).squeeze(-1)  # row dot products
        v = v.to(torch.int64).numpy()
        sigma = np.maximum(root(cfg, v), cfg.root_floor) << cfg.var_shift
        factor = cfg.recip_numerator // sigma
        reach = 2 * cfg.recip_numerator  # |y f| < reach (docstring)
        z_max = (reach >> cfg.norm_shift) + 1
        mult = np.array(cfg.mult, dtype=np.int64)
        bias = np.array(cfg.bias, dtype=np.int64)
        if reach > FLOAT64_EXACT or \
                z_max * int(np.abs(mult).max()) + int(np.abs(bias).max()) >= FLOAT64_EXACT:
            return None
        z = y.mul_(torch.from_numpy(np.ldexp(factor.astype(np.float64), -cfg.norm_shift)))
        z.floor_()
        out = z.mul_(torch.from_numpy(np.ldexp(mult.astype(np.float64), -cfg.out_shift)))
        out.add_(torch.from_numpy(np.ldexp(bias.astype(np.float64), -cfg.out_shift)))
        out.floor_()
        out.clamp_(*signed_range(cfg.out_bits))
        return out.to(torch.float32).numpy()

    return fast_run


# --- reference, examples, sweep ---------------------------------------------------------------

def reference(cfg, x) -> np.ndarray:
    """Float LayerNorm ``gamma * (x - mean) / sqrt(var + eps) + beta`` over the last axis: the
    function every candidate approximates."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] != cfg.channels:
        raise IntvitError(f"layernorm reference: rows have length {x.shape[-1] if x.ndim else 0} "
                          f"but the config has {cfg.channels} channels")
    return float_layernorm(x, cfg.gamma, cfg.beta, cfg.eps)


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


def example_config(cls, in_bits: int, out_bits: int, channels: int, seed: int, **extra):
    """``cls`` calibrated on :func:`example_samples` with :func:`example_affine`."""
    samples = example_samples(channels, seed=seed)
    gamma, beta = example_affine(channels, seed)
    in_scale = float(np.max(np.abs(samples))) / ((1 << (in_bits - 1)) - 1)
    return cls.calibrate(in_scale, samples, in_bits=in_bits, out_bits=out_bits, gamma=gamma,
                         beta=beta, **extra)


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
    middle = rng.uniform(-1.0, 1.0, (count, 1)) * 2.0 ** (cfg.in_bits - 3)
    rows = np.clip(np.round(middle + spread * rng.standard_normal((count, cfg.channels))), lo, hi)
    return np.concatenate([corner_rows(cfg), rows.astype(np.int64)])
