"""Testbench plumbing in the style of cocotbext-axi: a ``TB`` owns the clock, reset, a stream
source and a stream sink, each with optional random stalls (idle / back-pressure inserters).

A beat is packed as the unit's payload: lane ``k`` at bits ``[k*w, (k+1)*w)``, ``last`` on top.
"""
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotb.utils import get_sim_time

CLOCK_NS = 10


def to_field(value: int, bits: int) -> int:
    """Two's-complement bits of ``value`` in a ``bits``-wide field."""
    return value & ((1 << bits) - 1)


def from_field(raw: int, bits: int, signed: bool) -> int:
    """Integer value of a ``bits``-wide field."""
    if signed and raw >> (bits - 1):
        return raw - (1 << bits)
    return raw


class BeatFormat:
    """Packs and unpacks ``lanes`` elements of ``bits`` bits, then (row units) ``keep``, then
    ``last`` on top, as Amaranth lays out ``intvit.hw.stream.row_beat`` / ``intvit.hw.rowpipe.keyed_beat``."""

    def __init__(self, bits: int, signed: bool, lanes: int, keyed: bool = False):
        self.bits, self.signed, self.lanes, self.keyed = bits, signed, lanes, keyed

    def pack(self, elements, last: bool, keep: int | None = None) -> int:
        word = 0
        for k, value in enumerate(elements):
            word |= to_field(int(value), self.bits) << (k * self.bits)
        top = self.lanes * self.bits
        if self.keyed:
            word |= (((1 << self.lanes) - 1) if keep is None else keep) << top
            top += self.lanes
        return word | (int(last) << top)

    def unpack(self, word: int) -> tuple[list[int], bool]:
        """``(elements, last)``; see :meth:`unpack_keyed` for row beats."""
        elements, last, _ = self.unpack_keyed(word)
        return elements, last

    def unpack_keyed(self, word: int) -> tuple[list[int], bool, int]:
        """``(elements, last, keep)``; ``keep`` is all ones for unkeyed beats."""
        mask = (1 << self.bits) - 1
        elements = [from_field((word >> (k * self.bits)) & mask, self.bits, self.signed)
                    for k in range(self.lanes)]
        top = self.lanes * self.bits
        keep = (1 << self.lanes) - 1
        if self.keyed:
            keep = (word >> top) & keep
            top += self.lanes
        return elements, bool(word >> top & 1), keep


class TB:
    """Clock, reset, and the unit's ``i`` (source) and ``o`` (sink) streams.

    ``source_idle`` and ``sink_stall`` are probabilities of withholding ``valid`` / ``ready`` on
    a cycle; 0 streams at full rate.
    """

    def __init__(self, dut, in_format: BeatFormat, out_format: BeatFormat, *,
                 source_idle: float = 0.0, sink_stall: float = 0.0, seed: int = 1):
        self.dut = dut
        self.in_format, self.out_format = in_format, out_format
        self.source_idle, self.sink_stall = source_idle, sink_stall
        self.rng = random.Random(seed)
        self.first_accept = None
        self.last_receive = None
        self.receive_cycles = []

    async def start(self):
        cocotb.start_soon(Clock(self.dut.clk, CLOCK_NS, unit="ns").start())
        self.dut.i_valid.value = 0
        self.dut.o_ready.value = 0
        self.dut.rst.value = 1
        for _ in range(2):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    @property
    def cycle(self) -> int:
        """Clock cycles since the simulation started (from simulated time: no per-cycle
        coroutine)."""
        return int(get_sim_time(unit="ns")) // CLOCK_NS

    async def send(self, beats):
        """Drive ``beats`` (``(elements, last)`` or ``(elements, last, keep)``) on ``i``
        honouring ``i.ready``."""
        dut = self.dut
        for elements, last, *keep in beats:
            while self.source_idle and self.rng.random() < self.source_idle:
                dut.i_valid.value = 0
                await RisingEdge(dut.clk)
            dut.i_payload.value = self.in_format.pack(elements, last, *keep)
            dut.i_valid.value = 1
            await RisingEdge(dut.clk)
            while not dut.i_ready.value:
                await RisingEdge(dut.clk)
            if self.first_accept is None:
                self.first_accept = self.cycle
        dut.i_valid.value = 0

    async def receive(self, count: int, timeout_cycles: int):
        """Collect ``count`` beats ``(elements, last, keep)`` from ``o`` with random
        back-pressure; stop after ``timeout_cycles`` cycles without one. Records the cycle of
        every beat in ``self.receive_cycles``."""
        dut = self.dut
        beats = []
        idle = 0
        while len(beats) < count and idle < timeout_cycles:
            ready = not (self.sink_stall and self.rng.random() < self.sink_stall)
            dut.o_ready.value = int(ready)
            await RisingEdge(dut.clk)
            if ready and dut.o_valid.value:
                beats.append(self.out_format.unpack_keyed(dut.o_payload.value.to_unsigned()))
                self.last_receive = self.cycle
                self.receive_cycles.append(self.cycle)
                idle = 0
            else:
                idle += 1
        dut.o_ready.value = 0
        return beats


def first_output_latency(tb: TB) -> int | None:
    """Cycles from the first accepted input beat to the first output beat."""
    if tb.first_accept is None or not tb.receive_cycles:
        return None
    return tb.receive_cycles[0] - tb.first_accept
