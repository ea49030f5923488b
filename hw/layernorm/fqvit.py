"""``layernorm/fqvit``: the FQ-ViT power-of-two-factor LayerNorm unit (Lin et al., IJCAI 2022,
Sec. 3.2), bit-exact to ``intvit.golden_model.ops.layernorm.fqvit``: exact ``C*S2 - S1**2``,
one reciprocal per row, a per-channel 8-bit ``M / 2**N``."""
from amaranth import Mux, Signal, signed, unsigned

from intvit.golden_model.integer import signed_range
from intvit.golden_model.ops.layernorm.fqvit import PTFLayerNormConfig

from ..rowpipe import Reduction, RowPass
from ..seqmath import BitSerialSqrt, RestoringDivider
from .common import LayerNormRowUnit, amount, bit_length, bundle, channel_table, clamp


class PTFLayerNormUnit(LayerNormRowUnit):
    """FQ-ViT power-of-two-factor LayerNorm (``layernorm/fqvit``), ``lanes`` elements per beat.

    Two passes over a buffered row:

    - pass 0 (1 stage): ``q' = q << alpha_c`` written back; ``S1 = sum q'`` (``sum_bits``),
      ``S2 = sum q'**2`` (``sumsq_bits``); row step: the config's ``spread(S1, S2)``
      (``D << 2 root_frac``), its bit-serial root (``sqrt_steps`` cycles), clamped to
      ``root_floor``, then ``R = recip_numerator // r`` by a restoring divider of ``recip_bits``
      cycles;
    - pass 1 (7 stages): ``d = C q' - S1`` and ``P = |gamma_int_c| R``; ``bit_length(P)``
      (priority encoder); ``N = clamp(point + mult_bits - bit_length(P), 0, max_shift)``;
      ``P >> (point - N)`` and ``beta_int_c >> (max_shift - N)`` (barrel shifters);
      ``M = min(., 2**mult_bits - 1)``, ``sign_c M d + beta``; ``>> N``; saturate.

    Latency without stalls, last input beat to first output beat: ``row_step_cycles(0) + 14``
    cycles. Three buffer slots overlap the rows; the interval of back-to-back rows is at most
    ``ceil(C / lanes) + row_overhead`` cycles (the ``sqrt_steps + recip_bits + 3``-cycle row
    step sets the pace at 4 lanes; measured: ``python bench/hw_units.py``).
    """

    config_type = PTFLayerNormConfig

    def passes(self):
        cfg = self.config
        point, top = cfg.point, cfg.max_shift
        negative = [int(s < 0) for s in cfg.gamma_sign]

        def align(q, ctx):
            return q << channel_table(cfg.alpha, ctx.index)

        def centre_and_gain(aligned, ctx):
            return bundle(d=cfg.channels * aligned - ctx.scalars["s1"],
                          p=channel_table(cfg.gamma_magnitude, ctx.index) * ctx.scalars["recip"])

        def leading_one(v, ctx):
            return bundle(d=v.d, p=v.p, length=bit_length(v.p))

        def exponent(v, ctx):  # N
            return bundle(d=v.d, p=v.p, n=clamp(point + cfg.mult_bits - v.length, 0, top))

        def align_gain(v, ctx):  # P >> (point - N), beta_int_c >> (max_shift - N)
            n = amount(v.n, top)
            return bundle(d=v.d, n=n, gain=v.p >> amount(point - n, point),
                          beta=channel_table(cfg.beta_int, ctx.index) >> amount(top - n, top))

        def product(v, ctx):  # sign_c M d + beta
            mult = clamp(v.gain, 0, (1 << cfg.mult_bits) - 1)[:cfg.mult_bits]
            signed_mult = Mux(channel_table(negative, ctx.index), -mult, mult)
            return bundle(total=signed_mult * v.d + v.beta, n=v.n)

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
                    stages=[centre_and_gain, leading_one, exponent, align_gain, product, shift,
                            requantize]),
        ]

    def row_step(self, m, gap, start, values):
        cfg = self.config
        spread = Signal(unsigned(2 * cfg.sqrt_steps), name="spread")
        m.d.comb += spread.eq(cfg.spread(values["s1"], values["s2"]))
        root = BitSerialSqrt(2 * cfg.sqrt_steps)
        divider = RestoringDivider(cfg.recip_numerator.bit_length(), cfg.root_bits,
                                   quotient_bits=cfg.recip_bits)
        m.submodules.root = root
        m.submodules.recip_divider = divider
        floor = cfg.root_floor
        m.d.comb += [root.start.eq(start), root.value.eq(spread),
                     divider.start.eq(root.done),
                     divider.numerator.eq(cfg.recip_numerator),
                     divider.denominator.eq(Mux(root.root < floor, floor, root.root))]
        return divider.done, {"recip": divider.quotient[:cfg.recip_bits]}

    def row_step_cycles(self, gap: int) -> int:
        """``start`` to ``done``: a seqmath block answers ``cycles + 1`` after its start."""
        return self.config.sqrt_steps + 1 + self.config.recip_bits + 1


UNIT = PTFLayerNormUnit
