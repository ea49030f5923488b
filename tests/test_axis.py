"""The AXI4-Stream top (intvit.fpga.axis): bit-exact against the golden model in Amaranth's simulator,
with idle sources, stalled sinks and partial beats; and lint-clean Verilog from the CLI.

The testbench is written from the AXI4-Stream rules, not from the wrapper: a source holds a beat
until ``tvalid & tready`` on a rising edge of ``aclk``; ``tkeep`` marks the valid bytes; a lane
of ``w`` bits takes ``ceil(w/8)`` bytes and a signed output fills its padding with its sign.
"""
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from intvit.fpga.axis import AxisTop
from intvit.golden_model import registry
from intvit.hw.units import build_gemm, build_unit
from intvit.cli import main
from intvit.sim.toolchain import lint_verilog


def lane_bytes(bits: int) -> int:
    return (bits + 7) // 8


def pack(values, bits: int, rng: random.Random) -> int:
    """tdata of ``values``, each in its byte group, with random garbage in the padding bits."""
    step, word = 8 * lane_bytes(bits), 0
    for k, v in enumerate(values):
        garbage = rng.getrandbits(step - bits) << bits if step > bits else 0
        word |= (garbage | (int(v) & ((1 << bits) - 1))) << (k * step)
    return word


def unpack(word: int, lanes: int, bits: int, signed: bool) -> list[int]:
    """Lanes of ``word`` read as whole int8/int16/int32 (or unsigned) groups, as software would."""
    step = 8 * lane_bytes(bits)
    out = []
    for k in range(lanes):
        v = (word >> (k * step)) & ((1 << step) - 1)
        out.append(v - (1 << step) if signed and v >> (step - 1) else v)
    return out


def keep_bits(lane_keep, bits: int) -> int:
    """Byte-wise tkeep of a per-lane keep list: every byte of a kept lane set."""
    per = lane_bytes(bits)
    return sum(((1 << per) - 1) << (k * per) for k, kept in enumerate(lane_keep) if kept)


def run_axis(top, beats, *, in_bits, out_bits, out_signed, seed, reset_cycles=3,
             max_cycles=20_000, wait_for_ready=False):
    """Drive ``beats`` (``(values, lane_keep, last)``) into ``s_axis`` with random idle cycles
    while ``m_axis_tready`` stalls at random; return the output beats as
    ``(values, tkeep, tlast)`` and a log: ``cycles`` run, ``valid_in_reset`` (``m_axis_tvalid``
    after each reset edge). With ``wait_for_ready`` the source raises ``tvalid`` only after it
    has seen ``s_axis_tready`` high with ``tvalid`` low (AXI forbids a master to wait so, but
    real sources do; the top must not deadlock)."""
    rng = random.Random(seed)
    lanes = len(beats[0][0])
    has_keep = hasattr(top, "s_axis_tkeep")
    received, log = [], {"valid_in_reset": []}

    async def bench(ctx):
        async def edge():
            ctx.set(top.aclk, 1)
            await ctx.delay(1e-9)
            ctx.set(top.aclk, 0)
            await ctx.delay(1e-9)

        ctx.set(top.aresetn, 0)
        for _ in range(reset_cycles):
            await edge()
            log["valid_in_reset"].append(ctx.get(top.m_axis_tvalid))
        ctx.set(top.aresetn, 1)
        pending, cycles = list(beats), 0
        presented, ready_seen = False, False
        while len(received) < len(beats) and cycles < max_cycles:
            if (not presented and pending and rng.random() < 0.7
                    and (ready_seen or not wait_for_ready)):
                values, lane_keep, last = pending[0]
                ctx.set(top.s_axis_tdata, pack(values, in_bits, rng))
                ctx.set(top.s_axis_tlast, last)
                if has_keep:
                    ctx.set(top.s_axis_tkeep, keep_bits(lane_keep, in_bits))
                presented = True
            ctx.set(top.s_axis_tvalid, presented)
            ctx.set(top.m_axis_tready, rng.random() < 0.6)
            await ctx.delay(1e-9)
            ready_seen = not presented and bool(ctx.get(top.s_axis_tready))
            if presented and ctx.get(top.s_axis_tready):
                pending.pop(0)
                presented = False
            if ctx.get(top.m_axis_tvalid) and ctx.get(top.m_axis_tready):
                received.append((unpack(ctx.get(top.m_axis_tdata), lanes, out_bits, out_signed),
                                 ctx.get(top.m_axis_tkeep) if has_keep else None,
                                 ctx.get(top.m_axis_tlast)))
            await edge()
            cycles += 1
        log["cycles"] = cycles

    sim = Simulator(top)
    sim.add_testbench(bench)
    sim.run()
    return received, log


def test_requant_with_tkeep_and_sign_extended_padding():
    operator = registry.get("requant")
    config = operator.example_config(bits=4)  # int4 out: one byte per lane, sign in the padding
    top = AxisTop(build_unit("requant", config, lanes=2))
    rng = np.random.default_rng(7)
    acc = np.concatenate([rng.integers(-2**31, 2**31, 60),
                          rng.integers(-2000, 2000, 60),  # near zero: both signs after rounding
                          [-2**31, 2**31 - 1, 0, -1]]).reshape(-1, 2)
    keeps = [(1, 1), (1, 0), (0, 1), (0, 0)]
    beats = [(list(row), keeps[i % 4], i % 5 == 4) for i, row in enumerate(acc)]
    out, log = run_axis(top, beats, in_bits=32, out_bits=config.out_bits,
                        out_signed=config.out_signed, seed=1)
    expected = operator.run(config, acc)
    assert len(out) == len(beats)
    assert not any(log["valid_in_reset"])
    assert expected.min() < 0 < expected.max()
    for (values, lane_keep, last), (got, tkeep, tlast), want in zip(beats, out, expected):
        assert tkeep == keep_bits(lane_keep, config.out_bits) and tlast == last
        assert [g for g, k in zip(got, lane_keep) if k] == [w for w, k in zip(want, lane_keep) if k]


@pytest.mark.parametrize("op", ["requant", "gelu/ibert", "softmax/iptq", "layernorm/ibert"])
def test_source_waiting_for_tready_does_not_deadlock(op):
    """A source that raises ``tvalid`` only after seeing ``tready`` gets every beat through:
    no unit's ``s_axis_tready`` waits for ``s_axis_tvalid``."""
    operator = registry.get(op)
    config = operator.example_config()
    rng = np.random.default_rng(5)
    lo, hi = -(1 << (config.in_bits - 1)), 1 << (config.in_bits - 1)
    length = getattr(config, "channels", None) or 5
    rows = rng.integers(lo, hi, (3, length))
    top = AxisTop(build_unit(op, config, lanes=1))
    beats = [([int(v)], [1], k == length - 1) for row in rows for k, v in enumerate(row)]
    out, log = run_axis(top, beats, in_bits=config.in_bits, out_bits=config.out_bits,
                        out_signed=config.out_signed, seed=4, wait_for_ready=True,
                        max_cycles=5_000)
    assert len(out) == len(beats), f"{len(out)} of {len(beats)} beats in {log['cycles']} cycles"
    want = operator.run(config, rows).reshape(-1)
    assert [got[0] for got, _, _ in out] == [int(v) for v in want]


def test_tdata_is_a_power_of_two_bytes():
    """Lanes padded to whole bytes, then ``tdata`` to a power-of-two number of bytes, ``tkeep``
    with it: three int32 lanes in 128 bits, three int8 lanes in 32; the per-channel GEMM's bias
    lanes (9 bytes each) in 1024 bits."""
    requant = AxisTop(build_unit("requant", registry.get("requant").example_config(), lanes=3))
    assert [len(requant.s_axis_tdata), len(requant.s_axis_tkeep)] == [128, 16]
    assert [len(requant.m_axis_tdata), len(requant.m_axis_tkeep)] == [32, 4]
    gemm = AxisTop(build_gemm(rows=8, cols=8, per_channel=True))
    assert len(gemm.s_axis_b_tdata) == 1024


def softmax_rows(rng, in_bits, count, max_len):
    lo, hi = -(1 << (in_bits - 1)), 1 << (in_bits - 1)
    return [rng.integers(lo, hi, int(n)) for n in rng.integers(1, max_len + 1, count)]


def test_row_unit_partial_beats_and_back_to_back_rows():
    operator = registry.get("softmax/iptq")
    config = operator.example_config()
    lanes, max_row = 2, 16
    top = AxisTop(build_unit("softmax/iptq", config, lanes=lanes, max_row=max_row))
    rng = np.random.default_rng(3)
    rows = softmax_rows(rng, config.in_bits, 12, max_row) + [np.array([5]), np.full(16, -128)]
    beats, expected = [], []
    for row in rows:
        want = operator.run(config, row[None, :])[0]
        for start in range(0, len(row), lanes):
            chunk = list(row[start:start + lanes])
            keep = [1] * len(chunk) + [0] * (lanes - len(chunk))
            beats.append((chunk + [0] * (lanes - len(chunk)), keep, start + lanes >= len(row)))
            expected.append((list(want[start:start + lanes]), keep))
    out, _ = run_axis(top, beats, in_bits=config.in_bits, out_bits=config.out_bits,
                      out_signed=config.out_signed, seed=2)
    assert len(out) == len(beats)
    for (_, _, last), (want, keep), (got, tkeep, tlast) in zip(beats, expected, out):
        assert (tkeep, tlast) == (keep_bits(keep, config.out_bits), last)
        assert got[:len(want)] == want


@pytest.mark.parametrize("argv", [["requant", "--lanes", "2"],
                                  ["softmax/iptq", "--max-row", "16"],
                                  ["gemm", "--rows", "2", "--cols", "2"],
                                  ["gemm", "--rows", "2", "--cols", "2", "--per-channel"]])
def test_cli_axis_verilog_is_lint_clean(argv, tmp_path, capsys):
    target = tmp_path / "top.v"
    assert main(["verilog", *argv, "--axis", "-o", str(target)]) == 0
    text = target.read_text()
    header = text[text.index("module intvit_"):].split(";")[0]
    for port in ("aclk", "aresetn", "tdata", "tvalid", "tready", "tlast"):
        assert port in header
    assert "_axis(" in header and " clk" not in header and " rst" not in header
    lint = lint_verilog(text, target)
    assert lint.returncode == 0, lint.stderr
    assert "s_axis" in capsys.readouterr().out
