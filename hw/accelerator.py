"""The ViT accelerator: one GEMM array, the non-linear units of the mix, an activation memory
and a sequencer running the program of ``intvit.golden_model.program`` (docs/fpga.md §10).

Everything it does is a step of the program (``program.json``); the sequencer fetches a step's
descriptor from the program memory, starts the engine of its kind and waits until that engine's
last write is in the activation memory:

- **input**: int8 pixels in raster order from ``pixels`` into the image region (``T`` layout,
  token ``1 + patch``);
- **gemm**: an address generator reads ``a`` (and ``w`` from the region for the attention
  products) from the activation memory, ``w`` otherwise from the weight memory, one bias word per
  column tile from the bias memory, into the array (:class:`~intvit.hw.gemm.Gemm`, per-channel
  requantization); each output row is clamped to the step's width, and written row by row
  (``RM``), or a tile at a time through a transposing double buffer (``T``), optionally added to
  the residual stream or the class token + position embedding (saturating), or sent out on
  ``logits``;
- **row**: one element per cycle from a region in either layout, through the per-channel
  requantizer (:class:`~intvit.hw.requant.ChannelRequantizer`) onto a LayerNorm's input codes,
  into the step's unit (a row unit or an element-wise unit at one lane), and back to a ``T``
  region, one lane per write.

Memories: activations in one memory of ``L``-lane words (three read ports: ``a``, ``w`` and the
residual read of the write-back; one write port with a write enable per lane), weights, biases,
per-channel requantizers, class token + position embedding and the program in read-only
memories initialised from the model. Every memory read takes one cycle; every source engine
issues a read only when its buffer has room for it, so no data is lost when the array or a unit
stalls.

The cycle model (:mod:`intvit.hw.accelerator_timing`) adds up the same stages.
"""
from amaranth import Array, Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from intvit.golden_model.errors import IntvitError
from intvit.golden_model.gemm import GemmConfig
from intvit.golden_model.integer import signed_range
from intvit.golden_model.ops.requant import ACC_BITS, MULTIPLIER_BITS, SHIFT_BITS
from intvit.golden_model.program import KINDS, LAYOUTS, POSTS, WEIGHT_SOURCES, Program
from intvit.golden_model.qvit import IMAGE_BITS, LOGIT_BITS

from .gemm import Gemm
from .requant import ChannelRequantizer, channel_operand
from .rowpipe import RowUnit
from .stream import row_beat
from .units import build_unit, unit_class

SOURCE_DEPTH = 4
"""Entries of each source engine's buffer: a read is issued only when the buffer will have room
for its data (``level + in flight < SOURCE_DEPTH``), so the one-cycle memory read keeps one beat
per cycle flowing."""
WEIGHT_BITS = 8
"""The array's weight operand: int8 weights and the int8 ``k`` and ``v`` of the attention
products (int4 weights are sign-extended in the weight memory)."""


def _bits(value: int) -> int:
    return max(int(value).bit_length(), 1)


def descriptor_layout(program: Program) -> data.StructLayout:
    """The step descriptor: every :class:`~intvit.golden_model.program.Step` field at the
    width its largest value in ``program`` needs (enumerations as indices)."""
    steps = program.steps
    widest = {name: _bits(max(abs(getattr(s, name)) for s in steps))
              for name in ("unit", "layer", "m", "k", "n", "a_base", "a_stride", "a_top", "w_base",
                           "w_tn_stride", "w_k_stride", "b_base", "o_base", "o_stride", "grid",
                           "patch", "channels")}
    fields = {"kind": range(len(KINDS)), "a_layout": range(len(LAYOUTS)),
              "o_layout": range(len(LAYOUTS)), "w_src": range(len(WEIGHT_SOURCES)),
              "post": range(len(POSTS)), "chan": 1,
              "chan_base": _bits(max(s.chan_base for s in steps)),
              "lo": signed(17), "hi": signed(17)}
    fields.update({name: unsigned(width) for name, width in widest.items()})
    return data.StructLayout(fields)


def descriptor_value(layout: data.StructLayout, step) -> int:
    """A step's descriptor word as an integer (the program memory's contents)."""
    lo, hi = signed_range(step.out_bits) if step.out_bits else (0, 0)
    values = {"kind": KINDS.index(step.kind), "a_layout": LAYOUTS.index(step.a_layout),
              "o_layout": LAYOUTS.index(step.o_layout),
              "w_src": WEIGHT_SOURCES.index(step.w_src), "post": POSTS.index(step.post),
              "chan": int(step.chan_base >= 0), "chan_base": max(step.chan_base, 0),
              "lo": lo, "hi": hi}
    word = 0
    for name, field in layout:
        value = values[name] if name in values else getattr(step, name)
        width = Shape.cast(field.shape).width
        word |= (int(value) & ((1 << width) - 1)) << field.offset
    return word


def model_only(elaboratable):
    """``elaboratable``, built for its cycle model only: Amaranth is told it is not part of a
    design (no "created but never used" warning)."""
    elaboratable._MustUse__silence = True
    return elaboratable


def _bias_lane(layout: data.StructLayout, bias: int, multiplier: int, shift: int) -> int:
    """One lane of a bias word (:func:`~intvit.hw.requant.channel_operand`) as an integer."""
    word = 0
    for name, value in (("bias", bias), ("multiplier", multiplier), ("shift", shift)):
        field = layout[name]
        word |= (value & ((1 << Shape.cast(field.shape).width) - 1)) << field.offset
    return word


def _pack(values, width: int) -> int:
    """Lanes of ``width`` bits (two's complement), lane 0 lowest."""
    word = 0
    for lane, value in enumerate(values):
        word |= (int(value) & ((1 << width) - 1)) << (lane * width)
    return word


class Accelerator(wiring.Component):
    """The whole integer ViT of ``program`` on one array of ``program.lanes`` square.

    Members
    -------
    pixels : In(stream.Signature(signed(8)))
        One int8 pixel per beat, in raster order ``(channel, y, x)``, image after image.
    logits : Out(stream.Signature(row_beat(signed(16), L)))
        ``ceil(classes / L)`` beats per image, ``L`` logits each (the last beat's lanes beyond
        ``classes`` are padding); ``last`` on the image's final beat.
    step : Out(range(steps))
        The step being run (for testbenches and a logic analyser).
    tap_en, tap_addr, tap_data, tap_mask : Out
        The activation memory's write port as it is written (per-step taps of the testbench).
    """

    def __init__(self, program: Program):
        if not isinstance(program, Program):
            raise TypeError(f"program must be a Program, not {program!r}")
        self.program = program
        lanes, lane_bits = program.lanes, program.lane_bits
        self.layout = descriptor_layout(program)
        gemm_steps = [s for s in program.steps if s.kind == "gemm"]
        self.gemm_config = GemmConfig(
            rows=lanes, cols=lanes, k_max=max(s.k for s in gemm_steps), weight_bits=WEIGHT_BITS,
            act_bits=program.act_bits, per_channel=True,
            out_bits=max(s.out_bits for s in gemm_steps), requant_lanes=program.requant_lanes)
        chan_bits = set(program.chan_bits)
        if len(chan_bits) > 1:
            raise IntvitError(f"the LayerNorms of this model take inputs of different widths "
                              f"{sorted(chan_bits)}; the accelerator has one input requantizer")
        self.chan_bits = chan_bits.pop()
        self.addr_bits = _bits(program.act_words - 1)
        super().__init__({
            "pixels": In(stream.Signature(signed(IMAGE_BITS))),
            "logits": Out(stream.Signature(row_beat(signed(LOGIT_BITS), lanes))),
            "step": Out(range(max(len(program.steps), 2))),
            "tap_en": Out(1), "tap_addr": Out(self.addr_bits),
            "tap_data": Out(lanes * lane_bits), "tap_mask": Out(lanes),
        })

    # ------------------------------------------------------------------ build-time helpers
    @property
    def lanes(self) -> int:
        return self.program.lanes

    @property
    def lane_bits(self) -> int:
        return self.program.lane_bits

    @property
    def requant_latency(self) -> int:
        """Cycles through the LayerNorm-input requantizer."""
        return model_only(ChannelRequantizer(self.chan_bits, lanes=1)).latency

    def units(self):
        """The unit of each program unit index, at one lane: a row unit sized for the longest
        row it is given, a LayerNorm shared by the layers whose tables it holds."""
        built = []
        for index, (op, configs) in enumerate(self.program.units):
            rows = [s.n for s in self.program.steps if s.kind == "row" and s.unit == index]
            cls = unit_class(op)
            if not issubclass(cls, RowUnit):
                built.append(cls(configs[0], lanes=1))
            elif len(configs) > 1:
                built.append(cls(configs[0], lanes=1, max_row=max(rows),
                                 shared=tuple(configs[1:])))
            else:
                built.append(build_unit(op, configs[0], lanes=1, max_row=max(rows)))
        return built

    # ------------------------------------------------------------------ elaborate
    def elaborate(self, platform):
        m = Module()
        prog = self.program
        L, lb = self.lanes, self.lane_bits

        # Memories.
        act = Memory(shape=unsigned(L * lb), depth=prog.act_words, init=[])
        m.submodules.act = act
        act_a, act_w, act_r = act.read_port(), act.read_port(), act.read_port()
        act_wr = act.write_port(granularity=lb)
        weights = Memory(shape=unsigned(L * WEIGHT_BITS), depth=len(prog.weights),
                         init=[_pack(word, WEIGHT_BITS) for word in prog.weights])
        m.submodules.weights = weights
        w_rom = weights.read_port()
        bias_lane = channel_operand(self.gemm_config.bias_bits)
        bias_words = [_pack([_bias_lane(bias_lane, *map(int, lane)) for lane in word],
                            bias_lane.size) for word in prog.biases]
        biases = Memory(shape=unsigned(L * bias_lane.size), depth=len(bias_words),
                        init=bias_words)
        m.submodules.biases = biases
        b_rom = biases.read_port()
        chans = Memory(shape=unsigned(MULTIPLIER_BITS + SHIFT_BITS), depth=len(prog.channels),
                       init=[int(mu) | (int(e) << MULTIPLIER_BITS) for mu, e in prog.channels])
        m.submodules.chans = chans
        c_rom = chans.read_port()
        clspos = Memory(shape=unsigned(L * lb), depth=len(prog.clspos),
                        init=[_pack(word, lb) for word in prog.clspos])
        m.submodules.clspos = clspos
        cls_rom = clspos.read_port()
        program = Memory(shape=unsigned(self.layout.size), depth=len(prog.steps),
                         init=[descriptor_value(self.layout, s) for s in prog.steps])
        m.submodules.program = program
        p_rom = program.read_port()

        # The write port, registered: engines drive `wr` (one at a time).
        wr_en = Signal()
        wr_addr = Signal(self.addr_bits)
        wr_data = Signal(L * lb)
        wr_mask = Signal(L)
        m.d.sync += [act_wr.en.eq(Mux(wr_en, wr_mask, 0)), act_wr.addr.eq(wr_addr),
                     act_wr.data.eq(wr_data)]
        m.d.comb += [self.tap_en.eq(act_wr.en.any()), self.tap_addr.eq(act_wr.addr),
                     self.tap_data.eq(act_wr.data), self.tap_mask.eq(act_wr.en)]

        # Sequencer.
        cur = Signal(self.layout)
        pc = Signal(range(max(len(prog.steps), 2)))
        start = Signal()
        done = Signal()
        m.d.comb += [p_rom.addr.eq(pc), self.step.eq(pc)]
        with m.FSM():
            with m.State("FETCH"):
                m.next = "LOAD"
            with m.State("LOAD"):
                m.d.sync += cur.eq(p_rom.data)
                m.next = "START"
            with m.State("START"):
                m.d.comb += start.eq(1)
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(done):
                    m.d.sync += pc.eq(Mux(pc == len(prog.steps) - 1, 0, pc + 1))
                    m.next = "FETCH"
        kind = Signal(range(len(KINDS)))
        m.d.comb += kind.eq(cur.kind)
        running = Signal()
        with m.If(start):
            m.d.sync += running.eq(1)
        with m.If(done):
            m.d.sync += running.eq(0)

        input_done = self.input_engine(m, cur, start, running & (kind == 0), wr_en, wr_addr,
                                       wr_data, wr_mask)
        gemm_done = self.gemm_engine(m, cur, start, running & (kind == 1), act_a, act_w, act_r,
                                     w_rom, b_rom, cls_rom, wr_en, wr_addr, wr_data, wr_mask)
        row_done = self.row_engine(m, cur, start, running & (kind == 2), act_a, c_rom, wr_en,
                                   wr_addr, wr_data, wr_mask)
        m.d.comb += done.eq(running & Mux(kind == 0, input_done,
                                          Mux(kind == 1, gemm_done, row_done)))
        return m

    # ------------------------------------------------------------------ engines
    def input_engine(self, m, cur, start, active, wr_en, wr_addr, wr_data, wr_mask):
        """Raster-order pixels ``(c, gy, dy, gx, dx)`` to token ``1 + gy * grid + gx``, column
        ``(c * P + dy) * P + dx`` of the image region. Done one cycle after the last pixel's
        write request (the write is then in the memory)."""
        L, lb = self.lanes, self.lane_bits
        lg = (L - 1).bit_length()
        c, gy, dy, gx, dx = (Signal(16, name=f"in_{name}")
                             for name in ("c", "gy", "dy", "gx", "dx"))
        finished, committed = Signal(), Signal()
        with m.If(start):
            m.d.sync += [x.eq(0) for x in (c, gy, dy, gx, dx, finished, committed)]
        take = Signal()
        m.d.comb += [self.pixels.ready.eq(active & ~finished),
                     take.eq(self.pixels.valid & self.pixels.ready)]
        token = Signal(16)
        column = Signal(16)
        m.d.comb += [token.eq(1 + gy * cur.grid + gx),
                     column.eq((c * cur.patch + dy) * cur.patch + dx)]
        pixel = self.pixels.payload.as_signed()
        with m.If(take):
            m.d.comb += [wr_en.eq(1),
                         wr_addr.eq(cur.o_base + (token >> lg) * cur.o_stride + column),
                         wr_mask.eq(Const(1, L) << token[:lg]),
                         wr_data.eq(Cat(*[_extend(pixel, lb) for _ in range(L)]))]
            ends = [dx == cur.patch - 1, gx == cur.grid - 1, dy == cur.patch - 1,
                    gy == cur.grid - 1, c == cur.channels - 1]
            carry = Const(1)
            for counter, end in zip((dx, gx, dy, gy, c), ends):
                with m.If(carry):
                    m.d.sync += counter.eq(Mux(end, 0, counter + 1))
                carry = carry & end
            with m.If(carry):
                m.d.sync += finished.eq(1)
        with m.If(finished & active):
            m.d.sync += committed.eq(1)
        return committed

    def gemm_engine(self, m, cur, start, active, act_a, act_w, act_r, w_rom, b_rom, cls_rom,
                    wr_en, wr_addr, wr_data, wr_mask):
        """Sources ``a``/``w`` (one buffer, read in lockstep) and ``b``, the array, the clamp
        and the write-back. Done when every output word's write is in the memory."""
        L, lb = self.lanes, self.lane_bits
        lg = (L - 1).bit_length()
        cfg = self.gemm_config
        m.submodules.gemm = gemm = Gemm(cfg)
        m_tiles = Signal(16)
        n_tiles = Signal(16)
        m.d.comb += [m_tiles.eq((cur.m + L - 1) >> lg), n_tiles.eq((cur.n + L - 1) >> lg)]

        # a and w: tiles (tm outer, tn inner), k innermost.
        tm, tn, kk = Signal(16, name="src_tm"), Signal(16, name="src_tn"), Signal(16, name="src_k")
        a_row = Signal(self.addr_bits + 1)     # a_base + tm * a_stride
        w_tile = Signal(24)                    # w_base + tn * (K or w_tn_stride)
        w_k = Signal(24)                       # k * w_k_stride (or k)
        issuing = Signal()
        a_fields = data.StructLayout({"a": data.ArrayLayout(signed(cfg.act_bits), L),
                                      "last": 1, "w": data.ArrayLayout(signed(WEIGHT_BITS), L)})
        m.submodules.ab_fifo = ab_fifo = SyncFIFO(width=a_fields.size, depth=SOURCE_DEPTH)
        inflight = Signal()
        inflight_last = Signal()
        issue = Signal()
        from_rom = cur.w_src == WEIGHT_SOURCES.index("rom")
        tn_step = Mux(from_rom, cur.k, cur.w_tn_stride)
        k_step = Mux(from_rom, 1, cur.w_k_stride)
        m.d.comb += issue.eq(active & issuing & (ab_fifo.level + inflight < SOURCE_DEPTH))
        with m.If(start):
            m.d.sync += [tm.eq(0), tn.eq(0), kk.eq(0), issuing.eq(1), a_row.eq(cur.a_base),
                         w_tile.eq(cur.w_base), w_k.eq(0)]
        m.d.comb += [act_a.addr.eq(a_row + kk), act_w.addr.eq(w_tile + w_k),
                     w_rom.addr.eq(w_tile + w_k)]
        m.d.sync += [inflight.eq(issue), inflight_last.eq(kk == cur.k - 1)]
        with m.If(issue):
            with m.If(kk == cur.k - 1):
                m.d.sync += [kk.eq(0), w_k.eq(0)]
                with m.If(tn == n_tiles - 1):
                    m.d.sync += [tn.eq(0), w_tile.eq(cur.w_base), tm.eq(tm + 1),
                                 a_row.eq(a_row + cur.a_stride)]
                    with m.If(tm == m_tiles - 1):
                        m.d.sync += issuing.eq(0)
                with m.Else():
                    m.d.sync += [tn.eq(tn + 1), w_tile.eq(w_tile + tn_step)]
            with m.Else():
                m.d.sync += [kk.eq(kk + 1), w_k.eq(w_k + k_step)]
        entry = Signal(a_fields)
        top = cur.a_top
        for lane in range(L):
            code = act_a.data[lane * lb:(lane + 1) * lb].as_signed()
            power = Mux(code == top, 0, Const(1, cfg.act_bits + 1) << (top - 1 - code)[:6])
            m.d.comb += [entry.a[lane].eq(Mux(top == 0, code, power)),
                         entry.w[lane].eq(Mux(from_rom,
                                              w_rom.data[lane * WEIGHT_BITS:
                                                         (lane + 1) * WEIGHT_BITS],
                                              act_w.data[lane * lb:lane * lb + WEIGHT_BITS]))]
        m.d.comb += [entry.last.eq(inflight_last), ab_fifo.w_en.eq(inflight),
                     ab_fifo.w_data.eq(entry)]
        head = Signal(a_fields)
        m.d.comb += head.eq(ab_fifo.r_data)
        m.d.comb += [gemm.a.valid.eq(ab_fifo.r_rdy & gemm.w.ready),
                     gemm.w.valid.eq(ab_fifo.r_rdy & gemm.a.ready),
                     ab_fifo.r_en.eq(gemm.a.ready & gemm.w.ready),
                     gemm.a.payload.data.eq(head.a), gemm.a.payload.last.eq(head.last),
                     gemm.w.payload.eq(head.w)]

        # b: one bias word per tile.
        b_tiles = Signal(32)
        b_count = Signal(32)
        b_tn = Signal(16)
        m.submodules.b_fifo = b_fifo = SyncFIFO(width=len(gemm.b.payload.as_value()), depth=2)
        b_inflight = Signal()
        b_issue = Signal()
        m.d.comb += [b_tiles.eq(m_tiles * n_tiles),
                     b_issue.eq(active & (b_count != b_tiles)
                                & (b_fifo.level + b_inflight < 2)),
                     b_rom.addr.eq(cur.b_base + Mux(from_rom, b_tn, 0))]
        with m.If(start):
            m.d.sync += [b_count.eq(0), b_tn.eq(0)]
        with m.If(b_issue):
            m.d.sync += [b_count.eq(b_count + 1), b_tn.eq(Mux(b_tn == n_tiles - 1, 0, b_tn + 1))]
        m.d.sync += b_inflight.eq(b_issue)
        m.d.comb += [b_fifo.w_en.eq(b_inflight), b_fifo.w_data.eq(b_rom.data),
                     gemm.b.valid.eq(b_fifo.r_rdy), gemm.b.payload.eq(b_fifo.r_data),
                     b_fifo.r_en.eq(gemm.b.ready)]

        # Output rows: clamp, then one of the writers.
        row = [Signal(signed(lb), name=f"out_{c}") for c in range(L)]
        for c in range(L):
            value = gemm.o.payload.data[c]
            m.d.comb += row[c].eq(Mux(value < cur.lo, cur.lo, Mux(value > cur.hi, cur.hi, value)))
        return self.gemm_writer(m, cur, start, active, gemm, row, n_tiles, m_tiles, act_r,
                                cls_rom, wr_en, wr_addr, wr_data, wr_mask)

    def gemm_writer(self, m, cur, start, active, gemm, row, n_tiles, m_tiles, act_r, cls_rom,
                    wr_en, wr_addr, wr_data, wr_mask):
        """``RM``: a row per word. ``T``: a tile's rows into one of two buffers, whose columns
        become words (with the residual or class/position word read a cycle before and added,
        saturating). ``logits``: row 0 of each tile out, the other rows taken and dropped (none
        may stay in the array for the next step). Returns the step's done."""
        L, lb = self.lanes, self.lane_bits
        lg = (L - 1).bit_length()
        post = cur.post
        is_logits = post == POSTS.index("logits")
        transposed = (cur.o_layout == LAYOUTS.index("T")) & ~is_logits
        total = Signal(32)
        written = Signal(32)
        committed = Signal()
        m.d.comb += total.eq(m_tiles * n_tiles * L)  # words, rows (RM) or rows taken (logits)
        with m.If(start):
            m.d.sync += [written.eq(0), committed.eq(0)]
        with m.If(active & (written == total) & (total != 0)):
            m.d.sync += committed.eq(1)

        # Row counters of the incoming stream (tile order: tm outer, tn inner).
        r_in, tm_in, tn_in = Signal(16), Signal(16), Signal(16)
        with m.If(start):
            m.d.sync += [r_in.eq(0), tm_in.eq(0), tn_in.eq(0)]
        take = Signal()
        m.d.comb += take.eq(gemm.o.valid & gemm.o.ready)
        with m.If(take):
            m.d.sync += r_in.eq(Mux(r_in == L - 1, 0, r_in + 1))
            with m.If(r_in == L - 1):
                m.d.sync += tn_in.eq(Mux(tn_in == n_tiles - 1, 0, tn_in + 1))
                with m.If(tn_in == n_tiles - 1):
                    m.d.sync += tm_in.eq(tm_in + 1)

        # Transposing double buffer.
        buf = [[[Signal(signed(lb), name=f"tbuf{b}_{r}_{c}") for c in range(L)]
                for r in range(L)] for b in range(2)]
        full = [Signal(name=f"tbuf{b}_full") for b in range(2)]
        tile_of = [(Signal(16, name=f"tbuf{b}_tm"), Signal(16, name=f"tbuf{b}_tn"))
                   for b in range(2)]
        fill = Signal()
        with m.If(start):
            m.d.sync += [fill.eq(0), full[0].eq(0), full[1].eq(0)]
        ready = Mux(is_logits, ~self.logits.valid | self.logits.ready,
                    Mux(transposed, ~Mux(fill, full[1], full[0]), 1))
        m.d.comb += gemm.o.ready.eq(active & ready)
        with m.If(take & transposed):
            for b in range(2):
                with m.If(fill == b):
                    for r in range(L):
                        with m.If(r_in == r):
                            m.d.sync += [buf[b][r][c].eq(row[c]) for c in range(L)]
                    with m.If(r_in == L - 1):
                        m.d.sync += [full[b].eq(1), fill.eq(1 - b),
                                     tile_of[b][0].eq(tm_in), tile_of[b][1].eq(tn_in)]

        # Emitter: column `col` of buffer `emit`, its word read ahead for the additions.
        emit = Signal()
        col = Signal(lg or 1)
        busy = Signal()
        with m.If(start):
            m.d.sync += [emit.eq(0), busy.eq(0), col.eq(0)]
        e_full = Mux(emit, full[1], full[0])
        e_tm = Mux(emit, tile_of[1][0], tile_of[0][0])
        e_tn = Mux(emit, tile_of[1][1], tile_of[0][1])
        go = Signal()
        m.d.comb += go.eq(active & transposed & e_full)
        offset = Signal(self.addr_bits + 1)
        m.d.comb += [offset.eq(e_tm * cur.o_stride + (e_tn << lg) + col),
                     act_r.addr.eq(cur.o_base + offset), cls_rom.addr.eq(offset)]
        with m.If(go):
            m.d.sync += col.eq(col + 1)
            with m.If(col == L - 1):
                m.d.sync += [emit.eq(~emit)]
                for b in range(2):
                    with m.If(emit == b):
                        m.d.sync += full[b].eq(0)
        # Stage 2: the word read for `offset` is there; add and write.
        s_valid = Signal()
        s_addr = Signal(self.addr_bits)
        s_keep = Signal()
        s_first_tile = Signal()
        s_values = [Signal(signed(lb), name=f"emit_{r}") for r in range(L)]
        m.d.sync += s_valid.eq(go)
        with m.If(go):
            m.d.sync += [s_addr.eq(cur.o_base + offset),
                         s_keep.eq(((e_tn << lg) + col) < cur.n),
                         s_first_tile.eq(e_tm == 0)]
            for r in range(L):
                m.d.sync += s_values[r].eq(Mux(emit, Array(buf[1][r])[col],
                                               Array(buf[0][r])[col]))
        lo, hi = signed_range(self.program.residual_bits)
        sums = []
        for r in range(L):
            old = act_r.data[r * lb:(r + 1) * lb].as_signed()
            base = cls_rom.data[r * lb:(r + 1) * lb].as_signed()
            branch = s_values[r]
            if r == 0:
                branch = Mux(s_first_tile, 0, branch)
            total_value = Mux(post == POSTS.index("residual"), old + s_values[r],
                              Mux(post == POSTS.index("clspos"), base + branch, s_values[r]))
            saturated = Mux(post == POSTS.index("none"), total_value,
                            Mux(total_value < lo, lo, Mux(total_value > hi, hi, total_value)))
            sums.append(saturated[:lb])

        # RM rows.
        rm_addr = Signal(self.addr_bits + 1)
        m.d.comb += rm_addr.eq(cur.o_base + ((tm_in << lg) + r_in) * cur.o_stride + tn_in)

        # Logits out.
        with m.If(self.logits.ready):
            m.d.sync += self.logits.valid.eq(0)
        with m.If(take & is_logits):
            with m.If(r_in == 0):
                m.d.sync += [self.logits.valid.eq(1),
                             self.logits.payload.last.eq(tn_in == n_tiles - 1)]
                m.d.sync += [self.logits.payload.data[c].eq(row[c]) for c in range(L)]

        with m.If(s_valid):
            m.d.comb += [wr_en.eq(1), wr_addr.eq(s_addr), wr_mask.eq(Mux(s_keep, (1 << L) - 1, 0)),
                         wr_data.eq(Cat(*sums))]
            m.d.sync += written.eq(written + 1)
        with m.Elif(take & ~transposed & ~is_logits):
            m.d.comb += [wr_en.eq(1), wr_addr.eq(rm_addr), wr_mask.eq((1 << L) - 1),
                         wr_data.eq(Cat(*[value[:lb] for value in row]))]
            m.d.sync += written.eq(written + 1)
        with m.If(take & is_logits):  # every row of every tile leaves the array
            m.d.sync += written.eq(written + 1)
        return committed

    def row_engine(self, m, cur, start, active, act_a, c_rom, wr_en, wr_addr, wr_data,
                   wr_mask):
        """Elements ``(row, col)`` one per cycle from the source region (its lane selected),
        with their channel's ``m, e`` when the step has a requantizer, into the step's unit,
        and its outputs one per cycle into lane ``row % L`` of the destination (``T``)."""
        L, lb = self.lanes, self.lane_bits
        lg = (L - 1).bit_length()
        rows, length = cur.m, cur.n
        row, col = Signal(16, name="rd_row"), Signal(16, name="rd_col")
        row_base = Signal(self.addr_bits + 1)
        issuing = Signal()
        element = data.StructLayout({"value": signed(lb), "last": 1,
                                     "multiplier": unsigned(MULTIPLIER_BITS),
                                     "shift": unsigned(SHIFT_BITS)})
        m.submodules.row_fifo = fifo = SyncFIFO(width=element.size, depth=SOURCE_DEPTH)
        inflight, inflight_last = Signal(), Signal()
        inflight_lane = Signal(lg or 1)
        issue = Signal()
        is_t = cur.a_layout == LAYOUTS.index("T")
        m.d.comb += issue.eq(active & issuing & (fifo.level + inflight < SOURCE_DEPTH))
        with m.If(start):
            m.d.sync += [row.eq(0), col.eq(0), issuing.eq(1), row_base.eq(cur.a_base)]
        with m.If(active):  # the GEMM engine's a source drives the port otherwise
            m.d.comb += act_a.addr.eq(row_base + Mux(is_t, col, col >> lg))
        m.d.comb += c_rom.addr.eq(cur.chan_base + col)
        m.d.sync += [inflight.eq(issue), inflight_last.eq(col == length - 1),
                     inflight_lane.eq(Mux(is_t, row, col)[:lg] if lg else 0)]
        with m.If(issue):
            with m.If(col == length - 1):
                m.d.sync += [col.eq(0), row.eq(row + 1)]
                with m.If(is_t):
                    with m.If(row[:lg] == L - 1 if lg else 1):
                        m.d.sync += row_base.eq(row_base + cur.a_stride)
                with m.Else():
                    m.d.sync += row_base.eq(row_base + cur.a_stride)
                with m.If(row == rows - 1):
                    m.d.sync += issuing.eq(0)
            with m.Else():
                m.d.sync += col.eq(col + 1)
        entry = Signal(element)
        words = act_a.data
        lane_value = Signal(signed(lb))
        with m.Switch(inflight_lane):
            for lane in range(L):
                with m.Case(lane):
                    m.d.comb += lane_value.eq(words[lane * lb:(lane + 1) * lb].as_signed())
        m.d.comb += [entry.value.eq(lane_value), entry.last.eq(inflight_last),
                     entry.multiplier.eq(c_rom.data[:MULTIPLIER_BITS]),
                     entry.shift.eq(c_rom.data[MULTIPLIER_BITS:]),
                     fifo.w_en.eq(inflight), fifo.w_data.eq(entry)]
        head = Signal(element)
        m.d.comb += head.eq(fifo.r_data)

        # Requantizer onto the LayerNorm's codes (or bypass).
        m.submodules.chan_requant = requant = ChannelRequantizer(self.chan_bits, lanes=1)
        use_chan = cur.chan
        src_valid, src_value, src_last = Signal(), Signal(signed(lb)), Signal()
        src_ready = Signal()
        m.d.comb += [requant.i.valid.eq(fifo.r_rdy & use_chan),
                     requant.i.payload.data[0].eq(Cat(_extend(head.value, ACC_BITS),
                                                      head.multiplier, head.shift)),
                     requant.i.payload.last.eq(head.last),
                     fifo.r_en.eq(Mux(use_chan, requant.i.ready, src_ready)),
                     src_valid.eq(Mux(use_chan, requant.o.valid, fifo.r_rdy)),
                     src_value.eq(Mux(use_chan, requant.o.payload.data[0], head.value)),
                     src_last.eq(Mux(use_chan, requant.o.payload.last, head.last)),
                     requant.o.ready.eq(src_ready & use_chan)]

        # The step's unit.
        out_valid, out_value = Signal(), Signal(signed(lb))
        for index, unit in enumerate(self.units()):
            m.submodules[f"unit{index}"] = unit
            chosen = cur.unit == index
            keyed = isinstance(unit, RowUnit)
            m.d.comb += [unit.i.valid.eq(src_valid & chosen),
                         unit.i.payload.data[0].eq(src_value),
                         unit.i.payload.last.eq(src_last)]
            if keyed:
                m.d.comb += unit.i.payload.keep.eq(1)
            if len(getattr(unit, "configs", ())) > 1:
                m.d.comb += unit.layer.eq(cur.layer)
            with m.If(chosen):
                m.d.comb += [src_ready.eq(unit.i.ready), out_valid.eq(unit.o.valid),
                             out_value.eq(unit.o.payload.data[0])]
            m.d.comb += unit.o.ready.eq(chosen)

        # Writer: lane `row % L` of word `o_base + (row // L) * o_stride + col`.
        w_row, w_col = Signal(16, name="wr_row"), Signal(16, name="wr_col")
        w_base = Signal(self.addr_bits + 1)
        written, committed = Signal(32), Signal()
        total = Signal(32)
        m.d.comb += total.eq(rows * length)
        with m.If(start):
            m.d.sync += [w_row.eq(0), w_col.eq(0), w_base.eq(cur.o_base), written.eq(0),
                         committed.eq(0)]
        with m.If(active & out_valid):
            m.d.comb += [wr_en.eq(1), wr_addr.eq(w_base + w_col),
                         wr_mask.eq(Const(1, L) << w_row[:lg] if lg else 1),
                         wr_data.eq(Cat(*[out_value for _ in range(L)]))]
            m.d.sync += written.eq(written + 1)
            with m.If(w_col == length - 1):
                m.d.sync += [w_col.eq(0), w_row.eq(w_row + 1)]
                with m.If(w_row[:lg] == L - 1 if lg else 1):
                    m.d.sync += w_base.eq(w_base + cur.o_stride)
            with m.Else():
                m.d.sync += w_col.eq(w_col + 1)
        with m.If(active & (written == total) & (total != 0)):
            m.d.sync += committed.eq(1)
        return committed


def _extend(value, bits: int):
    """The signed ``value`` sign-extended to exactly ``bits`` bits."""
    return (value.as_signed() + Const(0, signed(bits)))[:bits]
