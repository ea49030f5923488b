"""Pieces shared by the three GELU candidates (``iptq.py``, ``ivit.py``, ``ibert.py``).

All three are element-wise. Input: signed ``in_bits`` codes ``q`` (real value ``q * in_scale``).
Each computes an integer GELU value ``h`` with a positive real scale ``gelu_scale`` (at most 32
bits, stated per config as ``acc_bits``), then a nested :class:`RequantConfig` requantizes it to
signed ``out_bits`` codes of ``out_scale`` (round half up, saturating; see ``ops/requant.py``).
The output is symmetric (zero point 0, the most negative code unused) as ``from_scale`` builds
it, or asymmetric (:func:`asymmetric_output`): GELU >= -0.17, so a symmetric output leaves half
its codes unused; with a zero point ``z`` the requantizer adds (``y = h * m / 2**e + z``), the
codes span GELU's real range and code ``z`` is 0. The codes stay signed, so the next GEMM reads
them as it reads any int8 activation and folds ``z`` into its bias.

Rounding: every ``>>`` is an arithmetic shift right (floor), which is what the references' floors
of divisions by powers of two are (``docs/method.md`` sec. 4); ``//`` is floor
division; the only rounding is the requantizer's half up. Worst cases are interval bounds over
the whole input range: ``config.ranges`` (name -> ``(lo, hi)``), ``config.widths`` (name ->
signed two's-complement bits) and ``config.acc_bits``.
"""
import dataclasses
import functools
import math

import numpy as np
import torch

from ...errors import ConfigError, IntvitError
from ...integer import (as_int_array, check_int, check_scale, elementwise, signed_range,
                        float_table)
from ..requant import ACC_BITS, RequantConfig

MAX_INT64_BITS = 63
"""Every intermediate must fit int64 (the golden model's integer type)."""
EXAMPLE_IN_SCALE = 0.05
"""Example input step: 8-bit codes cover about +-6.4, a typical ViT FC1 output (GELU input)."""

erf = np.vectorize(math.erf, otypes=[np.float64])
"""Element-wise ``math.erf`` in float64."""


def gelu(x) -> np.ndarray:
    """Exact GELU ``x * Phi(x) = x/2 * (1 + erf(x / sqrt 2))`` in float64."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def reference(config, x) -> np.ndarray:
    """The real function every candidate approximates: exact GELU of ``x = q * in_scale``."""
    return gelu(x)


def signed_width(lo: int, hi: int) -> int:
    """Bits of the smallest two's-complement integer holding every value of ``[lo, hi]``."""
    return max(max(int(hi), 0).bit_length(), max(-int(lo) - 1, 0).bit_length()) + 1


def product_range(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """Range of ``x * y`` for ``x`` in ``a`` and ``y`` in ``b`` (the corners bound it)."""
    corners = [a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]]
    return min(corners), max(corners)


def hull(*ranges: tuple[int, int]) -> tuple[int, int]:
    """The smallest range holding every one of ``ranges``."""
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


class GeluPorts:
    """The config protocol of the three GELU configs (signed codes in and out).

    A subclass has fields ``in_bits``, ``requant``, ``in_scale``, ``out_scale``, ``gelu_scale``
    and a property ``ranges`` (every intermediate's ``(lo, hi)``, ``"acc"`` for ``h``).
    """

    in_signed = True
    out_signed = True

    @property
    def out_bits(self) -> int:
        return self.requant.out_bits

    @property
    def in_range(self) -> tuple[int, int]:
        return signed_range(self.in_bits)

    @property
    def widths(self) -> dict:
        """Signed bits of every intermediate (from ``ranges``)."""
        return {name: signed_width(*bounds) for name, bounds in self.ranges.items()}

    @property
    def acc_bits(self) -> int:
        """Width of ``h``, the integer GELU value the requantizer reads (at most 32)."""
        return self.widths["acc"]

    @property
    def out_zero_point(self) -> int:
        """The output code of GELU = 0: 0 (symmetric) or the requantizer's zero point."""
        return self.requant.zero_point

    def dequantize_output(self, y) -> np.ndarray:
        return (np.asarray(y, dtype=np.float64) - self.out_zero_point) * self.out_scale

    def _check_common(self, owner: str) -> None:
        check_int(owner, "in_bits", self.in_bits, 2, 16)
        for field in ("in_scale", "out_scale", "gelu_scale"):
            check_scale(owner, field, getattr(self, field))
        if not isinstance(self.requant, RequantConfig):
            raise ConfigError(f"{owner}: requant must be a RequantConfig (got {self.requant!r})")
        if not self.requant.out_signed:
            raise ConfigError(f"{owner}: requant must give signed codes (a zero point moves "
                              "GELU's range onto them); build it with from_scale or "
                              "asymmetric_output")

    def _check_widths(self, owner: str) -> None:
        for name, bits in self.widths.items():
            if bits > MAX_INT64_BITS:
                raise ConfigError(f"{owner}: intermediate {name} needs {bits} bits, more than "
                                  "int64; the input scale is far too small for this method")
        if self.acc_bits > ACC_BITS:
            raise ConfigError(f"{owner}: the GELU result needs {self.acc_bits} bits, more than "
                              f"the {ACC_BITS}-bit requantizer input; raise the shift or build "
                              "the config with from_scale, which derives it")


def check_bits(owner: str, in_bits, out_bits) -> None:
    """Input and output codes of 2 to 16 bits."""
    check_int(owner, "in_bits", in_bits, 2, 16)
    check_int(owner, "out_bits", out_bits, 2, 16)


def output_scale(owner: str, in_scale: float, in_bits: int, out_bits: int, out_scale) -> float:
    """``out_scale`` when given, else the step that maps max |GELU| over the input codes to the
    largest positive output code ``2**(out_bits-1) - 1``."""
    if out_scale is not None:
        return check_scale(owner, "out_scale", out_scale)
    lo, hi = signed_range(in_bits)
    largest = float(np.max(np.abs(gelu(np.arange(lo, hi + 1) * in_scale))))
    return check_scale(owner, "out_scale", largest / signed_range(out_bits)[1])


def asymmetric_output(config):
    """``config`` with an asymmetric output over every signed ``out_bits`` code (intvit's
    definition, issue 16): ``[g_lo, g_hi]``, the range of exact GELU over the input codes
    (``g_lo >= -0.17``), is spread over ``lo .. hi = -2**(b-1) .. 2**(b-1) - 1``:
    ``out_scale = (g_hi - g_lo) / (hi - lo)`` and zero point ``z = lo + round(-g_lo /
    out_scale)``, clipped to the codes; the requantizer's ratio is ``gelu_scale / out_scale`` as
    before. The integer GELU ``h`` and its constants are unchanged; only the requantizer's
    ``m, e, z`` differ."""
    lo_in, hi_in = config.in_range
    values = gelu(np.arange(lo_in, hi_in + 1) * config.in_scale)
    g_lo, g_hi = min(float(values.min()), 0.0), float(values.max())
    lo, hi = signed_range(config.out_bits)
    out_scale = check_scale("asymmetric GELU output", "out_scale", (g_hi - g_lo) / (hi - lo))
    zero_point = min(max(lo + math.floor(-g_lo / out_scale + 0.5), lo), hi)
    requant = RequantConfig.from_scale(config.gelu_scale / out_scale, bits=config.out_bits,
                                       zero_point=zero_point)
    return dataclasses.replace(config, requant=requant, out_scale=out_scale)


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


def example_builder(config_type):
    """``example(in_scale, in_bits, out_bits, out_scale, published)``: ``config_type``'s
    ``from_scale`` (or its paper's ``published`` constants) at the example input scale."""
    def example(in_scale: float = EXAMPLE_IN_SCALE, in_bits: int = 8, out_bits: int = 8,
                out_scale: float | None = None, published: bool = False):
        build = config_type.published if published else config_type.from_scale
        return build(in_scale, in_bits=in_bits, out_bits=out_bits, out_scale=out_scale)

    return example


def scale_only_calibration(config_type, name: str):
    """``calibrate(in_scale, samples, ...)`` for a candidate whose constants come from the scale
    alone: the samples are only checked (non-empty, finite)."""
    def calibrate(in_scale, samples, *, in_bits=8, out_bits=8, out_scale=None):
        check_samples(f"{name} calibrate", samples)
        return config_type.from_scale(in_scale, in_bits=in_bits, out_bits=out_bits,
                                      out_scale=out_scale)

    return calibrate


def tabulated(run):
    """``run(config, q)`` through :func:`~intvit.golden_model.integer.elementwise` over the
    config's input codes: every GELU is element-wise, so a large input is looked up in a table
    of ``run``'s own outputs at every code (the same result, one evaluation per code)."""
    @functools.wraps(run)
    def lookup(config, q):
        return elementwise(run, config, q, *config.in_range)

    return lookup


def fast_tabulated(lookup):
    """The ``fast_run`` (:class:`~intvit.golden_model.operator.Operator`) of a
    :func:`tabulated` run: float codes ``q`` that the caller guarantees lie in the config's input
    range, looked up in the table of the run's own outputs at every input code (float32, which
    holds every signed output code of at most 16 bits exactly; :func:`~intvit.golden_model.
    integer.float_table` checks it), so the result equals ``run(config, q)`` bit for bit. No
    input check: the integer ViT feeds it its saturating requantizer's output."""
    run = lookup.__wrapped__

    def fast_run(config, q):
        lo, hi = config.in_range
        table = float_table(run, config, lo, hi, np.float32)
        if table is None:  # an unhashable config
            return None
        index = torch.from_numpy(q).to(torch.int32)  # integer codes of at most 16 bits: exact
        index.sub_(lo)
        values = torch.index_select(torch.from_numpy(table), 0, index.reshape(-1))
        return values.reshape(q.shape).numpy()

    return fast_run


def check_input(config, q, name: str) -> np.ndarray:
    """``q`` as an int64 array of the config's ``in_bits`` signed codes; else a one-line error."""
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
# I-BERT's erf polynomial, shared by i-GELU (squared) and Poly-GELU (fourth power)


def clipped_distance(q: np.ndarray, b_int: int) -> np.ndarray:
    """``d = min(|q|, -b_int) + b_int``, in ``[b_int, 0]``: the clipped ``|u|`` less the clip
    point, in input steps (I-BERT i-GELU, docs/method.md sec. 4.1)."""
    return np.minimum(np.abs(q), -b_int) + b_int


def distance_ranges(in_bits: int, b_int: int) -> dict:
    """Ranges of ``|q|``, ``d`` and ``d*d`` over every input code, with ``T = min(2**(in_bits-1),
    -b_int)``: ``d`` in ``[b_int, T + b_int]`` (<= 0), ``d*d`` in ``[(T + b_int)**2, b_int**2]``."""
    reach = min(1 << (in_bits - 1), -b_int)
    return {"abs": (0, 1 << (in_bits - 1)), "diff": (b_int, reach + b_int),
            "square": ((reach + b_int) ** 2, b_int ** 2)}


def erf_tail(q: np.ndarray, poly: np.ndarray, shift: int, one: int) -> np.ndarray:
    """``h = -(q * ((sign(q) * poly >> shift) + one))``: I-BERT's ``q * (L + one)`` negated.

    ``poly`` is the polynomial with the negative scale ``a * S_u**k`` (``a < 0``), so I-BERT's
    product has a negative real scale; negating it (a two's-complement negate in hardware) gives
    ``h`` a positive scale for the requantizer. ``>> shift`` is floor, as the reference's floor.
    """
    return -(q * (((np.sign(q) * poly) >> shift) + one))


def erf_tail_ranges(in_bits: int, poly: tuple[int, int], shift: int, one: int) -> dict:
    """Ranges of ``L = sign(q)*poly``, ``s = (L >> shift) + one`` and ``h = -(q*s)``, with the
    sign of ``q`` tied to the sign of ``L`` (q = 0 gives L = 0, h = 0)."""
    lo, hi = signed_range(in_bits)
    positive = (poly[0] >> shift) + one, (poly[1] >> shift) + one
    negative = ((-poly[1]) >> shift) + one, ((-poly[0]) >> shift) + one
    product = hull(product_range((1, hi), positive), product_range((lo, -1), negative), (0, 0))
    return {"signed_poly": hull(poly, (-poly[1], -poly[0]), (0, 0)),
            "sum": hull(positive, negative, (one, one)),
            "acc": (-product[1], -product[0])}


def smallest_fitting_shift(ranges_for_shift) -> int:
    """The smallest shift whose ``h`` fits the 32-bit requantizer input (keeps the most
    resolution; every larger shift also fits since it only shrinks ``|L >> n|`` and ``|one|``)."""
    for shift in range(MAX_INT64_BITS):
        if signed_width(*ranges_for_shift(shift)["acc"]) <= ACC_BITS:
            return shift
    raise IntvitError("gelu: no shift fits the GELU result in 32 bits; check the input scale")
