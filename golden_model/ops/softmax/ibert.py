"""``softmax/ibert``: I-BERT softmax (Kim et al., ICML 2021, Sec. 3.5, Algorithm 2; reference
``IntSoftmax``; docs/method.md sec. 4.1, i-exp), and its i-exp, which ``softmax/fqvit``
shares. The float reference is :func:`~.common.softmax_reference`."""
import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import ClassVar

import numpy as np

from ...errors import ConfigError
from ...integer import check_int
from .common import (GUARD_BITS, INT64_BITS, ReciprocalSoftmaxConfig, SoftmaxConfig, ceil_log2,
                     check_common, check_fits, masked, normalize, row_offsets,
                     softmax_operator)


@dataclass(frozen=True)
class IExpPolynomial:
    """``exp(p) ~ a * ((p + b) * (p + b2) + c)`` on ``p in (-ln2, 0]``, with ``c`` already divided
    by ``a``. Integer form (I-BERT Algorithm 1, I-POLY): ``z = (r + b_int) * (r + b2_int) +
    c_int``, ``b_int = floor(b/S)``, ``b2_int = floor(b2/S)``, ``c_int = floor(c/S**2)``, scale
    ``a * S**2``."""

    a: float
    b: float
    b2: float
    c: float

    def value(self, p):
        """The real polynomial at ``p``."""
        return self.a * ((p + self.b) * (p + self.b2) + self.c)

    def integers(self, scale: float) -> dict:
        """``b_int``, ``b2_int``, ``c_int`` for input scale ``S``, in float64 as the references
        compute them (so decimal ties such as 1.353 / 0.0123 = 110 land on the integer)."""
        return dict(b_int=math.floor(self.b / scale), b2_int=math.floor(self.b2 / scale),
                    c_int=math.floor(self.c / scale ** 2))


I_EXP_POLYNOMIALS = {
    "paper": IExpPolynomial(a=0.3585, b=1.353, b2=1.353, c=0.344 / 0.3585),
    "code": IExpPolynomial(a=0.35815147, b=0.96963238 / 0.35815147, b2=0.0, c=1.0 / 0.35815147),
}
"""The two published i-exp polynomials, within 3e-4 of each other (docs/method.md sec. 4.1):
``"paper"`` is I-BERT's eq. 13 / Algorithm 2, ``0.3585*(p + 1.353)**2 + 0.344`` (max abs error
2.1e-3); ``"code"`` is I-BERT's and FQ-ViT's released code (``IntSoftmax.coef``,
``int_polynomial``), ``0.35815147*p**2 + 0.96963238*p + 1`` with ``coef[1:] /= coef[0]``, so
``z = r*(r + b_int) + c_int`` (max abs error 1.9e-3)."""
IBERT_X0 = -0.6931
"""``-ln 2`` as written in I-BERT's and FQ-ViT's reference code (``x0``)."""
IBERT_N = 30
"""I-BERT's and FQ-ViT's ``n``: octave clamp and precision shift (reference ``const``/``n``)."""
IBERT_REQUANT_BITS = 16
"""I-BERT requantizes ``e`` to int16 (``QuantAct(16)``) before the row sum."""
IBERT_RECIP_BITS = 32
"""I-BERT's ``max_bit``: ``f = floor(2**32 / sum)``."""


def check_polynomial(owner: str, polynomial) -> None:
    if not isinstance(polynomial, str) or polynomial not in I_EXP_POLYNOMIALS:
        raise ConfigError(f"{owner}: polynomial must be one of {', '.join(I_EXP_POLYNOMIALS)} "
                          f"(got {polynomial!r})")


def i_exp_constants(owner: str, scale: float, polynomial: str) -> dict:
    """``x0_int = floor(x0/S)`` and the polynomial's integers (:meth:`IExpPolynomial.integers`)."""
    check_polynomial(owner, polynomial)
    return dict(x0_int=math.floor(IBERT_X0 / scale), polynomial=polynomial,
                **I_EXP_POLYNOMIALS[polynomial].integers(scale))


def i_poly_factors(cfg, r):
    """``(r + b_int, r + b2_int)``: the two factors of :func:`i_poly`."""
    return r + cfg.b_int, r + cfg.b2_int


def i_poly(cfg, r):
    """``z = (r + b_int) * (r + b2_int) + c_int`` (numpy arrays, ints or Amaranth values)."""
    first, second = i_poly_factors(cfg, r)
    return first * second + cfg.c_int


def i_poly_bounds(cfg) -> tuple[int, int]:
    """``(min z, max z)`` over ``r in (x0_int, 0]``: a parabola opening up, so the maximum is at
    an end and the minimum at an end or beside the vertex ``-(b_int + b2_int) / 2``."""
    lo, hi = cfg.x0_int + 1, 0
    vertex = -(cfg.b_int + cfg.b2_int) // 2
    points = {lo, hi} | {min(max(r, lo), hi) for r in (vertex, vertex + 1)}
    values = [i_poly(cfg, r) for r in points]
    return min(values), max(values)


def scale_pow2(value: int, shift: int) -> int:
    """``floor(value * 2**shift)`` for a signed ``shift``."""
    return value << shift if shift >= 0 else value >> -shift


def check_i_exp(cfg) -> None:
    """Validate the i-exp fields shared by ``softmax/ibert`` and ``softmax/fqvit``."""
    owner = type(cfg).__name__
    check_polynomial(owner, cfg.polynomial)
    check_int(owner, "x0_int", cfg.x0_int, -(1 << 17), -1, "x0_int = floor(-0.6931/S) is negative")
    check_int(owner, "b_int", cfg.b_int, 0, 1 << 18)
    check_int(owner, "b2_int", cfg.b2_int, 0, 1 << 18)
    check_int(owner, "c_int", cfg.c_int, 1, 1 << 34)
    check_int(owner, "k_max", cfg.k_max, 1, INT64_BITS)
    check_int(owner, "exp_shift", cfg.exp_shift, -INT64_BITS, INT64_BITS)
    if i_poly_bounds(cfg)[0] < 0:
        raise ConfigError(f"{owner}: the polynomial goes negative on (x0_int, 0]; its constants "
                          "do not approximate exp")
    if scale_pow2(i_poly(cfg, 0), cfg.exp_shift) < 1:
        raise ConfigError(f"{owner}: exp_shift {cfg.exp_shift} rounds the row maximum's "
                          "exponential to 0; raise exp_shift")
    check_fits(owner, "sum_bits", cfg.sum_bits, INT64_BITS - 1,
               "lower exp_shift or max_row (I-BERT's n = 30 overflows for fine scales)")


def poly_max(consts: dict) -> int:
    """``max z`` of i-exp constants not yet in a config (:func:`i_exp_constants`)."""
    return i_poly_bounds(SimpleNamespace(**consts))[1]


def derived_exp_shift(consts: dict, exp_bits: int) -> int:
    """The largest ``p`` with ``max z * 2**p < 2**exp_bits``."""
    return exp_bits - poly_max(consts).bit_length()


@dataclass(frozen=True)
class IExpConfig(SoftmaxConfig):
    """The fields of I-BERT's i-exp (:func:`i_exp`), shared by ``softmax/ibert`` and
    ``softmax/fqvit``; ``polynomial`` names the entry of :data:`I_EXP_POLYNOMIALS` whose
    integers ``b_int``, ``b2_int``, ``c_int`` are."""

    in_bits: int
    out_bits: int
    max_row: int
    x0_int: int
    b_int: int
    b2_int: int
    c_int: int
    k_max: int
    exp_shift: int
    in_scale: float
    polynomial: str

    @property
    def exp_max(self) -> int:
        """Largest ``e``: the polynomial's maximum at ``k = 0``."""
        return scale_pow2(i_poly_bounds(self)[1], self.exp_shift)


def i_exp(cfg: IExpConfig, d: np.ndarray) -> np.ndarray:
    """I-BERT i-exp on ``d <= 0``: ``e = floor(z * 2**(exp_shift - k))``, scale
    ``a * S**2 / 2**exp_shift``.

    ``d = max(d, k_max * x0_int)``; ``k = floor(d / x0_int)`` (constant divider), ``r = d -
    x0_int*k`` in ``(x0_int, 0]``; ``z`` by :func:`i_poly`. The shift is one barrel shift, left
    by ``exp_shift - k`` or right by ``k - exp_shift``.
    """
    d = np.maximum(d, cfg.k_max * cfg.x0_int)
    k = d // cfg.x0_int
    z = i_poly(cfg, d - cfg.x0_int * k)
    return (z << np.maximum(cfg.exp_shift - k, 0)) >> np.maximum(k - cfg.exp_shift, 0)


@dataclass(frozen=True)
class IBertSoftmaxConfig(IExpConfig, ReciprocalSoftmaxConfig):
    """I-BERT softmax (Kim et al., ICML 2021, Sec. 3.5, Algorithm 2; reference ``IntSoftmax``).

    1. i-exp (:func:`i_exp`): range reduction by ``x0 = -0.6931`` as the reference code
       (``x0_int = floor(x0/S)``; the paper writes ``floor(ln2/S)``), a polynomial from
       :data:`I_EXP_POLYNOMIALS` named by ``polynomial``: ``"paper"`` ``0.3585*(p + 1.353)**2 +
       0.344`` or ``"code"`` (the released code) ``0.35815147*p**2 + 0.96963238*p + 1``; octave
       clamp ``k <= k_max``, ``e = floor(z * 2**(exp_shift - k))``.
    2. ``f = floor(2**recip_bits / sum_row(e))``; ``y = (e * f) >> (recip_bits - out_bits)``
       (floor, as the reference), saturated at ``2**out_bits - 1`` (``e * f`` can reach
       ``2**recip_bits``).

    ``from_scale`` derives the widths (paper polynomial by default): ``exp_bits = ceil(log2
    max_row) + out_bits + 4``, ``exp_shift`` the largest with ``exp_max < 2**exp_bits``, ``k_max
    = exp_bits + 1`` (where ``e`` is 0 anyway), ``recip_bits = exp_bits + out_bits + 4``. The
    reference's int16 requantization of ``e`` (its code's step 5, docs/method.md sec. 4.1) is
    not needed: ``exp_bits`` is the width. ``published`` reproduces the released code (its polynomial by
    default): ``k_max = n = 30``, ``e`` computed at ``2**30`` and then requantized to int16 — our
    stand-in for ``QuantAct(16)`` is a floor right shift by the ``t`` that brings ``exp_max``
    below ``2**15`` (``exp_shift = 30 - t``; floor shifts compose exactly), ``recip_bits = 32``.
    Worst cases: ``exp_max = floor(max z * 2**exp_shift)``; row sum ``max_row * exp_max``
    (``sum_bits``); ``f <= 2**recip_bits // e(d=0)`` (``quotient_bits``).
    """

    recip_bits: int

    OP_NAME: ClassVar[str] = "softmax/ibert"

    def __post_init__(self):
        owner = type(self).__name__
        check_common(owner, self.in_bits, self.out_bits, self.max_row, self.in_scale)
        check_i_exp(self)
        check_int(owner, "recip_bits", self.recip_bits, self.out_bits, INT64_BITS,
                  "e * f <= 2**recip_bits must fit int64")

    @classmethod
    def from_scale(cls, in_scale: float, in_bits: int = 8, out_bits: int = 8,
                   max_row: int = 1024, polynomial: str = "paper") -> "IBertSoftmaxConfig":
        """Derived widths (class docstring)."""
        scale = check_common(cls.__name__, in_bits, out_bits, max_row, in_scale)
        consts = i_exp_constants(cls.__name__, scale, polynomial)
        exp_bits = ceil_log2(max_row) + out_bits + GUARD_BITS
        return cls(in_bits=in_bits, out_bits=out_bits, max_row=max_row, k_max=exp_bits + 1,
                   exp_shift=derived_exp_shift(consts, exp_bits),
                   recip_bits=exp_bits + out_bits + GUARD_BITS, in_scale=scale, **consts)

    @classmethod
    def published(cls, in_scale: float, in_bits: int = 8, out_bits: int = 8,
                  max_row: int = 1024, polynomial: str = "code") -> "IBertSoftmaxConfig":
        """The released code: ``n = 30``, int16 ``e`` (floor shift stand-in), ``2**32 / sum``,
        and its polynomial (``polynomial="paper"`` swaps in the paper's)."""
        scale = check_common(cls.__name__, in_bits, out_bits, max_row, in_scale)
        consts = i_exp_constants(cls.__name__, scale, polynomial)
        full = poly_max(consts) << IBERT_N
        requant = max(0, full.bit_length() - (IBERT_REQUANT_BITS - 1))
        return cls(in_bits=in_bits, out_bits=out_bits, max_row=max_row, k_max=IBERT_N,
                   exp_shift=IBERT_N - requant, recip_bits=IBERT_RECIP_BITS, in_scale=scale,
                   **consts)

    @property
    def exp_one(self) -> int:
        """``e`` of the row maximum (``d = 0``): every row sum is at least this."""
        return scale_pow2(i_poly(self, 0), self.exp_shift)

    @property
    def quotient_bits(self) -> int:
        return (self.recip_numerator // self.exp_one).bit_length()


def ibert_softmax(cfg: IBertSoftmaxConfig, q, keep=None) -> np.ndarray:
    """``softmax/ibert`` on signed codes ``q`` (rows on the last axis), the elements where
    ``keep`` is false excluded (:func:`~.common.masked`)."""
    return normalize(cfg, masked(i_exp(cfg, row_offsets(cfg, q, keep)), keep))


OPERATOR = softmax_operator(
    IBertSoftmaxConfig, ibert_softmax,
    description="I-BERT softmax: i-exp (ln2 range reduction, 0.3585(p+1.353)^2+0.344), 2**M/sum",
    source="I-BERT (Kim et al., ICML 2021) Sec. 3.5, Algorithm 2", exp=i_exp)
