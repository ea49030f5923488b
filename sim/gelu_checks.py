"""The checks the three GELU testbenches share (``sim/test_gelu_iptq.py``, ``test_gelu_ivit.py``,
``test_gelu_ibert.py``): a unit equals its golden model bit for bit under Verilator via cocotb
(every input code) and in Amaranth's simulator (with random idle and stall cycles), and its
Verilog is lint-clean."""
import random

import numpy as np
from amaranth.sim import Simulator

from intvit.golden_model.ops.gelu import asymmetric_output
from intvit.golden_model.registry import get
from intvit.hw.export import export_verilog
from intvit.hw.units import build_unit
from intvit.sim.toolchain import lint_verilog
from intvit.sim.verify import verify

STALL = 0.25
"""Idle and back-pressure probability of the stalled Verilator runs."""
POINTS = [(0.05, 8, 8), (0.1, 6, 6), (0.004, 12, 10), (0.0005, 16, 8), (0.5, 4, 4), (1.0, 2, 2),
          (0.006, 8, 8), (0.3, 8, 4), (0.00002, 16, 16)]
"""(in_scale, in_bits, out_bits) of the Amaranth-simulator runs: coarse and fine scales, 2- to
16-bit codes."""


def point_options(point, published: bool = False) -> dict:
    """``example_config`` options of one of :data:`POINTS` (``published``: the paper's
    constants)."""
    in_scale, in_bits, out_bits = point
    return dict(in_scale=in_scale, in_bits=in_bits, out_bits=out_bits,
                **({"published": True} if published else {}))


def check_rtl_on_every_input(name: str, options: dict, lanes: int, stall: float, work_dir):
    """Every input code through the Verilated unit; without stalls, also one beat per cycle
    once the pipeline is full (``cycles <= beats + latency``)."""
    cfg = get(name).example_config(**options)
    outcome = verify(name, cfg, lanes=lanes, work_dir=work_dir, source_idle=stall,
                     sink_stall=stall)
    assert outcome.result.checked == 1 << cfg.in_bits
    assert outcome.result.mismatches == 0, outcome.summary()
    if stall == 0.0:
        unit = build_unit(name, cfg, lanes=lanes)
        unit._MustUse__silence = True  # only its stated latency is read
        beats = -(-outcome.result.checked // lanes)
        assert outcome.result.cycles <= beats + unit.latency


def check_verilog_lint(name: str, work_dir):
    """``verilator --lint-only`` on the example config's Verilog (two lanes) reports nothing."""
    unit = build_unit(name, get(name).example_config(), lanes=2)
    lint = lint_verilog(export_verilog(unit, "top"), work_dir / "top.v")
    assert lint.returncode == 0, lint.stderr


def sweep_codes(cfg, rng: np.random.Generator) -> np.ndarray:
    """Every code up to 12 bits; else both ends, the middle and random codes."""
    lo, hi = cfg.in_range
    if cfg.in_bits <= 12:
        return np.arange(lo, hi + 1, dtype=np.int64)
    edges = [np.arange(lo, lo + 256), np.arange(-256, 256), np.arange(hi - 255, hi + 1)]
    return np.concatenate(edges + [rng.integers(lo, hi, 1500, endpoint=True)])


def simulate(unit, x: np.ndarray, stall: float, seed: int) -> np.ndarray:
    """Stream ``x`` through ``unit`` in Amaranth's simulator with random idle and stall cycles
    (probability ``stall``); the outputs in order."""
    rng, lanes = random.Random(seed), unit.lanes
    beats = [[int(v) for v in x[k:k + lanes]] for k in range(0, len(x), lanes)]
    got = []

    async def source(ctx):
        for beat in beats:
            while rng.random() < stall:
                ctx.set(unit.i.valid, 0)
                await ctx.tick()
            ctx.set(unit.i.payload, {"data": beat + [0] * (lanes - len(beat)), "last": 0})
            ctx.set(unit.i.valid, 1)
            await ctx.tick().until(unit.i.ready)
        ctx.set(unit.i.valid, 0)

    async def sink(ctx):
        for _ in range(4 * len(beats) + 200):
            ready = rng.random() >= stall
            ctx.set(unit.o.ready, ready)
            transfer = ready and ctx.get(unit.o.valid)  # sampled before the clock edge
            beat = ctx.get(unit.o.payload)
            await ctx.tick()
            if transfer:
                got.extend(beat.data[j] for j in range(lanes))
            if len(got) >= len(x):
                return

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return np.array(got[:len(x)], dtype=np.int64)


def check_in_amaranth_sim(name: str, options: dict):
    """:func:`sweep_codes` through a three-lane unit with 10 % stalls equals the golden run."""
    check_config_in_amaranth_sim(name, get(name).example_config(**options))


def check_asymmetric_output_in_amaranth_sim(name: str):
    """The zero-point output that ``QuantSpec(gelu_output="asymmetric")`` builds."""
    cfg = asymmetric_output(get(name).example_config())
    assert cfg.requant.zero_point != 0
    check_config_in_amaranth_sim(name, cfg)


def check_config_in_amaranth_sim(name: str, cfg):
    """:func:`check_in_amaranth_sim` for a config built by the caller."""
    op = get(name)
    x = sweep_codes(cfg, np.random.default_rng(cfg.in_bits))
    got = simulate(build_unit(name, cfg, lanes=3), x, stall=0.1, seed=cfg.in_bits)
    want = op.run(cfg, x)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (f"{bad.size} mismatches, first: input {x[bad[0]]}, golden "
                           f"{want[bad[0]]}, unit {got[bad[0]]}")
