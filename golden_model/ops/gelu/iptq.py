"""IPTQ-ViT Poly-GELU (``gelu/iptq``): config, data-aware fit, integer function, operator record.

The form is IPTQ-ViT's (Kim, Lee, Kim, arXiv 2511.15369): a quartic erf approximation fitted to
the layer's data. The paper gives no integer recipe; intvit's is I-BERT's i-GELU raised to the
fourth power (``docs/method.md`` sec. 1, Poly-GELU, and sec. 4.1,
I-BERT i-GELU). Float reference: exact GELU
(:func:`.common.reference`).
"""
import math
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError, IntvitError
from ...integer import check_int, check_scale, signed_range
from ...operator import Operator
from ..requant import RequantConfig, requantize
from .common import (EXAMPLE_IN_SCALE, MAX_INT64_BITS, GeluPorts, check_bits, check_input,
                     check_samples, clipped_distance, distance_ranges, erf, erf_tail,
                     erf_tail_ranges, output_scale, reference, smallest_fitting_shift,
                     fast_tabulated, sweep_inputs, tabulated)

POLY_WIDE_A = -0.0191
"""Quartic ``a`` of a plain least-squares erf fit over a wide range (docs/method.md sec. 1)."""
POLY_WIDE_B = -2.72
"""Quartic ``b`` of the same wide fit; ``from_scale``'s default coefficients."""
FIT_CLIP_GRID = (0.5, 4.0, 1 / 64)
"""Search of ``-b`` for the fit: a grid from 0.5 to 4.0 in steps of 1/64 (erf(4) = 1 - 2e-8),
then a golden-section refinement inside the best grid cell."""
FIT_REFINE_STEPS = 40
"""Golden-section steps (fixed count, so the fit is deterministic)."""
POLY_FOURTH_LIMIT = signed_range(32)[1]
"""``square_shift`` keeps the fourth power and ``c_int`` within int32."""


@dataclass(frozen=True)
class PolyGeluConfig(GeluPorts):
    """Data-aware Poly-GELU: IPTQ-ViT's quartic erf, *as intvit defines it* (docs/method.md sec. 1).

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

    Ranges (``ranges``): ``|d| <= -b_int``; ``d*d <= b_int**2``; ``p <= b_int**2 >> square_shift``;
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
    def ranges(self) -> dict:
        return _poly_ranges(self.in_bits, self.b_int, self.c_int, self.square_shift,
                            self.poly_shift, self.one)

    @classmethod
    def from_scale(cls, in_scale: float, in_bits: int = 8, out_bits: int = 8,
                   out_scale: float | None = None, a: float = POLY_WIDE_A,
                   b: float = POLY_WIDE_B) -> "PolyGeluConfig":
        """Integer constants for the quartic with coefficients ``a, b`` (default: the wide fit)."""
        owner = "PolyGeluConfig.from_scale"
        in_scale = check_scale(owner, "in_scale", in_scale)
        check_bits(owner, in_bits, out_bits)
        a = -check_scale(owner, "-a", -a)
        b = -check_scale(owner, "-b", -b)
        out_scale = output_scale(owner, in_scale, in_bits, out_bits, out_scale)
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

        poly_shift = smallest_fitting_shift(
            lambda n: _poly_ranges(in_bits, b_int, c_int, square_shift, n, one_for(n)))
        gelu_scale = in_scale * -a * s_u ** 4 * 2.0 ** (2 * square_shift + poly_shift) / 2
        return cls(in_bits=in_bits, b_int=b_int, c_int=c_int, square_shift=square_shift,
                   poly_shift=poly_shift, one=one_for(poly_shift),
                   requant=RequantConfig.from_scale(gelu_scale / out_scale, bits=out_bits),
                   coeff_a=a, coeff_b=b, in_scale=in_scale, out_scale=out_scale,
                   gelu_scale=gelu_scale)


def _poly_ranges(in_bits, b_int, c_int, square_shift, poly_shift, one) -> dict:
    ranges = distance_ranges(in_bits, b_int)
    square = ranges["square"]
    reduced = (square[0] >> square_shift, square[1] >> square_shift)
    fourth = (reduced[0] ** 2, reduced[1] ** 2)
    poly = (fourth[0] + c_int, fourth[1] + c_int)
    return {**ranges, "reduced": reduced, "fourth": fourth, "poly": poly,
            **erf_tail_ranges(in_bits, poly, poly_shift, one)}


def fit_poly_gelu(in_scale: float, samples, in_bits: int = 8) -> tuple[float, float]:
    """Data-aware ``(a, b)``: least squares of the GELU error over the layer's samples (ours).

    The samples are quantized as the layer's input is (nearest code, clipped to the ``in_bits``
    range): ``x_i = q_i * S``, ``u_i = x_i / sqrt 2``. The objective is the squared GELU error
    ``sum_i (x_i/2)**2 * (erf(u_i) - L(u_i))**2``: docs/method.md's erf least squares over the
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
    target = erf(u) - 1.0

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
    q = check_input(config, q, "gelu/iptq input")
    diff = clipped_distance(q, config.b_int)
    reduced = (diff * diff) >> config.square_shift
    return erf_tail(q, reduced * reduced + config.c_int, config.poly_shift, config.one)


@tabulated
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


OPERATOR = Operator(
    name="gelu/iptq", description="data-aware quartic erf Poly-GELU (intvit's integer recipe)",
    source="IPTQ-ViT (arXiv 2511.15369) Poly-GELU; integer form per docs/method.md sec. 1",
    config_type=PolyGeluConfig, run=run_poly, reference=reference,
    example_config=example_poly, sweep_inputs=sweep_inputs, calibrate=calibrate_poly,
    fast_run=fast_tabulated(run_poly))
