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
        m = Module()
        passes = self.passes()
        n_pass = len(passes)
        if n_pass < 2:
            raise ValueError("a row unit needs at least two passes (load, then output)")
        lanes = self.lanes
        beat_shape = range(self.max_beats + 1)
        length_shape = range(self.max_beats * lanes + 1)
        stored = [Shape.cast(p.out_shape) for p in passes[:-1]]
        word_bits = lanes * max(s.width for s in stored)

        ports = []
        n_slots = n_pass + 1  # one slot more than passes: a row waits in it while a row step runs
        for s in range(n_slots):
            memory = Memory(shape=unsigned(word_bits), depth=self.max_beats, init=[])
            m.submodules[f"slot{s}"] = memory
            ports.append((memory.write_port(), memory.read_port(domain="sync")))

        in_flight = Signal(range(n_slots + 1))
        started, finished = Signal(), Signal()
        m.d.sync += in_flight.eq(in_flight + started - finished)
        overflow = Signal()
        m.d.comb += self.overflow.eq(overflow)

        handoff = None  # (full flag, clear strobe, registers) feeding the next pass
        writes = []  # (pass slot, strobe, address, word)
        for k, row_pass in enumerate(passes):
            first, final = k == 0, k == n_pass - 1
            slot = Signal(range(n_slots), name=f"p{k}_slot")
            running = Signal(name=f"p{k}_running")
            draining = Signal(name=f"p{k}_draining")
            holding = Signal(name=f"p{k}_holding")  # reductions ready, waiting for the step
            issued = Signal(beat_shape, name=f"p{k}_issued")
            can_start = Signal(name=f"p{k}_can_start")
            idle = ~(running | draining | holding)

            # Per-row scalars of this pass, latched at the row's start.
            if first:
                length = Signal(length_shape, name="p0_length")
                beats = issued
                scalars = {}
                m.d.comb += [can_start.eq(idle & (in_flight < n_slots)), started.eq(can_start)]
            else:
                full, clear, offered = handoff
                scalars = {name: Signal(reg.shape(), name=f"p{k}_row_{name}")
                           for name, reg in offered.items()}
                length, beats = scalars["length"], scalars["beats"]
                m.d.comb += [can_start.eq(idle & full), clear.eq(can_start)]
                with m.If(can_start):
                    m.d.sync += [scalars[name].eq(reg) for name, reg in offered.items()]
            with m.If(can_start):
                m.d.sync += [running.eq(1), issued.eq(0)]
                if first:
                    m.d.sync += length.eq(0)

            advance = Signal(name=f"p{k}_advance")
            m.d.comb += advance.eq(~self.o.valid | self.o.ready if final else 1)

            # Stage 0: the source register (the input beat, or the buffered beat read back).
            valid0 = Signal(name=f"p{k}_valid0")
            index0 = Signal(beat_shape, name=f"p{k}_beat0")
            keep0 = Signal(lanes, name=f"p{k}_keep0")
            if first:
                accept = Signal(name="p0_accept")
                room = issued < self.max_beats
                m.d.comb += [self.i.ready.eq(running), accept.eq(self.i.valid & running)]
                data0 = [Signal(self.in_shape, name=f"p0_lane{j}_s0") for j in range(lanes)]
                m.d.sync += valid0.eq(accept & room)
                with m.If(accept):
                    m.d.sync += [index0.eq(issued), keep0.eq(self.i.payload.keep)]
                    m.d.sync += [data0[j].eq(self.i.payload.data[j]) for j in range(lanes)]
                    with m.If(room):
                        kept = sum(self.i.payload.keep[j] for j in range(lanes))
                        m.d.sync += [issued.eq(issued + 1), length.eq(length + kept)]
                    with m.Else():
                        m.d.sync += overflow.eq(1)
                    with m.If(self.i.payload.last):
                        m.d.sync += [running.eq(0), draining.eq(1)]
            else:
                issue = Signal(name=f"p{k}_issue")
                m.d.comb += issue.eq(running & advance)
                for s, (_, read) in enumerate(ports):  # an idle pass may share a slot number
                    with m.If((running | draining) & (slot == s)):
                        m.d.comb += [read.addr.eq(issued), read.en.eq(advance)]
                with m.If(advance):
                    m.d.sync += [valid0.eq(issue), index0.eq(issued),
                                 keep0.eq(Cat(*[issued * lanes + j < length
                                                for j in range(lanes)]))]
                with m.If(issue):
                    m.d.sync += issued.eq(issued + 1)
                    with m.If(issued + 1 == beats):
                        m.d.sync += [running.eq(0), draining.eq(1)]
                word = Signal(word_bits, name=f"p{k}_word")
                m.d.comb += word.eq(Array(read.data for _, read in ports)[slot])
                shape = stored[k - 1]
                data0 = []
                for j in range(lanes):
                    lane = Signal(shape, name=f"p{k}_lane{j}_s0")
                    m.d.comb += lane.eq(word[j * shape.width:(j + 1) * shape.width])
                    data0.append(lane)

            # The per-element pipeline.
            valids, index, keep, values = [valid0], index0, keep0, data0
            for depth, stage in enumerate(row_pass.stages, start=1):
                next_values = []
                for j, value in enumerate(values):
                    expr = stage(value, LaneContext(scalars, index * lanes + j, length))
                    reg = Signal(expr.shape(), name=f"p{k}_lane{j}_s{depth}")
                    with m.If(advance):
                        m.d.sync += reg.eq(expr)
                    next_values.append(reg)
                valid_r = Signal(name=f"p{k}_valid{depth}")
                index_r = Signal(beat_shape, name=f"p{k}_beat{depth}")
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

            # Sink: back into the slot, or out of the unit.
            sink = Signal(name=f"p{k}_sink")
            m.d.comb += sink.eq(valids[-1] & advance)
            if final:
                m.d.comb += [self.o.valid.eq(valids[-1]), self.o.payload.keep.eq(keep),
                             self.o.payload.last.eq(index + 1 == beats)]
                m.d.comb += [self.o.payload.data[j].eq(outs[j]) for j in range(lanes)]
            else:
                writes.append((slot, sink, index, Cat(*outs)))

            # Reductions of the row's valid elements.
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
                with m.If(can_start):
                    m.d.sync += acc.eq(reset)
                with m.Elif(sink):
                    m.d.sync += acc.eq(update)
                reduced[name] = acc

            # The row is through once none of its beats is left in the pipeline.
            emptied = Signal(name=f"p{k}_emptied")
            m.d.comb += emptied.eq(draining & ~Cat(*valids).any())
            done_row = Signal(name=f"p{k}_done_row")
            if final:
                m.d.comb += [done_row.eq(emptied), finished.eq(emptied)]
                with m.If(emptied):
                    m.d.sync += draining.eq(0)
                handoff = None
            else:
                # Hand the reductions and scalars to this gap's row step.
                step_values = {**scalars, "length": length, "beats": beats, **reduced}
                step_in = {name: Signal(value.shape(), name=f"g{k}_in_{name}")
                           for name, value in step_values.items()}
                busy, start = Signal(name=f"g{k}_busy"), Signal(name=f"g{k}_start")
                full = Signal(name=f"g{k}_full")
                clear = Signal(name=f"g{k}_clear")
                with m.If(emptied):
                    m.d.sync += [draining.eq(0), holding.eq(1)]
                take = Signal(name=f"g{k}_take")
                m.d.comb += [take.eq(holding & ~busy & ~full), done_row.eq(take)]
                with m.If(take):
                    m.d.sync += [holding.eq(0), busy.eq(1), start.eq(1)]
                    m.d.sync += [step_in[name].eq(value) for name, value in step_values.items()]
                with m.Else():
                    m.d.sync += start.eq(0)
                step_done, outputs = self.row_step(m, k, start, dict(step_in))
                offered = {name: Signal(Shape.cast(value.shape()), name=f"g{k}_out_{name}")
                           for name, value in {**step_in, **outputs}.items()}
                with m.If(busy & step_done):
                    m.d.sync += [busy.eq(0), full.eq(1)]
                    m.d.sync += [offered[name].eq(value)
                                 for name, value in {**step_in, **outputs}.items()]
                with m.Elif(clear):
                    m.d.sync += full.eq(0)
                handoff = (full, clear, offered)
            with m.If(done_row):
                m.d.sync += slot.eq(Mux(slot == n_slots - 1, 0, slot + 1))

        for s, (write, _) in enumerate(ports):
            for slot, strobe, address, word in writes:
                with m.If(strobe & (slot == s)):
                    m.d.comb += [write.en.eq(1), write.addr.eq(address), write.data.eq(word)]
        return m
