"""GELU candidates: IPTQ-ViT Poly-GELU (``gelu/iptq``), I-ViT ShiftGELU (``gelu/ivit``) and
I-BERT i-GELU (``gelu/ibert``).

All three are element-wise. Input: signed ``in_bits`` codes ``q`` (real value ``q * in_scale``).
Each computes an integer GELU value ``h`` with a positive real scale ``gelu_scale`` (at most 32
bits, stated per config as ``acc_bits``), then a nested :class:`RequantConfig` requantizes it to
signed ``out_bits`` codes of ``out_scale`` (round half up, saturating; see ``requant.py``).

Rounding: every ``>>`` is an arithmetic shift right (floor), which is what the references' floors
of divisions by powers of two are; ``//`` is floor division; the only rounding is the
requantizer's half-up. Worst-case widths are interval bounds over the whole input range,
exposed as ``config.widths`` (name -> signed two's-complement bits) and ``config.acc_bits``.
"""
import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, IntvitError
from ..integer import as_int_array, check_int, check_scale, signed_range
from ..operator import Operator
from .requant import ACC_BITS, RequantConfig, requantize

MAX_INT64_BITS = 63
"""Every intermediate must fit int64 (the golden model's integer type)."""
EXAMPLE_IN_SCALE = 0.05
"""Example input step: 8-bit codes cover about +-6.4, a typical ViT FC1 output (GELU input)."""


# --------------------------------------------------------------------------------------------
# Shared pieces


def gelu(x) -> np.ndarray:
    """Exact GELU ``x * Phi(x) = x/2 * (1 + erf(x / sqrt 2))`` in float64."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


_erf = np.vectorize(math.erf, otypes=[np.float64])


def reference(config, x) -> np.ndarray:
    """The real function every candidate approximates: exact GELU of ``x = q * in_scale``."""
    return gelu(x)


def signed_width(lo: int, hi: int) -> int:
    """Bits of the smallest two's-complement integer holding every value of ``[lo, hi]``."""
    return max(max(int(hi), 0).bit_length(), max(-int(lo) - 1, 0).bit_length()) + 1


def _product_range(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    corners = [a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]]
    return min(corners), max(corners)


def _hull(*ranges: tuple[int, int]) -> tuple[int, int]:
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


class _GeluPorts:
    """The config protocol shared by the three GELU configs (signed codes in and out)."""

    in_signed = True
    out_signed = True

    @property
    def out_bits(self) -> int:
        return self.requant.out_bits

    @property
    def in_range(self) -> tuple[int, int]:
        return signed_range(self.in_bits)

    @property
    def acc_bits(self) -> int:
        """Width of ``h``, the integer GELU value the requantizer reads (at most 32)."""
        return self.widths["acc"]

    def dequantize_output(self, y) -> np.ndarray:
        return np.asarray(y, dtype=np.float64) * self.out_scale

    def _check_common(self, owner: str) -> None:
        check_int(owner, "in_bits", self.in_bits, 2, 16)
        for field in ("in_scale", "out_scale", "gelu_scale"):
            check_scale(owner, field, getattr(self, field))
        if not isinstance(self.requant, RequantConfig):
            raise ConfigError(f"{owner}: requant must be a RequantConfig (got {self.requant!r})")
        if not self.requant.out_signed or self.requant.zero_point != 0:
            raise ConfigError(f"{owner}: requant must give signed codes with zero point 0 "
                              "(GELU(0) = 0); build it with from_scale")

    def _check_widths(self, owner: str) -> None:
        for name, bits in self.widths.items():
            if bits > MAX_INT64_BITS:
                raise ConfigError(f"{owner}: intermediate {name} needs {bits} bits, more than "
                                  "int64; the input scale is far too small for this method")
        if self.acc_bits > ACC_BITS:
            raise ConfigError(f"{owner}: the GELU result needs {self.acc_bits} bits, more than "
                              f"the {ACC_BITS}-bit requantizer input; raise the shift or build "
                              "the config with from_scale, which derives it")


def _check_bits(owner: str, in_bits, out_bits) -> None:
    check_int(owner, "in_bits", in_bits, 2, 16)
    check_int(owner, "out_bits", out_bits, 2, 16)


def _output_scale(owner: str, in_scale: float, in_bits: int, out_bits: int, out_scale) -> float:
    """``out_scale`` when given, else the step that maps max |GELU| over the input codes to the
    largest positive output code ``2**(out_bits-1) - 1``."""
    if out_scale is not None:
        return check_scale(owner, "out_scale", out_scale)
    lo, hi = signed_range(in_bits)
    largest = float(np.max(np.abs(gelu(np.arange(lo, hi + 1) * in_scale))))
    return check_scale(owner, "out_scale", largest / ((1 << (out_bits - 1)) - 1))


def check_samples(owner: str, samples) -> np.ndarray:
    """Calibration samples as a flat float64 array; empty, non-real or non-finite is an error."""
    try:
        values = np.asarray(samples, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise IntvitError(f"{owner}: calibration samples must be real numbers") from None
    if values.size == 0:
        raise IntvitError(f"{owner}: calibration samples are empty; pass the layer's recorded "
                          "float inputs")
    if not np.all(np.isfinite(values)):
        raise IntvitError(f"{owner}: calibration samples contain NaN or inf; check the float "
                          "model's activations")
    return values


def _input(config, q, name: str) -> np.ndarray:
    q = as_int_array(q, name)
    lo, hi = config.in_range
    if q.size and (q.min() < lo or q.max() > hi):
        raise IntvitError(f"{name}: codes must lie in {lo}..{hi} ({config.in_bits}-bit signed); "
                          "quantize the input to the config's in_bits")
    return q


def sweep_inputs(config, rng: np.random.Generator) -> np.ndarray:
    """Every input code (exhaustive: in_bits <= 16); ``rng`` is not needed."""
    lo, hi = config.in_range
    return np.arange(lo, hi + 1, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# The erf-polynomial tail shared by i-GELU and Poly-GELU


def _erf_tail(q: np.ndarray, poly: np.ndarray, shift: int, one: int) -> np.ndarray:
    """``h = -(q * ((sign(q) * poly >> shift) + one))``: I-BERT's ``q * (L + one)`` negated.

    ``poly`` is the polynomial with the negative scale ``a * S_u**k`` (``a < 0``), so I-BERT's
    product has a negative real scale; negating it (a two's-complement negate in hardware) gives
    ``h`` a positive scale for the requantizer. ``>> shift`` is floor, as the reference's floor.
    """
    return -(q * (((np.sign(q) * poly) >> shift) + one))


def _erf_tail_widths(in_bits: int, poly: tuple[int, int], shift: int, one: int) -> dict:
    """Ranges of ``L = sign(q)*poly``, ``s = (L >> shift) + one`` and ``h = -(q*s)``, with the
    sign of ``q`` tied to the sign of ``L`` (q = 0 gives L = 0, h = 0)."""
    lo, hi = signed_range(in_bits)
    positive = (poly[0] >> shift) + one, (poly[1] >> shift) + one
    negative = ((-poly[1]) >> shift) + one, ((-poly[0]) >> shift) + one
    products = [_product_range((1, hi), positive), _product_range((lo, -1), negative), (0, 0)]
    product = _hull(*products)
    signed_poly = _hull(poly, (-poly[1], -poly[0]), (0, 0))
    return {"signed_poly": signed_width(*signed_poly),
            "sum": signed_width(*_hull(positive, negative, (one, one))),
            "acc": signed_width(-product[1], -product[0])}


def _smallest_fitting_shift(widths_for_shift) -> int:
    """The smallest shift whose ``h`` fits the 32-bit requantizer input (keeps the most
    resolution; every larger shift also fits since it only shrinks ``|L >> n|`` and ``|one|``)."""
    for shift in range(MAX_INT64_BITS):
        if widths_for_shift(shift)["acc"] <= ACC_BITS:
            return shift
    raise IntvitError("gelu: no shift fits the GELU result in 32 bits; check the input scale")


# --------------------------------------------------------------------------------------------
# I-BERT i-GELU

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
class IBertGeluConfig(_GeluPorts):
    """I-BERT i-GELU (Kim et al., ICML 2021, integer-only GELU) on ``in_bits`` codes.

    With ``S_e = S / 1.4142`` (S = in_scale), ``a = -0.2888``, ``b = -1.769``, ``c = 1``:

    1. ``t = min(|q|, -b_int)``, ``b_int = floor(b / S_e)``;
    2. ``poly = (t + b_int)**2 + c_int``, ``c_int = floor((c/a) / S_e**2)``; scale ``a*S_e**2``;
    3. ``L = sign(q) * poly >> shift`` (floor, the reference's floor of ``/ 2**n``);
    4. ``h = -(q * (L + one))``, ``one = floor(1 / (a * S_e**2 * 2**shift))`` (negative); scale
       ``gelu_scale = S * |a| * S_e**2 * 2**shift / 2``; then requantized.

    Widths (``widths``), with ``T = min(2**(in_bits-1), -b_int)``: ``t + b_int`` in
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
    def widths(self) -> dict:
        return _ibert_widths(self.in_bits, self.b_int, self.c_int, self.shift, self.one)

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
        _check_bits(owner, in_bits, out_bits)
        out_scale = _output_scale(owner, in_scale, in_bits, out_bits, out_scale)
        s_e = in_scale / IBERT_SQRT2
        b_int = math.floor(IBERT_B / s_e)
        c_int = math.floor((IBERT_C / IBERT_A) / s_e ** 2)

        def one_for(n):
            return math.floor(1.0 / (IBERT_A * s_e ** 2 * 2.0 ** n))

        if shift is None:
            shift = _smallest_fitting_shift(
                lambda n: _ibert_widths(in_bits, b_int, c_int, n, one_for(n)))
        gelu_scale = in_scale * -IBERT_A * s_e ** 2 * 2.0 ** shift / 2
        return cls(in_bits=in_bits, b_int=b_int, c_int=c_int, shift=shift, one=one_for(shift),
                   requant=RequantConfig.from_scale(gelu_scale / out_scale, bits=out_bits),
                   in_scale=in_scale, out_scale=out_scale, gelu_scale=gelu_scale)


def _ibert_widths(in_bits, b_int, c_int, shift, one) -> dict:
    reach = min(1 << (in_bits - 1), -b_int)
    diff = (b_int, reach + b_int)
    square = ((reach + b_int) ** 2, b_int ** 2)
    poly = (square[0] + c_int, square[1] + c_int)
    return {"abs": signed_width(0, 1 << (in_bits - 1)), "diff": signed_width(*diff),
            "square": signed_width(*square), "poly": signed_width(*poly),
            **_erf_tail_widths(in_bits, poly, shift, one)}


def ibert_integer_gelu(config: IBertGeluConfig, q) -> np.ndarray:
    """The integer GELU value ``h`` (scale ``config.gelu_scale``) before requantization."""
    q = _input(config, q, "gelu/ibert input")
    t = np.minimum(np.abs(q), -config.b_int)
    diff = t + config.b_int
    poly = diff * diff + config.c_int
    return _erf_tail(q, poly, config.shift, config.one)


def run_ibert(config: IBertGeluConfig, q) -> np.ndarray:
    """I-BERT i-GELU then dyadic requantization to ``out_bits`` codes."""
    return requantize(config.requant, ibert_integer_gelu(config, q))


def example_ibert(in_scale: float = EXAMPLE_IN_SCALE, in_bits: int = 8, out_bits: int = 8,
                  out_scale: float | None = None, published: bool = False) -> IBertGeluConfig:
    """``from_scale`` (or the paper's ``published`` shift) at the example input scale."""
    build = IBertGeluConfig.published if published else IBertGeluConfig.from_scale
    return build(in_scale, in_bits=in_bits, out_bits=out_bits, out_scale=out_scale)


def calibrate_ibert(in_scale, samples, *, in_bits=8, out_bits=8, out_scale=None):
    """I-BERT's constants are fixed: the samples are only checked (non-empty, finite)."""
    check_samples("gelu/ibert calibrate", samples)
    return IBertGeluConfig.from_scale(in_scale, in_bits=in_bits, out_bits=out_bits,
                                      out_scale=out_scale)


# --------------------------------------------------------------------------------------------
# IPTQ-ViT Poly-GELU (intvit's definition of the data-aware quartic)

POLY_WIDE_A = -0.0191
"""Quartic ``a`` of a plain least-squares erf fit over a wide range (PAPERS.md, IPTQ-ViT)."""
POLY_WIDE_B = -2.72
"""Quartic ``b`` of the same wide fit; ``from_scale``'s default coefficients."""
FIT_CLIP_GRID = (0.5, 4.0, 1 / 64)
"""Search of ``-b`` for the fit: a grid from 0.5 to 4.0 in steps of 1/64 (erf(4) = 1 - 2e-8),
then a golden-section refinement inside the best grid cell."""
FIT_REFINE_STEPS = 40
"""Golden-section steps (fixed count, so the fit is deterministic)."""
POLY_FOURTH_LIMIT = (1 << 31) - 1
"""``square_shift`` keeps the fourth power and ``c_int`` within int32."""


@dataclass(frozen=True)
class PolyGeluConfig(_GeluPorts):
    """Data-aware Poly-GELU: IPTQ-ViT's quartic erf, *as intvit defines it* (PAPERS.md, 1).

    ``GELU(x) = x/2 * (1 + L(x / sqrt 2))``, ``L(u) = sign(u) * (a * (min(|u|, -b) + b)**4 + 1)``
    with ``a, b < 0`` fitted per layer (:func:`fit_poly_gelu`). The paper gives the form and
    says the fit is data-aware; the integer recipe is ours, I-BERT's i-GELU raised to the fourth
    power. With ``S_u = S / sqrt 2`` (exact sqrt 2):

    1. ``t = min(|q|, -b_int)``, ``b_int = round(b / S_u)`` (nearest, not I-BERT's floor: half
       the error, and a fitted ``b`` on the ``S_u`` grid maps to itself); ``d = t + b_int``;
    2. ``p = d*d >> square_shift`` (floor; ``d*d >= 0``), squared again: ``p*p``;
    3. ``poly = p*p + c_int``, ``c_int = floor((1/a) / (S_u**4 * 2**(2*square_shift)))``;
       scale ``a * S_u**4 * 2**(2*square_shift)``;
    4. ``L = sign(q) * poly >> poly_shift`` (floor);
    5. ``h = -(q * (L + one))``, ``one = floor(1 / (a * S_u**4 * 2**(2*square_shift +
       poly_shift)))`` (negative); scale ``gelu_scale = S * |a| * S_u**4 * 2**(...) / 2``.

    Widths (``widths``): ``|d| <= -b_int``; ``d*d <= b_int**2``; ``p <= b_int**2 >> square_shift``;
    ``square_shift`` is the smallest shift with ``p*p`` and ``|c_int|`` within ``2**31 - 1``, so
    ``poly`` fits int32 (the "one right shift to stay inside int32"); ``poly_shift`` is the
    smallest with ``h`` within 32 bits (the sign-by-sign product bound, as i-GELU).

    Fields: ``b_int``, ``c_int``, ``square_shift``, ``poly_shift``, ``one``, ``requant``; the
    build-time records ``coeff_a``, ``coeff_b`` (the fitted reals), ``in_scale``, ``out_scale``,
    ``gelu_scale``.
    """

    in_bits: int
    b_int: int
    c_int: int
    square_shift: int
    poly_shift: int
    one: int
    requant: RequantConfig
    coeff_a: float
    coeff_b: float
    in_scale: float
    out_scale: float
    gelu_scale: float

    def __post_init__(self):
        owner = "PolyGeluConfig"
        self._check_common(owner)
        check_scale(owner, "-coeff_a", -self.coeff_a)
        check_scale(owner, "-coeff_b", -self.coeff_b)
        check_int(owner, "b_int", self.b_int, -(1 << 30), -1, "b is negative")
        check_int(owner, "c_int", self.c_int, -(1 << 62), -1, "1 / a is negative")
        check_int(owner, "square_shift", self.square_shift, 0, 62)
        check_int(owner, "poly_shift", self.poly_shift, 0, 62)
        check_int(owner, "one", self.one, -(1 << 62), -1, "1 / a is negative")
        self._check_widths(owner)

    @property
    def widths(self) -> dict:
        return _poly_widths(self.in_bits, self.b_int, self.c_int, self.square_shift,
                            self.poly_shift, self.one)

    @classmethod
    def from_scale(cls, in_scale: float, in_bits: int = 8, out_bits: int = 8,
                   out_scale: float | None = None, a: float = POLY_WIDE_A,
                   b: float = POLY_WIDE_B) -> "PolyGeluConfig":
        """Integer constants for the quartic with coefficients ``a, b`` (default: the wide fit)."""
        owner = "PolyGeluConfig.from_scale"
        in_scale = check_scale(owner, "in_scale", in_scale)
        _check_bits(owner, in_bits, out_bits)
        a = -check_scale(owner, "-a", -a)
        b = -check_scale(owner, "-b", -b)
        out_scale = _output_scale(owner, in_scale, in_bits, out_bits, out_scale)
        s_u = in_scale / math.sqrt(2.0)
        b_int = math.floor(b / s_u + 0.5)
        if b_int < -(1 << 30):
            raise ConfigError(f"{owner}: in_scale {in_scale!r} is too small for the quartic "
                              f"(b / S_u = {b / s_u:.3g} needs over 31 bits)")

        def c_for(s1):
            return math.floor((1.0 / a) / (s_u ** 4 * 2.0 ** (2 * s1)))

        square_shift = next(s1 for s1 in range(MAX_INT64_BITS)
                            if (b_int * b_int >> s1) ** 2 <= POLY_FOURTH_LIMIT
                            and -c_for(s1) <= POLY_FOURTH_LIMIT)
        c_int = c_for(square_shift)

        def one_for(n):
            return math.floor(1.0 / (a * s_u ** 4 * 2.0 ** (2 * square_shift + n)))

        poly_shift = _smallest_fitting_shift(
            lambda n: _poly_widths(in_bits, b_int, c_int, square_shift, n, one_for(n)))
        gelu_scale = in_scale * -a * s_u ** 4 * 2.0 ** (2 * square_shift + poly_shift) / 2
        return cls(in_bits=in_bits, b_int=b_int, c_int=c_int, square_shift=square_shift,
                   poly_shift=poly_shift, one=one_for(poly_shift),
                   requant=RequantConfig.from_scale(gelu_scale / out_scale, bits=out_bits),
                   coeff_a=a, coeff_b=b, in_scale=in_scale, out_scale=out_scale,
                   gelu_scale=gelu_scale)


def _poly_widths(in_bits, b_int, c_int, square_shift, poly_shift, one) -> dict:
    reach = min(1 << (in_bits - 1), -b_int)
    diff = (b_int, reach + b_int)
    square = ((reach + b_int) ** 2, b_int ** 2)
    reduced = (square[0] >> square_shift, square[1] >> square_shift)
    fourth = (reduced[0] ** 2, reduced[1] ** 2)
    poly = (fourth[0] + c_int, fourth[1] + c_int)
    return {"abs": signed_width(0, 1 << (in_bits - 1)), "diff": signed_width(*diff),
            "square": signed_width(*square), "reduced": signed_width(*reduced),
            "fourth": signed_width(*fourth), "poly": signed_width(*poly),
            **_erf_tail_widths(in_bits, poly, poly_shift, one)}


def fit_poly_gelu(in_scale: float, samples, in_bits: int = 8) -> tuple[float, float]:
    """Data-aware ``(a, b)``: least squares of the GELU error over the layer's samples (ours).

    The samples are quantized as the layer's input is (nearest code, clipped to the ``in_bits``
    range): ``x_i = q_i * S``, ``u_i = x_i / sqrt 2``. The objective is the squared GELU error
    ``sum_i (x_i/2)**2 * (erf(u_i) - L(u_i))**2``: PAPERS.md's erf least squares over the
    samples, weighted by ``(x/2)**2`` so that it measures the layer's output (an unweighted erf
    fit to a narrow sample was measured to give a larger GELU error than the wide fit). The sum
    runs over distinct ``|q|`` weighted by their counts (the sample's histogram; both functions
    are odd, ``q = 0`` adds nothing). For fixed ``b`` the best ``a`` is closed form,
    ``a = sum w g (erf - 1) / sum w g**2`` with ``g = (min(u, -b) + b)**4``; ``-b`` is searched on
    :data:`FIT_CLIP_GRID`, refined by golden section, then moved to the better of the two
    neighbouring points of the integer grid ``b = b_int * S_u`` (the value the integer unit
    uses). Same histogram, same result (bitwise).
    """
    owner = "gelu/iptq fit"
    in_scale = check_scale(owner, "in_scale", in_scale)
    check_int(owner, "in_bits", in_bits, 2, 16)
    values = check_samples(owner, samples)
    lo, hi = signed_range(in_bits)
    codes = np.clip(np.rint(values / in_scale), lo, hi).astype(np.int64)
    magnitudes, counts = np.unique(np.abs(codes), return_counts=True)
    weight = counts[magnitudes > 0].astype(np.float64)
    s_u = in_scale / math.sqrt(2.0)
    u = magnitudes[magnitudes > 0] * s_u
    weight *= u * u / 2.0  # (x/2)**2 = u**2 / 2
    target = _erf(u) - 1.0

    def solve(clip):
        g = (np.minimum(u, clip) - clip) ** 4
        norm = float(np.sum(weight * g * g))
        if norm == 0.0:
            return math.inf, 0.0
        a = float(np.sum(weight * g * target)) / norm
        return float(np.sum(weight * (target - a * g) ** 2)), a

    start, stop, step = FIT_CLIP_GRID
    grid = [start + k * step for k in range(round((stop - start) / step) + 1)]
    errors = [solve(clip)[0] for clip in grid]
    best = int(np.argmin(errors))
    if not math.isfinite(errors[best]):
        raise IntvitError(f"{owner}: no calibration sample quantizes to a nonzero code with "
                          f"|x| < {stop * math.sqrt(2):.2f}; nothing to fit")
    left, right = max(start, grid[best] - step), min(stop, grid[best] + step)
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(FIT_REFINE_STEPS):
        inner_left, inner_right = right - ratio * (right - left), left + ratio * (right - left)
        if solve(inner_left)[0] <= solve(inner_right)[0]:
            right = inner_right
        else:
            left = inner_left
    clip = min([grid[best], (left + right) / 2], key=lambda c: solve(c)[0])
    lattice = sorted({max(1, math.floor(clip / s_u)), max(1, math.ceil(clip / s_u))})
    clip = min((steps * s_u for steps in lattice), key=lambda c: solve(c)[0])
    return solve(clip)[1], -clip


def calibrate_poly(in_scale, samples, *, in_bits=8, out_bits=8, out_scale=None):
    """Fit ``a, b`` to the layer's float input samples, then build the integer config."""
    a, b = fit_poly_gelu(in_scale, samples, in_bits)
    return PolyGeluConfig.from_scale(in_scale, in_bits=in_bits, out_bits=out_bits,
                                     out_scale=out_scale, a=a, b=b)


def poly_integer_gelu(config: PolyGeluConfig, q) -> np.ndarray:
    """The integer GELU value ``h`` (scale ``config.gelu_scale``) before requantization."""
    q = _input(config, q, "gelu/iptq input")
    t = np.minimum(np.abs(q), -config.b_int)
    diff = t + config.b_int
    reduced = (diff * diff) >> config.square_shift
    poly = reduced * reduced + config.c_int
    return _erf_tail(q, poly, config.poly_shift, config.one)


def run_poly(config: PolyGeluConfig, q) -> np.ndarray:
    """Poly-GELU then dyadic requantization to ``out_bits`` codes."""
    return requantize(config.requant, poly_integer_gelu(config, q))


def example_poly(in_scale: float = EXAMPLE_IN_SCALE, in_bits: int = 8, out_bits: int = 8,
                 out_scale: float | None = None) -> PolyGeluConfig:
    """Calibrated on every input code once (a fit uniform over the whole input range)."""
    lo, hi = signed_range(in_bits)
    in_scale = check_scale("gelu/iptq example", "in_scale", in_scale)
    return calibrate_poly(in_scale, np.arange(lo, hi + 1) * in_scale, in_bits=in_bits,
                          out_bits=out_bits, out_scale=out_scale)


# --------------------------------------------------------------------------------------------
# I-ViT ShiftGELU

IVIT_SLOPE_SHIFTS = (0, 1, 3, 4)
"""1.702 ~= (1.1011)_2 = 1 + 2**-1 + 2**-3 + 2**-4 = 1.6875 (I-ViT, Li & Gu 2023, ShiftGELU)."""
IVIT_LOG2E_SHIFTS = (1, 4)
"""log2(e) ~= (1.0111)_2 as ``v + (v >> 1) - (v >> 4)`` = 1.4375 (I-ViT, Shiftmax)."""
IVIT_DIV_BITS = 31
"""The sigmoid's reciprocal numerator ``2**31 - 1`` (I-ViT reference code)."""
IVIT_PUBLISHED_SHIFT = 23
"""I-ViT's ``n = 23`` for ShiftGELU (reference code), also its clamp count."""
IVIT_PUBLISHED_SIGMOID_BITS = 8
"""I-ViT's sigmoid output bits (``output_bit = 8``: scale ``2**-7``)."""
IVIT_EXP_ONE_BITS = 15
"""``from_scale`` puts ``exp(0)`` near ``2**15``: the sum of two exponentials (<= 2**16) and the
reciprocal ``floor((2**31 - 1) / sum)`` (>= 2**15) then both keep 15 significant bits."""


@dataclass(frozen=True)
class ShiftGeluConfig(_GeluPorts):
    """I-ViT ShiftGELU ``x * sigmoid(1.702 x)`` (Li & Gu, ICCV 2023; their IntGELU), element-wise.

    1. Slope: ``z = sum_s (q << align_shift) >> s`` over ``slope_shifts`` (1.702 ~= 1.1011b);
       scale ``S_z = S / 2**align_shift``. ``from_scale`` aligns by 4 bits so the shifts are exact
       (``z = 27 q``); the paper's form ``q + q>>1 + q>>3 + q>>4`` (``align_shift = 0``, floor)
       is the ``published`` preset.
    2. Element-wise sigmoid: the reference subtracts the row max; we use ``max(z, 0)`` per
       element instead, so one exponential ``e = E(-|z|)`` and the constant ``E(0)`` give
       ``sigma = E(0) / (E(0) + e)`` for ``z >= 0`` and ``e / (E(0) + e)`` for ``z < 0``.
    3. ``E(v)``, v <= 0 (I-ViT shift exponential): ``v += (v >> a1) - (v >> a2)`` (log2 e, floor);
       ``v = max(v, max_k * x0)`` with ``x0 = floor(-1 / S_z)``; ``k = v // x0``,
       ``r = v - k*x0`` in ``(x0, 0]``; ``E = ((r - 2*x0) << exp_shift) >> (k + 1)`` (floor),
       which is the reference's ``floor((r/2 - x0) * 2**(n - k))`` without halving an odd ``r``
       and is >= 0, so the reference's clamp at 0 is not needed. ``E(0) = -x0 << exp_shift``.
    4. ``sum = min(E(0) + e, 2**div_bits - 1)``; ``f = (2**div_bits - 1) // sum`` (floor
       division); ``sigma = (e1 * f) >> (div_bits + 1 - sigmoid_bits)`` (floor), scale
       ``2**-(sigmoid_bits - 1)``, ``e1`` the numerator of step 2.
    5. ``h = q * sigma``; ``gelu_scale = S / 2**(sigmoid_bits - 1)``; then requantized.

    ``from_scale``: ``exp_shift = max(0, 15 - bitlen(-x0))`` (see :data:`IVIT_EXP_ONE_BITS`);
    ``max_k = exp_shift + bitlen(-x0)``, where ``E`` has reached 0; ``sigmoid_bits =
    min(out_bits + 2, 33 - in_bits)`` (sigma's step 1/4 output LSB at full-scale ``q``, ``h``
    within 32 bits). ``published``: the paper's ``n = 23`` (shift and clamp), 8 sigmoid bits,
    ``align_shift = 0``. Widths (``widths``): the slope and log2e steps are monotone in ``q``,
    so their ends bound them; ``(r - 2*x0) << exp_shift <= -2*x0 << exp_shift``;
    ``E <= E(0)``; ``sum <= 2 E(0)``; ``e1 * f <= max(2**div_bits - 1, E(0))``; ``h`` is the
    product of ranges.
    """

    in_bits: int
    align_shift: int
    slope_shifts: tuple
    log2e_shifts: tuple
    x0: int
    exp_shift: int
    max_k: int
    div_bits: int
    sigmoid_bits: int
    requant: RequantConfig
    in_scale: float
    out_scale: float
    gelu_scale: float

    def __post_init__(self):
        owner = "ShiftGeluConfig"
        self._check_common(owner)
        check_int(owner, "align_shift", self.align_shift, 0, 8)
        for field, count in (("slope_shifts", None), ("log2e_shifts", 2)):
            shifts = getattr(self, field)
            if (not isinstance(shifts, tuple) or not 1 <= len(shifts) <= 8
                    or (count is not None and len(shifts) != count)):
                raise ConfigError(f"{owner}: {field} must be a tuple of "
                                  f"{count or '1..8'} shifts (got {shifts!r})")
            for shift in shifts:
                check_int(owner, field, shift, 0, 16)
        check_int(owner, "x0", self.x0, -(1 << 30), -1, "x0 = floor(-1/S_z) is negative")
        check_int(owner, "exp_shift", self.exp_shift, 0, 30)
        check_int(owner, "max_k", self.max_k, 0, 60)
        check_int(owner, "div_bits", self.div_bits, 8, 31)
        check_int(owner, "sigmoid_bits", self.sigmoid_bits, 2, self.div_bits)
        self._check_widths(owner)

    @property
    def exp_one(self) -> int:
        """``E(0) = -x0 << exp_shift``, the exponential of 0 (a constant of the unit)."""
        return -self.x0 << self.exp_shift

    def slope(self, q):
        """``z = sum_s (q << align_shift) >> s`` (works on ints and int arrays)."""
        aligned = q << self.align_shift
        return sum(aligned >> shift for shift in self.slope_shifts)

    def log2e(self, v):
        """``v + (v >> a1) - (v >> a2)`` (floor shifts)."""
        first, second = self.log2e_shifts
        return v + (v >> first) - (v >> second)

    @property
    def widths(self) -> dict:
        lo, hi = self.in_range
        z = (self.slope(lo), self.slope(hi))
        v = (-max(-z[0], z[1]), 0)
        scaled = (self.log2e(v[0]), 0)
        clamped = (max(scaled[0], self.max_k * self.x0), 0)
        k = (0, clamped[0] // self.x0)
        operand = ((1 - self.x0) << self.exp_shift, (-2 * self.x0) << self.exp_shift)
        exp_one, limit = self.exp_one, (1 << self.div_bits) - 1
        total = (exp_one, 2 * exp_one)
        factor = (limit // min(total[1], limit), limit // min(total[0], limit))
        product = (0, max(limit, exp_one))
        sigma = (0, product[1] >> (self.div_bits + 1 - self.sigmoid_bits))
        return {"slope": signed_width(*z), "log2e": signed_width(*scaled),
                "k": signed_width(*k), "exp_operand": signed_width(*operand),
                "exp": signed_width(0, exp_one), "sum": signed_width(*total),
                "factor": signed_width(*factor), "product": signed_width(*product),
                "sigmoid": signed_width(*sigma),
                "acc": signed_width(*_product_range((lo, hi), sigma))}

    @classmethod
    def from_scale(cls, in_scale: float, in_bits: int = 8, out_bits: int = 8,
                   out_scale: float | None = None) -> "ShiftGeluConfig":
        """Exact 1.1011b slope (4-bit alignment) and precision constants derived from the scale."""
        owner = "ShiftGeluConfig.from_scale"
        in_scale = check_scale(owner, "in_scale", in_scale)
        _check_bits(owner, in_bits, out_bits)
        align = max(IVIT_SLOPE_SHIFTS)
        x0 = _ivit_x0(owner, in_scale, align)
        exp_shift = max(0, IVIT_EXP_ONE_BITS - (-x0).bit_length())
        return cls._build(owner, in_scale, in_bits, out_bits, out_scale, align, x0, exp_shift,
                          exp_shift + (-x0).bit_length(), min(out_bits + 2, 33 - in_bits))

    @classmethod
    def published(cls, in_scale: float, in_bits: int = 8, out_bits: int = 8,
                  out_scale: float | None = None) -> "ShiftGeluConfig":
        """The paper's form and constants: floor shifts on ``q``, ``n = 23``, 8 sigmoid bits."""
        owner = "ShiftGeluConfig.published"
        in_scale = check_scale(owner, "in_scale", in_scale)
        _check_bits(owner, in_bits, out_bits)
        return cls._build(owner, in_scale, in_bits, out_bits, out_scale, 0,
                          _ivit_x0(owner, in_scale, 0), IVIT_PUBLISHED_SHIFT,
                          IVIT_PUBLISHED_SHIFT, IVIT_PUBLISHED_SIGMOID_BITS)

    @classmethod
    def _build(cls, owner, in_scale, in_bits, out_bits, out_scale, align, x0, exp_shift, max_k,
               sigmoid_bits):
        out_scale = _output_scale(owner, in_scale, in_bits, out_bits, out_scale)
        gelu_scale = in_scale / 2.0 ** (sigmoid_bits - 1)
        return cls(in_bits=in_bits, align_shift=align, slope_shifts=IVIT_SLOPE_SHIFTS,
                   log2e_shifts=IVIT_LOG2E_SHIFTS, x0=x0, exp_shift=exp_shift, max_k=max_k,
                   div_bits=IVIT_DIV_BITS, sigmoid_bits=sigmoid_bits,
                   requant=RequantConfig.from_scale(gelu_scale / out_scale, bits=out_bits),
                   in_scale=in_scale, out_scale=out_scale, gelu_scale=gelu_scale)


def _ivit_x0(owner: str, in_scale: float, align: int) -> int:
    x0 = math.floor(-(2.0 ** align) / in_scale)
    if x0 < -(1 << 30):
        raise ConfigError(f"{owner}: in_scale {in_scale!r} is too small for ShiftGELU "
                          "(x0 = floor(-1/S) needs over 31 bits)")
    return x0


def shift_exp(config: ShiftGeluConfig, v: np.ndarray) -> np.ndarray:
    """I-ViT's shift exponential ``E(v)`` for ``v <= 0``, scale ``S_z / 2**exp_shift``."""
    v = np.maximum(config.log2e(v), config.max_k * config.x0)
    k = v // config.x0
    r = v - k * config.x0
    return ((r - 2 * config.x0) << config.exp_shift) >> (k + 1)


def shift_integer_gelu(config: ShiftGeluConfig, q) -> np.ndarray:
    """The integer GELU value ``h = q * sigma`` (scale ``config.gelu_scale``)."""
    q = _input(config, q, "gelu/ivit input")
    z = config.slope(q)
    small = shift_exp(config, -np.abs(z))
    limit = (1 << config.div_bits) - 1
    factor = limit // np.minimum(small + config.exp_one, limit)
    numerator = np.where(z >= 0, config.exp_one, small)
    sigma = (numerator * factor) >> (config.div_bits + 1 - config.sigmoid_bits)
    return q * sigma


def run_shift(config: ShiftGeluConfig, q) -> np.ndarray:
    """ShiftGELU then dyadic requantization to ``out_bits`` codes."""
    return requantize(config.requant, shift_integer_gelu(config, q))


def example_shift(in_scale: float = EXAMPLE_IN_SCALE, in_bits: int = 8, out_bits: int = 8,
                  out_scale: float | None = None, published: bool = False) -> ShiftGeluConfig:
    """``from_scale`` (or the paper's ``published`` constants) at the example input scale."""
    build = ShiftGeluConfig.published if published else ShiftGeluConfig.from_scale
    return build(in_scale, in_bits=in_bits, out_bits=out_bits, out_scale=out_scale)


def calibrate_shift(in_scale, samples, *, in_bits=8, out_bits=8, out_scale=None):
    """ShiftGELU's constants come from the scale only: the samples are only checked."""
    check_samples("gelu/ivit calibrate", samples)
    return ShiftGeluConfig.from_scale(in_scale, in_bits=in_bits, out_bits=out_bits,
                                      out_scale=out_scale)


OPERATORS = [
    Operator(name="gelu/iptq",
             description="data-aware quartic erf Poly-GELU (intvit's integer recipe)",
             source="IPTQ-ViT (arXiv 2511.15369) Poly-GELU; integer form per intvit PAPERS.md",
             config_type=PolyGeluConfig, run=run_poly, reference=reference,
             example_config=example_poly, sweep_inputs=sweep_inputs, calibrate=calibrate_poly),
    Operator(name="gelu/ivit", description="ShiftGELU x*sigmoid(1.702x) by shifts, element-wise",
             source="I-ViT (Li & Gu, ICCV 2023) ShiftGELU (reference IntGELU)",
             config_type=ShiftGeluConfig, run=run_shift, reference=reference,
             example_config=example_shift, sweep_inputs=sweep_inputs, calibrate=calibrate_shift),
    Operator(name="gelu/ibert", description="i-GELU: second-order erf polynomial",
             source="I-BERT (Kim et al., ICML 2021) i-GELU (reference IntGELU)",
             config_type=IBertGeluConfig, run=run_ibert, reference=reference,
             example_config=example_ibert, sweep_inputs=sweep_inputs, calibrate=calibrate_ibert),
]
