"""``layernorm/fqvit``: the FQ-ViT power-of-two-factor LayerNorm unit (Lin et al., IJCAI 2022,
Sec. 3.2), bit-exact to ``intvit.golden_model.ops.layernorm.fqvit``: exact ``C*S2 - S1**2``,
one reciprocal per row, a per-channel 8-bit ``M / 2**N``."""
from amaranth import Mux, Shape, Signal, signed, unsigned

from intvit.golden_model.integer import signed_range
from intvit.golden_model.ops.layernorm.fqvit import PTFLayerNormConfig

from ..fields import fit
from ..rowpipe import Reduction, RowPass
from ..seqmath import BitSerialSqrt, RestoringDivider
from ..softmax.common import SplitProduct
from .common import (LayerNormRowUnit, amount, bit_length, bundle, channel_table, clamp,
                     table_shape)


class PTFLayerNormUnit(LayerNormRowUnit):
    """FQ-ViT power-of-two-factor LayerNorm (``layernorm/fqvit``), ``lanes`` elements per beat.

    Two passes over a buffered row:

    - pass 0 (1 stage): ``q' = q << alpha_c`` written back; ``S1 = sum q'`` (``sum_bits``),
      ``S2 = sum q'**2`` (``sumsq_bits``); row step: the config's ``spread(S1, S2)`` (``D << 2
      root_frac``) over :attr:`SPREAD_STAGES` registers (``S1**2``, its DSP alone; then ``C*S2
      - S1**2``), its bit-serial root (``sqrt_steps`` cycles), clamped to ``root_floor``, then
      ``R = recip_numerator // r`` by a restoring divider of ``recip_bits`` cycles;
    - pass 1 (12 stages; each multiply's DSPs alone in a stage, so their paths are register to
      register, :class:`~intvit.hw.softmax.common.SplitProduct`): ``d = C q' - S1`` (and the
      channel's ``|gamma_int_c|``, ``beta_int_c``, sign read); the partial products of ``P =
      |gamma_int_c| R``; their sum ``P``; ``bit_length(P)`` (priority encoder); ``N =
      clamp(point + mult_bits - bit_length(P), 0, max_shift)``; the shift amounts ``point - N``,
      ``max_shift - N``; ``P >> (point - N)`` and ``beta_int_c >> (max_shift - N)`` (barrel
      shifters); ``sign_c M``, ``M = min(.,
      2**mult_bits - 1)``; the partial products of ``sign_c M d``; ``sign_c M d + beta``;
      ``>> N``; saturate.

    Latency without stalls, last input beat to first output beat: ``row_step_cycles(0)`` plus
    the stages of pass 1 and the row pipeline's fixed hand-overs. Rows overlap; back-to-back
    rows come every :meth:`~intvit.hw.rowpipe.RowUnit.row_interval` cycles (the row step,
    ``row_step_cycles(0)``, sets the pace when ``ceil(C / lanes)`` is shorter; measured:
    ``python bench/hw_units.py``).
    """

    config_type = PTFLayerNormConfig

    @property
    def centred_shape(self):
        """The shape of ``d = C q'_c - S1 = (C - 1) q'_c - sum_(j != c) q'_j``, from its extremes
        over the channels (one DSP slice at the example config, where a width from ``C`` and
        ``sum_bits`` alone would take two)."""
        cfg = self.config
        lo, hi = signed_range(cfg.in_bits)
        low = [lo << a for a in cfg.alpha]
        high = [hi << a for a in cfg.alpha]
        c = cfg.channels
        top = max(c * h - sum(low) - h + l for h, l in zip(high, low))
        bottom = min(c * l - sum(high) - l + h for h, l in zip(high, low))
        return Shape.cast(range(bottom, top + 1))

    def passes(self):
        cfg = self.config
        point, top = cfg.point, cfg.max_shift
        negative = [int(s < 0) for s in cfg.gamma_sign]

        def align(q, ctx):
            return q << channel_table(cfg.alpha, ctx.index)

        d_shape = self.centred_shape
        gain = SplitProduct(table_shape(cfg.gamma_magnitude), unsigned(cfg.recip_bits))
        fold = SplitProduct(signed(cfg.mult_bits + 1), d_shape)

        def centre(aligned, ctx):  # d = C q' - S1; the channel's constants read
            return bundle(d=fit(cfg.channels * aligned - ctx.scalars["s1"], d_shape),
                          gamma=channel_table(cfg.gamma_magnitude, ctx.index),
                          beta=channel_table(cfg.beta_int, ctx.index),
                          negative=channel_table(negative, ctx.index))

        def gain_partials(v, ctx):  # |gamma_int_c| R: the DSPs alone
            return bundle(**gain.partials(v.gamma, ctx.scalars["recip"]), d=v.d, beta=v.beta,
                          negative=v.negative)

        def gain_total(v, ctx):  # P
            return bundle(d=v.d, p=gain.total(v), beta=v.beta, negative=v.negative)

        def leading_one(v, ctx):
            return bundle(d=v.d, p=v.p, length=bit_length(v.p), beta=v.beta,
                          negative=v.negative)

        def exponent(v, ctx):  # N
            return bundle(d=v.d, p=v.p, n=clamp(point + cfg.mult_bits - v.length, 0, top),
                          beta=v.beta, negative=v.negative)

        def shift_amounts(v, ctx):  # point - N, max_shift - N: the subtracts before the shifters
            n = amount(v.n, top)
            return bundle(d=v.d, p=v.p, n=n, gain_shift=amount(point - n, point),
                          beta_shift=amount(top - n, top), beta=v.beta, negative=v.negative)

        def align_gain(v, ctx):  # P >> (point - N), beta_int_c >> (max_shift - N)
            return bundle(d=v.d, n=v.n, gain=v.p >> v.gain_shift, beta=v.beta >> v.beta_shift,
                          negative=v.negative)

        def signed_gain(v, ctx):  # sign_c M, M = min(., 2**mult_bits - 1)
            mult = clamp(v.gain, 0, (1 << cfg.mult_bits) - 1)[:cfg.mult_bits]
            return bundle(mult=fit(Mux(v.negative, -mult, mult), signed(cfg.mult_bits + 1)),
                          d=v.d, beta=v.beta, n=v.n)

        def fold_partials(v, ctx):  # sign_c M d: the DSPs alone
            return bundle(**fold.partials(v.mult, v.d), beta=v.beta, n=v.n)

        def product(v, ctx):  # sign_c M d + beta
            return bundle(total=fold.total(v) + v.beta, n=v.n)

        def shift(v, ctx):
            return v.total >> amount(v.n, top)

        def requantize(value, ctx):
            return clamp(value, *signed_range(cfg.out_bits))

        return [
            RowPass(signed(cfg.in_bits + cfg.alpha_max), stages=[align],
                    reductions={"s1": Reduction("sum", signed(cfg.sum_bits)),
                                "s2": Reduction("sum", unsigned(cfg.sumsq_bits),
                                                lambda v, ctx: v * v)}),
            RowPass(signed(cfg.out_bits),
                    stages=[centre, gain_partials, gain_total, leading_one, exponent,
                            shift_amounts, align_gain, signed_gain, fold_partials, product,
                            shift, requantize]),
        ]

    SPREAD_STAGES = 2
    """Registers between the row step's ``start`` and the root's: ``S1**2`` (the DSP alone),
    then ``spread(S1, S2)`` (one wide subtract)."""

    def row_step(self, m, gap, start, values):
        cfg = self.config
        square = Signal(unsigned(2 * cfg.sum_bits), name="s1_square")
        spread = Signal(unsigned(2 * cfg.sqrt_steps), name="spread")
        s1 = values["s1"]
        m.d.sync += [square.eq(s1 * s1),
                     spread.eq(((cfg.channels * values["s2"] - square)
                                << 2 * cfg.root_frac)[:2 * cfg.sqrt_steps])]
        begin = start
        for k in range(self.SPREAD_STAGES):
            later = Signal(name=f"spread_start{k}")
            m.d.sync += later.eq(begin)
            begin = later
        root = BitSerialSqrt(2 * cfg.sqrt_steps)
        divider = RestoringDivider(cfg.recip_numerator.bit_length(), cfg.root_bits,
                                   quotient_bits=cfg.recip_bits)
        m.submodules.root = root
        m.submodules.recip_divider = divider
        floor = cfg.root_floor
        m.d.comb += [root.start.eq(begin), root.value.eq(spread),
                     divider.start.eq(root.done),
                     divider.numerator.eq(cfg.recip_numerator),
                     divider.denominator.eq(Mux(root.root < floor, floor, root.root))]
        return divider.done, {"recip": divider.quotient[:cfg.recip_bits]}

    def row_step_cycles(self, gap: int) -> int:
        """``start`` to ``done``: the spread's registers, then a seqmath block answers
        ``cycles + 1`` after its start."""
        return self.SPREAD_STAGES + self.config.sqrt_steps + 1 + self.config.recip_bits + 1


UNIT = PTFLayerNormUnit
