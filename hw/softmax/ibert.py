"""``softmax/ibert``: the I-BERT softmax row unit, and the i-exp stages it shares with
``softmax/fqvit`` (:func:`i_exp_stages`). Bit-exact to
:func:`intvit.golden_model.ops.softmax.ibert.ibert_softmax`."""
from amaranth import Mux, Shape, unsigned

from intvit.golden_model.ops.softmax.ibert import (IBertSoftmaxConfig, i_poly_bounds,
                                                   i_poly_factors)

from ..fields import Fields, fit
from .common import ReciprocalSoftmaxUnit, exact_reciprocal


def i_exp_stages(cfg, exp_shape) -> list:
    """Pass 1 of ``softmax/ibert`` and ``softmax/fqvit``: I-BERT's i-exp
    (:func:`intvit.golden_model.ops.softmax.ibert.i_exp`), one register after each step
    (``D = -x0_int``):

    1. ``n = min(max - q, k_max*D)``: ``-d`` after golden's clamp ``d >= k_max*x0_int``.
    2. ``k = (n * M) >> s = floor(n / D)``: the constant divider by ``D`` as a constant multiply,
       ``(M, s)`` from :func:`~.common.exact_reciprocal`, exact for every ``n`` of the input range.
    3. ``D*k`` (constant multiply, alone in its stage).
    4. ``r = D*k - n`` (``= d - x0_int*k`` in ``(x0_int, 0]``) and the factors ``r + b_int``,
       ``r + b2_int`` (the golden ``i_poly_factors``).
    5. ``(r + b_int) * (r + b2_int)`` (one multiplier per lane, alone in its stage).
    6. ``z = (r + b_int) * (r + b2_int) + c_int``, ``z`` within the golden ``i_poly_bounds``
       (never negative).
    7. ``e = (z << max(exp_shift, 0)) >> (k + max(-exp_shift, 0)) = floor(z * 2**(exp_shift-k))``,
       one barrel shift.

    Every multiply is alone in its stage, so its DSP path is register to register. ``e`` is cut
    to ``exp_shape`` (``exp_max`` bits).
    """
    divisor = -cfg.x0_int
    n_max = min((1 << cfg.in_bits) - 1, cfg.k_max * divisor)
    mult, shift = exact_reciprocal(divisor, n_max)
    n_shape = unsigned(n_max.bit_length())
    k_shape = unsigned(max(1, (n_max // divisor).bit_length()))  # k = 0 only: one bit
    n_k = Fields(n=n_shape, k=k_shape)
    k_p = Fields(k=k_shape, first=Shape.cast(range(cfg.b_int - divisor + 1, cfg.b_int + 1)),
                 second=Shape.cast(range(cfg.b2_int - divisor + 1, cfg.b2_int + 1)))
    n_k_m = Fields(n=n_shape, k=k_shape, multiple=n_shape)  # D*k <= n
    z_min, z_max = i_poly_bounds(cfg)
    k_p2 = Fields(k=k_shape, p=Shape.cast(range(z_min - cfg.c_int, z_max - cfg.c_int + 1)))
    k_z = Fields(k=k_shape, z=unsigned(z_max.bit_length()))
    left, right = max(cfg.exp_shift, 0), max(-cfg.exp_shift, 0)

    def offset(q, ctx):
        n = (ctx.scalars["max"] - q).as_unsigned()[:cfg.in_bits]
        if n_max < (1 << cfg.in_bits) - 1:  # else the clamp cannot act
            n = fit(Mux(n > n_max, n_max, n), n_shape)
        return n

    def octave(n, ctx):
        return n_k.view(n=n, k=(n * mult) >> shift)

    def multiple(v, ctx):
        return n_k_m.view(n=v.n, k=v.k, multiple=divisor * v.k)

    def residual(v, ctx):
        first, second = i_poly_factors(cfg, v.multiple - v.n)
        return k_p.view(k=v.k, first=first, second=second)

    def product(v, ctx):
        return k_p2.view(k=v.k, p=v.first * v.second)

    def polynomial(v, ctx):
        return k_z.view(k=v.k, z=v.p + cfg.c_int)

    def scale(v, ctx):
        return ((v.z << left) >> (v.k + right))[:exp_shape.width]

    return [offset, octave, multiple, residual, product, polynomial, scale]


class IExpSoftmaxUnit(ReciprocalSoftmaxUnit):
    """``softmax/ibert`` (I-BERT Algorithm 2, :class:`IBertSoftmaxConfig`, either polynomial).

    Passes: 0 loads the row and its maximum; 1 is i-exp and the row sum (:func:`i_exp_stages`);
    row step: ``f = floor(2**recip_bits / sum)`` by a
    :class:`~intvit.hw.seqmath.RestoringDivider` of ``recip_bits + 1`` numerator bits over the
    ``sum``-wide denominator, started at the config's ``quotient_bits`` (the row maximum's
    ``e`` bounds the sum from below) and so taking ``quotient_bits`` cycles; 2 is ``y = min((e *
    f) >> (recip_bits - out_bits), 2**out_bits - 1)``
    (:meth:`~.common.ReciprocalSoftmaxUnit.output_pass`: partial products, their sum, the
    shift).

    Throughput: ``lanes`` elements per cycle in every pass, rows overlapped
    (:meth:`~intvit.hw.rowpipe.RowUnit.row_interval`); the divider needs ``quotient_bits + 1``
    cycles per row plus its hand-off, so it paces only rows shorter than that.
    Measured intervals and latencies: ``python bench/hw_units.py`` (``docs/results.md``).
    """

    config_type = IBertSoftmaxConfig

    def exp_stages(self):
        return i_exp_stages(self.config, self.exp_shape)


UNIT = IExpSoftmaxUnit
