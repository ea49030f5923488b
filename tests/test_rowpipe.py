"""The row-unit framework on a toy three-pass row operator (``toy_row``), against numpy, and the
softmax units against their golden model, in Amaranth's simulator: partial final beats,
overlapped rows, back-pressure, and the cycle model (:meth:`RowUnit.row_interval`,
:meth:`RowUnit.row_latency`) as a bound on the measured row intervals and spans."""
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from intvit.golden_model.vectors import keep_bits
from toy_row import ToyRowUnit, toy_golden


def run_rows(unit, rows, *, stall, seed, keeps=None, out_keeps=None):
    """Stream ``rows`` (with their ``keeps`` masks, default every element) through ``unit``;
    return the output rows, the kept lanes only without ``keeps``, else every lane of the row
    (``out_keeps``, a list, receives each output row's keep bits), and the cycle counts."""
    rng = random.Random(seed)
    received, cycles = [], {"first": None, "last": None, "ends": [], "accept": None}
    lanes = unit.lanes

    async def source(ctx):
        for index, row in enumerate(rows):
            for start in range(0, len(row), lanes):
                chunk = row[start:start + lanes]
                while rng.random() < stall:
                    ctx.set(unit.i.valid, 0)
                    await ctx.tick()
                keep = keep_bits(None if keeps is None else keeps[index], start, len(chunk))
                ctx.set(unit.i.payload, {"data": list(chunk) + [0] * (lanes - len(chunk)),
                                         "keep": keep, "last": start + lanes >= len(row)})
                ctx.set(unit.i.valid, 1)
                while True:
                    ready = ctx.get(unit.i.ready)
                    await ctx.tick()
                    cycles["source"] = cycles.get("source", 0) + 1
                    if ready:
                        cycles["accept"] = cycles["accept"] or cycles["source"]
                        break
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
                if keeps is None:
                    row += [beat.data[j] for j in range(lanes) if keep >> j & 1]
                else:
                    row += [(beat.data[j], keep >> j & 1) for j in range(lanes)]
                cycles["first"] = cycles["first"] or cycle
                if beat.last:
                    if keeps is not None:
                        row = row[:len(rows[len(received)])]
                        if out_keeps is not None:
                            out_keeps.append([bool(k) for _, k in row])
                        row = [v for v, _ in row]
                    received.append(row)
                    row = []
                    cycles["last"] = cycle
                    cycles["ends"].append(cycle)
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


def test_back_to_back_rows_keep_the_cycle_model():
    """Full rows: every gap between row ends within ``row_interval``; a lone row within
    ``row_latency``."""
    unit = ToyRowUnit(lanes=2, max_row=64)
    rows = [list(np.random.default_rng(9).integers(-128, 128, 64)) for _ in range(12)]
    got, cycles = run_rows(unit, rows, stall=0.0, seed=0)
    assert got == [toy_golden(r) for r in rows]
    assert max(np.diff(cycles["ends"])) <= unit.row_interval(64)
    _, alone = run_rows(ToyRowUnit(lanes=2, max_row=64), rows[:1], stall=0.0, seed=0)
    assert alone["ends"][0] - alone["accept"] <= unit.row_latency(64)


def test_mixed_lengths_keep_order_and_the_stated_gap():
    """Short rows after long ones and back: the rows come out in order, bit-exact, and the end
    of each row follows the previous row's end by at most its own ``row_latency``."""
    lengths = [64, 1, 64, 3, 17, 64, 64, 2, 1, 40, 1, 64]
    rng = np.random.default_rng(3)
    rows = [list(rng.integers(-128, 128, n)) for n in lengths]
    unit = ToyRowUnit(lanes=1, max_row=64)
    got, cycles = run_rows(unit, rows, stall=0.0, seed=0)
    assert got == [toy_golden(r) for r in rows]
    gaps = np.diff(cycles["ends"])
    assert all(gap <= unit.row_latency(n) for gap, n in zip(gaps, lengths[1:])), list(gaps)


SOFTMAX_UNITS = ("softmax/iptq", "softmax/ivit", "softmax/ibert", "softmax/fqvit")


@pytest.mark.parametrize("name", SOFTMAX_UNITS)
@pytest.mark.parametrize("length", [1, 17, 50])
def test_short_softmax_rows_stream_back_to_back(name, length):
    """Rows of 1, 17 and 50 elements at one lane, ``max_row = 256``: bit-exact, every gap
    between row ends within ``row_interval``, at least 0.9 elements per cycle from 17 elements
    on, a lone row within ``row_latency``."""
    from intvit.golden_model import registry
    from intvit.hw.units import build_unit

    operator = registry.get(name)
    config = operator.example_config()
    lo, hi = -(1 << (config.in_bits - 1)), (1 << (config.in_bits - 1)) - 1
    rng = np.random.default_rng(length)
    rows = [list(rng.integers(lo, hi, length, endpoint=True)) for _ in range(16)]
    unit = build_unit(name, config, lanes=1, max_row=256)
    got, cycles = run_rows(unit, rows, stall=0.0, seed=0)
    assert got == [list(operator.run(config, np.array([row]))[0]) for row in rows]
    worst = max(np.diff(cycles["ends"]))
    assert worst <= unit.row_interval(length)
    if length >= 17:
        assert length / worst >= 0.9, worst
    _, alone = run_rows(build_unit(name, config, lanes=1, max_row=256), rows[:1], stall=0.0,
                        seed=0)
    assert alone["ends"][0] - alone["accept"] <= unit.row_latency(length)


@pytest.mark.parametrize("name", SOFTMAX_UNITS)
def test_masked_softmax_rows_equal_the_golden_masked_softmax(name):
    """Rows with masked elements anywhere (a shifted Swin window's rows: whole beats masked,
    the row's peak masked, only the last element kept), 3 lanes with back-pressure: every
    output element, masked ones included (probability 0, FQ-ViT's top code), equals the golden
    softmax with the same ``keep``, and each output beat carries its input beat's mask."""
    from intvit.golden_model import registry
    from intvit.golden_model.vectors import masked_row_sweep
    from intvit.hw.units import build_unit

    operator = registry.get(name)
    config = operator.example_config()
    rows, keeps = masked_row_sweep(config, np.random.default_rng(7), 24, count=30)
    unit = build_unit(name, config, lanes=3, max_row=24)
    out_keeps: list = []
    got, _ = run_rows(unit, [list(r) for r in rows], stall=0.3, seed=1, keeps=keeps,
                      out_keeps=out_keeps)
    want = [list(operator.run(config, np.array([r]), keep=k[None, :])[0])
            for r, k in zip(rows, keeps)]
    assert got == want
    assert out_keeps == [list(k) for k in keeps]
    assert not keeps[3][6:9].any()  # a whole beat of the 8-element masked run (3 lanes)
