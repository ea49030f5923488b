"""What the four integer softmax candidates share: the row interface, its checks, the one
reciprocal per row, I-ViT's log2(e) constant, the float reference and the input sweep.

Shared interface (every candidate):

- Input: signed ``in_bits`` (2..16) codes ``q`` of the attention scores, real value
  ``q * in_scale``.
  A row is the last axis; any leading shape; row length ``1 .. max_row`` (a config field, so the
  hardware can size its row buffer); a longer row is a one-line :class:`IntvitError`.
- Step 1 of every method: ``d = q - max_row(q)`` (``in_bits + 1``-bit signed, ``d <= 0``).
- Output of ``iptq``/``ivit``/``ibert``: unsigned ``out_bits`` codes ``y``, probability
  ``y / 2**out_bits``, saturated at ``2**out_bits - 1``. Normalization is one integer reciprocal
  per row (:func:`normalize`), ``f = floor(recip_numerator / sum)`` (the floor quotient a
  restoring divider produces), then ``y = (e * f) >> output_shift``, rounded half up when the
  config's ``round_output`` says so, else floored.
- Output of ``fqvit``: the log2 code ``k`` (probability ``2**-k``; the top code means 0).

Widths: each config states ``exp_max`` (the largest exponential), ``sum_bits`` (width of the
worst-case row sum ``max_row * exp_max``) and ``quotient_bits`` (divider output). ``run`` is int64
numpy: every config refuses constants whose worst case exceeds ``2**62``.

Precision constants are derived from ``in_scale`` and the bit widths (``from_scale``); the papers'
fixed values are the ``published`` presets (docs/method.md sec. 5).
"""
import inspect
import math
from typing import ClassVar, NamedTuple

import numpy as np
import torch

from ...errors import ConfigError, IntvitError
from ...integer import (as_int_array, check_int, check_scale, clamp, round_half_up_shift,
                        float_table, signed_range)
from ...operator import Operator

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

LOG2E_TERMS = ((0, 1), (1, 1), (4, -1))
"""I-ViT's ``log2(e) ~ (1.0111)_2 = 1 + 2**-1 - 2**-4 = 1.4375`` (Li & Gu, ICCV 2023, Sec. 3.3;
docs/method.md sec. 4.2, Shiftmax) as ``(shift, sign)`` terms: the one definition that
:func:`log2e_shift_add`, :func:`log2e_times16` and the hardware units fold over."""
LOG2E_FRAC_BITS = max(shift for shift, _ in LOG2E_TERMS)
"""Fraction bits of :data:`LOG2E_TERMS` (4): ``2**4 * 1.4375 = 23`` is an integer."""
LOG2E_SHIFT_ADD = sum(sign * 2.0 ** -shift for shift, sign in LOG2E_TERMS)
"""The value :data:`LOG2E_TERMS` give log2(e): 1.4375 (log2(e) = 1.4427: 0.36 % low)."""
LOG2E_FOLD = LOG2E_SHIFT_ADD / math.log2(math.e)
"""``1.4375 / log2(e)`` = 0.99641: scores whose codes are worth ``LOG2E_FOLD`` times the
config's ``in_scale`` make the shift-add log2(e) exact (:class:`ScoreScale`)."""


class ScoreScale(NamedTuple):
    """A snapped score scale (intvit's definition, issue 16): the score requantizer before the
    softmax targets ``codes`` (the real value of one score code), and the candidate's config is
    built from ``config`` (its ``in_scale``). With ``codes = LOG2E_FOLD * config`` the
    candidate's ``2**(1.4375 * q * config)`` is ``exp(q * codes)`` exactly: the requantizer's
    multiplier, which exists anyway, carries log2(e)'s correction. Without the fold
    ``codes == config``."""
    codes: float
    config: float


def _signed_sum(terms):
    """``sum(sign * term)`` in the given order, with ``+``/``-`` only, so that it builds the same
    adders on numpy arrays, Python ints and Amaranth values."""
    (sign, total), *rest = terms
    total = total if sign > 0 else -total
    for sign, term in rest:
        total = total + term if sign > 0 else total - term
    return total


def log2e_shift_add(d):
    """``d * log2(e)`` as ``d + (d>>1) - (d>>4)`` (:data:`LOG2E_TERMS`, two floor shifts; I-ViT
    Sec. 3.3, reference ``int_exp_shift``). Non-decreasing in ``d``."""
    return _signed_sum([(sign, d >> shift) for shift, sign in LOG2E_TERMS])


def log2e_times16(d):
    """``2**4 * 1.4375 * d = 23 * d`` exactly, as ``(d<<4) + (d<<3) - d``: the same
    :data:`LOG2E_TERMS` as :func:`log2e_shift_add` without its floor errors."""
    return _signed_sum([(sign, d << (LOG2E_FRAC_BITS - shift)) for shift, sign in LOG2E_TERMS])


def ceil_log2(n: int) -> int:
    return (n - 1).bit_length()


def check_common(owner: str, in_bits, out_bits, max_row, in_scale, out_max: int = 16) -> float:
    """Validate the shared fields; return ``in_scale`` as a float."""
    check_int(owner, "in_bits", in_bits, 2, 16)
    check_int(owner, "out_bits", out_bits, 2, out_max)
    check_int(owner, "max_row", max_row, 1, MAX_ROW_LIMIT, "the longest row the unit accepts")
    scale = check_scale(owner, "in_scale", in_scale)
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise ConfigError(f"{owner}: in_scale must be in 2**-16..1 (got {in_scale!r}); "
                          "requantize the attention scores to a usable grid")
    return scale


def check_fits(owner: str, field: str, bits: int, limit: int, hint: str) -> None:
    if bits > limit:
        raise ConfigError(f"{owner}: {field} is {bits} bits, above the {limit}-bit limit; {hint}")


def row_offsets(cfg, q, keep=None) -> np.ndarray:
    """``d = q - max_row(q)`` after checking type, shape, row length and input range. With a
    mask ``keep`` (booleans broadcastable to ``q``; :func:`check_keep`) the maximum is over the
    kept elements and the excluded ones get the smallest offset ``1 - 2**in_bits`` (any value
    in range would do: :func:`masked` zeroes their exponentials)."""
    name = cfg.OP_NAME
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
    if keep is None:
        return q - q.max(axis=-1, keepdims=True)
    keep = check_keep(name, keep, q.shape)
    top = np.where(keep, q, lo).max(axis=-1, keepdims=True)
    return np.where(keep, q - top, 1 - (1 << cfg.in_bits))


def check_keep(name: str, keep, shape) -> np.ndarray:
    """The mask of excluded row elements (issue 19: Swin's shifted windows): booleans
    broadcastable to the input's ``shape``, ``False`` = excluded, at least one kept per row."""
    keep = np.asarray(keep)
    try:
        keep = np.broadcast_to(keep, shape)
    except ValueError:
        raise IntvitError(f"{name}: keep mask of shape {keep.shape} does not match the input "
                          f"shape {shape}") from None
    if keep.dtype != np.bool_:
        raise IntvitError(f"{name}: keep mask must be booleans (got {keep.dtype})")
    if not keep.any(axis=-1).all():
        raise IntvitError(f"{name}: a keep mask row excludes every element; keep at least one")
    return keep


def masked(e: np.ndarray, keep) -> np.ndarray:
    """The exponentials ``e`` with excluded elements set to 0: they add nothing to the row sum
    and normalize to probability 0 (``keep`` ``None``: ``e`` itself, unchanged)."""
    return e if keep is None else np.where(keep, e, 0)


def row_sum(e: np.ndarray) -> np.ndarray:
    return e.sum(axis=-1, keepdims=True)


def normalize(cfg, e: np.ndarray) -> np.ndarray:
    """``clamp((e * floor(recip_numerator / min(sum_row(e), sum_limit))) >> output_shift, 0,
    2**out_bits - 1)`` (the shift by :func:`shift_product`); ``sum_limit`` ``None`` means no
    clamp."""
    total = row_sum(e)
    if cfg.sum_limit is not None:
        total = np.minimum(total, cfg.sum_limit)
    return clamp(shift_product(cfg, e * (cfg.recip_numerator // total)), 0,
                 (1 << cfg.out_bits) - 1)


def shift_product(cfg, product):
    """``product >> output_shift``, rounded half up when ``cfg.round_output``, else floored
    (numpy arrays or Amaranth values)."""
    if cfg.round_output:
        return round_half_up_shift(product, cfg.output_shift)
    return product >> cfg.output_shift


FLOAT64_EXACT = 1 << 53
"""Integers of magnitude below this are exact float64 values, sums and products."""


def fast_rows(exp):
    """The ``fast_run`` (:class:`~intvit.golden_model.operator.Operator`) of a candidate that is
    ``normalize(cfg, exp(cfg, row_offsets(cfg, q)))`` with ``exp`` acting on each ``d`` alone:
    the same steps on float codes ``q`` that the caller guarantees lie in the signed ``in_bits``
    range (the integer ViT's score requantizer saturates to it), without the input checks,
    element-wise in float64 torch and per row in int64, equal to ``run`` bit for bit. With
    ``E = max |exp|`` over the table, ``n`` the row length and ``F`` the quotient of
    largest magnitude in the call:

    - ``d = q - max_row(q)``: integers of magnitude below ``2**17``, exact in int32;
      ``e = exp(cfg, d)`` from a float64 table of ``exp``'s own outputs at every ``d`` in
      ``[1 - 2**in_bits, 0]`` (:func:`~intvit.golden_model.integer.float_table` checks that
      float64 holds them exactly);
    - the row sum of the integers ``e``: if ``n * E < 2**53`` every partial sum is
      an integer below ``2**53``, exact in any order; the clamp to ``sum_limit`` and the
      quotient ``f = recip_numerator // sum`` are the golden code's int64 steps;
    - ``y = (e * f + 2**(s-1)) >> s`` (``s = output_shift``; no rounding term when
      ``round_output`` is off or ``s = 0``) as ``floor(e * (f * 2**-s) + 1/2)``: if
      ``E * |F| + 2**(s-1) < 2**53``, ``f * 2**-s``, the product (an integer below ``2**53`` times
      ``2**-s``) and its sum with ``1/2`` (likewise) are float64 values, exact under any
      evaluation order or fused multiply-add, and ``floor`` is the shift; then the clamp to
      ``[0, 2**out_bits - 1]``.

    ``None`` (the caller runs ``run``) for another row length than ``1 .. max_row``, a bound
    above failing, a zero row sum or an unhashable config. Returns float32 codes (at most 16
    bits: exact)."""

    def fast_run(cfg, q):
        if q.ndim == 0 or not 1 <= q.shape[-1] <= cfg.max_row:
            return None
        lo = 1 - (1 << cfg.in_bits)
        table = float_table(exp, cfg, lo, 0, np.float64)
        if table is None:
            return None
        largest = int(np.abs(table).max())
        if q.shape[-1] * largest >= FLOAT64_EXACT:
            return None
        index = torch.from_numpy(q).to(torch.int32)  # integer codes of at most 16 bits: exact
        index.sub_(index.amax(dim=-1, keepdim=True) + lo)  # d - lo, in [0, 2**in_bits - 1]
        e = torch.index_select(torch.from_numpy(table), 0, index.reshape(-1))
        e = e.reshape(q.shape)
        total = e.sum(dim=-1, keepdim=True).to(torch.int64).numpy()
        if cfg.sum_limit is not None:
            total = np.minimum(total, cfg.sum_limit)
        if not total.all():
            return None
        quotient = cfg.recip_numerator // total
        half = (1 << cfg.output_shift) >> 1 if cfg.round_output else 0
        if largest * int(np.abs(quotient).max()) + half >= FLOAT64_EXACT:
            return None
        step = torch.from_numpy(np.ldexp(quotient.astype(np.float64), -cfg.output_shift))
        y = e.mul_(step)
        if half:
            y.add_(0.5)
        y.floor_()
        y.clamp_(0, (1 << cfg.out_bits) - 1)
        return y.to(torch.float32).numpy()

    return fast_run


def softmax_reference(cfg, x) -> np.ndarray:
    """The real function every candidate approximates: softmax over the last axis of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


class SoftmaxConfig:
    """Shared by every softmax config: signed input codes, unsigned output codes, and
    ``sum_bits``, the width of the worst-case row sum ``max_row * exp_max``."""

    in_signed: ClassVar[bool] = True
    out_signed: ClassVar[bool] = False

    @property
    def sum_bits(self) -> int:
        return (self.max_row * self.exp_max).bit_length()


class ReciprocalSoftmaxConfig(SoftmaxConfig):
    """A config normalized by :func:`normalize`: unless the class states otherwise,
    ``recip_numerator = 2**recip_bits``, no sum clamp and a floor shift by ``output_shift =
    recip_bits - out_bits``; output codes are probabilities ``y / 2**out_bits``."""

    sum_limit: ClassVar[int | None] = None
    round_output: ClassVar[bool] = False

    @property
    def recip_numerator(self) -> int:
        return 1 << self.recip_bits

    @property
    def output_shift(self) -> int:
        return self.recip_bits - self.out_bits

    def dequantize_output(self, y) -> np.ndarray:
        return np.asarray(y, dtype=np.float64) / float(1 << self.out_bits)


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


def example_signature(config_type) -> inspect.Signature:
    """``config_type.from_scale``'s parameters with ``in_scale`` defaulting to
    :data:`EXAMPLE_SCALE`: the options ``example_config`` states, which ``intvit --set`` reads
    (``intvit cost softmax/iptq --set out_bits=16``)."""
    signature = inspect.signature(config_type.from_scale)
    return signature.replace(parameters=[
        p.replace(default=EXAMPLE_SCALE) if p.name == "in_scale" else p
        for p in signature.parameters.values()])


def softmax_operator(config_type, run, *, description: str, source: str,
                     out_bits: int = 8, exp=None) -> Operator:
    """The registry record of one candidate: its own config, function and texts; the shared
    reference, sweep and calibration (every constant follows from the scale and the widths);
    ``exp``, the element-wise exponential of a ``normalize(cfg, exp(cfg, row_offsets(cfg,
    q)))`` candidate, gives it a :func:`fast_rows` ``fast_run``."""

    def calibrate(in_scale, samples, *, in_bits=8, out_bits=out_bits, max_row=1024):
        """The layer's config from its input scale; ``samples`` are not needed."""
        return config_type.from_scale(in_scale, in_bits=in_bits, out_bits=out_bits,
                                      max_row=max_row)

    def example_config(in_scale=EXAMPLE_SCALE, **options):
        """``from_scale(0.05)`` with the given options (``in_bits``, ``out_bits``, ``max_row``,
        and ``polynomial`` where ``from_scale`` takes one)."""
        return config_type.from_scale(in_scale, **options)

    example_config.__signature__ = example_signature(config_type)
    return Operator(name=config_type.OP_NAME, description=description, source=source,
                    config_type=config_type, run=run, reference=softmax_reference,
                    example_config=example_config, sweep_inputs=sweep_inputs, row_wise=True,
                    calibrate=calibrate, fast_run=None if exp is None else fast_rows(exp))
