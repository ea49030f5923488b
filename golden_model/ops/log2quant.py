"""Log2 quantizer (``log2quant``): integer codes in, log2 codes out, by leading-one detection.

ADFQ-ViT (Jiang et al.; ``../shared/docs/PAPERS.md`` sec. 3) quantizes post-Softmax activations
with a log2 quantizer and post-GELU activations with a *shift*-log2 quantizer::

    X' = X - min(X) + eps,   c = clamp(round(-log2(X' / s)), 0, 2**k - 1),   X^ = s * 2**-c + min(X) - eps

(the log2 quantizer is the same with ``min(X) - eps = 0``). In integers the input is a code ``q``
of step ``S`` (``X = q * S``); ``min(X) - eps`` becomes ``-offset * S`` and ``s`` becomes
``S * 2**ref_shift``, so ``-log2(X'/s) = ref_shift - log2(x)`` with ``x = q + offset`` and::

    c = clamp(ref_shift - round(log2 x), 0, 2**k - 1)   (x >= 1),      c = 2**k - 1   (x <= 0)

``round(log2 x)`` is ``l = floor(log2 x)`` (leading-one position) plus one when
``x >= sqrt(2) * 2**l``: exact rounding in the log domain (``log2 x`` of an integer is never an
exact ``.5``, so there are no ties). The test uses the mantissa normalized to
``mantissa_bits = W`` bits, ``m = x << (W - 1 - l)`` in ``[2**(W-1), 2**W)``, against one
constant: ``m >= round_threshold = ceil(sqrt(2) * 2**(W-1)) = isqrt(2**(2W-1)) + 1`` (exact,
because ``x`` has at most ``W`` bits, so the normalization loses nothing).

Choices where the paper is silent (intvit's definition):
- ``s`` is a power-of-two multiple of the input step (``ref_shift`` an integer): the integer path
  then needs no multiplier; the layer before the quantizer chooses its output step accordingly.
- ``eps`` is one input step (``offset = 1 - round(min(X) / S)``), the smallest ``eps`` that keeps
  ``X' >= 1`` code at the calibrated minimum.
- There is no special zero code: the top code means ``s * 2**-(2**k - 1)`` as in the paper's
  formula (FQ-ViT's Log-Int-Softmax instead reserves it for 0). Inputs with ``x <= 0`` (below
  the calibrated minimum) saturate to the top code.

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


def sqrt2_threshold(mantissa_bits: int) -> int:
    """``ceil(sqrt(2) * 2**(W-1))``: ``2**(2W-1)`` is no perfect square, so it is ``isqrt + 1``."""
    return math.isqrt(1 << (2 * mantissa_bits - 1)) + 1


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
    """Constants of one (shift-)log2 quantizer (ADFQ-ViT, PAPERS.md sec. 3; module docstring).

    Parameters
    ----------
    in_bits, in_signed : int, bool
        Input codes ``q``: ``in_bits`` wide (2..16), signed or unsigned.
    out_bits : int
        ``k``: codes ``0 .. 2**k - 1`` (1..8); ADFQ-ViT uses ``k`` = the activation bits.
    offset : int
        Added before the logarithm, ``x = q + offset``: ``-round(min(X)/S) + 1`` for the
        shift-log2 quantizer, 0 for the log2 quantizer; ``|offset| <= 2**in_bits``.
    ref_shift : int
        ``s = S * 2**ref_shift`` (0..63).
    round_threshold : int
        Round ``log2 x`` up when the normalized mantissa is ``>= round_threshold``; in
        ``[2**(W-1), 2**W]`` for ``W = mantissa_bits``. ``from_scale`` sets
        :func:`sqrt2_threshold`, exact log-domain rounding.
    in_scale : float
        ``S``, a build-time record (``run`` never reads it).
    """

    in_bits: int
    in_signed: bool
    out_bits: int
    offset: int
    ref_shift: int
    round_threshold: int
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
                  "the log2 scale must be at least one input step; use a finer input scale")
        width = self.mantissa_bits
        check_int(owner, "round_threshold", self.round_threshold, 1 << (width - 1), 1 << width,
                  f"it is compared with a {width}-bit normalized mantissa")
        check_scale(owner, "in_scale", self.in_scale)

    @classmethod
    def from_scale(cls, in_scale: float, scale: float, *, in_bits: int = 8, out_bits: int = 4,
                   in_signed: bool = False, minimum: float | None = None) -> "Log2QuantConfig":
        """The quantizer for inputs of step ``in_scale`` with log2 scale ``scale``
        (``ref_shift = round(log2(scale / in_scale))``); with ``minimum``, the shift-log2
        quantizer for data whose calibrated minimum is ``minimum``."""
        owner = "Log2QuantConfig.from_scale"
        in_scale = check_scale(owner, "in_scale", in_scale)
        scale = check_scale(owner, "scale", scale)
        check_int(owner, "in_bits", in_bits, 2, MAX_IN_BITS)
        offset = 0
        if minimum is not None:
            if not np.isfinite(minimum):
                raise ConfigError(f"{owner}: minimum must be finite (got {minimum!r})")
            offset = 1 - int(math.floor(minimum / in_scale + 0.5))
        ref_shift = int(math.floor(math.log2(scale / in_scale) + 0.5))
        top = (signed_range(in_bits) if in_signed else unsigned_range(in_bits))[1] + offset
        width = max(top, 1).bit_length()
        return cls(in_bits=in_bits, in_signed=in_signed, out_bits=out_bits, offset=offset,
                   ref_shift=ref_shift, round_threshold=sqrt2_threshold(width), in_scale=in_scale)

    @property
    def in_range(self) -> tuple[int, int]:
        return signed_range(self.in_bits) if self.in_signed else unsigned_range(self.in_bits)

    @property
    def mantissa_bits(self) -> int:
        """``W``: bits of the largest shifted input ``hi + offset``."""
        return max(self.in_range[1] + self.offset, 1).bit_length()

    @property
    def top_code(self) -> int:
        return (1 << self.out_bits) - 1

    @property
    def scale(self) -> float:
        """``s = S * 2**ref_shift``."""
        return self.in_scale * 2.0 ** self.ref_shift

    def dequantize_output(self, c) -> np.ndarray:
        """``X^ = s * 2**-c - offset * S`` (ADFQ-ViT's ``s * 2**-q + min(X) - eps``)."""
        c = np.asarray(c, dtype=np.float64)
        return self.scale * np.exp2(-c) - self.offset * self.in_scale


def log2_quantize(cfg: Log2QuantConfig, q) -> np.ndarray:
    """Codes ``clamp(ref_shift - round(log2(q + offset)), 0, top)``; ``top`` for ``q + offset
    <= 0`` (module docstring)."""
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
    rounded = lead + (mantissa >= cfg.round_threshold)
    code = np.minimum(np.maximum(cfg.ref_shift - rounded, 0), cfg.top_code)
    return np.where(positive, code, cfg.top_code)


def log2_quantize_reference(cfg: Log2QuantConfig, x) -> np.ndarray:
    """The paper's float quantizer on real inputs ``X = q * S``, dequantized:
    ``s * 2**-clamp(round(-log2((X + offset*S) / s)), 0, top) - offset * S`` in float64."""
    shifted = np.asarray(x, dtype=np.float64) + cfg.offset * cfg.in_scale
    positive = shifted > 0.5 * cfg.in_scale  # X' >= one step; below it the integer x is <= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = np.floor(-np.log2(np.where(positive, shifted, 1.0) / cfg.scale) + 0.5)
    code = np.where(positive, np.clip(exponent, 0, cfg.top_code), cfg.top_code)
    return cfg.dequantize_output(code)


def example_config(in_scale: float = 2.0 ** -8, scale: float = 1.0, in_bits: int = 8,
                   out_bits: int = 4, in_signed: bool = False,
                   minimum: float | None = None) -> Log2QuantConfig:
    """By default the post-Softmax quantizer: 8-bit probabilities of step ``2**-8``, ``s = 1``,
    4-bit codes. ``minimum`` (with ``in_signed=True``) gives a shift-log2 quantizer."""
    return Log2QuantConfig.from_scale(in_scale, scale, in_bits=in_bits, out_bits=out_bits,
                                      in_signed=in_signed, minimum=minimum)


def sweep_inputs(cfg: Log2QuantConfig, rng: np.random.Generator) -> np.ndarray:
    """Every input code (at most ``2**16``): exhaustive."""
    lo, hi = cfg.in_range
    return np.arange(lo, hi + 1, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# The shift-log2 dequantize-multiply path


@dataclass(frozen=True)
class Log2MultiplyConfig:
    """Product of a log2 code ``c`` and an integer weight ``w``: ``p = (w << frac_bits) >> c``.

    ``X^ * w = s * 2**-c * w + (min(X) - eps) * w``: the second term is a per-output-channel
    constant folded into the GEMM bias; the first is ``p * s * 2**-frac_bits``, a shift instead
    of a multiply (exact when ``c <= frac_bits``, else floored: arithmetic shift right). The
    products are summed by the GEMM's adder tree. ``frac_bits = top code`` (``for_quantizer``'s
    default) is exact for every code.

    Hardware port: one signed ``in_bits = weight_bits + code_bits`` word per element holding
    ``w * 2**code_bits + c`` (weight in the high bits, code in the low bits); the product is
    signed ``out_bits = weight_bits + frac_bits`` (at most 32: an int32 product).
    """

    code_bits: int
    weight_bits: int
    frac_bits: int

    in_signed = True
    out_signed = True

    def __post_init__(self):
        owner = "Log2MultiplyConfig"
        check_int(owner, "code_bits", self.code_bits, 1, MAX_OUT_BITS)
        check_int(owner, "weight_bits", self.weight_bits, 2, 16)
        check_int(owner, "frac_bits", self.frac_bits, 0, 32 - self.weight_bits,
                  "the product must fit int32; keep fewer fraction bits")

    @classmethod
    def for_quantizer(cls, quantizer: Log2QuantConfig, weight_bits: int = 4,
                      frac_bits: int | None = None) -> "Log2MultiplyConfig":
        """Codes of ``quantizer``; ``frac_bits`` defaults to its top code (exact products)."""
        return cls(code_bits=quantizer.out_bits, weight_bits=weight_bits,
                   frac_bits=quantizer.top_code if frac_bits is None else frac_bits)

    @property
    def in_bits(self) -> int:
        return self.code_bits + self.weight_bits

    @property
    def out_bits(self) -> int:
        return self.weight_bits + self.frac_bits


def pack_operands(cfg: Log2MultiplyConfig, codes, weights) -> np.ndarray:
    """``w * 2**code_bits + c``, the unit's input word."""
    codes = as_int_array(codes, "codes")
    weights = as_int_array(weights, "weights")
    return (weights << cfg.code_bits) + codes


def log2_multiply(cfg: Log2MultiplyConfig, packed) -> np.ndarray:
    """``(w << frac_bits) >> c`` on packed words (shift amounts above 62 act as 62: the product
    is below ``2**31`` in magnitude, so it is already 0 or -1)."""
    packed = as_int_array(packed, "packed operands")
    lo, hi = signed_range(cfg.in_bits)
    if packed.size and (packed.min() < lo or packed.max() > hi):
        raise IntvitError(f"log2 multiply: packed words must be {cfg.in_bits}-bit signed")
    code = packed & ((1 << cfg.code_bits) - 1)
    weight = packed >> cfg.code_bits
    return (weight << cfg.frac_bits) >> np.minimum(code, 62)


OPERATORS = [Operator(
    name="log2quant",
    description="(shift-)log2 quantizer clamp(ref - round(log2(q + offset)), 0, 2^k-1) by "
                "leading-one detection",
    source="ADFQ-ViT (Jiang et al.) shift-log2 / log2 quantizers", config_type=Log2QuantConfig,
    run=log2_quantize, reference=log2_quantize_reference, example_config=example_config,
    sweep_inputs=sweep_inputs)]
