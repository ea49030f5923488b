"""Parts shared by the LayerNorm row units: small datapath helpers, the row-unit base and the
I-BERT/I-ViT datapath (:class:`CentredLayerNormUnit`).

A row is the ``C = config.channels`` channels of one token; rows must arrive with exactly ``C``
elements (``max_row`` defaults to ``C``; a longer row raises ``overflow``). Per-channel integer
constants (``mult_c``, ``bias_c``, ``alpha_c``, ``gamma_int_c``, ``beta_int_c``) are constant
tables indexed by the element's position in the row (:func:`channel_table`). Every arithmetic
constant comes from the golden config (``intvit.golden_model.ops.layernorm``); the units add
only hardware choices (lanes, row capacity, pipeline stages, the sequential blocks).

Sequential row arithmetic (``intvit.hw.seqmath``, one result bit per cycle, exact):
``RestoringDivider`` for the rounded mean and the reciprocals, ``BitSerialSqrt`` for the roots.
"""
from amaranth import Array, Cat, Const, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data

from intvit.golden_model.integer import signed_range
from intvit.golden_model.ops.layernorm.common import same_datapath

from ..rowpipe import Reduction, RowPass, RowUnit
from ..seqmath import BitSerialSqrt, RestoringDivider
from ..dsp import SplitProduct


# --- small datapath helpers -------------------------------------------------------------------

def table_shape(values):
    """The shape of :func:`channel_table` ``(values, .)``: just wide enough, at least one bit."""
    lo, hi = min(values), max(values)
    return Shape.cast(range(lo, max(hi, lo + 1) + 1))


def channel_table(values, index):
    """``values[index]``: a constant table (a ROM of ``len(values)`` words, shape
    :func:`table_shape`) read at the element index. Indices past the table occur only on the
    unused lanes of a partial beat, whose outputs are dropped."""
    shape = table_shape(values)
    return Array(Const(v, shape) for v in values)[index]


def clamp(value, lo: int, hi: int):
    """Saturate ``value`` to ``lo..hi`` (no lower test for an unsigned value and ``lo <= 0``).
    ``value`` appears in every test, so callers pass a register, not a wide expression: Amaranth
    builds an expression once per use."""
    value = Value.cast(value)
    upper = Mux(value > hi, hi, value)
    return upper if not value.shape().signed and lo <= 0 else Mux(value < lo, lo, upper)


def at_least(value, floor: int):
    """``max(value, floor)`` of an unsigned value; a floor of 1 is tested as ``value == 0`` (an
    equality, no carry chain: 5 MHz more for the I-BERT LayerNorm on ECP5)."""
    if floor == 1:
        return Mux(value == 0, floor, value)
    return Mux(value < floor, floor, value)


def bundle(**fields):
    """Several values carried through one pipeline register: a struct view of their bits."""
    layout = data.StructLayout({name: Value.cast(v).shape() for name, v in fields.items()})
    return layout(Cat(*fields.values()))


ENCODER_GROUP = 8
"""Bits per group of :func:`bit_length`'s two-level priority encoder (a hardware choice)."""


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


# --- the row-unit base ------------------------------------------------------------------------

class LayerNormRowUnit(RowUnit):
    """A LayerNorm row unit built from a config of type ``config_type`` (set by the subclass).

    Parameters
    ----------
    config : the candidate's golden config
    lanes : int
        Elements per beat.
    max_row : int or None
        Row buffer capacity; ``None``: ``config.channels``. A LayerNorm row holds all channels,
        so a smaller capacity is refused.
    """

    config_type = None

    def __init__(self, config, *, lanes: int = 1, max_row: int | None = None,
                 shared: tuple = ()):
        if not isinstance(config, self.config_type):
            raise TypeError(f"config must be a {self.config_type.__name__}, not {config!r}")
        for other in shared:
            if not same_datapath(config, other):
                raise ValueError("a shared LayerNorm unit takes configs that differ only in "
                                 f"their channel tables {config.channel_tables}")
        self.configs = (config, *shared)
        self.layer = Signal(range(max(len(self.configs), 2)), name="layer")
        """Which config's tables the rows read (driven by the user; 0 when not shared)."""
        max_row = config.channels if max_row is None else max_row
        if isinstance(max_row, int) and not isinstance(max_row, bool) and max_row < config.channels:
            raise ValueError(f"max_row {max_row} is below the config's {config.channels} "
                             "channels; a LayerNorm row holds all channels")
        self.config = config
        super().__init__(signed(config.in_bits), signed(config.out_bits), lanes=lanes,
                         max_row=max_row)

    def channel_values(self, name: str) -> list:
        """Table ``name`` of every shared config, one after the other."""
        return [v for config in self.configs for v in getattr(config, name)]

    def channel_lookup(self, name: str, index):
        """``table[layer * C + index]`` (:func:`channel_table` of :meth:`channel_values`)."""
        if len(self.configs) == 1:
            return channel_table(getattr(self.config, name), index)
        return channel_table(self.channel_values(name), self.layer * self.config.channels + index)


# --- I-BERT and I-ViT: rounded mean, centred sum of squares, root, reciprocal, fold ----------

class CentredLayerNormUnit(LayerNormRowUnit):
    """The row steps of ``CentredConfig`` (I-BERT and I-ViT), ``lanes`` elements per beat.

    Three passes over a buffered row (``intvit.hw.rowpipe``):

    - pass 0: load ``q``, ``sum q`` (``sum_bits``); row step: the rounded mean
      ``mean_numerator(sum) // mean_divisor`` by a restoring divider (numerator offset by
      ``-mean_divisor * lo`` so it is unsigned; ``mu - lo < 2**in_bits``, so ``in_bits``
      cycles);
    - pass 1 (1 stage): ``y = q - mu`` written back, ``v = sum ((y >> var_shift)**2)``
      (``sumsq_bits``); row step: ``isqrt(v)`` by a bit-serial root over :attr:`sqrt_bits`
      (``ceil(sqrt_bits/2)`` cycles), clamped to ``root_floor``, then
      ``f = recip_numerator // (root << var_shift)`` by a restoring divider of ``recip_bits``
      cycles;
    - pass 2 (5 stages, each multiply's DSPs alone in a stage, so their paths are register to
      register; :class:`~intvit.hw.dsp.SplitProduct`): the partial products of
      ``y f`` (and the channel's ``mult_c``, ``bias_c`` read); ``z = (y f) >> norm_shift``
      (``z_bits``); the partial products of ``z mult_c``; ``z mult_c + bias_c``;
      ``>> out_shift``, saturate.

    Latency without stalls, from a row's last input beat to its first output beat:
    ``ceil(C / lanes) + row_step_cycles(0) + row_step_cycles(1)`` plus the stages of passes 1
    and 2 and the row pipeline's fixed hand-overs. Rows overlap across the passes, so
    back-to-back rows come every :meth:`~intvit.hw.rowpipe.RowUnit.row_interval` cycles:
    ``ceil(C / lanes)`` unless a row step (the root and reciprocal) is slower (measured:
    ``python bench/hw_units.py``).

    A subclass sets ``config_type`` and :attr:`sqrt_bits`, the radicand width of the root.
    """

    @property
    def mean_divider_bits(self) -> int:
        """Width of the offset mean numerator at its largest (every ``q = hi``)."""
        cfg = self.config
        lo, hi = signed_range(cfg.in_bits)
        return (cfg.mean_numerator(cfg.channels * hi) - cfg.mean_divisor * lo).bit_length()

    def passes(self):
        cfg = self.config

        def centre(q, ctx):
            return q - ctx.scalars["mean"]

        def square(y, ctx):
            shifted = y >> cfg.var_shift
            return shifted * shifted

        gain = SplitProduct(signed(cfg.in_bits + 1), unsigned(cfg.recip_bits))
        fold = SplitProduct(signed(cfg.z_bits), table_shape(self.channel_values("mult")))

        def scale(y, ctx):  # y * f: the DSPs alone; the channel's constants read
            return bundle(**gain.partials(y, ctx.scalars["recip"]),
                          mult=self.channel_lookup("mult", ctx.index),
                          bias=self.channel_lookup("bias", ctx.index))

        def normalize(v, ctx):  # z = (y f) >> norm_shift
            z = (gain.total(v) >> cfg.norm_shift)[:cfg.z_bits].as_signed()
            return bundle(z=z, mult=v.mult, bias=v.bias)

        def fold_partials(v, ctx):  # z * mult_c: the DSPs alone
            return bundle(**fold.partials(v.z, v.mult), bias=v.bias)

        def affine(v, ctx):  # z * mult_c + bias_c
            return fold.total(v) + v.bias

        def requantize(total, ctx):
            return clamp(total >> cfg.out_shift, *signed_range(cfg.out_bits))

        return [
            RowPass(signed(cfg.in_bits),
                    reductions={"total": Reduction("sum", signed(cfg.sum_bits))}),
            RowPass(signed(cfg.in_bits + 1), stages=[centre],
                    reductions={"sumsq": Reduction("sum", unsigned(cfg.sumsq_bits), square)}),
            RowPass(signed(cfg.out_bits),
                    stages=[scale, normalize, fold_partials, affine, requantize]),
        ]

    def row_step(self, m, gap, start, values):
        cfg = self.config
        if gap == 0:  # mu = ((numerator - divisor * lo) // divisor) + lo
            lo = signed_range(cfg.in_bits)[0]
            divider = RestoringDivider(self.mean_divider_bits, cfg.mean_divisor.bit_length(),
                                       quotient_bits=cfg.in_bits)
            m.submodules.mean_divider = divider
            mean = Signal(signed(cfg.in_bits), name="mean")
            m.d.comb += [divider.start.eq(start),
                         divider.numerator.eq(cfg.mean_numerator(values["total"])
                                              - cfg.mean_divisor * lo),
                         divider.denominator.eq(cfg.mean_divisor),
                         mean.eq(divider.quotient + lo)]
            return divider.done, {"mean": mean}
        root = BitSerialSqrt(self.sqrt_bits)
        divider = RestoringDivider(cfg.recip_numerator.bit_length(),
                                   root.root_bits + cfg.var_shift, quotient_bits=cfg.recip_bits)
        m.submodules.root = root
        m.submodules.recip_divider = divider
        m.d.comb += [root.start.eq(start), root.value.eq(values["sumsq"]),
                     divider.start.eq(root.done),
                     divider.numerator.eq(cfg.recip_numerator),
                     divider.denominator.eq(at_least(root.root, cfg.root_floor)
                                            << cfg.var_shift)]
        return divider.done, {"recip": divider.quotient[:cfg.recip_bits]}

    def row_step_cycles(self, gap: int) -> int:
        """``start`` to ``done``: a seqmath block answers ``cycles + 1`` after its start."""
        if gap == 0:
            return self.config.in_bits + 1
        return (self.sqrt_bits + 1) // 2 + 1 + self.config.recip_bits + 1
