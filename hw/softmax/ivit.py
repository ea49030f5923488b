"""``softmax/ivit``: the I-ViT Shiftmax row unit, bit-exact to
:func:`intvit.golden_model.ops.softmax.ivit.shiftmax`."""
from amaranth import Mux, signed, unsigned

from intvit.golden_model.ops.softmax.common import log2e_shift_add
from intvit.golden_model.ops.softmax.ivit import (ShiftmaxConfig, shift_exp_mantissa,
                                                  shift_exp_power)

from ..fields import Fields, fit
from .common import ReciprocalSoftmaxUnit, exact_reciprocal


class ShiftmaxUnit(ReciprocalSoftmaxUnit):
    """``softmax/ivit`` (I-ViT Shiftmax, :class:`ShiftmaxConfig`), ``lanes`` elements per beat.

    Pass 1, seven registered stages per lane (``X = -x0 > 0``); each multiply in a stage of its
    own (its DSP path register to register), the carry chains of one step apart:

    1. ``d = q - max``;
    2. ``t = d + (d>>1) - (d>>4)`` (the golden ``log2e_shift_add``, floor shifts);
    3. ``a = -max(t, n*x0)`` in ``0..a_max``, ``a_max = -t_min`` of the config (the clamp is
       built only when it can act);
    4. ``k = floor(t / x0) = floor(a / X) = (a * M) >> sd``: a constant divider,
       :func:`~.common.exact_reciprocal` for ``a <= a_max``;
    5. ``k*X`` (constant multiply);
    6. ``r = k*X - a``, ``v = r - 2*x0`` in ``X+1..2X`` (the golden ``shift_exp_mantissa``),
       shift ``n - k``;
    7. ``e = (v << (n-k)) >> 1`` (``shift_exp_power``, a barrel shift), ``1 <= e <= exp_max =
       X * 2**n``.

    Row step: ``RestoringDivider(31, 31, quotient_bits)`` computes ``floor((2**31 - 1) /
    min(sum, 2**31 - 1))`` (the config's ``recip_numerator`` and ``sum_limit``) in
    ``quotient_bits`` cycles; the sum itself is ``bits(max_row * exp_max)`` wide and clamped
    before the divider. Pass 2 (:meth:`~.common.ReciprocalSoftmaxUnit.output_pass`): ``e * f``
    as partial products, their sum, then ``min((e*f) >> (31 - out_bits), 2**out_bits - 1)``
    (floor).

    Throughput one beat per cycle in each pass, rows overlapped
    (:meth:`~intvit.hw.rowpipe.RowUnit.row_interval`); the divider paces only rows shorter than
    its ``quotient_bits + 1`` cycles plus hand-off.
    """

    config_type = ShiftmaxConfig

    def exp_stages(self):
        cfg = self.config
        x = -cfg.x0
        a_max = -cfg.t_min
        a_shape = unsigned(a_max.bit_length())
        k_shape = unsigned(cfg.n.bit_length())
        quotient = Fields(a=a_shape, k=k_shape)
        multiple_of = Fields(a=a_shape, k=k_shape, kx=a_shape)  # k*X <= a
        mantissa = Fields(v=unsigned((2 * x).bit_length()), shift=k_shape)
        mult, shift = exact_reciprocal(x, a_max)
        floor_t = cfg.n * cfg.x0
        d_shape = signed(cfg.in_bits + 1)  # d = q - max in -(2**in_bits - 1)..0

        def offset(q, ctx):
            return fit(q - ctx.scalars["max"], d_shape)

        def log2e(d, ctx):
            return log2e_shift_add(d)

        def clamp_negate(t, ctx):
            if cfg.t_min == floor_t:  # the clamp can act
                t = Mux(t < floor_t, floor_t, t)
            return fit(-t, a_shape)

        def octave(a, ctx):
            return quotient.pack(a=a, k=(a * mult) >> shift)

        def multiple(word, ctx):
            w = quotient.unpack(word)
            return multiple_of.pack(a=w.a, k=w.k, kx=w.k * x)

        def remainder(word, ctx):
            w = multiple_of.unpack(word)
            return mantissa.pack(v=shift_exp_mantissa(cfg, w.kx - w.a), shift=cfg.n - w.k)

        def power(word, ctx):
            w = mantissa.unpack(word)
            return fit(shift_exp_power(w.v, w.shift), self.exp_shape)

        return [offset, log2e, clamp_negate, octave, multiple, remainder, power]


UNIT = ShiftmaxUnit
