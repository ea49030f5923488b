"""Integer GEMM array: ``R x C`` multiply-accumulate cells, bias add and dyadic requantization.

Dataflow: **output-stationary** with broadcast operands. Cell ``(r, c)`` keeps the accumulator
of output ``(m0 + r, n0 + c)`` for a whole tile; every cycle one activation beat
``a[m0:m0+R, k]`` and one weight beat ``w[k, n0:n0+C]`` arrive and each cell adds
``a[r] * w[c]`` (an outer product per cycle). Why this and not a weight-stationary systolic
array:

- the wide accumulators never move during the reduction; only the 8-bit (or 4-bit) operands are
  fanned out, and the finished sums leave once per tile through one drain buffer;
- ``K`` is the number of beats, so a ``K`` that is not a multiple of the array costs nothing
  (only ``M`` and ``N`` are padded to ``R`` and ``C``), and the tile period is ``K`` cycles with
  no weight preload and no skew fill/drain, which is what keeps DeiT-Tiny's layers near 98%;
- bias and requantization happen once per output at the drain, on ``C`` lanes, not per cell.

The broadcast fans each activation out to ``C`` cells and each weight to ``R`` cells, which is
cheap for the 4x4..16x16 arrays an FPGA holds; a much larger array would pipeline that fan-out.

Pipeline (the cycle model is ``intvit.golden_model.gemm.predicted_cycles``):

1. ``a`` and ``w`` beats are joined into an operand register (with ``first`` / ``last`` of the
   tile's reduction).
2. Each cell computes ``(first ? 0 : acc) + a[r] * w[c]``. On the tile's last beat the sum goes
   into the drain buffer instead, together with the tile's ``b`` (bias) beat; the buffer must be
   empty, else the array stalls.
3. The drain buffer shifts out one row per cycle: lane ``c`` is ``acc[r][c] + bias[c]`` (fits
   int32 by ``GemmConfig``'s bound) into a ``intvit.hw.requant.Requantizer`` of ``C`` lanes (per-tensor
   constants), or with ``per_channel`` a ``intvit.hw.requant.ChannelRequantizer`` fed the column's
   ``m[c]``, ``e[c]`` from the tile's ``b`` beat; its output is ``o`` (``last`` on the tile's row
   ``R-1``).
"""
from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from intvit.golden_model.gemm import GemmConfig, requant_latency
from intvit.golden_model.ops.requant import ACC_BITS, RequantConfig

from .requant import ChannelRequantizer, Requantizer, channel_operand
from .stream import row_beat


class Gemm(wiring.Component):
    """``y = requantize(a @ w + bias)`` tile by tile, exactly as ``intvit.golden_model.gemm``.

    The streams are those of ``intvit.golden_model.gemm.gemm_beats``: ``tiles * K`` beats on ``a`` and
    ``w``, one ``b`` beat per tile, ``tiles * R`` beats on ``o``. ``K`` may change from tile to
    tile (it is marked by ``a.last``) but must not exceed ``config.k_max``.

    Parameters
    ----------
    config : GemmConfig
        Array size and bit widths; the accumulators are ``config.acc_bits`` wide.
    requant : RequantConfig or None
        The layer's dyadic requantizer (constants baked in); None for a ``per_channel`` config,
        whose ``m, e`` arrive on ``b``.

    Members
    -------
    a : In(stream.Signature(row_beat(signed(8), R)))
        Activations ``a[m0:m0+R, k]``; ``last`` on the tile's last ``k``.
    w : In(stream.Signature(ArrayLayout(signed(weight_bits), C)))
        Weights ``w[k, n0:n0+C]``, lane ``c`` at bits ``c*wb ..``; at 4 bits two per byte, low
        nibble first (``intvit.golden_model.gemm.pack_int4``).
    b : In(stream.Signature(ArrayLayout(signed(bias_bits), C)))
        The tile's bias ``bias[n0:n0+C]``, taken with its last ``a``/``w`` beat; with
        ``per_channel`` each lane is ``intvit.hw.requant.channel_operand(bias_bits)``: ``{bias,
        multiplier, shift}`` of the column's output channel.
    o : Out(stream.Signature(row_beat(out_shape, C)))
        Requantized row ``y[m0+r, n0:n0+C]``; ``last`` on ``r = R-1``.
    """

    def __init__(self, config: GemmConfig, requant: RequantConfig | None = None):
        if not isinstance(config, GemmConfig):
            raise TypeError(f"config must be a GemmConfig, not {config!r}")
        if config.per_channel:
            if requant is not None:
                raise TypeError("a per_channel Gemm takes its m, e on the b stream: requant=None")
            out_shape = signed(config.out_bits)
            bias_lane = channel_operand(config.bias_bits)
        else:
            if not isinstance(requant, RequantConfig):
                raise TypeError(f"requant must be a RequantConfig, not {requant!r}")
            out_shape = (signed(requant.out_bits) if requant.out_signed
                         else unsigned(requant.out_bits))
            bias_lane = signed(config.bias_bits)
        self.config, self.requant = config, requant
        rows, cols = config.rows, config.cols
        super().__init__({
            "a": In(stream.Signature(row_beat(signed(config.act_bits), rows))),
            "w": In(stream.Signature(data.ArrayLayout(signed(config.weight_bits), cols))),
            "b": In(stream.Signature(data.ArrayLayout(bias_lane, cols))),
            "o": Out(stream.Signature(row_beat(out_shape, cols))),
        })

    @property
    def latency(self) -> int:
        """Cycles from a tile's last input beat to its first output row, with no stalls:
        operand register, drain buffer, requantizer input, its stages and the handshake."""
        return 2 + requant_latency(self.config)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        rows, cols = cfg.rows, cfg.cols
        if cfg.per_channel:
            requant = ChannelRequantizer(cfg.out_bits, lanes=cols)
        else:
            requant = Requantizer(self.requant, lanes=cols)
        m.submodules.requant = requant
        wiring.connect(m, wiring.flipped(self.o), requant.o)

        # Stage 1: join a and w into the operand register.
        op_valid, op_first, op_last = Signal(), Signal(), Signal()
        first = Signal(init=1)  # the next accepted beat starts a tile
        op_a = [Signal(signed(cfg.act_bits), name=f"op_a{r}") for r in range(rows)]
        op_w = [Signal(signed(cfg.weight_bits), name=f"op_w{c}") for c in range(cols)]
        full = Signal()  # the drain buffer holds a tile
        advance = Signal()
        take = Signal()
        m.d.comb += [
            advance.eq(~(op_valid & op_last & (full | ~self.b.valid))),
            take.eq(self.a.valid & self.w.valid & advance),
            self.a.ready.eq(self.w.valid & advance),
            self.w.ready.eq(self.a.valid & advance),
        ]
        with m.If(advance):
            m.d.sync += [op_valid.eq(take), op_first.eq(first), op_last.eq(self.a.payload.last)]
            m.d.sync += [reg.eq(self.a.payload.data[r]) for r, reg in enumerate(op_a)]
            m.d.sync += [reg.eq(self.w.payload[c]) for c, reg in enumerate(op_w)]
        with m.If(take):
            m.d.sync += first.eq(self.a.payload.last)

        # Stage 2: multiply-accumulate; the last beat of a tile fills the drain buffer.
        mac = op_valid & advance
        finish = mac & op_last
        drain = full & requant.i.ready
        m.d.comb += self.b.ready.eq(op_valid & op_last & ~full)
        buffer = [[Signal(signed(cfg.acc_bits), name=f"drain_{r}_{c}") for c in range(cols)]
                  for r in range(rows)]
        for r in range(rows):
            for c in range(cols):
                acc = Signal(signed(cfg.acc_bits), name=f"acc_{r}_{c}")
                total = Mux(op_first, 0, acc) + op_a[r] * op_w[c]
                with m.If(mac):
                    m.d.sync += acc.eq(total)
                with m.If(finish):
                    m.d.sync += buffer[r][c].eq(total)
                if r + 1 < rows:  # finish needs an empty buffer, drain a full one
                    with m.If(drain):
                        m.d.sync += buffer[r][c].eq(buffer[r + 1][c])

        # Stage 3: drain one row per cycle, bias added, into the requantizer.
        bias_shape = self.b.payload.shape().elem_shape
        bias = [Signal(bias_shape, name=f"bias{c}") for c in range(cols)]
        row = Signal(range(rows), name="drain_row")
        with m.If(finish):
            m.d.sync += [full.eq(1), row.eq(0)]
            m.d.sync += [reg.eq(self.b.payload[c]) for c, reg in enumerate(bias)]
        with m.If(drain):
            m.d.sync += row.eq(row + 1)
            with m.If(row == rows - 1):
                m.d.sync += full.eq(0)
        m.d.comb += [requant.i.valid.eq(full), requant.i.payload.last.eq(row == rows - 1)]
        for c in range(cols):
            if cfg.per_channel:  # {acc, multiplier, shift}, the ChannelRequantizer's lane
                total = (buffer[0][c] + bias[c].bias)[:ACC_BITS]
                lane = Cat(total, bias[c].multiplier, bias[c].shift)
            else:
                lane = buffer[0][c] + bias[c]
            m.d.comb += requant.i.payload.data[c].eq(lane)
        return m
