"""``softmax/iptq``: the Bit-exp softmax row unit, bit-exact to
:func:`intvit.golden_model.ops.softmax.iptq.bit_exp_softmax`."""
from amaranth import Const, signed, unsigned

from intvit.golden_model.integer import round_half_up_shift
from intvit.golden_model.ops.softmax.common import log2e_times16
from intvit.golden_model.ops.softmax.iptq import BitExpSoftmaxConfig, bit_exp_horner_outer

from ..fields import Fields, fit
from ..dsp import SplitProduct
from .common import ReciprocalSoftmaxUnit, saturate


class BitExpSoftmaxUnit(ReciprocalSoftmaxUnit):
    """``softmax/iptq`` (Bit-exp, :class:`BitExpSoftmaxConfig`), ``lanes`` elements per beat.

    Pass 1, nine registered stages per lane (``x = max - q = -d``, ``F = frac_bits``), each
    step built by the golden function named; every multiply has a stage of its own (its DSP
    path register to register) and the adds, shifts and compares around it the next one:

    1. ``t = 23 * x`` by shift-add (``log2e_times16``: ``(x<<4) + (x<<3) - x``);
    2. ``t * R`` (constant multiply, ``R = scale_mult``);
    3. ``u = (t*R + 2**(s-1)) >> s`` (``round_half_up_shift``); ``k = min(u >> F,
       k_max)`` (no comparator when ``u_max >> F <= k_max``), ``f = u & (2**F - 1)``;
    4. ``C2*f`` (constant multiply);
    5. ``inner = C1 + (C2*f >> F)`` (the golden ``bit_exp_horner_inner``, its multiply and its
       add in two stages);
    6. the partial products of ``inner * f`` (:class:`~intvit.hw.dsp.SplitProduct`: the one variable
       multiplier, ``exp_bits + F + 1`` bits signed, as DSP slices);
    7. their sum ``inner * f``;
    8. ``p = C0 + (inner*f >> F)`` (``bit_exp_horner_outer``) in ``0..exp_max``;
    9. ``e = p >> k`` (barrel shift).

    Row step: ``RestoringDivider(recip_bits + 1, sum bits, quotient_bits)`` computes
    ``floor(2**recip_bits / sum)`` in ``quotient_bits`` cycles. Pass 2
    (:meth:`~.common.ReciprocalSoftmaxUnit.output_pass`): ``e * f`` as partial products, their
    sum, then ``min((e*f + 2**(sh-1)) >> sh, 2**out_bits - 1)`` with ``sh = recip_bits -
    out_bits``.

    Throughput one beat per cycle in each pass, rows overlapped
    (:meth:`~intvit.hw.rowpipe.RowUnit.row_interval`); the divider paces only rows shorter than
    its ``quotient_bits + 1`` cycles plus hand-off.
    """

    config_type = BitExpSoftmaxConfig

    def exp_stages(self):
        cfg = self.config
        frac = cfg.frac_bits
        k_shape = unsigned(cfg.k_max.bit_length())
        split = Fields(k=k_shape, f=unsigned(frac))
        poly = Fields(k=k_shape, f=unsigned(frac), inner=signed(cfg.exp_bits + 2))
        product = Fields(k=k_shape, prod=signed(cfg.exp_bits + frac + 1))
        scaled_f = Fields(k=k_shape, f=unsigned(frac), c2f=(cfg.coef2 * Const(0, frac)).shape())
        horner = SplitProduct(signed(cfg.exp_bits + 2), unsigned(frac))
        partial = Fields(k=k_shape, **horner.fields)
        power_in = Fields(k=k_shape, p=self.exp_shape)

        def log2e(q, ctx):
            return log2e_times16(fit(ctx.scalars["max"] - q, unsigned(cfg.in_bits)))

        def scale(t, ctx):
            return t * cfg.scale_mult

        def exponent(scaled, ctx):
            u = round_half_up_shift(scaled, cfg.scale_shift)
            return split.pack(k=saturate(u >> frac, cfg.k_max, k_shape, cfg.u_max >> frac),
                              f=u[:frac])

        def inner_product(word, ctx):
            w = split.unpack(word)
            return scaled_f.pack(k=w.k, f=w.f, c2f=cfg.coef2 * w.f)

        def inner(word, ctx):
            w = scaled_f.unpack(word)
            return poly.pack(k=w.k, f=w.f, inner=cfg.coef1 + (w.c2f >> frac))

        def partials(word, ctx):
            w = poly.unpack(word)
            return partial.pack(k=w.k, **horner.partials(w.inner, w.f))

        def multiply(word, ctx):
            w = partial.unpack(word)
            return product.pack(k=w.k, prod=horner.total(w))

        def outer(word, ctx):
            w = product.unpack(word)
            return power_in.pack(k=w.k, p=bit_exp_horner_outer(cfg, w.prod))

        def power(word, ctx):
            w = power_in.unpack(word)
            return w.p >> w.k

        return [log2e, scale, exponent, inner_product, inner, partials, multiply, outer, power]


UNIT = BitExpSoftmaxUnit
