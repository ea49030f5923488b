"""Row units (softmax, LayerNorm): a row is buffered and read in several passes, rows overlapped.

A row arrives as beats of ``lanes`` elements with a ``keep`` bit per lane and ``last`` ending the
row. ``keep`` says which elements take part in the row: the padding lanes of a partial final beat
have it low, and so may any element of any beat (a shifted Swin window masks the positions that
are not its neighbours; the softmax candidates' ``keep`` argument). Reductions skip the elements
not kept, a stage sees its element's bit as ``ctx.keep``, and every output beat carries its input
beat's ``keep``: the bits are stored beside the data in the buffer. A row keeps at least one
element. A row unit is a chain of :class:`RowPass` es. Pass 0 takes
the input stream and writes the row into a buffer slot; each later pass reads its row back from
that slot, applies its per-element pipeline and writes the result back in place, and the final
pass streams the result out. Each pass can reduce its outputs over the row (max or sum); between
pass ``k`` and ``k + 1`` a *row step* turns those reductions into per-row scalars (a register
copy, a sequential divider, a square root...).

Overlap. A pass issues the first beat of row ``i + 1`` in the cycle after the last beat of row
``i`` (no bubble) without waiting for its pipeline to drain:

- *scalar transport*: the per-row scalars a stage function reads (``ctx.scalars``,
  ``ctx.length``) travel with their beat, one register per stage, built only for the scalars a
  stage reads, so elements of row ``i`` still in flight see row ``i``'s scalars;
- *reductions* restart on a row's first beat and their final value is captured when the row's
  last beat sinks (over the lanes a tree whose result is registered before the accumulator,
  so a term computed by a multiplier, as LayerNorm's squares, never feeds the adder directly);
- *hand-off queue*: each pass's rows own an entry of a :attr:`RowUnit.handoff_depth` -entry
  queue from their start (which records the row's scalars) until the row step takes the
  completed entry; a pass stalls the start of a row only when the queue is full;
- *slots*: :attr:`RowUnit.slot_count` buffer slots in a ring; a slot is taken when pass 0
  starts a row and freed when the final pass's last read of it has left the slot's read
  registers (its data is in the pass's own pipeline).

Clock. A slot read is three registers: the read address (issue), the slot memory's read data
registered straight into a plain register (no logic in between, so the block RAM's output
register or a flip-flop next to it can hold it), and the slot-select mux into the pass's stage-0
register. Slot writes are registered before the memory. Reductions over the lanes are trees.

Cycle model (:meth:`RowUnit.row_interval`, :meth:`RowUnit.row_latency`, ``B = ceil(n /
lanes)``): back-to-back rows of ``n`` elements are accepted every ``max(B + ROW_BUBBLE,
row_step_interval)`` cycles at most, where the row step interval is the slowest row step's
``row_step_cycles + STEP_HANDOFF``; a row step slower than a row therefore bounds the interval
from below (a LayerNorm row is its 64+ channels, so its steps never do). A lone row takes
``passes * B + row_fill`` cycles from its first input beat to its last output beat. Slots and
queues are sized for rows of :attr:`RowUnit.full_rate_row` elements (17) or more; a shorter row
is bounded by that row's interval. Rows keep their order; with rows streamed back to back, the
end of row ``i + 1`` comes at most ``row_latency(n_(i+1))`` cycles after the end of row ``i``.

Rows longer than ``max_row`` elements are truncated to ``max_row`` (later beats are dropped) and
raise the sticky ``overflow`` output until reset; they are never silently wrapped.
"""
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

from amaranth import Array, Cat, Const, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

ROW_BUBBLE = 0
"""Idle issue cycles of a pass between two back-to-back rows."""
STEP_HANDOFF = 2
"""Cycles a row step adds to its ``row_step_cycles``: taking its queue entry and offering its
outputs to the next pass."""
READ_LATENCY = 3
"""Registers from a later pass's read address to its stage-0 values: address, slot read data,
slot select."""


def keyed_beat(shape, lanes: int) -> data.StructLayout:
    """``{"data": shape[lanes], "keep": lanes, "last": 1}``: a beat of a row with AXI-style keep."""
    return data.StructLayout({"data": data.ArrayLayout(Shape.cast(shape), lanes),
                              "keep": unsigned(lanes), "last": 1})


@dataclass(frozen=True)
class Reduction:
    """``op`` (``"max"`` or ``"sum"``) over the row of ``term(value, ctx)``, in ``shape``."""
    op: str
    shape: object
    term: Callable = staticmethod(lambda value, ctx: value)


@dataclass
class RowPass:
    """One pass: per-element ``stages`` (each ``fn(value, ctx) -> expression``, registered) giving
    values of ``out_shape``, and named ``reductions`` of those values over the row (handed to the
    next row step; the final pass has none)."""
    out_shape: object
    stages: list = field(default_factory=list)
    reductions: dict = field(default_factory=dict)


class LaneContext:
    """What a stage function sees besides its value: the row's scalars (those of the element's
    own row), the element's index in the row, the row length (elements kept) and the element's
    ``keep`` bit."""

    def __init__(self, scalars, index, length, keep):
        self.scalars, self.index, self._length, self.keep = scalars, index, length, keep

    @property
    def length(self):
        return self._length() if callable(self._length) else self._length


class RowUnit(wiring.Component):
    """Base of the row units. Subclasses define :meth:`passes` and may define :meth:`row_step`.

    Rows hold at least one kept element; ``keep`` may clear any lane of any beat (the elements
    outside the row: padding, masked positions). Capacity is ``ceil(max_row / lanes)`` beats.

    Members
    -------
    i : In(stream.Signature(keyed_beat(in_shape, lanes)))
    o : Out(stream.Signature(keyed_beat(out_shape, lanes)))
    overflow : Out(1)
        Sticky: a row longer than the capacity arrived (it was truncated).
    """

    def __init__(self, in_shape, out_shape, *, lanes: int, max_row: int):
        if isinstance(max_row, bool) or not isinstance(max_row, int) or max_row < 1:
            raise ValueError(f"max_row must be a positive integer, not {max_row!r}")
        self.lanes, self.max_row = lanes, max_row
        self.max_beats = -(-max_row // lanes)
        self.in_shape, self.out_shape = Shape.cast(in_shape), Shape.cast(out_shape)
        super().__init__({"i": In(stream.Signature(keyed_beat(in_shape, lanes))),
                          "o": Out(stream.Signature(keyed_beat(out_shape, lanes))),
                          "overflow": Out(1)})

    def passes(self) -> list[RowPass]:
        raise NotImplementedError

    def row_step(self, m: Module, gap: int, start, values: dict):
        """Per-row scalars after pass ``gap``. ``values`` holds that pass's reductions, the
        scalars so far, ``length`` and ``beats``, all stable from the ``start`` pulse on. Return
        ``(done, outputs)``: ``done`` is high for one cycle when ``outputs`` (a dict of values,
        merged into the scalars the next pass sees) are valid; they must hold until the next
        ``start``. The default adds nothing."""
        return start, {}

    def row_step_cycles(self, gap: int) -> int:
        """Cycles from a row step's ``start`` to its ``done`` (0 when combinational). A row step
        slower than a row bounds the interval of back-to-back rows from below
        (:meth:`row_interval`)."""
        return 0

    # --- cycle model ---------------------------------------------------------------------------

    def _reduce_delay(self, k: int, row_pass: RowPass) -> int:
        """1 when pass ``k`` reduces: the register between its tree over the lanes and the
        accumulator."""
        return int(bool(row_pass.reductions))

    def pass_depths(self) -> list[int]:
        """Per pass, cycles from issuing a beat to sinking it: the input register (pass 0) or
        the :data:`READ_LATENCY` read registers, then one per stage."""
        return [(1 if k == 0 else READ_LATENCY) + len(p.stages)
                for k, p in enumerate(self.passes())]

    def gap_latencies(self) -> list[int]:
        """Per gap, cycles from the last beat of a row sinking in pass ``k`` to its first beat
        issued in pass ``k + 1``: the optional reduction register, the queue entry completing
        (1), the row step's take (1) and ``start`` (1), ``row_step_cycles``, and the output
        offered to the next pass, which starts its row
        (1)."""
        passes = self.passes()
        return [self._reduce_delay(k, p) + 4 + self.row_step_cycles(k)
                for k, p in enumerate(passes[:-1])]

    @property
    def row_step_interval(self) -> int:
        """The slowest row step's cycles per row: ``row_step_cycles + STEP_HANDOFF``."""
        return max(self.row_step_cycles(k) + STEP_HANDOFF
                   for k in range(len(self.passes()) - 1))

    @property
    def row_fill(self) -> int:
        """``row_latency(n) - passes * B``: the constant part of a lone row's span, the first
        input and the last output cycle both counted (as the element-wise units'
        ``beats + latency``)."""
        depths = self.pass_depths()
        return sum(d - 1 for d in depths) + sum(self.gap_latencies()) + 1

    full_rate_row = 17
    """The shortest row (elements) that buffer slots and hand-off queues are sized to stream at
    ``max(B + ROW_BUBBLE, row_step_interval)``; shorter rows may also wait for a slot."""

    def _base_interval(self, beats: int) -> int:
        return max(beats + ROW_BUBBLE, self.row_step_interval)

    def _slot_span(self, beats: int) -> int:
        """Cycles a row holds its slot: from pass 0's row start (a cycle before its first beat)
        until the final pass's last read has left the slot registers (two cycles after it is
        issued; free the cycle after): ``row_latency - 1 - depth of the final pass + 4``."""
        return self.passes_count * beats + self.row_fill - 1 - self.pass_depths()[-1] + 4

    def _entry_span(self, k: int, beats: int) -> int:
        """Cycles a row holds an entry of gap ``k``'s queue: from its start in pass ``k`` (a
        cycle before its first beat) to the row step's take (freed the cycle after):
        ``B + depth + reduction register + 2``."""
        return beats + self.pass_depths()[k] + self._reduce_delay(k, self.passes()[k]) + 2

    def _sized(self, span) -> int:
        """``max over B >= ceil(full_rate_row / lanes) of ceil(span(B) / interval(B))`` for
        ``span`` linear in ``B``: the ratio rises while the row step sets the interval and
        falls after, so its maximum is at the turn or at an end of the range."""
        low = self.full_rate_beats
        turn = self.row_step_interval - ROW_BUBBLE
        candidates = {low, self.max_beats} | {min(max(b, low), self.max_beats)
                                               for b in (turn - 1, turn, turn + 1)}
        return max(-(-span(b) // self._base_interval(b)) for b in candidates)

    @property
    def passes_count(self) -> int:
        return len(self.passes())

    @property
    def slot_count(self) -> int:
        """Buffer slots (one memory each) so that rows of ``full_rate_row`` elements or more
        stream at ``max(B + ROW_BUBBLE, row_step_interval)``: ``ceil(slot span / interval)``
        rows hold slots at once (6 for the reciprocal softmax units at one lane: a row of 17
        holds its slot 86 - 5 + 4 = 85 cycles, 17 per row)."""
        return self._sized(self._slot_span)

    def handoff_depth(self, k: int) -> int:
        """Entries of gap ``k``'s hand-off queue: ``ceil(entry span / interval)`` rows hold an
        entry at once, for rows of ``full_rate_row`` elements or more."""
        return self._sized(lambda b: self._entry_span(k, b))

    @property
    def full_rate_beats(self) -> int:
        """``ceil(full_rate_row / lanes)``, at most ``max_beats``."""
        return min(-(-self.full_rate_row // self.lanes), self.max_beats)

    def row_interval(self, n: int) -> int:
        """Cycles between the ends of back-to-back rows of ``n`` elements: ``max(max(B,
        full_rate_beats) + ROW_BUBBLE, row_step_interval)``, ``B = ceil(n / lanes)``. Rows
        shorter than ``full_rate_row`` are bounded by that row's interval (every slot, queue
        entry and pass holds a shorter row no longer; the slots and queues are sized for
        ``full_rate_row``, so shorter rows may wait for them)."""
        return self._base_interval(max(-(-n // self.lanes), self.full_rate_beats))

    def row_latency(self, n: int) -> int:
        """Cycles from a lone row's first input beat accepted to its last output beat, both
        counted: ``passes * B + row_fill``."""
        return self.passes_count * -(-n // self.lanes) + self.row_fill

    def elaborate(self, platform):
        passes = self.passes()
        if len(passes) < 2:
            raise ValueError("a row unit needs at least two passes (load, then output)")
        return _RowBuilder(self, passes).build()


class _Beat:
    """A beat's control fields at one pipeline level: ``valid``, ``index`` (beat in the row),
    ``first`` and ``last`` (of its row), ``keep`` (valid lanes) and ``slot`` (its row's slot)."""

    FIELDS = ("valid", "index", "first", "last", "keep", "slot")

    def __init__(self, **values):
        for name in self.FIELDS:
            setattr(self, name, values[name])

    def registered(self, m: Module, enable, name: str) -> "_Beat":
        """The same fields one register later (each loaded while ``enable``)."""
        regs = {f: Signal(getattr(self, f).shape(), name=f"{name}_{f}") for f in self.FIELDS}
        with m.If(enable):
            m.d.sync += [regs[f].eq(getattr(self, f)) for f in self.FIELDS]
        return _Beat(**regs)


class _Carried:
    """Per-row values as seen ``position`` registers down a pass's pipeline: each value's
    register chain (loaded while ``enable``) is built on first use, so only the scalars a
    stage reads travel with the beats."""

    def __init__(self, m: Module, sources: dict, enable, prefix: str):
        self.m, self.enable, self.prefix = m, enable, prefix
        self.chains = {name: [value] for name, value in sources.items()}

    def at(self, position: int) -> "_CarriedView":
        return _CarriedView(self, position)

    def get(self, name: str, position: int):
        chain = self.chains[name]
        while len(chain) <= position:
            reg = Signal(chain[-1].shape(), name=f"{self.prefix}_{name}_at{len(chain)}")
            with self.m.If(self.enable):
                self.m.d.sync += reg.eq(chain[-1])
            chain.append(reg)
        return chain[position]


class _CarriedView(Mapping):
    def __init__(self, carried: _Carried, position: int):
        self.carried, self.position = carried, position

    def __getitem__(self, name):
        if name not in self.carried.chains:
            raise KeyError(name)
        return self.carried.get(name, self.position)

    def __iter__(self):
        return iter(self.carried.chains)

    def __len__(self):
        return len(self.carried.chains)


class _Handoff:
    """Gap ``k``'s queue of row records between pass ``k`` and its row step, and the step's
    output offered to pass ``k + 1``.

    A row allocates an entry at its start (:meth:`allocate`), its scalars are recorded
    (:meth:`record`), its reductions complete it (:meth:`complete`, in row order); the row step
    takes the oldest completed entry when idle, runs, and offers ``{record, outputs}`` in
    ``offered`` (``full``) until pass ``k + 1`` starts that row (``clear``)."""

    def __init__(self, m: Module, k: int, depth: int, fields: dict):
        self.m, self.k, self.depth, self.fields = m, k, depth, fields
        self.entries = {name: Array(Signal(shape, name=f"g{k}_q{e}_{name}") for e in range(depth))
                        for name, shape in fields.items()}
        pointer = range(max(depth, 2))  # at least one bit
        self.alloc_ptr = Signal(pointer, name=f"g{k}_alloc")
        self.done_ptr = Signal(pointer, name=f"g{k}_done")
        self.take_ptr = Signal(pointer, name=f"g{k}_take_at")
        self.used = Signal(range(depth + 1), name=f"g{k}_used")
        self.completed = Signal(range(depth + 1), name=f"g{k}_completed")
        self.room = Signal(name=f"g{k}_room")
        self.allocating = Signal(name=f"g{k}_allocating")
        self.completing = Signal(name=f"g{k}_completing")
        self.take = Signal(name=f"g{k}_take")
        m.d.comb += self.room.eq(self.used < depth)
        m.d.sync += [self.used.eq(self.used + self.allocating - self.take),
                     self.completed.eq(self.completed + self.completing - self.take)]
        for pointer_reg, pulse in ((self.alloc_ptr, self.allocating),
                                   (self.done_ptr, self.completing), (self.take_ptr, self.take)):
            with m.If(pulse):
                m.d.sync += pointer_reg.eq(_wrap(pointer_reg, depth))

    def allocate(self, when):
        """A row starts: its entry is ``alloc_ptr`` (returned)."""
        self.m.d.comb += self.allocating.eq(when)
        return self.alloc_ptr

    def record(self, when, entry, values: dict):
        with self.m.If(when):
            self.m.d.sync += [self.entries[name][entry].eq(v) for name, v in values.items()]

    def complete(self, when, values: dict):
        self.m.d.comb += self.completing.eq(when)
        self.record(when, self.done_ptr, values)

    def run_step(self, unit: "RowUnit"):
        """Take, run the unit's row step, offer its outputs; returns ``(full, clear,
        offered)``."""
        m, k = self.m, self.k
        step_in = {name: Signal(shape, name=f"g{k}_in_{name}")
                   for name, shape in self.fields.items()}
        busy, start = Signal(name=f"g{k}_busy"), Signal(name=f"g{k}_start")
        waiting = Signal(name=f"g{k}_waiting")
        full, clear = Signal(name=f"g{k}_full"), Signal(name=f"g{k}_clear")
        m.d.comb += self.take.eq(~busy & (self.completed != 0))
        m.d.sync += start.eq(self.take)
        with m.If(self.take):
            m.d.sync += busy.eq(1)
            m.d.sync += [step_in[name].eq(self.entries[name][self.take_ptr])
                         for name in self.fields]
        values = {name: v for name, v in step_in.items() if not name.startswith("_")}
        values["beats"] = step_in["_last"] + 1
        done, outputs = unit.row_step(m, k, start, values)
        results = {**step_in, **outputs}
        offered = {name: Signal(Shape.cast(v.shape()), name=f"g{k}_out_{name}")
                   for name, v in results.items()}
        ready = Signal(name=f"g{k}_result")
        write = Signal(name=f"g{k}_offer")
        m.d.comb += [ready.eq(busy & (done | waiting)), write.eq(ready & (~full | clear))]
        with m.If(busy & done & ~write):
            m.d.sync += waiting.eq(1)
        with m.If(write):
            m.d.sync += [busy.eq(0), waiting.eq(0), full.eq(1)]
            m.d.sync += [offered[name].eq(v) for name, v in results.items()]
        with m.Elif(clear):
            m.d.sync += full.eq(0)
        return full, clear, offered


def _wrap(counter, modulus: int):
    """``(counter + 1) mod modulus``."""
    return Mux(counter == modulus - 1, 0, counter + 1)


def _tree(items: list, combine):
    """A balanced tree of ``combine`` over ``items``."""
    while len(items) > 1:
        items = [combine(items[i], items[i + 1]) if i + 1 < len(items) else items[i]
                 for i in range(0, len(items), 2)]
    return items[0]


def _larger(a, b):
    return Mux(b > a, b, a)


class _RowBuilder:
    """Builds a :class:`RowUnit`'s module pass by pass: buffer slots, then for each pass its row
    start, source (input or slot read-back), element pipeline, sink and reductions, and the
    hand-off queue to the next row step; finally the slot ports."""

    def __init__(self, unit: RowUnit, passes: list[RowPass]):
        self.unit, self.passes, self.m = unit, passes, Module()
        self.n_pass, self.lanes = len(passes), unit.lanes
        self.beat_shape = range(unit.max_beats + 1)
        self.length_shape = range(unit.max_beats * unit.lanes + 1)
        self.stored = [Shape.cast(p.out_shape) for p in passes[:-1]]
        self.word_bits = self.lanes * (1 + max(s.width for s in self.stored))  # keep, then data
        self.n_slots = unit.slot_count
        self.slot_shape = range(max(self.n_slots, 2))  # at least one bit
        self.ports = []
        for s in range(self.n_slots):
            memory = Memory(shape=unsigned(self.word_bits), depth=unit.max_beats, init=[])
            self.m.submodules[f"slot{s}"] = memory
            self.ports.append((memory.write_port(), memory.read_port(domain="sync")))
        self.in_flight = Signal(range(self.n_slots + 1), name="in_flight")
        self.allocate, self.free = Signal(name="slot_allocate"), Signal(name="slot_free")
        self.m.d.sync += self.in_flight.eq(self.in_flight + self.allocate - self.free)
        self.overflow = Signal(name="overflow")
        self.m.d.comb += unit.overflow.eq(self.overflow)
        self.writes = []  # (slot, strobe, address, word) of each writing pass's sink
        self.reads = []  # (pass, running, slot, address, advance) of each reading pass
        self.read_data = []  # per slot: its read data, registered

    def build(self) -> Module:
        offered = None
        for k, row_pass in enumerate(self.passes):
            offered = self.add_pass(k, row_pass, offered)
        self.connect_slot_reads()
        self.connect_slot_writes()
        return self.m

    def add_pass(self, k: int, row_pass: RowPass, offered):
        """Build pass ``k``; ``offered`` is the previous gap's ``(full, clear, values)``.
        Returns this gap's (None after the final pass)."""
        m, final = self.m, k == self.n_pass - 1
        advance = Signal(name=f"p{k}_advance")
        o = self.unit.o
        handoff = None
        if not final:
            fields = self._record_fields(k, row_pass, offered)
            handoff = _Handoff(m, k, self.unit.handoff_depth(k), fields)
        if k == 0:
            m.d.comb += advance.eq(1)
            beat, values, carried, length = self._input_source(handoff)
            position = 0
        else:
            m.d.comb += advance.eq(~o.valid | o.ready if final else 1)
            beat, values, carried = self._slot_source(k, advance, offered, handoff)
            position, length = READ_LATENCY, None
        for depth, stage in enumerate(row_pass.stages, start=1):
            ctx_at = carried.at(position)
            values = [self._stage(k, depth, j, stage, value, beat, ctx_at, carried, position,
                                  length, advance)
                      for j, value in enumerate(values)]
            beat = beat.registered(m, advance, f"p{k}_s{depth}")
            position += 1
        out_shape = Shape.cast(row_pass.out_shape)
        outs = []
        for j, value in enumerate(values):
            out = Signal(out_shape, name=f"p{k}_lane{j}_out")
            m.d.comb += out.eq(value)
            outs.append(out)
        sink = Signal(name=f"p{k}_sink")
        m.d.comb += sink.eq(beat.valid & advance)
        if final:
            m.d.comb += [o.valid.eq(beat.valid), o.payload.keep.eq(beat.keep),
                         o.payload.last.eq(beat.last)]
            m.d.comb += [o.payload.data[j].eq(outs[j]) for j in range(self.lanes)]
            return None
        stored = sink & (beat.index != self.unit.max_beats)  # not a beat dropped at overflow
        self.writes.append((beat.slot, stored, beat.index, Cat(beat.keep, *outs)))
        ctx_at = carried.at(position)
        self._reductions(k, row_pass, beat, sink, outs, ctx_at, carried, position, length,
                         handoff)
        return handoff.run_step(self.unit)

    def _stage(self, k, depth, j, stage, value, beat, ctx_at, carried, position, length,
               advance):
        """Lane ``j``'s register after ``stage`` at ``depth``."""
        ctx = LaneContext(ctx_at, beat.index * self.lanes + j,
                          length if length is not None
                          else (lambda: carried.get("length", position)), beat.keep[j])
        expr = stage(value, ctx)
        reg = Signal(expr.shape(), name=f"p{k}_lane{j}_s{depth}")
        with self.m.If(advance):
            self.m.d.sync += reg.eq(expr)
        return reg

    def _record_fields(self, k: int, row_pass: RowPass, offered) -> dict:
        """Shapes of gap ``k``'s row record: the row's scalars (pass 0: ``length``, the elements
        kept, and the last beat's index ``_last``; later: everything the previous gap offered)
        and this pass's reductions."""
        if k == 0:
            scalars = {"length": Shape.cast(self.length_shape),
                       "_last": Shape.cast(self.beat_shape)}
        else:
            scalars = {name: v.shape() for name, v in offered[2].items()}
        return {**scalars, **{name: Shape.cast(r.shape)
                              for name, r in row_pass.reductions.items()}}

    def _new_slot(self, k: int):
        """The pass's current slot; rows take the slots in ring order, from 0."""
        slot = Signal(self.slot_shape, name=f"p{k}_slot", init=self.n_slots - 1)
        return slot

    def _input_source(self, handoff: _Handoff):
        """Pass 0: a row starts (a slot and a queue entry taken) when the previous one ended or
        none runs; its beats are registered (stage 0); beats past the capacity are dropped and
        raise ``overflow`` (a dropped final beat still ends the row, with no valid lanes)."""
        m, unit, lanes = self.m, self.unit, self.lanes
        running = Signal(name="p0_running")
        fresh = Signal(name="p0_fresh")
        issued = Signal(self.beat_shape, name="p0_issued")
        length = Signal(self.length_shape, name="p0_length")
        slot = self._new_slot(0)
        entry = Signal.like(handoff.alloc_ptr, name="p0_entry")
        accept, last_accept, start = (Signal(name="p0_accept"), Signal(name="p0_last_accept"),
                                      Signal(name="p0_start"))
        room = issued < unit.max_beats
        kept = Mux(room, sum(unit.i.payload.keep[j] for j in range(lanes)), 0)
        m.d.comb += [unit.i.ready.eq(running), accept.eq(unit.i.valid & running),
                     last_accept.eq(accept & unit.i.payload.last),
                     start.eq((~running | last_accept) & (self.in_flight < self.n_slots)
                              & handoff.room),
                     self.allocate.eq(start)]
        row_entry = handoff.allocate(start)
        handoff.record(last_accept, entry,
                       {"length": length + kept, "_last": Mux(room, issued, unit.max_beats - 1)})
        beat = _Beat(valid=Signal(name="p0_valid0"), index=Signal(self.beat_shape, name="p0_beat0"),
                     first=Signal(name="p0_first0"), last=Signal(name="p0_last0"),
                     keep=Signal(lanes, name="p0_keep0"), slot=Signal(self.slot_shape,
                                                                     name="p0_slot0"))
        data0 = [Signal(unit.in_shape, name=f"p0_lane{j}_s0") for j in range(lanes)]
        m.d.sync += beat.valid.eq(accept)
        with m.If(accept):
            m.d.sync += [beat.index.eq(issued), beat.first.eq(fresh),
                         beat.last.eq(unit.i.payload.last),
                         beat.keep.eq(Mux(room, unit.i.payload.keep, 0)), beat.slot.eq(slot),
                         fresh.eq(0)]
            m.d.sync += [data0[j].eq(unit.i.payload.data[j]) for j in range(lanes)]
            with m.If(room):
                m.d.sync += [issued.eq(issued + 1), length.eq(length + kept)]
            with m.Else():
                m.d.sync += self.overflow.eq(1)
        with m.If(last_accept):
            m.d.sync += running.eq(0)
        with m.If(start):
            m.d.sync += [running.eq(1), fresh.eq(1), issued.eq(0), length.eq(0),
                         slot.eq(_wrap(slot, self.n_slots)), entry.eq(row_entry)]
        return beat, data0, _Carried(m, {}, 1, "p0"), length

    def _slot_source(self, k: int, advance, offered, handoff):
        """A later pass: a row starts when the previous gap offers its scalars (and, unless
        final, this gap's queue has room), in the cycle its previous row's last beat is issued
        or later; its beats, ``keep`` bits with them, are read back from its slot
        (:data:`READ_LATENCY` registers)."""
        m, lanes = self.m, self.lanes
        full, clear, offered_values = offered
        final = handoff is None
        running, fresh = Signal(name=f"p{k}_running"), Signal(name=f"p{k}_fresh")
        issued = Signal(self.beat_shape, name=f"p{k}_issued")
        slot = self._new_slot(k)
        row = {name: Signal(v.shape(), name=f"p{k}_row_{name}")
               for name, v in offered_values.items()}
        issue, last_issue, start = (Signal(name=f"p{k}_issue"), Signal(name=f"p{k}_last_issue"),
                                    Signal(name=f"p{k}_start"))
        at_last = issued == row["_last"]
        m.d.comb += [issue.eq(running & advance), last_issue.eq(issue & at_last),
                     start.eq((~running | last_issue) & full
                              & (1 if final else handoff.room)),
                     clear.eq(start)]
        if not final:
            entry = handoff.allocate(start)
            handoff.record(start, entry, offered_values)
        with m.If(issue):
            m.d.sync += [issued.eq(issued + 1), fresh.eq(0)]
        with m.If(last_issue):
            m.d.sync += running.eq(0)
        with m.If(start):
            m.d.sync += [running.eq(1), fresh.eq(1), issued.eq(0),
                         slot.eq(_wrap(slot, self.n_slots))]
            m.d.sync += [row[name].eq(v) for name, v in offered_values.items()]
        self.reads.append((k, running, slot, issued, advance))
        beat = _Beat(valid=issue, index=issued, first=fresh, last=at_last,
                     keep=Const(0, lanes), slot=slot)  # keep: read with the data (r3 below)
        beat = beat.registered(m, advance, f"p{k}_r1")
        beat = beat.registered(m, advance, f"p{k}_r2")
        word = Signal(self.word_bits, name=f"p{k}_word")
        with m.If(advance):
            m.d.sync += word.eq(Array(self.read_data_regs())[beat.slot])
        if final:  # the slot's last word is in the pass's own register now
            m.d.comb += self.free.eq(beat.valid & beat.last & advance)
        beat = beat.registered(m, advance, f"p{k}_r3")
        beat.keep = word[:lanes]
        shape = self.stored[k - 1]
        data0 = []
        for j in range(lanes):
            lane = Signal(shape, name=f"p{k}_lane{j}_s0")
            low = lanes + j * shape.width
            m.d.comb += lane.eq(word[low:low + shape.width])
            data0.append(lane)
        sources = {**row, "beats": row["_last"] + 1}
        return beat, data0, _Carried(m, sources, advance, f"p{k}")

    def read_data_regs(self) -> list:
        """Each slot's read data, registered straight from the memory (no logic between)."""
        if not self.read_data:
            self.read_data = [Signal(self.word_bits, name=f"slot{s}_rdata")
                              for s in range(self.n_slots)]
        return self.read_data

    def _reductions(self, k, row_pass, beat, sink, outs, ctx_at, carried, position, length,
                    handoff: _Handoff):
        """Each named reduction over the row: a tree over the lanes, registered, then the
        accumulator, restarted on a row's first beat; the row's final
        values complete its hand-off entry when its last beat is reduced."""
        m, lanes = self.m, self.lanes
        partials = {}
        for name, reduction in row_pass.reductions.items():
            shape = Shape.cast(reduction.shape)
            terms = [reduction.term(v, LaneContext(
                ctx_at, beat.index * lanes + j,
                length if length is not None else (lambda: carried.get("length", position)),
                beat.keep[j]))
                for j, v in enumerate(outs)]
            if reduction.op == "sum":
                combine, identity = (lambda a, b: a + b), 0
            elif reduction.op == "max":
                combine = _larger
                identity = -(1 << (shape.width - 1)) if shape.signed else 0
            else:
                raise ValueError(f"unknown reduction {reduction.op!r}")
            masked = [Mux(beat.keep[j], t, Const(identity, shape)) for j, t in enumerate(terms)]
            partial = Signal(shape, name=f"p{k}_{name}_beat")
            m.d.comb += partial.eq(_tree(masked, combine))
            partials[name] = (partial, combine, shape)
        valid, first, last = sink, beat.first, beat.last
        if self.unit._reduce_delay(k, row_pass):
            regs = {name: Signal(shape, name=f"p{k}_{name}_beat_r")
                    for name, (_, _, shape) in partials.items()}
            valid_r, first_r, last_r = (Signal(name=f"p{k}_reduce_valid"),
                                        Signal(name=f"p{k}_reduce_first"),
                                        Signal(name=f"p{k}_reduce_last"))
            m.d.sync += [valid_r.eq(valid), first_r.eq(first), last_r.eq(last)]
            m.d.sync += [regs[name].eq(p) for name, (p, _, _) in partials.items()]
            partials = {name: (regs[name], c, s) for name, (_, c, s) in partials.items()}
            valid, first, last = valid_r, first_r, last_r
        finals = {}
        for name, (partial, combine, shape) in partials.items():
            acc = Signal(shape, name=f"p{k}_{name}")
            total = Signal(shape, name=f"p{k}_{name}_so_far")
            m.d.comb += total.eq(Mux(first, partial, combine(acc, partial)))
            with m.If(valid):
                m.d.sync += acc.eq(total)
            finals[name] = total
        handoff.complete(valid & last, finals)

    def connect_slot_reads(self):
        """Each slot's read port, addressed by the pass reading that slot; its data registered.
        While the final pass reads a slot (``final_s``, kept until another pass reads it), the
        port and its register hold with the final pass's back-pressure."""
        m = self.m
        rdata = self.read_data_regs()
        final_k = self.n_pass - 1
        for s, (_, read) in enumerate(self.ports):
            final_s = Signal(name=f"slot{s}_final")
            other = Signal(name=f"slot{s}_early_reader")
            enable = Signal(name=f"slot{s}_read_en")
            final_advance = None
            others = []
            for k, running, slot, address, advance in self.reads:
                on_s = running & (slot == s)
                with m.If(on_s):
                    m.d.comb += read.addr.eq(address)
                if k == final_k:
                    final_advance = advance
                    with m.If(on_s):
                        m.d.sync += final_s.eq(1)
                else:
                    others.append(on_s)
                    with m.If(on_s):
                        m.d.sync += final_s.eq(0)
            m.d.comb += [other.eq(Cat(*others).any() if others else 0),
                         enable.eq(~final_s | final_advance | other),
                         read.en.eq(enable)]
            with m.If(enable):
                m.d.sync += rdata[s].eq(read.data)

    def connect_slot_writes(self):
        """Each slot's write port, registered: whichever pass sinks into that slot."""
        m = self.m
        for s, (write, _) in enumerate(self.ports):
            en = Signal(name=f"slot{s}_wen")
            addr = Signal.like(write.addr, name=f"slot{s}_waddr")
            word = Signal(self.word_bits, name=f"slot{s}_wdata")
            m.d.sync += en.eq(0)
            for slot, strobe, address, value in self.writes:
                with m.If(strobe & (slot == s)):
                    m.d.sync += [en.eq(1), addr.eq(address), word.eq(value)]
            m.d.comb += [write.en.eq(en), write.addr.eq(addr), write.data.eq(word)]
