"""The per-channel requantizer unit (``intvit.hw.requant.ChannelRequantizer``, the GEMM's with
``per_channel``) against ``intvit.golden_model.ops.requant.ChannelRequant`` in Amaranth's simulator:
random accumulators, multipliers and shifts over their whole ranges plus the corners (most
negative accumulator, largest multiplier, shifts 0 and 62, exact rounding ties)."""
import numpy as np
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from intvit.golden_model.gemm import CHANNEL_REQUANT_LATENCY, REQUANT_LATENCY, example_requant
from intvit.golden_model.ops.requant import (ACC_BITS, MAX_SHIFT, MULTIPLIER_BITS, SHIFT_BITS,
                                      ChannelRequant)
from intvit.hw.requant import ChannelRequantizer, Requantizer


def operands():
    rng = np.random.default_rng(8)
    n = 4000
    cases = list(zip(rng.integers(-2**31, 2**31, n).tolist(),
                     rng.integers(0, 2**31, n).tolist(),
                     rng.integers(0, MAX_SHIFT + 1, n).tolist()))
    m_max = (1 << MULTIPLIER_BITS) - 1
    for acc in (-2**31, 2**31 - 1, -1, 0, 1):
        for m in (0, 1, m_max):
            for e in (0, 1, 31, MAX_SHIFT):
                cases.append((acc, m, e))
    cases += [(v, 1, 1) for v in (-5, -3, -1, 1, 3, 5)]  # ties: x.5 rounds up
    return cases


def test_unit_equals_channel_requant_for_every_case():
    unit = ChannelRequantizer(8, lanes=1)
    cases = operands()
    got = []

    async def bench(ctx):
        ctx.set(unit.o.ready, 1)
        for case in cases + [None] * (CHANNEL_REQUANT_LATENCY + 1):
            ctx.set(unit.i.valid, case is not None)
            if case is not None:  # lane bits: acc, then m, then e
                acc, m, e = case
                ctx.set(unit.i.payload.data[0], (acc & ((1 << ACC_BITS) - 1)) | (m << ACC_BITS)
                        | (e << (ACC_BITS + MULTIPLIER_BITS)))
            await ctx.tick()
            if ctx.get(unit.o.valid):
                got.append(ctx.get(unit.o.payload.data[0]))

    sim = Simulator(unit)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    want = [int(ChannelRequant((m,), (e,), 8)(np.array([[acc]]))[0, 0]) for acc, m, e in cases]
    assert len(got) == len(cases) and got == want
    assert unit.latency == CHANNEL_REQUANT_LATENCY and SHIFT_BITS == 6


def test_the_cycle_model_has_the_per_tensor_requantizers_latency():
    unit = Requantizer(example_requant(), lanes=2)
    Fragment.get(unit, None)  # elaborated, as a built unit is
    assert unit.latency == REQUANT_LATENCY
