"""Log quantizers (``log2quant``): integer codes in, log codes out, by leading-one detection.

ADFQ-ViT (Jiang et al.; ``docs/method.md`` sec. 3) quantizes post-Softmax activations
with a log quantizer and post-GELU activations with a *shift*-log quantizer::

    X' = X - min(X) + eps,   c = clamp(round(-n log2(X' / s)), 0, 2**k - 1),   X^ = s * 2**(-c/n) + min(X) - eps

(the plain log quantizer is the same with ``min(X) - eps = 0``). ``n`` is the number of levels
per octave (``steps``): 1 is the base-2 grid of the paper's text, 2 the base-sqrt(2) grid of the
authors' released code (``llwx593/adfq-vit``, ``quant/quant_layer.py``: ``LogSqrt2Quantizer`` for
post-Softmax and the shifted log-sqrt(2) ``FC2Quantizer`` for post-GELU, as in RepQ-ViT). With
levels a factor sqrt(2) apart instead of 2, the worst relative error falls from 41 % to 19 %.

The top code means zero (``X^ = min(X) - eps``, or 0 for the plain quantizer): inputs below the
smallest level, as in the authors' code (where a code past the range dequantizes to 0) and
FQ-ViT's Log-Int-Softmax.

In integers the input is a code ``q`` of step ``S`` (``X = q * S``); ``min(X) - eps`` becomes
``-offset * S`` and ``s`` becomes ``S * 2**ref_shift``, so ``-n log2(X'/s) = n ref_shift -
n log2(x)`` with ``x = q + offset`` and::

    c = clamp(n ref_shift - round(n log2 x), 0, 2**k - 1)   (x >= 1),      c = 2**k - 1   (x <= 0)

With ``l = floor(log2 x)`` (the leading-one position) and the mantissa normalized to ``W =
mantissa_bits`` bits, ``m = x << (W - 1 - l)`` in ``[2**(W-1), 2**W)``, ``round(n log2 x) =
n l + #{j : m >= t_j}`` for the ``n`` constants ``t_j = ceil(2**((2j - 1) / 2n) * 2**(W-1))``
(:func:`round_thresholds`): exact rounding in the log domain (``n log2 x`` of an integer is never
an exact half, so there are no ties), exact because ``x`` has at most ``W`` bits.

Choices where the paper is silent (intvit's definition):
- ``s`` is a power-of-two multiple of the input step (``ref_shift`` an integer): the integer path
  then needs no multiplier; the layer before the quantizer chooses its output step accordingly.
- ``eps`` is one input step (``offset = 1 - round(min(X) / S)``), the smallest ``eps`` that keeps
  ``X' >= 1`` code at the calibrated minimum; or, with ``align_zero``, ``offset`` is the next
  power of two, so that ``X = 0`` (``x = offset``) is a level and dequantizes exactly (the ADFQ
  simulation's shift-log quantizer aligns 0 the same way, through its scale).
- Inputs with ``x <= 0`` (below the calibrated minimum) take the zero code.

Widths: ``x`` lies in ``[lo + offset, hi + offset]``, at most ``mantissa_bits <= 18`` bits;
every intermediate fits int64 with a wide margin.
"""
import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, IntvitError
from ..integer import as_int_array, check_int, check_scale, signed_range, unsigned_range
from ..operator import Operator

MAX_IN_BITS = 16
MAX_OUT_BITS = 8
"""Codes up to 8 bits (W6A6 uses 6); codes above the largest reachable one only saturate."""
MAX_REF_SHIFT = 63
STEPS = (1, 2)
"""Levels per octave: 1 (base 2, the paper's text) or 2 (base sqrt(2), the authors' code)."""
SQRT2_BITS = 8
SQRT2_MULT = 362
"""``round(sqrt(2) * 2**8)``: the multiply path's sqrt(2) for odd codes (relative error 1.1e-4)."""


def round_thresholds(mantissa_bits: int, steps: int) -> tuple[int, ...]:
    """``t_j = ceil(2**((2j-1)/(2 steps)) * 2**(W-1))``, ``j = 1..steps``: the smallest ``m`` with
    ``m**(2 steps) >= 2**(2j - 1 + 2 steps (W-1))``. That power of two has an odd exponent, so
    it is no perfect square (steps 1) or fourth power (steps 2): ``t_j`` is its integer root
    plus one (the fourth root as two nested integer square roots)."""
    check_int("round_thresholds", "steps", steps, 1, 2)
    found = []
    for j in range(1, steps + 1):
        power = 1 << (2 * j - 1 + 2 * steps * (mantissa_bits - 1))
        root = math.isqrt(power) if steps == 1 else math.isqrt(math.isqrt(power))
        found.append(root + 1)
    return tuple(found)


def floor_log2(x: np.ndarray) -> np.ndarray:
    """Leading-one position of each ``x >= 1`` (``< 2**32``): a 5-step binary search, the
    priority encoder of the hardware."""
    position = x - x
    for step in (16, 8, 4, 2, 1):
        above = (x >> step) > 0
        x = x >> (above * step)
        position = position + above * step
    return position


@dataclass(frozen=True)
class Log2QuantConfig:
    """Constants of one (shift-)log quantizer (ADFQ-ViT, docs/method.md sec. 3; module docstring).

    Parameters
    ----------
    in_bits, in_signed : int, bool
        Input codes ``q``: ``in_bits`` wide (2..16), signed or unsigned.
    out_bits : int
        ``k``: codes ``0 .. 2**k - 1`` (1..8), the top one meaning zero; ADFQ-ViT uses ``k`` =
        the activation bits.
    offset : int
        Added before the logarithm, ``x = q + offset``: ``-round(min(X)/S) + 1`` for the
        shift-log quantizer, 0 for the plain one; ``|offset| <= 2**in_bits``.
    ref_shift : int
        ``s = S * 2**ref_shift`` (0..63).
    steps : int
        Levels per octave ``n``: 1 (base 2) or 2 (base sqrt(2)).
    round_thresholds : tuple of int
        The ``n`` mantissa thresholds ``t_j`` of :func:`round_thresholds`, increasing, in
        ``[2**(W-1), 2**W]`` for ``W = mantissa_bits``.
    in_scale : float
        ``S``, a build-time record (``run`` never reads it).
    """

    in_bits: int
    in_signed: bool
    out_bits: int
    offset: int
    ref_shift: int
    steps: int
    round_thresholds: tuple
    in_scale: float

    out_signed = False

    def __post_init__(self):
        owner = "Log2QuantConfig"
        check_int(owner, "in_bits", self.in_bits, 2, MAX_IN_BITS)
        if not isinstance(self.in_signed, bool):
            raise ConfigError(f"{owner}: in_signed must be True or False (got {self.in_signed!r})")
        check_int(owner, "out_bits", self.out_bits, 1, MAX_OUT_BITS)
        limit = 1 << self.in_bits
        check_int(owner, "offset", self.offset, -limit, limit)
        if self.in_range[1] + self.offset < 1:
            raise ConfigError(f"{owner}: offset {self.offset} leaves no input >= 1 after the "
                              "shift, so every code saturates; check the calibrated minimum")
        check_int(owner, "ref_shift", self.ref_shift, 0, MAX_REF_SHIFT,
                  "the log scale must be at least one input step; use a finer input scale")
        if self.steps not in STEPS:
            raise ConfigError(f"{owner}: steps must be 1 (base 2) or 2 (base sqrt(2)), "
                              f"not {self.steps!r}")
        width = self.mantissa_bits
        thresholds = self.round_thresholds
        if not isinstance(thresholds, tuple) or len(thresholds) != self.steps:
            raise ConfigError(f"{owner}: round_thresholds must be a tuple of {self.steps} "
                              f"int(s) (got {thresholds!r}); use log2quant.round_thresholds")
        for value in thresholds:
            check_int(owner, "round_thresholds", value, 1 << (width - 1), 1 << width,
                      f"they are compared with a {width}-bit normalized mantissa")
        if list(thresholds) != sorted(thresholds):
            raise ConfigError(f"{owner}: round_thresholds must increase (got {thresholds})")
        check_scale(owner, "in_scale", self.in_scale)

    @classmethod
    def from_scale(cls, in_scale: float, scale: float, *, in_bits: int = 8, out_bits: int = 4,
                   in_signed: bool = False, minimum: float | None = None,
                   steps: int = 2, align_zero: bool = False) -> "Log2QuantConfig":
        """The quantizer for inputs of step ``in_scale`` with log scale ``scale``
        (``ref_shift = round(log2(scale / in_scale))``) and ``steps`` levels per octave; with
        ``minimum``, the shift-log quantizer for data whose calibrated minimum is ``minimum``
        (``align_zero``: ``offset`` rounded up to a power of two, module docstring)."""
        owner = "Log2QuantConfig.from_scale"
        in_scale = check_scale(owner, "in_scale", in_scale)
        scale = check_scale(owner, "scale", scale)
        check_int(owner, "in_bits", in_bits, 2, MAX_IN_BITS)
        check_int(owner, "steps", steps, 1, 2, "1 is base 2, 2 is base sqrt(2)")
        offset = 0
        if minimum is not None:
            if not np.isfinite(minimum):
                raise ConfigError(f"{owner}: minimum must be finite (got {minimum!r})")
            offset = 1 - int(math.floor(minimum / in_scale + 0.5))
            if align_zero and offset > 1:
                offset = 1 << (offset - 1).bit_length()
        ref_shift = int(math.floor(math.log2(scale / in_scale) + 0.5))
        top = (signed_range(in_bits) if in_signed else unsigned_range(in_bits))[1] + offset
        width = max(top, 1).bit_length()
        return cls(in_bits=in_bits, in_signed=in_signed, out_bits=out_bits, offset=offset,
                   ref_shift=ref_shift, steps=steps,
                   round_thresholds=round_thresholds(width, steps), in_scale=in_scale)

    @property
    def in_range(self) -> tuple[int, int]:
        return signed_range(self.in_bits) if self.in_signed else unsigned_range(self.in_bits)

    @property
    def mantissa_bits(self) -> int:
        """``W``: bits of the largest shifted input ``hi + offset``."""
        return max(self.in_range[1] + self.offset, 1).bit_length()

    @property
    def top_code(self) -> int:
        """The zero code."""
        return (1 << self.out_bits) - 1

    @property
    def scale(self) -> float:
        """``s = S * 2**ref_shift``."""
        return self.in_scale * 2.0 ** self.ref_shift

    def dequantize_output(self, c) -> np.ndarray:
        """``X^ = s * 2**(-c/n) - offset * S`` (ADFQ-ViT's ``s * 2**(-c/n) + min(X) - eps``),
        and ``-offset * S`` for the zero code."""
        c = np.asarray(c, dtype=np.float64)
        level = np.where(c == self.top_code, 0.0, self.scale * np.exp2(-c / self.steps))
        return level - self.offset * self.in_scale


def log2_quantize(cfg: Log2QuantConfig, q) -> np.ndarray:
    """Codes ``clamp(n ref_shift - round(n log2(q + offset)), 0, top)``; ``top`` (zero) for
    ``q + offset <= 0`` (module docstring)."""
    q = as_int_array(q, "log2quant input")
    lo, hi = cfg.in_range
    if q.size and (q.min() < lo or q.max() > hi):
        raise IntvitError(f"log2quant: inputs must be {cfg.in_bits}-bit "
                          f"{'signed' if cfg.in_signed else 'unsigned'} codes in {lo}..{hi}")
    x = q + cfg.offset
    positive = x >= 1
    x = np.maximum(x, 1)
    lead = floor_log2(x)
    mantissa = x << (cfg.mantissa_bits - 1 - lead)
    rounded = cfg.steps * lead
    for threshold in cfg.round_thresholds:
        rounded = rounded + (mantissa >= threshold)
    code = np.minimum(np.maximum(cfg.steps * cfg.ref_shift - rounded, 0), cfg.top_code)
    return np.where(positive, code, cfg.top_code)


def log2_quantize_reference(cfg: Log2QuantConfig, x) -> np.ndarray:
    """The paper's float quantizer on real inputs ``X = q * S``, dequantized:
    ``c = clamp(round(-n log2((X + offset*S) / s)), 0, top)``, ``X^ = s * 2**(-c/n) - offset*S``
    (``-offset*S`` for the top code) in float64."""
    shifted = np.asarray(x, dtype=np.float64) + cfg.offset * cfg.in_scale
    positive = shifted > 0.5 * cfg.in_scale  # X' >= one step; below it the integer x is <= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = np.floor(-cfg.steps * np.log2(np.where(positive, shifted, 1.0) / cfg.scale)
                            + 0.5)
    code = np.where(positive, np.clip(exponent, 0, cfg.top_code), cfg.top_code)
    return cfg.dequantize_output(code)


def example_config(in_scale: float = 2.0 ** -8, scale: float = 1.0, in_bits: int = 8,
                   out_bits: int = 4, in_signed: bool = False,
                   minimum: float | None = None, steps: int = 2,
                   align_zero: bool = False) -> Log2QuantConfig:
    """By default the post-Softmax quantizer: 8-bit probabilities of step ``2**-8``, ``s = 1``,
    4-bit base-sqrt(2) codes. ``minimum`` (with ``in_signed=True``) gives a shift-log
    quantizer."""
    return Log2QuantConfig.from_scale(in_scale, scale, in_bits=in_bits, out_bits=out_bits,
                                      in_signed=in_signed, minimum=minimum, steps=steps,
                                      align_zero=align_zero)


def sweep_inputs(cfg: Log2QuantConfig, rng: np.random.Generator) -> np.ndarray:
    """Every input code (at most ``2**16``): exhaustive."""
    lo, hi = cfg.in_range
    return np.arange(lo, hi + 1, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# The shift-log dequantize-multiply path


@dataclass(frozen=True)
class Log2MultiplyConfig:
    """Product of a log code ``c`` and an integer weight ``w``, ``n = steps``::

        p = ((w * M[c mod n]) << frac_bits) >> (ceil(c/n) + R),     p = 0 for the zero code

    with ``M = (1,)``, ``R = 0`` for ``n = 1`` (``p = (w << frac_bits) >> c``) and ``M = (2**8,
    362)``, ``R = 8`` for ``n = 2`` (``2**(-c/2) = 2**-ceil(c/2) * sqrt(2)`` for odd ``c``;
    :data:`SQRT2_MULT`).

    ``X^ * w = s * 2**(-c/n) * w + (min(X) - eps) * w``: the second term is a per-output-channel
    constant folded into the GEMM bias; the first is ``p * s * 2**-frac_bits``, a shift (and for
    odd base-sqrt(2) codes one constant multiply) instead of a multiplier, floored (arithmetic
    shift right). The products are summed by the GEMM's adder tree. ``frac_bits =
    ceil((top - 1) / n)`` (``for_quantizer``'s default) makes every base-2 product exact.

    Hardware port: one signed ``in_bits = weight_bits + code_bits`` word per element holding
    ``w * 2**code_bits + c`` (weight in the high bits, code in the low bits); the product is
    signed ``out_bits = weight_bits + frac_bits`` (levels are at most 1; at most 32 bits).
    """

    code_bits: int
    weight_bits: int
    frac_bits: int
    steps: int = 1

    in_signed = True
    out_signed = True

    def __post_init__(self):
        owner = "Log2MultiplyConfig"
        check_int(owner, "code_bits", self.code_bits, 1, MAX_OUT_BITS)
        check_int(owner, "weight_bits", self.weight_bits, 2, 16)
        check_int(owner, "frac_bits", self.frac_bits, 0, 32 - self.weight_bits,
                  "the product must fit int32; keep fewer fraction bits")
        if self.steps not in STEPS:
            raise ConfigError(f"{owner}: steps must be 1 (base 2) or 2 (base sqrt(2)), "
                              f"not {self.steps!r}")

    @classmethod
    def for_quantizer(cls, quantizer: Log2QuantConfig, weight_bits: int = 4,
                      frac_bits: int | None = None) -> "Log2MultiplyConfig":
        """Codes of ``quantizer``; ``frac_bits`` defaults to ``ceil((top - 1) / n)``."""
        if frac_bits is None:
            frac_bits = -(-(quantizer.top_code - 1) // quantizer.steps)
        return cls(code_bits=quantizer.out_bits, weight_bits=weight_bits, frac_bits=frac_bits,
                   steps=quantizer.steps)

    @property
    def in_bits(self) -> int:
        return self.code_bits + self.weight_bits

    @property
    def out_bits(self) -> int:
        return self.weight_bits + self.frac_bits

    @property
    def zero_code(self) -> int:
        return (1 << self.code_bits) - 1

    @property
    def multipliers(self) -> tuple[int, ...]:
        """``M``: the mantissa of ``2**(-c/n)`` by ``c mod n``, in units of ``2**-R``."""
        return (1,) if self.steps == 1 else (1 << SQRT2_BITS, SQRT2_MULT)

    @property
    def mult_shift(self) -> int:
        """``R``."""
        return 0 if self.steps == 1 else SQRT2_BITS


def pack_operands(cfg: Log2MultiplyConfig, codes, weights) -> np.ndarray:
    """``w * 2**code_bits + c``, the unit's input word."""
    codes = as_int_array(codes, "codes")
    weights = as_int_array(weights, "weights")
    return (weights << cfg.code_bits) + codes


def log2_multiply(cfg: Log2MultiplyConfig, packed) -> np.ndarray:
    """``((w * M[c mod n]) << frac_bits) >> (ceil(c/n) + R)``, 0 for the zero code, on packed
    words (shift amounts above 62 act as 62: the product is below ``2**40`` in magnitude, so it
    is already 0 or -1)."""
    packed = as_int_array(packed, "packed operands")
    lo, hi = signed_range(cfg.in_bits)
    if packed.size and (packed.min() < lo or packed.max() > hi):
        raise IntvitError(f"log2 multiply: packed words must be {cfg.in_bits}-bit signed")
    code = packed & ((1 << cfg.code_bits) - 1)
    weight = packed >> cfg.code_bits
    mantissa = np.asarray(cfg.multipliers)[code % cfg.steps]
    shift = -(-code // cfg.steps) + cfg.mult_shift
    product = ((weight * mantissa) << cfg.frac_bits) >> np.minimum(shift, 62)
    return np.where(code == cfg.zero_code, 0, product)


OPERATORS = [Operator(
    name="log2quant",
    description="(shift-)log quantizer clamp(n*ref - round(n*log2(q + offset)), 0, 2^k-1), "
                "base 2 (n=1) or sqrt(2) (n=2), top code = zero, by leading-one detection",
    source="ADFQ-ViT (Jiang et al.) shift-log2 / log2 quantizers; base sqrt(2) as in the "
           "authors' code (llwx593/adfq-vit)", config_type=Log2QuantConfig,
    run=log2_quantize, reference=log2_quantize_reference, example_config=example_config,
    sweep_inputs=sweep_inputs)]
