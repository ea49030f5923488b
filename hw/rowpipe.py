"""Row units (softmax, LayerNorm): a row is buffered and read in several passes, rows overlapped.

A row arrives as beats of ``lanes`` elements (``keep`` marks the valid lanes of the final, possibly
partial, beat; ``last`` ends the row). A row unit is a chain of :class:`RowPass` es. Pass 0 takes
the input stream and writes the row into a buffer slot; each later pass reads its row back from
that slot, applies its per-element pipeline and writes the result back in place, and the final
pass streams the result out. Each pass can reduce its outputs over the row (max or sum); between
pass ``k`` and ``k + 1`` a *row step* turns those reductions into per-row scalars (a register
copy, a sequential divider, a square root...).

With ``N`` passes there are ``N + 1`` buffer slots: the passes work on consecutive rows at once
and one more row can wait while a row step runs, so back-to-back rows are accepted at the rate
of the slowest pass or row step: the initiation interval is at most ``ceil(n / lanes)`` beats
plus the per-row overhead (pipeline drain, row step) that :attr:`RowUnit.row_overhead` states,
and the testbenches measure it. A row step slower than a row (a 32-cycle divider after a
16-beat row) bounds the interval from below.

Rows longer than ``max_row`` elements are truncated to ``max_row`` (later beats are dropped) and
raise the sticky ``overflow`` output until reset; they are never silently wrapped.
"""
from dataclasses import dataclass, field
from typing import Callable

from amaranth import Array, Cat, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out


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
    values of ``out_shape``, and named ``reductions`` of those values over the row."""
    out_shape: object
    stages: list = field(default_factory=list)
    reductions: dict = field(default_factory=dict)


class LaneContext:
    """What a stage function sees besides its value: the row's scalars (constant during the row),
    the element's index in the row and the row length."""

    def __init__(self, scalars: dict, index, length):
        self.scalars, self.index, self.length = scalars, index, length


class RowUnit(wiring.Component):
    """Base of the row units. Subclasses define :meth:`passes` and may define :meth:`row_step`.

    Rows hold at least one element; only the final beat of a row may be partial, with its valid
    lanes the low ``keep`` bits. Capacity is ``ceil(max_row / lanes)`` beats.

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
        merged into the scalars the next pass sees) are valid. The default adds nothing."""
        return start, {}

    def row_step_cycles(self, gap: int) -> int:
        """Cycles from a row step's ``start`` to its ``done`` (0 when combinational)."""
        return 0

    @property
    def row_overhead(self) -> int:
        """Worst per-row cycles beyond the beats, over the passes: fill and drain of the pass
        pipeline, hand-over into its row step, the step itself (``done`` comes one cycle after
        its last result bit) and the hand-off to the next pass. The initiation interval of back-to-back rows is ``beats + row_overhead`` at most."""
        passes = self.passes()
        worst = 0
        for k, row_pass in enumerate(passes):
            step = self.row_step_cycles(k) + 4 if k < len(passes) - 1 else 0
            worst = max(worst, len(row_pass.stages) + 3 + step)
        return worst

    def elaborate(self, platform):
        passes = self.passes()
        if len(passes) < 2:
            raise ValueError("a row unit needs at least two passes (load, then output)")
        rows = _RowBuilder(self, passes)
        handoff = None
        for k, row_pass in enumerate(passes):
            handoff = rows.add_pass(k, row_pass, handoff)
        rows.connect_slot_writes()
        return rows.m


class _PassState:
    """One pass's control registers: the slot it works on, its phase (``running`` while beats
    are issued, ``draining`` while the pipeline empties, ``holding`` while its reductions wait
    for the row step) and the beats issued so far."""

    def __init__(self, k: int, n_slots: int, beat_shape):
        self.slot = Signal(range(n_slots), name=f"p{k}_slot")
        self.running = Signal(name=f"p{k}_running")
        self.draining = Signal(name=f"p{k}_draining")
        self.holding = Signal(name=f"p{k}_holding")
        self.issued = Signal(beat_shape, name=f"p{k}_issued")
        self.can_start = Signal(name=f"p{k}_can_start")
        self.idle = ~(self.running | self.draining | self.holding)


class _RowBuilder:
    """Builds a :class:`RowUnit`'s module pass by pass: buffer slots, then for each pass its row
    scalars, source (input or slot read-back), element pipeline, sink, reductions and the
    hand-off to the next pass's row step; finally the slot write ports."""

    def __init__(self, unit: RowUnit, passes: list[RowPass]):
        self.unit, self.passes, self.m = unit, passes, Module()
        self.n_pass, self.lanes = len(passes), unit.lanes
        self.beat_shape = range(unit.max_beats + 1)
        self.length_shape = range(unit.max_beats * unit.lanes + 1)
        self.stored = [Shape.cast(p.out_shape) for p in passes[:-1]]
        self.word_bits = self.lanes * max(s.width for s in self.stored)
        self.n_slots = self.n_pass + 1  # one more than passes: a row waits while a step runs
        self.ports = []
        for s in range(self.n_slots):
            memory = Memory(shape=unsigned(self.word_bits), depth=unit.max_beats, init=[])
            self.m.submodules[f"slot{s}"] = memory
            self.ports.append((memory.write_port(), memory.read_port(domain="sync")))
        self.in_flight = Signal(range(self.n_slots + 1), name="in_flight")
        self.started, self.finished = Signal(), Signal(name="finished")
        self.m.d.sync += self.in_flight.eq(self.in_flight + self.started - self.finished)
        self.overflow = Signal(name="overflow")
        self.m.d.comb += unit.overflow.eq(self.overflow)
        self.writes = []  # (pass slot, strobe, address, word)

    def add_pass(self, k: int, row_pass: RowPass, handoff):
        """Build pass ``k``; ``handoff`` is the previous gap's ``(full, clear, offered)``.
        Returns this pass's hand-off to the next row step (None for the final pass)."""
        m, first, final = self.m, k == 0, k == self.n_pass - 1
        state = _PassState(k, self.n_slots, self.beat_shape)
        scalars, length, beats = self._row_scalars(k, state, handoff)
        advance = Signal(name=f"p{k}_advance")
        o = self.unit.o
        m.d.comb += advance.eq(~o.valid | o.ready if final else 1)
        if first:
            source = self._input_source(state, length)
        else:
            source = self._slot_source(k, state, advance, length, beats)
        valids, index, keep, outs = self._element_pipeline(k, row_pass, source, advance,
                                                           scalars, length)
        sink = Signal(name=f"p{k}_sink")
        m.d.comb += sink.eq(valids[-1] & advance)
        if final:
            m.d.comb += [o.valid.eq(valids[-1]), o.payload.keep.eq(keep),
                         o.payload.last.eq(index + 1 == beats)]
            m.d.comb += [o.payload.data[j].eq(outs[j]) for j in range(self.lanes)]
        else:
            self.writes.append((state.slot, sink, index, Cat(*outs)))
        reduced = self._reductions(k, row_pass, state, sink, outs, keep, index, scalars, length)
        return self._row_done(k, state, valids, scalars, length, beats, reduced)

    def _row_scalars(self, k: int, state: _PassState, handoff):
        """The pass's per-row scalars, latched at the row's start: pass 0 counts its row's
        length; later passes take the previous row step's outputs."""
        m = self.m
        if k == 0:
            length = Signal(self.length_shape, name="p0_length")
            beats, scalars = state.issued, {}
            m.d.comb += [state.can_start.eq(state.idle & (self.in_flight < self.n_slots)),
                         self.started.eq(state.can_start)]
        else:
            full, clear, offered = handoff
            scalars = {name: Signal(reg.shape(), name=f"p{k}_row_{name}")
                       for name, reg in offered.items()}
            length, beats = scalars["length"], scalars["beats"]
            m.d.comb += [state.can_start.eq(state.idle & full), clear.eq(state.can_start)]
            with m.If(state.can_start):
                m.d.sync += [scalars[name].eq(reg) for name, reg in offered.items()]
        with m.If(state.can_start):
            m.d.sync += [state.running.eq(1), state.issued.eq(0)]
            if k == 0:
                m.d.sync += length.eq(0)
        return scalars, length, beats

    def _source_registers(self, k: int):
        return (Signal(name=f"p{k}_valid0"), Signal(self.beat_shape, name=f"p{k}_beat0"),
                Signal(self.lanes, name=f"p{k}_keep0"))

    def _input_source(self, state: _PassState, length):
        """Stage 0 of pass 0: the input beat, registered; beats past the capacity are dropped
        and raise ``overflow``."""
        m, unit, lanes = self.m, self.unit, self.lanes
        valid0, index0, keep0 = self._source_registers(0)
        accept = Signal(name="p0_accept")
        room = state.issued < unit.max_beats
        m.d.comb += [unit.i.ready.eq(state.running), accept.eq(unit.i.valid & state.running)]
        data0 = [Signal(unit.in_shape, name=f"p0_lane{j}_s0") for j in range(lanes)]
        m.d.sync += valid0.eq(accept & room)
        with m.If(accept):
            m.d.sync += [index0.eq(state.issued), keep0.eq(unit.i.payload.keep)]
            m.d.sync += [data0[j].eq(unit.i.payload.data[j]) for j in range(lanes)]
            with m.If(room):
                kept = sum(unit.i.payload.keep[j] for j in range(lanes))
                m.d.sync += [state.issued.eq(state.issued + 1), length.eq(length + kept)]
            with m.Else():
                m.d.sync += self.overflow.eq(1)
            with m.If(unit.i.payload.last):
                m.d.sync += [state.running.eq(0), state.draining.eq(1)]
        return valid0, index0, keep0, data0

    def _slot_source(self, k: int, state: _PassState, advance, length, beats):
        """Stage 0 of a later pass: the row's beats read back from its slot (one cycle read)."""
        m, lanes = self.m, self.lanes
        valid0, index0, keep0 = self._source_registers(k)
        issue = Signal(name=f"p{k}_issue")
        m.d.comb += issue.eq(state.running & advance)
        for s, (_, read) in enumerate(self.ports):  # an idle pass may share a slot number
            with m.If((state.running | state.draining) & (state.slot == s)):
                m.d.comb += [read.addr.eq(state.issued), read.en.eq(advance)]
        with m.If(advance):
            m.d.sync += [valid0.eq(issue), index0.eq(state.issued),
                         keep0.eq(Cat(*[state.issued * lanes + j < length
                                        for j in range(lanes)]))]
        with m.If(issue):
            m.d.sync += state.issued.eq(state.issued + 1)
            with m.If(state.issued + 1 == beats):
                m.d.sync += [state.running.eq(0), state.draining.eq(1)]
        word = Signal(self.word_bits, name=f"p{k}_word")
        m.d.comb += word.eq(Array(read.data for _, read in self.ports)[state.slot])
        shape = self.stored[k - 1]
        data0 = []
        for j in range(lanes):
            lane = Signal(shape, name=f"p{k}_lane{j}_s0")
            m.d.comb += lane.eq(word[j * shape.width:(j + 1) * shape.width])
            data0.append(lane)
        return valid0, index0, keep0, data0

    def _element_pipeline(self, k: int, row_pass: RowPass, source, advance, scalars, length):
        """The pass's registered per-element stages; returns the valid chain and the final
        beat's index, keep and lane values (cast to the pass's ``out_shape``)."""
        m, lanes = self.m, self.lanes
        valid0, index, keep, values = source
        valids = [valid0]
        for depth, stage in enumerate(row_pass.stages, start=1):
            next_values = []
            for j, value in enumerate(values):
                expr = stage(value, LaneContext(scalars, index * lanes + j, length))
                reg = Signal(expr.shape(), name=f"p{k}_lane{j}_s{depth}")
                with m.If(advance):
                    m.d.sync += reg.eq(expr)
                next_values.append(reg)
            valid_r = Signal(name=f"p{k}_valid{depth}")
            index_r = Signal(self.beat_shape, name=f"p{k}_beat{depth}")
            keep_r = Signal(lanes, name=f"p{k}_keep{depth}")
            with m.If(advance):
                m.d.sync += [valid_r.eq(valids[-1]), index_r.eq(index), keep_r.eq(keep)]
            valids.append(valid_r)
            index, keep, values = index_r, keep_r, next_values
        out_shape = Shape.cast(row_pass.out_shape)
        outs = []
        for j, value in enumerate(values):
            out = Signal(out_shape, name=f"p{k}_lane{j}_out")
            m.d.comb += out.eq(value)
            outs.append(out)
        return valids, index, keep, outs

    def _reductions(self, k, row_pass, state, sink, outs, keep, index, scalars, length) -> dict:
        """Each named reduction (max or sum) of the row's valid elements, reset at the row's
        start and updated on every sunk beat."""
        m, lanes = self.m, self.lanes
        reduced = {}
        for name, reduction in row_pass.reductions.items():
            shape = Shape.cast(reduction.shape)
            acc = Signal(shape, name=f"p{k}_{name}")
            terms = [reduction.term(v, LaneContext(scalars, index * lanes + j, length))
                     for j, v in enumerate(outs)]
            if reduction.op == "sum":
                update = acc + sum(Mux(keep[j], t, 0) for j, t in enumerate(terms))
                reset = 0
            elif reduction.op == "max":
                update = acc
                for j, t in enumerate(terms):
                    update = Mux(keep[j] & (t > update), t, update)
                reset = -(1 << (shape.width - 1)) if shape.signed else 0
            else:
                raise ValueError(f"unknown reduction {reduction.op!r}")
            with m.If(state.can_start):
                m.d.sync += acc.eq(reset)
            with m.Elif(sink):
                m.d.sync += acc.eq(update)
            reduced[name] = acc
        return reduced

    def _row_done(self, k, state, valids, scalars, length, beats, reduced):
        """When the row's last beat has left the pipeline: free the slot (final pass) or hand
        the reductions and scalars to this gap's row step; returns the step's hand-off."""
        m = self.m
        emptied = Signal(name=f"p{k}_emptied")
        m.d.comb += emptied.eq(state.draining & ~Cat(*valids).any())
        done_row = Signal(name=f"p{k}_done_row")
        handoff = None
        if k == self.n_pass - 1:
            m.d.comb += [done_row.eq(emptied), self.finished.eq(emptied)]
            with m.If(emptied):
                m.d.sync += state.draining.eq(0)
        else:
            handoff = self._row_step(k, state, emptied, done_row,
                                     {**scalars, "length": length, "beats": beats, **reduced})
        with m.If(done_row):
            m.d.sync += state.slot.eq(Mux(state.slot == self.n_slots - 1, 0, state.slot + 1))
        return handoff

    def _row_step(self, k, state, emptied, done_row, step_values):
        """Gap ``k``: latch the pass's values, run the unit's :meth:`RowUnit.row_step`, and
        offer its outputs to the next pass until that pass takes them."""
        m = self.m
        step_in = {name: Signal(value.shape(), name=f"g{k}_in_{name}")
                   for name, value in step_values.items()}
        busy, start = Signal(name=f"g{k}_busy"), Signal(name=f"g{k}_start")
        full = Signal(name=f"g{k}_full")
        clear = Signal(name=f"g{k}_clear")
        with m.If(emptied):
            m.d.sync += [state.draining.eq(0), state.holding.eq(1)]
        take = Signal(name=f"g{k}_take")
        m.d.comb += [take.eq(state.holding & ~busy & ~full), done_row.eq(take)]
        with m.If(take):
            m.d.sync += [state.holding.eq(0), busy.eq(1), start.eq(1)]
            m.d.sync += [step_in[name].eq(value) for name, value in step_values.items()]
        with m.Else():
            m.d.sync += start.eq(0)
        step_done, outputs = self.unit.row_step(m, k, start, dict(step_in))
        offered = {name: Signal(Shape.cast(value.shape()), name=f"g{k}_out_{name}")
                   for name, value in {**step_in, **outputs}.items()}
        with m.If(busy & step_done):
            m.d.sync += [busy.eq(0), full.eq(1)]
            m.d.sync += [offered[name].eq(value) for name, value in {**step_in, **outputs}.items()]
        with m.Elif(clear):
            m.d.sync += full.eq(0)
        return full, clear, offered

    def connect_slot_writes(self):
        """Each slot's write port, driven by whichever pass writes that slot."""
        for s, (write, _) in enumerate(self.ports):
            for slot, strobe, address, word in self.writes:
                with self.m.If(strobe & (slot == s)):
                    self.m.d.comb += [write.en.eq(1), write.addr.eq(address),
                                      write.data.eq(word)]
