"""LayerNorm row units: I-BERT, I-ViT (shift) and FQ-ViT (PTF), bit-exact to
``golden_model/ops/layernorm.py``.

A row is the ``C = config.channels`` channels of one token; rows must arrive with exactly ``C``
elements (``max_row`` defaults to ``C``; a longer row raises ``overflow``). Per-channel integer
constants (``mult_c``, ``bias_c``, ``alpha_c``, ``gamma_int_c``, ``beta_int_c``) are constant
tables indexed by the element's position in the row (:func:`channel_table`).

Sequential row arithmetic (``intvit.hw.seqmath``, one result bit per cycle, exact):
``RestoringDivider`` for the rounded mean and the reciprocals, ``BitSerialSqrt`` for the roots.
"""
from amaranth import Array, Cat, Const, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data

from intvit.golden_model.ops.layernorm import (PTF_MULT_BITS, RECIP_BITS, IBertLayerNormConfig,
                                        PTFLayerNormConfig, ShiftLayerNormConfig)

from .rowpipe import Reduction, RowPass, RowUnit
from .seqmath import BitSerialSqrt, RestoringDivider


# --- small datapath helpers -------------------------------------------------------------------

def channel_table(values, index):
    """``values[index]``: a constant table (a ROM of ``len(values)`` words, shape just wide
    enough) read at the element index. Indices past the table occur only on the unused lanes of
    a partial beat, whose outputs are dropped."""
    lo, hi = min(values), max(values)
    shape = Shape.cast(range(lo, max(hi, lo + 1) + 1))  # at least one bit
    return Array(Const(v, shape) for v in values)[index]


def clamp(value, lo: int, hi: int):
    """Saturate ``value`` to ``lo..hi`` (no lower test for an unsigned value and ``lo <= 0``).
    ``value`` appears in every test, so callers pass a register, not a wide expression: Amaranth
    builds an expression once per use."""
    value = Value.cast(value)
    upper = Mux(value > hi, hi, value)
    return upper if not value.shape().signed and lo <= 0 else Mux(value < lo, lo, upper)


def bundle(**fields):
    """Several values carried through one pipeline register: a struct view of their bits."""
    layout = data.StructLayout({name: Value.cast(v).shape() for name, v in fields.items()})
    return layout(Cat(*fields.values()))


ENCODER_GROUP = 8
"""Bits per group of :func:`bit_length`'s two-level priority encoder."""


def bit_length(value):
    """``int.bit_length`` of an unsigned value: a priority encoder, a leading-one chain inside
    each group of :data:`ENCODER_GROUP` bits and a chain over the groups (every sub-expression
    used once, so the netlist stays linear in the width)."""
    value = Value.cast(value)
    length = Const(0, range(len(value) + 1))
    for base in range(0, len(value), ENCODER_GROUP):
        group = value[base:base + ENCODER_GROUP]
        inner = Const(0, range(len(value) + 1))
        for offset in range(len(group)):
            inner = Mux(group[offset], base + offset + 1, inner)
        length = Mux(group.any(), inner, length)
    return length


def amount(value, largest: int):
    """A non-negative shift amount ``0..largest`` as an unsigned value (shift operands must be
    unsigned)."""
    return Value.cast(value)[:max(1, largest.bit_length())]


def check_row(config, config_type, max_row):
    """``max_row`` (``None``: ``config.channels``) after checking the config and the capacity."""
    if not isinstance(config, config_type):
        raise TypeError(f"config must be a {config_type.__name__}, not {config!r}")
    max_row = config.channels if max_row is None else max_row
    if isinstance(max_row, int) and not isinstance(max_row, bool) and max_row < config.channels:
        raise ValueError(f"max_row {max_row} is below the config's {config.channels} channels; "
                         "a LayerNorm row holds all channels")
    return max_row


# --- I-BERT and I-ViT: rounded mean, centred sum of squares, root, reciprocal, fold ----------

class _CentredLayerNormUnit(RowUnit):
    """Shared datapath of :class:`IBertLayerNormUnit` and :class:`ShiftLayerNormUnit`.

    Subclasses set ``config_type``, ``var_shift`` (the I-BERT overflow shift), ``recip_numerator``
    and ``sqrt_bits`` (radicand width of the bit-serial root).
    """

    config_type = None

    def __init__(self, config, *, lanes: int = 1, max_row: int | None = None):
        max_row = check_row(config, self.config_type, max_row)
        self.config = config
        super().__init__(signed(config.in_bits), signed(config.out_bits), lanes=lanes,
                         max_row=max_row)

    @property
    def mean_divider_bits(self) -> int:
        """Width of ``2 sum + C (1 + 2**in_bits)``: the rounded-mean numerator made
        non-negative (``sum >= C lo``)."""
        cfg = self.config
        return (cfg.channels * ((2 << cfg.in_bits) - 1)).bit_length()

    def passes(self):
        cfg = self.config
        shift = self.var_shift

        def centre(q, ctx):
            return q - ctx.scalars["mean"]

        def square(y, ctx):
            shifted = y >> shift
            return shifted * shifted

        def normalize(y, ctx):  # z = (y * f) >> 1, |z| < 2**31 (|y| < 2 sigma, f <= 2**31/sigma)
            return ((y * ctx.scalars["recip"]) >> 1)[:RECIP_BITS + 1].as_signed()

        def affine(z, ctx):  # z * mult_c + bias_c
            return z * channel_table(cfg.mult, ctx.index) + channel_table(cfg.bias, ctx.index)

        def requantize(total, ctx):
            lo, hi = -(1 << (cfg.out_bits - 1)), (1 << (cfg.out_bits - 1)) - 1
            return clamp(total >> cfg.out_shift, lo, hi)

        return [
            RowPass(signed(cfg.in_bits),
                    reductions={"total": Reduction("sum", signed(cfg.sum_bits))}),
            RowPass(signed(cfg.in_bits + 1), stages=[centre],
                    reductions={"sumsq": Reduction("sum", unsigned(cfg.sumsq_bits), square)}),
            RowPass(signed(cfg.out_bits), stages=[normalize, affine, requantize]),
        ]

    def row_step(self, m, gap, start, values):
        cfg = self.config
        if gap == 0:  # mu = (2 sum + C) // (2 C), as ((2 sum + C - 2 C lo) // (2 C)) + lo
            lo = -(1 << (cfg.in_bits - 1))
            divider = RestoringDivider(self.mean_divider_bits, (2 * cfg.channels).bit_length(),
                                       quotient_bits=cfg.in_bits)  # mu - lo < 2**in_bits
            m.submodules.mean_divider = divider
            mean = Signal(signed(cfg.in_bits), name="mean")
            m.d.comb += [divider.start.eq(start),
                         divider.numerator.eq(2 * values["total"] + cfg.channels * (1 - 2 * lo)),
                         divider.denominator.eq(2 * cfg.channels),
                         mean.eq(divider.quotient + lo)]
            return divider.done, {"mean": mean}
        # sigma = max(isqrt(v), 1) << var_shift; f = recip_numerator // sigma
        root = BitSerialSqrt(self.sqrt_bits)
        divider = RestoringDivider(self.recip_numerator.bit_length(),
                                   root.root_bits + self.var_shift,
                                   quotient_bits=self.recip_quotient_bits)
        m.submodules.root = root
        m.submodules.recip_divider = divider
        m.d.comb += [root.start.eq(start), root.value.eq(values["sumsq"]),
                     divider.start.eq(root.done),
                     divider.numerator.eq(self.recip_numerator),
                     divider.denominator.eq(Mux(root.root == 0, 1, root.root) << self.var_shift)]
        return divider.done, {"recip": divider.quotient}

    @property
    def recip_quotient_bits(self) -> int:
        """``f = recip_numerator // sigma`` with ``sigma >= 2**var_shift``."""
        return (self.recip_numerator >> self.var_shift).bit_length()

    def row_step_cycles(self, gap: int) -> int:
        """``start`` to ``done``: a seqmath block answers ``cycles + 1`` after its start."""
        if gap == 0:
            return self.config.in_bits + 1
        return (self.sqrt_bits + 1) // 2 + 1 + self.recip_quotient_bits + 1


class IBertLayerNormUnit(_CentredLayerNormUnit):
    """I-BERT integer LayerNorm (``layernorm/ibert``), ``lanes`` elements per beat.

    Three passes over a buffered row (``intvit.hw.rowpipe``):

    - pass 0: load ``q``, ``sum q`` (``sum_bits``); row step: ``mu = (2 sum + C) // (2C)`` by a
      restoring divider (offset numerator so it is unsigned; ``mu - lo < 2**in_bits``, so
      ``in_bits`` cycles);
    - pass 1 (1 stage): ``y = q - mu`` written back, ``v = sum ((y >> var_shift)**2)``
      (``sumsq_bits``, below ``2**max_var_bits``); row step: ``isqrt(v)`` by a bit-serial root
      over ``sumsq_bits`` (``ceil(sumsq_bits/2)`` cycles; the golden model's Newton with
      ``sqrt_iterations`` steps is exact, so it is the same floor root), clamped to 1, then
      ``f = 2**31 // (root << var_shift)`` by a restoring divider of
      :attr:`recip_quotient_bits` cycles;
    - pass 2 (3 stages): ``z = (y f) >> 1``; ``z mult_c + bias_c``; ``>> out_shift``, saturate.

    Latency without stalls, from a row's last input beat to its first output beat:
    ``ceil(C / lanes) + row_step_cycles(0) + row_step_cycles(1) + 15`` cycles. Rows overlap
    across the passes (three buffer slots), so back-to-back rows have an initiation interval of
    at most ``ceil(C / lanes) + row_overhead`` cycles (measured: ``python bench/hw_units.py``).
    """

    config_type = IBertLayerNormConfig
    recip_numerator = 1 << RECIP_BITS

    @property
    def var_shift(self) -> int:
        return self.config.var_shift

    @property
    def sqrt_bits(self) -> int:
        return self.config.sumsq_bits


class ShiftLayerNormUnit(_CentredLayerNormUnit):
    """I-ViT shift LayerNorm (``layernorm/ivit``), ``lanes`` elements per beat.

    The same three passes as :class:`IBertLayerNormUnit` without the overflow shift:
    ``v = sum y**2``; the root is the bit-serial root of the golden model itself (``sqrt_steps``
    cycles over a ``2 sqrt_steps``-bit radicand), clamped to 1; ``f = (2**31 - 1) // sigma`` by a
    31-cycle restoring divider; pass 2 ``z = (y f) >> 1``, ``z mult_c + bias_c``,
    ``>> out_shift`` and saturate. Latency and interval as for I-BERT: last input beat to first
    output ``ceil(C / lanes) + row_step_cycles(0) + row_step_cycles(1) + 15`` cycles; interval
    at most ``ceil(C / lanes) + row_overhead``.
    """

    config_type = ShiftLayerNormConfig
    recip_numerator = (1 << RECIP_BITS) - 1
    var_shift = 0

    @property
    def sqrt_bits(self) -> int:
        return 2 * self.config.sqrt_steps


# --- FQ-ViT: exact C*S2 - S1**2, one reciprocal per row, per-channel 8-bit M / 2**N ----------

class PTFLayerNormUnit(RowUnit):
    """FQ-ViT power-of-two-factor LayerNorm (``layernorm/fqvit``), ``lanes`` elements per beat.

    Two passes over a buffered row:

    - pass 0 (1 stage): ``q' = q << alpha_c`` written back; ``S1 = sum q'`` (``sum_bits``),
      ``S2 = sum q'**2`` (``sumsq_bits``); row step: ``D = C S2 - S1**2``, the bit-serial root
      of ``D << 2 root_frac`` (``sqrt_steps`` cycles), clamped to ``2**root_frac``, then
      ``R = 2**recip_shift // r`` by a restoring divider of :attr:`recip_bits` cycles
      (``r >= 2**root_frac``);
    - pass 1 (7 stages): ``d = C q' - S1`` and ``P = |gamma_int_c| R``; ``bit_length(P)``
      (priority encoder); ``N = clamp(point + 8 - bit_length(P), 0, max_shift)``;
      ``P >> (point - N)`` and ``beta_int_c >> (max_shift - N)`` (barrel shifters);
      ``M = min(., 255)`` (8 bits), ``sign_c M d + beta``; ``>> N``; saturate.

    Latency without stalls, last input beat to first output beat: ``row_step_cycles(0) + 14``
    cycles. Three buffer slots overlap the rows; the interval of back-to-back rows is at most
    ``ceil(C / lanes) + row_overhead`` cycles (the ``sqrt_steps + recip_bits + 3``-cycle row
    step sets the pace at 4 lanes; measured: ``python bench/hw_units.py``).
    """

    def __init__(self, config, *, lanes: int = 1, max_row: int | None = None):
        max_row = check_row(config, PTFLayerNormConfig, max_row)
        self.config = config
        super().__init__(signed(config.in_bits), signed(config.out_bits), lanes=lanes,
                         max_row=max_row)

    @property
    def point(self) -> int:
        """Binary point of ``P = |gamma_int| R``: ``gamma_frac + recip_shift - root_frac``."""
        cfg = self.config
        return cfg.gamma_frac + cfg.recip_shift - cfg.root_frac

    @property
    def recip_bits(self) -> int:
        """Width of ``R <= 2**(recip_shift - root_frac)`` (``r >= 2**root_frac``)."""
        cfg = self.config
        return cfg.recip_shift - cfg.root_frac + 1

    def passes(self):
        cfg = self.config
        point, top = self.point, cfg.max_shift
        magnitude = [abs(g) for g in cfg.gamma_int]
        negative = [int(g < 0) for g in cfg.gamma_int]
        lo, hi = -(1 << (cfg.out_bits - 1)), (1 << (cfg.out_bits - 1)) - 1

        def align(q, ctx):
            return q << channel_table(cfg.alpha, ctx.index)

        def centre_and_gain(aligned, ctx):
            return bundle(d=cfg.channels * aligned - ctx.scalars["s1"],
                          p=channel_table(magnitude, ctx.index) * ctx.scalars["recip"])

        def leading_one(v, ctx):
            return bundle(d=v.d, p=v.p, length=bit_length(v.p))

        def exponent(v, ctx):  # N
            return bundle(d=v.d, p=v.p, n=clamp(point + PTF_MULT_BITS - v.length, 0, top))

        def align_gain(v, ctx):  # P >> (point - N), beta_int_c >> (max_shift - N)
            n = amount(v.n, top)
            return bundle(d=v.d, n=n, gain=v.p >> amount(point - n, point),
                          beta=channel_table(cfg.beta_int, ctx.index) >> amount(top - n, top))

        def product(v, ctx):  # sign_c M d + beta
            mult = clamp(v.gain, 0, (1 << PTF_MULT_BITS) - 1)[:PTF_MULT_BITS]
            signed_mult = Mux(channel_table(negative, ctx.index), -mult, mult)
            return bundle(total=signed_mult * v.d + v.beta, n=v.n)

        def shift(v, ctx):
            return v.total >> amount(v.n, top)

        def requantize(value, ctx):
            return clamp(value, lo, hi)

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
        m.d.comb += spread.eq((cfg.channels * values["s2"] - values["s1"] * values["s1"])
                              << 2 * cfg.root_frac)
        root = BitSerialSqrt(2 * cfg.sqrt_steps)
        divider = RestoringDivider(cfg.recip_shift + 1, cfg.root_bits,
                                   quotient_bits=self.recip_bits)
        m.submodules.root = root
        m.submodules.recip_divider = divider
        floor = 1 << cfg.root_frac
        m.d.comb += [root.start.eq(start), root.value.eq(spread),
                     divider.start.eq(root.done),
                     divider.numerator.eq(1 << cfg.recip_shift),
                     divider.denominator.eq(Mux(root.root < floor, floor, root.root))]
        return divider.done, {"recip": divider.quotient[:self.recip_bits]}

    def row_step_cycles(self, gap: int) -> int:
        """``start`` to ``done``: a seqmath block answers ``cycles + 1`` after its start."""
        return self.config.sqrt_steps + 1 + self.recip_bits + 1
