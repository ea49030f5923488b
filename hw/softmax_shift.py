"""Shift-based softmax row units: Bit-exp (``softmax/iptq``) and I-ViT Shiftmax (``softmax/ivit``).

Both are three-pass :class:`intvit.hw.rowpipe.RowUnit` s, bit-exact to ``golden_model/ops/softmax.py``:

- pass 0 loads the row into the buffer and reduces its maximum (``signed(in_bits)``);
- pass 1 turns each element into its exponential ``e`` (written back in place) and sums them;
- row step 1: one :class:`intvit.hw.seqmath.RestoringDivider` per unit gives the row's reciprocal
  ``f = floor(N / sum)``, one quotient bit per cycle, only the config's ``quotient_bits`` of
  them (the row maximum's own ``e`` bounds the sum from below, so ``f < 2**quotient_bits``);
- pass 2 multiplies ``e * f``, shifts (rounding as the method states), saturates and streams the
  probabilities out.

Every constant and width comes from the golden config (class-level constants read from the
class). The row sum is sized for the unit's own ``max_row`` (``max_row * exp_max``), so a unit
may hold rows longer or shorter than the config's ``max_row`` (the golden arithmetic, without
the golden model's length check, for every length it accepts).

Initiation interval: every pass streams one beat per cycle, but the row step holds one row at a
time, so the interval is ``max(about ceil(n / lanes) + overhead / 3, divider cycles + 4)``:
short rows (fewer beats than the divider has cycles) are divider-bound. Measured intervals and
latencies: ``python bench/hw_units.py`` (``docs/results.md``).
"""
import numpy as np
from amaranth import Mux, signed, unsigned

from intvit.golden_model.integer import signed_range
from intvit.golden_model.ops.softmax import (BitExpSoftmaxConfig, ShiftmaxConfig, bit_exp_poly,
                                      log2e_shift_add)

from .fields import Fields, fit
from .rowpipe import Reduction, RowPass, RowUnit
from .seqmath import RestoringDivider


def saturate(value, top: int, shape, bound: int | None = None):
    """``min(value, top)`` for ``value >= 0``, as ``shape``; no comparator when the value's
    proven ``bound`` is within ``top``."""
    if bound is not None and bound <= top:
        return fit(value, shape)
    return fit(Mux(value > top, top, value), shape)


def bit_exp_u_max(cfg: BitExpSoftmaxConfig) -> int:
    """Largest base-2 exponent ``u = round(-23 d R / 2**s)``, at ``d = 1 - 2**in_bits``."""
    t_max = 23 * ((1 << cfg.in_bits) - 1)
    return (t_max * cfg.scale_mult + ((1 << cfg.scale_shift) >> 1)) >> cfg.scale_shift


def shiftmax_a_max(cfg: ShiftmaxConfig) -> int:
    """Largest ``a = -max(t, n*x0)`` over every offset ``d`` the inputs can give."""
    lo, hi = signed_range(cfg.in_bits)
    d = np.arange(lo - hi, 1, dtype=np.int64)
    return int(min(cfg.n * -cfg.x0, -log2e_shift_add(d).min()))


def shiftmax_k_divider(cfg: ShiftmaxConfig) -> tuple[int, int]:
    """``(M, sd)`` of the constant divider ``floor(a / X) = (a * M) >> sd``, ``X = -x0``, exact
    for ``0 <= a <= a_max`` (proof in :class:`ShiftmaxUnit`)."""
    x = -cfg.x0
    shift = shiftmax_a_max(cfg).bit_length() + x.bit_length()
    return -(-(1 << shift) // x), shift


class _ShiftSoftmaxUnit(RowUnit):
    """The three passes and the reciprocal row step shared by both units. A subclass states
    ``exp_shape`` (of ``e``), ``exp_max``, ``exp_stages()``, ``normalize_stages()``,
    ``numerator``, ``divisor(sum)`` (the divider's operand, ``divisor_bits`` wide) and
    ``quotient_bits``."""

    config_type = None

    def __init__(self, config, *, lanes: int = 1, max_row: int = 256):
        if not isinstance(config, self.config_type):
            raise TypeError(f"config must be a {self.config_type.__name__}, not {config!r}")
        self.config = config
        self.check_config()
        super().__init__(signed(config.in_bits), unsigned(config.out_bits), lanes=lanes,
                         max_row=max_row)
        self.sum_shape = unsigned((max_row * self.exp_max).bit_length())

    def check_config(self):
        """Refuse a config the datapath cannot carry (a one-line ``ValueError``)."""

    def passes(self):
        cfg = self.config
        return [
            RowPass(signed(cfg.in_bits), reductions={"max": Reduction("max", signed(cfg.in_bits))}),
            RowPass(self.exp_shape, stages=self.exp_stages(),
                    reductions={"sum": Reduction("sum", self.sum_shape)}),
            RowPass(unsigned(cfg.out_bits), stages=self.normalize_stages()),
        ]

    def row_step(self, m, gap, start, values):
        if gap != 1:
            return start, {}
        divider = RestoringDivider(self.numerator.bit_length(), self.divisor_bits,
                                   quotient_bits=self.quotient_bits)
        m.submodules.reciprocal = divider
        m.d.comb += [divider.start.eq(start), divider.numerator.eq(self.numerator),
                     divider.denominator.eq(self.divisor(values["sum"]))]
        return divider.done, {"recip": fit(divider.quotient, unsigned(self.quotient_bits))}

    def row_step_cycles(self, gap):
        return self.quotient_bits if gap == 1 else 0  # one quotient bit per cycle

    @property
    def exp_shape(self):
        return unsigned(self.exp_max.bit_length())


class BitExpSoftmaxUnit(_ShiftSoftmaxUnit):
    """``softmax/iptq`` (Bit-exp, :class:`BitExpSoftmaxConfig`), ``lanes`` elements per beat.

    Pass 1, six registered stages per lane (``d = q - max``, ``F = frac_bits``):

    1. ``t = 23 * (max - q)`` by shift-add (``(x<<4) + (x<<3) - x``);
    2. ``t * R`` (constant multiply, ``R = scale_mult``);
    3. ``u = (t*R + 2**(s-1)) >> s``; ``k = min(u >> F, k_max)``, ``f = u & (2**F - 1)``;
    4. ``inner = C1 + (C2*f >> F)`` (constant multiply), ``|inner| <= 2**exp_bits``;
    5. ``inner * f`` (the one variable multiplier, ``exp_bits + F + 1`` bits signed);
    6. ``p = C0 + (inner*f >> F)`` in ``0..exp_max`` (checked over all ``f`` when built),
       ``e = p >> k`` (barrel shift).

    Row step: ``RestoringDivider(recip_bits + 1, sum bits, quotient_bits)`` computes
    ``floor(2**recip_bits / sum)`` in ``quotient_bits`` cycles (``sum >= C0``, the row maximum's
    ``e``, so the quotient has ``quotient_bits``); the sum is ``bits(max_row * exp_max)`` wide.

    Pass 2, two stages: ``e * f``; ``min((e*f + 2**(sh-1)) >> sh, 2**out_bits - 1)`` with
    ``sh = recip_bits - out_bits``.

    Throughput one beat per cycle in each pass; the passes overlap on three buffered rows, so
    back-to-back rows are accepted every ``ceil(n / lanes) + row_overhead`` cycles at most
    (``row_overhead = 6 + 3 + quotient_bits + 4``, pass 1 and the divider).
    """

    config_type = BitExpSoftmaxConfig

    def check_config(self):
        cfg = self.config
        if cfg.recip_bits <= cfg.out_bits:
            raise ValueError(f"BitExpSoftmaxUnit: recip_bits {cfg.recip_bits} must exceed "
                             f"out_bits {cfg.out_bits}; build the config with from_scale")
        if bit_exp_poly(cfg, np.arange(1 << cfg.frac_bits, dtype=np.int64)).min() < 0:
            raise ValueError("BitExpSoftmaxUnit: the 2**-f polynomial goes negative for some f; "
                             "its coefficients do not approximate 2**-f")

    @property
    def exp_max(self) -> int:
        return self.config.exp_max

    @property
    def numerator(self) -> int:
        return 1 << self.config.recip_bits

    @property
    def divisor_bits(self) -> int:
        return self.sum_shape.width

    def divisor(self, total):
        return total

    @property
    def quotient_bits(self) -> int:
        return self.config.quotient_bits

    def exp_stages(self):
        cfg = self.config
        frac = cfg.frac_bits
        one_bits = cfg.exp_bits
        split = Fields(k=unsigned(cfg.k_max.bit_length()), f=unsigned(frac))
        poly = Fields(k=split.layout["k"].shape, f=unsigned(frac), inner=signed(one_bits + 2))
        product = Fields(k=split.layout["k"].shape, prod=signed(one_bits + frac + 1))

        def log2e(q, ctx):  # -16 * log2(e) * d = 23 * (max - q), exactly
            x = fit(ctx.scalars["max"] - q, unsigned(cfg.in_bits))
            return (x << 4) + (x << 3) - x

        def scale(t, ctx):
            return t * cfg.scale_mult

        def exponent(scaled, ctx):
            u = (scaled + ((1 << cfg.scale_shift) >> 1)) >> cfg.scale_shift
            return split.pack(k=saturate(u >> frac, cfg.k_max, split.layout["k"].shape,
                                         bit_exp_u_max(cfg) >> frac),
                              f=u[:frac])

        def inner(word, ctx):
            w = split.unpack(word)
            return poly.pack(k=w.k, f=w.f, inner=cfg.coef1 + ((cfg.coef2 * w.f) >> frac))

        def multiply(word, ctx):
            w = poly.unpack(word)
            return product.pack(k=w.k, prod=w.inner * w.f)

        def power(word, ctx):
            w = product.unpack(word)
            return fit(cfg.coef0 + (w.prod >> frac), self.exp_shape) >> w.k

        return [log2e, scale, exponent, inner, multiply, power]

    def normalize_stages(self):
        cfg = self.config
        shift = cfg.recip_bits - cfg.out_bits

        def product(e, ctx):
            return e * ctx.scalars["recip"]

        def rounded(prod, ctx):
            y = (prod + (1 << (shift - 1))) >> shift
            return saturate(y, (1 << cfg.out_bits) - 1, unsigned(cfg.out_bits))

        return [product, rounded]


class ShiftmaxUnit(_ShiftSoftmaxUnit):
    """``softmax/ivit`` (I-ViT Shiftmax, :class:`ShiftmaxConfig`), ``lanes`` elements per beat.

    Pass 1, four registered stages per lane (``X = -x0 > 0``):

    1. ``t = d + (d>>1) - (d>>4)``, ``d = q - max`` (floor shifts); ``a = -max(t, n*x0)`` in
       ``0..a_max``, ``a_max = min(n*X, max -t over the input range)``;
    2. ``k = floor(t / x0) = floor(a / X)`` by a constant divider: ``k = (a * M) >> sd`` with
       ``sd = bits(a_max) + bits(X)``, ``M = ceil(2**sd / X)``. Exact for ``a <= a_max``: with
       ``a = kX + r`` and ``err = M*X - 2**sd < X``, ``a*M / 2**sd = k + (r + a*err/2**sd) / X``
       and ``a * err < 2**bits(a_max) * 2**bits(X) = 2**sd``, so the fraction stays below 1;
    3. ``v = r - 2*x0 = 2X - (a - k*X)`` in ``X+1..2X``, shift ``n - k``;
    4. ``e = (v << (n-k)) >> 1`` (barrel shift), ``1 <= e <= exp_max = X * 2**n``.

    Row step: ``RestoringDivider(31, 31, quotient_bits)`` computes ``floor((2**31 - 1) /
    min(sum, 2**31 - 1))`` (``recip_numerator``, ``sum_limit`` of the class) in
    ``quotient_bits`` cycles (the row maximum's ``e`` is ``exp_max``, a lower bound of the sum);
    the sum itself is ``bits(max_row * exp_max)`` wide and clamped before the divider.

    Pass 2, two stages: ``e * f``; ``min((e*f) >> (31 - out_bits), 2**out_bits - 1)`` (floor).

    Throughput one beat per cycle in each pass; back-to-back rows are accepted every
    ``ceil(n / lanes) + row_overhead`` cycles at most (``row_overhead = 4 + 3 +
    quotient_bits + 4``).
    """

    config_type = ShiftmaxConfig

    @property
    def exp_max(self) -> int:
        return self.config.exp_max

    @property
    def numerator(self) -> int:
        return type(self.config).recip_numerator

    @property
    def divisor_bits(self) -> int:
        return type(self.config).sum_limit.bit_length()

    def divisor(self, total):
        return saturate(total, type(self.config).sum_limit, unsigned(self.divisor_bits),
                        self.max_row * self.exp_max)

    @property
    def quotient_bits(self) -> int:
        return self.config.quotient_bits

    def exp_stages(self):
        cfg = self.config
        x = -cfg.x0
        a_max = shiftmax_a_max(cfg)
        a_shape = unsigned(a_max.bit_length())
        k_shape = unsigned(cfg.n.bit_length())
        quotient = Fields(a=a_shape, k=k_shape)
        mantissa = Fields(v=unsigned((2 * x).bit_length()), shift=k_shape)
        mult, shift = shiftmax_k_divider(cfg)
        floor_t = cfg.n * cfg.x0

        def exponent(q, ctx):
            d = q - ctx.scalars["max"]
            t = d + (d >> 1) - (d >> 4)
            if a_max == -floor_t:  # the clamp can act
                t = Mux(t < floor_t, floor_t, t)
            return fit(-t, a_shape)

        def octave(a, ctx):
            return quotient.pack(a=a, k=(a * mult) >> shift)

        def remainder(word, ctx):
            w = quotient.unpack(word)
            return mantissa.pack(v=2 * x + w.k * x - w.a, shift=cfg.n - w.k)

        def power(word, ctx):
            w = mantissa.unpack(word)
            return fit((w.v << w.shift)[1:], self.exp_shape)

        return [exponent, octave, remainder, power]

    def normalize_stages(self):
        cfg = self.config
        shift = type(cfg).recip_bits - cfg.out_bits

        def product(e, ctx):
            return e * ctx.scalars["recip"]

        def floored(prod, ctx):
            return saturate(prod >> shift, (1 << cfg.out_bits) - 1, unsigned(cfg.out_bits))

        return [product, floored]
