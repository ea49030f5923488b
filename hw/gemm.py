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
- bias and requantization happen once per output at the drain, on a few time-shared
  requantizer lanes, not per cell.

The broadcast fans each activation out to ``C`` cells and each weight to ``R`` cells; at 8x8 on
ECP5 the routing from these registers to the DSPs spread over the die, and from the DSPs back
to the product registers, is the critical path.

**W4A8: two MACs per multiplier.** With int4 weights, columns ``2j`` and ``2j+1`` share one
multiply (the packing idea of Xilinx WP486, "Deep Learning with INT8 Optimization on Xilinx
Devices", two int8 products per DSP48E2, applied to 4 x 8 bits on ECP5's MULT18X18D):
``P = a * (w0 + w1 * 2**S)`` with :data:`PACK_SHIFT` ``S = 12``. Since ``|a * w0| <= 128 * 8 =
2**10 < 2**(S-1)``, the low ``S`` bits of ``P`` read as signed are exactly ``a * w0``, and
``P >> S = a * w1 + floor(a * w0 / 2**S)`` where the floor is ``-1`` exactly when ``a * w0 < 0``,
i.e. when bit ``S-1`` of ``P`` is set: ``a * w1 = (P >> S) + P[S-1]``. The packed operand
``w0 + w1 * 2**12`` lies in ``[-8 - 8 * 4096, 7 + 7 * 4096]``, 17 bits signed, and ``a`` is 8:
one 18 x 18 multiplier (:func:`packed_weight`, :func:`unpacked_products`).

Pipeline (the cycle model is ``intvit.golden_model.gemm.predicted_cycles``):

1. **Input registers**: each of ``a``, ``w``, ``b`` has a one-beat register, refilled in the
   cycle it is emptied; a beat of ``a`` and one of ``w`` are *joined* when both registers are
   full (one beat per cycle at steady state). A tile's last beat joins only when the drain
   buffer is not claimed by the previous tile and the tile's ``b`` beat is present; it then
   claims the buffer, so the multiply-accumulate stages never stall.
2. **Operands**: each operand register copied :data:`OPERAND_COPIES` times (at W4A8 the weight
   pairs packed), so no multiplier input comes from a far, high-fan-out register.
3. **Multiply**: one registered product per cell (per column pair at W4A8), the DSP alone in
   its stage.
4. **Accumulate**: ``(first ? 0 : acc) + product``; on the tile's last beat the sums go into the
   drain buffer instead and the ``b`` beat into the bias register.
5. **Drain**, time-shared: the buffer (``R * C`` sums, row-major) shifts
   ``config.requant_lanes`` sums per cycle, with their biases (a register rotating by the same
   step), into a requantizer of that many lanes: ``intvit.hw.requant.Requantizer`` (per-tensor
   constants) or with ``per_channel`` ``intvit.hw.requant.ChannelRequantizer`` fed each column's
   ``m, e`` from the ``b`` beat. ``R * C / lanes`` cycles per tile
   (``intvit.golden_model.gemm.drain_cycles``); the buffer is free again after its last step.
6. **Row register**: the requantized groups shift into a row of ``C`` lanes, which is ``o``
   (``last`` on the tile's row ``R-1``).
"""
from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from intvit.golden_model.gemm import GemmConfig, drain_cycles, output_latency
from intvit.golden_model.ops.requant import ACC_BITS, RequantConfig

from .requant import ChannelRequantizer, Requantizer, channel_operand
from .stream import row_beat

PACK_SHIFT = 12
"""``S``: the second int4 weight of a pair sits ``2**12`` above the first (module docstring)."""


def packed_weight(w0, w1):
    """``w0 + w1 * 2**PACK_SHIFT``: the shared multiplier operand of an int4 column pair."""
    return w0 + (w1 << PACK_SHIFT)


def unpacked_products(product):
    """``(a * w0, a * w1)`` from ``P = a * packed_weight(w0, w1)``: ``P[:S]`` as signed, and
    ``(P >> S) + P[S-1]``."""
    low = product[:PACK_SHIFT].as_signed()
    return low, (product >> PACK_SHIFT) + product[PACK_SHIFT - 1]


OPERAND_COPIES = 4
"""Private copies of each operand register, each feeding ``1 / OPERAND_COPIES`` of its
multipliers (:func:`operand_copies`)."""


def operand_copies(m, value, name):
    """:data:`OPERAND_COPIES` registers of ``value`` that Yosys keeps apart.

    ``opt_merge`` folds registers with the same input into one (a ``keep`` on the wire does not
    stop it, and Amaranth puts no attribute on the flip-flop cell), which would undo the
    fan-out copies. Per bit a register differs from its twins only by its initial value
    (0 or 1) and by whether ``rst`` sets it to that value: four kinds, hence four copies."""
    return [_copy(m, value, kind, f"{name}_copy{kind}") for kind in range(OPERAND_COPIES)]


def _copy(m, value, kind, name):
    reg = Signal(value.shape(), name=name, init=-1 if kind & 1 else 0, reset_less=kind < 2)
    m.d.sync += reg.eq(value)
    return reg


class Gemm(wiring.Component):
    """``y = requantize(a @ w + bias)`` tile by tile, exactly as ``intvit.golden_model.gemm``.

    The streams are those of ``intvit.golden_model.gemm.gemm_beats``: ``tiles * K`` beats on ``a`` and
    ``w``, one ``b`` beat per tile, ``tiles * R`` beats on ``o``. ``K`` may change from tile to
    tile (it is marked by ``a.last``) but must not exceed ``config.k_max``.

    Handshake dependencies (AXI4-Stream safe: no ``valid`` waits for a ``ready``): ``a.ready``,
    ``w.ready`` and ``b.ready`` are functions of registers only, so none depends on another
    stream's ``valid`` or on ``o.ready`` within the cycle; a source may raise ``valid`` after
    seeing ``ready``. ``o.valid`` and ``o.payload`` are registers. Nothing is combinational from
    any input to any output.

    Parameters
    ----------
    config : GemmConfig
        Array size, bit widths and requantizer lanes; the accumulators are ``config.acc_bits``
        wide.
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
        """Cycles from a tile's last input beat to its first output row, with no stalls
        (``intvit.golden_model.gemm.output_latency`` of the row's drain steps)."""
        cfg = self.config
        return output_latency(cfg, cfg.cols // cfg.requant_lanes)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        lanes = cfg.requant_lanes
        if cfg.per_channel:
            requant = ChannelRequantizer(cfg.out_bits, lanes=lanes)
        else:
            requant = Requantizer(self.requant, lanes=lanes)
        m.submodules.requant = requant

        claimed = Signal()  # a tile's last beat has joined; the drain buffer is its until drained
        b_beat, b_full = self.input_register(m, self.b, "b")
        a_beat, a_full = self.input_register(m, self.a, "a")
        w_beat, w_full = self.input_register(m, self.w, "w")
        last = a_beat.last
        join = Signal()
        m.d.comb += join.eq(a_full & w_full & (~last | (~claimed & b_full)))
        m.d.comb += [self.a.ready.eq(~a_full | join), self.w.ready.eq(~w_full | join)]

        cells, o_valid, o_first, o_last = self.operands(m, a_beat.data, w_beat, join, last)
        products, p_valid, p_first, p_last = self.multiply(m, cells, o_valid, o_first, o_last)
        finish = p_valid & p_last
        sums = self.accumulate(m, products, p_valid, p_first)
        m.d.comb += self.b.ready.eq(~b_full | finish)
        drained = self.drain(m, requant, sums, b_beat, finish)
        with m.If(join & last):
            m.d.sync += claimed.eq(1)
        with m.If(drained):
            m.d.sync += claimed.eq(0)
        self.row_register(m, requant)
        return m

    @staticmethod
    def input_register(m, port, name):
        """A one-beat register on ``port``: (its beat, full). The caller drives ``port.ready``
        (``~full`` or the beat leaving) and the beat is replaced when taken."""
        beat = Signal.like(port.payload, name=f"{name}_beat")
        full = Signal(name=f"{name}_full")
        with m.If(port.ready):
            m.d.sync += full.eq(0)
        with m.If(port.valid & port.ready):
            m.d.sync += [beat.eq(port.payload), full.eq(1)]
        return beat, full

    def operands(self, m, act, weights, join, last):
        """Stage 2: registered copies of the multiplier operands (:func:`operand_copies`),
        per cell (per column pair at W4A8) the pair it multiplies, with the joined beat's valid,
        first and last flags.

        Each input register bit fans out to ``R`` or ``C`` multipliers spread over the die; fed
        straight from it, that long high-fan-out net lay in front of the DSP on the critical
        path. Each copy feeds a quarter of them, so the long nets end at registers. At W4A8 the
        weight copies hold the packed pair (:func:`packed_weight`), so the packing add is off
        the DSP's path."""
        cfg = self.config
        first = Signal(init=1)  # the next joined beat starts a tile
        with m.If(join):
            m.d.sync += first.eq(last)
        valid, o_first, o_last = Signal(), Signal(), Signal()
        m.d.sync += [valid.eq(join), o_first.eq(first), o_last.eq(last)]
        if cfg.weight_bits == 4:
            weight_ops = [packed_weight(weights[c], weights[c + 1])
                          for c in range(0, cfg.cols, 2)]
        else:
            weight_ops = [weights[c] for c in range(cfg.cols)]
        act_copies = [operand_copies(m, act[r], f"op_a{r}") for r in range(cfg.rows)]
        weight_copies = [operand_copies(m, op, f"op_w{j}") for j, op in enumerate(weight_ops)]
        cells = [[(act_copies[r][j * OPERAND_COPIES // len(weight_ops)],
                   weight_copies[j][r * OPERAND_COPIES // cfg.rows])
                  for j in range(len(weight_ops))] for r in range(cfg.rows)]
        return cells, valid, o_first, o_last

    @staticmethod
    def multiply(m, cells, valid, first, last):
        """Stage 3: the registered product of every cell's operand copies, the DSP alone in its
        stage, with the flags delayed alongside."""
        p_valid, p_first, p_last = Signal(), Signal(), Signal()
        m.d.sync += [p_valid.eq(valid), p_first.eq(first), p_last.eq(last)]
        products = []
        for r, row in enumerate(cells):
            regs = []
            for j, (a_reg, w_reg) in enumerate(row):
                product = a_reg * w_reg
                reg = Signal(product.shape(), name=f"prod_{r}_{j}")
                m.d.sync += reg.eq(product)
                regs.append(reg)
            products.append(regs)
        return products, p_valid, p_first, p_last

    def accumulate(self, m, products, valid, first):
        """Stage 4: each cell's ``(first ? 0 : acc) + product``, kept while ``valid``; returns
        the sums (row-major) the drain buffer takes on the tile's last beat."""
        cfg = self.config
        sums = []
        for r, row in enumerate(products):
            cells = ([part for product in row for part in unpacked_products(product)]
                     if cfg.weight_bits == 4 else row)
            for c, product in enumerate(cells):
                acc = Signal(signed(cfg.acc_bits), name=f"acc_{r}_{c}")
                total = Mux(first, 0, acc) + product
                with m.If(valid):
                    m.d.sync += acc.eq(total)
                sums.append(total)
        return sums

    def drain(self, m, requant, sums, bias_beat, finish):
        """Stage 5: on ``finish`` the buffer takes ``sums`` and the bias register the ``b``
        beat; then ``requant_lanes`` sums per cycle, each with its column's bias, go to the
        requantizer. Returns the signal of the buffer's last step (it is free after it)."""
        cfg = self.config
        lanes, cols = cfg.requant_lanes, cfg.cols
        steps = drain_cycles(cfg)
        buffer = [Signal(signed(cfg.acc_bits), name=f"drain_{i}") for i in range(len(sums))]
        bias = [Signal.like(bias_beat[c], name=f"bias{c}") for c in range(cols)]
        busy = Signal()
        step = Signal(range(max(steps, 2)), name="drain_step")  # at least one bit
        go = busy & requant.i.ready
        done = go & (step == steps - 1)
        with m.If(finish):
            m.d.sync += [busy.eq(1), step.eq(0)]
            m.d.sync += [reg.eq(total) for reg, total in zip(buffer, sums)]
            m.d.sync += [reg.eq(bias_beat[c]) for c, reg in enumerate(bias)]
        with m.If(go):
            m.d.sync += step.eq(step + 1)
            m.d.sync += [buffer[i].eq(buffer[i + lanes]) for i in range(len(buffer) - lanes)]
            m.d.sync += [reg.eq(bias[(c + lanes) % cols]) for c, reg in enumerate(bias)]
        with m.If(done):
            m.d.sync += busy.eq(0)
        m.d.comb += [requant.i.valid.eq(busy), requant.i.payload.last.eq(step == steps - 1)]
        for lane in range(lanes):
            if cfg.per_channel:  # {acc, multiplier, shift}, the ChannelRequantizer's lane
                total = (buffer[lane] + bias[lane].bias)[:ACC_BITS]
                operand = Cat(total, bias[lane].multiplier, bias[lane].shift)
            else:
                operand = buffer[lane] + bias[lane]
            m.d.comb += requant.i.payload.data[lane].eq(operand)
        return done

    def row_register(self, m, requant):
        """Stage 6: the requantizer's groups of ``requant_lanes`` shift into a row of ``C``
        lanes; the row is ``o`` once its last group is in."""
        cfg = self.config
        lanes, cols = cfg.requant_lanes, cfg.cols
        groups = cols // lanes
        row = [Signal.like(self.o.payload.data[c], name=f"row{c}") for c in range(cols)]
        count = Signal(range(max(groups, 2)), name="row_groups")  # at least one bit
        take = Signal()
        m.d.comb += [requant.o.ready.eq(~self.o.valid | self.o.ready),
                     take.eq(requant.o.valid & requant.o.ready)]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            m.d.sync += [row[c].eq(row[c + lanes]) for c in range(cols - lanes)]
            m.d.sync += [row[cols - lanes + k].eq(requant.o.payload.data[k])
                         for k in range(lanes)]
            m.d.sync += count.eq(Mux(count == groups - 1, 0, count + 1))
            with m.If(count == groups - 1):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.last.eq(requant.o.payload.last)]
        m.d.comb += [self.o.payload.data[c].eq(value) for c, value in enumerate(row)]
