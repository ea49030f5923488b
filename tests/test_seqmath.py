"""The sequential divider and square root against Python's exact integer arithmetic."""
import math
import random

from amaranth.sim import Simulator

from intvit.hw.seqmath import BitSerialSqrt, RestoringDivider


def simulate(unit, cases, load, read):
    """Run ``cases`` through ``unit`` one at a time; return results and cycles per case."""
    results, cycles = [], []

    async def bench(ctx):
        for case in cases:
            load(ctx, case)
            ctx.set(unit.start, 1)
            await ctx.tick()
            ctx.set(unit.start, 0)
            count = 0
            while not ctx.get(unit.done):
                await ctx.tick()
                count += 1
            results.append(read(ctx))
            cycles.append(count)

    sim = Simulator(unit)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results, cycles


def test_divider_is_floor_division():
    rng = random.Random(5)
    unit = RestoringDivider(num_bits=32, den_bits=20)
    cases = [(2**32 - 1, 1), (2**32 - 1, 2**20 - 1), (0, 7), (12345, 12346), (12346, 12345)]
    cases += [(rng.randrange(2**32), rng.randrange(1, 2**20)) for _ in range(150)]

    def load(ctx, case):
        ctx.set(unit.numerator, case[0])
        ctx.set(unit.denominator, case[1])

    quotients, cycles = simulate(unit, cases, load, lambda ctx: ctx.get(unit.quotient))
    assert quotients == [n // d for n, d in cases]
    assert set(cycles) == {unit.cycles}


def test_divider_with_a_short_quotient_is_floor_division_in_fewer_cycles():
    """``quotient_bits = 13``: every case whose quotient is below ``2**13``, including the
    largest such quotients and the constant numerator of the softmax reciprocals; a previous
    result in the quotient register must not leak into the next one."""
    rng = random.Random(7)
    unit = RestoringDivider(num_bits=31, den_bits=24, quotient_bits=13)
    cases = [(2**30, 2**17 + 1), (2**30, 2**24 - 1), (2**13 * 5000 - 1, 5000), (0, 1),
             (2**31 - 1, 2**18 + 1), (2**13 - 1, 1)]
    while len(cases) < 200:
        n, d = rng.randrange(2**31), rng.randrange(1, 2**24)
        if n // d < 2**13:
            cases.append((n, d))
    cases.insert(3, (2**31 - 1, 2**24 - 1))

    def load(ctx, case):
        ctx.set(unit.numerator, case[0])
        ctx.set(unit.denominator, case[1])

    quotients, cycles = simulate(unit, cases, load, lambda ctx: ctx.get(unit.quotient))
    assert quotients == [n // d for n, d in cases]
    assert set(cycles) == {13} == {unit.cycles}


def test_sqrt_is_exact_floor_root():
    rng = random.Random(6)
    unit = BitSerialSqrt(value_bits=33)
    squares = [k * k for k in (0, 1, 2, 3, 65535, 65536, 92681)]
    cases = sorted({v for s in squares for v in (s - 1, s, s + 1) if 0 <= v < 2**33})
    cases += [2**33 - 1] + [rng.randrange(2**33) for _ in range(150)]

    def load(ctx, value):
        ctx.set(unit.value, value)

    roots, cycles = simulate(unit, cases, load, lambda ctx: ctx.get(unit.root))
    assert roots == [math.isqrt(v) for v in cases]
    assert set(cycles) == {unit.cycles}


def test_sqrt_small_width_exhaustive():
    unit = BitSerialSqrt(value_bits=9)

    def load(ctx, value):
        ctx.set(unit.value, value)

    roots, _ = simulate(unit, list(range(512)), load, lambda ctx: ctx.get(unit.root))
    assert roots == [math.isqrt(v) for v in range(512)]
