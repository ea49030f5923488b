"""The row-unit framework on a toy three-pass row operator (``toy_row``), against numpy, in
Amaranth's simulator: partial final beats, overlapped rows and back-pressure."""
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from toy_row import ToyRowUnit, toy_golden


def run_rows(unit, rows, *, stall, seed):
    rng = random.Random(seed)
    received, cycles = [], {"first": None, "last": None}
    lanes = unit.lanes

    async def source(ctx):
        for row in rows:
            for start in range(0, len(row), lanes):
                chunk = row[start:start + lanes]
                while rng.random() < stall:
                    ctx.set(unit.i.valid, 0)
                    await ctx.tick()
                ctx.set(unit.i.payload, {"data": list(chunk) + [0] * (lanes - len(chunk)),
                                         "keep": (1 << len(chunk)) - 1,
                                         "last": start + lanes >= len(row)})
                ctx.set(unit.i.valid, 1)
                await ctx.tick().until(unit.i.ready)
        ctx.set(unit.i.valid, 0)

    async def sink(ctx):
        row, cycle = [], 0
        while len(received) < len(rows):
            ready = rng.random() >= stall
            ctx.set(unit.o.ready, ready)
            transfer = ready and ctx.get(unit.o.valid)  # sampled before the clock edge
            beat = ctx.get(unit.o.payload)
            await ctx.tick()
            cycle += 1
            if transfer:
                keep = beat.keep
                row += [beat.data[j] for j in range(lanes) if keep >> j & 1]
                cycles["first"] = cycles["first"] or cycle
                if beat.last:
                    received.append(row)
                    row = []
                    cycles["last"] = cycle
            if cycle > 200_000:
                break

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return received, cycles


@pytest.mark.parametrize("lanes, stall", [(1, 0.0), (3, 0.3)])
def test_toy_rows_match_numpy(lanes, stall):
    rng = np.random.default_rng(lanes)
    rows = [[-128] * 5, [7], [3] * 12, list(range(-128, -116)), [127, -128, 0]]
    rows += [list(rng.integers(-128, 128, rng.integers(1, 13))) for _ in range(40)]
    unit = ToyRowUnit(lanes=lanes, max_row=12)
    got, _ = run_rows(unit, rows, stall=stall, seed=lanes)
    assert got == [toy_golden(r) for r in rows]
    assert not unit.overflow.init


def test_back_to_back_rows_reach_the_stated_interval():
    unit = ToyRowUnit(lanes=2, max_row=64)
    rows = [list(np.random.default_rng(9).integers(-128, 128, 64)) for _ in range(12)]
    got, cycles = run_rows(unit, rows, stall=0.0, seed=0)
    assert got == [toy_golden(r) for r in rows]
    interval = (cycles["last"] - cycles["first"]) / (len(rows) - 1)
    assert interval <= 32 + unit.row_overhead
