"""Dyadic requantization (HAWQ-V3, as used by I-ViT): ``y = clamp(round(acc * m / 2**e) + z)``.

A real ratio ``R = S_in * S_w / S_out`` becomes an integer multiplier ``m`` and a shift ``e`` with
``R ~= m / 2**e``; at run time only ``acc``, ``m``, ``e`` and ``z`` are seen.
"""
import math
from dataclasses import dataclass

import numpy as np

from ..errors import IntvitError
from ..operator import Operator
from ..integer import (as_int_array, check_int, check_scale, clamp, signed_range,
                       unsigned_range)

ACC_BITS = 32
"""The accumulator is int32, as in every integer GEMM of the model."""
MULTIPLIER_BITS = 31
"""``m`` is a 31-bit unsigned mantissa (``frexp`` fraction times 2**31), held in a signed int32."""
MAX_SHIFT = 62
"""``|acc * m| <= 2**31 * (2**31 - 1) < 2**62``, so a 62-bit shift already gives 0 or -1."""
SHIFT_BITS = MAX_SHIFT.bit_length()
"""Width of a shift ``e`` carried at run time (per-channel requantizers): 6 bits."""


@dataclass(frozen=True)
class RequantConfig:
    """Constants of one dyadic requantizer.

    Parameters
    ----------
    multiplier : int
        ``m`` in ``0 .. 2**31 - 1``.
    shift : int
        ``e`` in ``0 .. 62``.
    out_bits : int
        Output width, 2..16 bits (int8 and int4 are the model's widths).
    zero_point : int
        ``z``, added after rounding; must lie in the output range.
    out_signed : bool
        Signed output ``[-2**(b-1), 2**(b-1) - 1]`` or unsigned ``[0, 2**b - 1]``.
    target : float or None
        The real ratio the constants were built from (a build-time record for error figures);
        ``None`` when the config was written by hand.

    Rounding is **round half up** (ties towards +inf): ``(acc*m + 2**(e-1)) >> e``, the cheapest
    hardware rounding (one constant added before a floor shift). Saturation is to the output range.
    The product needs 63 bits signed; with the rounding constant it still fits int64.
    """

    multiplier: int
    shift: int
    out_bits: int = 8
    zero_point: int = 0
    out_signed: bool = True
    target: float | None = None

    def __post_init__(self):
        check_int("RequantConfig", "multiplier", self.multiplier, 0, (1 << MULTIPLIER_BITS) - 1)
        check_int("RequantConfig", "shift", self.shift, 0, MAX_SHIFT)
        check_int("RequantConfig", "out_bits", self.out_bits, 2, 16)
        lo, hi = self.out_range
        check_int("RequantConfig", "zero_point", self.zero_point, lo, hi,
                  "the zero point must be a representable output value")
        if self.target is not None:
            check_scale("RequantConfig", "target", self.target)

    @classmethod
    def from_scale(cls, ratio: float, bits: int = 8, zero_point: int = 0,
                   signed: bool = True) -> "RequantConfig":
        """Encode ``ratio = S_in * S_w / S_out`` as ``m / 2**e`` (HAWQ-V3 ``frexp`` encoding).

        ``ratio = f * 2**p`` with ``f`` in ``[0.5, 1)``; ``m = round(f * 2**31)``, ``e = 31 - p``.
        The relative error ``|m / 2**e - ratio| / ratio`` is at most ``2**-31 / f <= 2**-30``.
        """
        ratio = check_scale("RequantConfig.from_scale", "ratio", ratio)
        check_int("RequantConfig.from_scale", "bits", bits, 2, 16)
        fraction, exponent = math.frexp(ratio)
        multiplier = math.floor(fraction * (1 << MULTIPLIER_BITS) + 0.5)
        shift = MULTIPLIER_BITS - exponent
        if multiplier == 1 << MULTIPLIER_BITS:  # f rounded up to 1.0
            multiplier >>= 1
            shift -= 1
        if shift < 0:
            raise IntvitError(f"RequantConfig.from_scale: ratio {ratio!r} is 2**31 or more, which "
                              "no int32 accumulator can use; check the scales")
        if shift > MAX_SHIFT:
            raise IntvitError(f"RequantConfig.from_scale: ratio {ratio!r} is below 2**-32, so "
                              "every int32 accumulator rounds to the zero point; check the scales")
        return cls(multiplier=multiplier, shift=shift, out_bits=bits, zero_point=zero_point,
                   out_signed=signed, target=ratio)

    @property
    def out_range(self) -> tuple[int, int]:
        return signed_range(self.out_bits) if self.out_signed else unsigned_range(self.out_bits)

    in_bits = ACC_BITS
    in_signed = True

    @property
    def rounding(self) -> int:
        """``2**(e-1)`` (0 when ``e = 0``), added to the product before the floor shift: round
        half up. The unit adds this same constant."""
        return (1 << self.shift) >> 1

    @property
    def ratio(self) -> float:
        """The ratio the integer constants represent, ``m / 2**e``."""
        return self.multiplier / float(1 << self.shift)

    @property
    def in_scale(self) -> float:
        """One accumulator unit in output units: the real ratio (target when known)."""
        return self.target if self.target is not None else self.ratio

    def dequantize_output(self, y) -> np.ndarray:
        """Output codes in output units relative to the zero point."""
        return np.asarray(y, dtype=np.float64) - self.zero_point


def requantize(cfg: RequantConfig, acc) -> np.ndarray:
    """``clamp(((acc * m + 2**(e-1)) >> e) + z, lo, hi)`` on int32 accumulators (int64 inside)."""
    acc = as_int_array(acc, "accumulator")
    lo32, hi32 = signed_range(ACC_BITS)
    if acc.size and (acc.min() < lo32 or acc.max() > hi32):
        raise IntvitError("requantize: accumulators must fit int32; clip or widen the GEMM")
    rounded = acc * cfg.multiplier  # |acc * m| < 2**62; a new array (acc is left alone)
    rounded += cfg.rounding
    rounded >>= cfg.shift
    rounded += cfg.zero_point
    return clamp(rounded, *cfg.out_range, out=rounded if np.ndim(rounded) else None)


def requantize_reference(cfg: RequantConfig, x) -> np.ndarray:
    """The real function: ``x = acc * ratio`` saturated to the output range (no rounding)."""
    lo, hi = cfg.out_range
    return np.clip(np.asarray(x, dtype=np.float64), lo - cfg.zero_point, hi - cfg.zero_point)


@dataclass(frozen=True)
class ChannelRequant:
    """Per-channel dyadic requantization along the last axis (per-channel weight scales make
    ``S_in * S_w[c] / S_out`` differ per output channel): channel ``c`` uses ``m[c] / 2**e[c]``
    exactly as :func:`requantize` (round half up, saturate to signed ``out_bits``)."""

    multipliers: tuple
    shifts: tuple
    out_bits: int = 8

    def __post_init__(self):
        check_int("ChannelRequant", "out_bits", self.out_bits, 2, 16)
        if len(self.multipliers) != len(self.shifts) or not self.multipliers:
            raise IntvitError("ChannelRequant: give one multiplier and one shift per channel")
        for m, e in zip(self.multipliers, self.shifts):
            check_int("ChannelRequant", "multiplier", m, 0, (1 << MULTIPLIER_BITS) - 1)
            check_int("ChannelRequant", "shift", e, 0, MAX_SHIFT)

    @classmethod
    def from_scales(cls, ratios, bits: int = 8) -> "ChannelRequant":
        """One :meth:`RequantConfig.from_scale` per ratio; a ratio too small for any int32
        accumulator to reach half an output step (below ``2**-32``) becomes ``m = 0``."""
        multipliers, shifts = [], []
        for ratio in np.asarray(ratios, dtype=np.float64).reshape(-1):
            if 0.0 < ratio < 2.0 ** -32:
                multipliers.append(0)
                shifts.append(0)
                continue
            cfg = RequantConfig.from_scale(float(ratio), bits=bits)
            multipliers.append(cfg.multiplier)
            shifts.append(cfg.shift)
        return cls(tuple(multipliers), tuple(shifts), bits)

    def __call__(self, acc) -> np.ndarray:
        acc = as_int_array(acc, "accumulator")
        lo32, hi32 = signed_range(ACC_BITS)
        if acc.size and (acc.min() < lo32 or acc.max() > hi32):
            raise IntvitError("requantize: accumulators must fit int32; clip or widen the GEMM")
        m = np.array(self.multipliers, dtype=np.int64)
        e = np.array(self.shifts, dtype=np.int64)
        rounded = (acc * m + ((np.int64(1) << e) >> 1)) >> e
        return clamp(rounded, *signed_range(self.out_bits), out=rounded)


EXAMPLE_RATIO = 0.0042
"""A typical ``S_in * S_w / S_out`` of an int8 layer with a few hundred inputs per output."""


def example_config(ratio: float = EXAMPLE_RATIO, bits: int = 8, zero_point: int = 0,
                   signed: bool = True, multiplier: int | None = None,
                   shift: int | None = None) -> RequantConfig:
    """``from_scale(ratio, ...)``, or the raw constants when ``multiplier`` and ``shift`` are given."""
    if multiplier is not None or shift is not None:
        if multiplier is None or shift is None:
            raise IntvitError("requant: give both multiplier and shift, or neither")
        return RequantConfig(multiplier=multiplier, shift=shift, out_bits=bits,
                             zero_point=zero_point, out_signed=signed)
    return RequantConfig.from_scale(ratio, bits=bits, zero_point=zero_point, signed=signed)


def corner_inputs(cfg: RequantConfig) -> np.ndarray:
    """Accumulators that stress the requantizer: 0, +-1, the int32 edges, exact .5 ties (where
    the constants allow one inside int32) and the accumulators around both saturation points."""
    lo32, hi32 = signed_range(ACC_BITS)
    corners = [0, 1, -1, 2, -2, hi32, hi32 - 1, lo32, lo32 + 1]
    if cfg.multiplier and cfg.shift:
        trailing = (cfg.multiplier & -cfg.multiplier).bit_length() - 1
        tie_step = cfg.shift - 1 - trailing  # acc * m hits k*2**e + 2**(e-1) iff acc = odd * 2**tie_step
        if 0 <= tie_step <= ACC_BITS - 2:
            for odd in (1, 3, 5, 7, 255, 257, (1 << (ACC_BITS - 2 - tie_step)) - 1):
                corners += [odd << tie_step, -(odd << tie_step)]
    lo, hi = cfg.out_range
    if cfg.multiplier:
        for edge in (hi - cfg.zero_point + 0.5, lo - cfg.zero_point - 0.5):
            centre = int(edge * (1 << cfg.shift) // cfg.multiplier)
            corners += list(range(centre - 2, centre + 3))
    corners = np.array(corners, dtype=np.int64)
    return corners[(corners >= lo32) & (corners <= hi32)]


def sweep_inputs(cfg: RequantConfig, rng: np.random.Generator, count: int = 100_000) -> np.ndarray:
    """Corners, then ``count`` random accumulators: half uniform over int32, half over the range
    that does not saturate (where rounding matters)."""
    lo32, hi32 = signed_range(ACC_BITS)
    lo, hi = cfg.out_range
    reach = int(min(hi32, max(4, 2 * max(abs(lo), abs(hi)) / max(cfg.ratio, 1e-30))))
    uniform = rng.integers(lo32, hi32, size=count // 2, endpoint=True)
    in_range = rng.integers(-reach, reach, size=count - count // 2, endpoint=True)
    return np.concatenate([corner_inputs(cfg), uniform, in_range]).astype(np.int64)


OPERATORS = [Operator(
    name="requant", description="dyadic requantizer clamp(round(acc*m >> e) + z), round half up",
    source="HAWQ-V3 dyadic arithmetic (as used by I-ViT)", config_type=RequantConfig,
    run=requantize, reference=requantize_reference, example_config=example_config,
    sweep_inputs=sweep_inputs)]
