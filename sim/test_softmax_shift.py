"""Bit-exp (softmax/iptq) and Shiftmax (softmax/ivit) row units (hw/softmax_shift.py) equal the
golden model bit for bit: under Verilator (four builds: two configs per unit, lanes 1 and 4,
back-pressure, the measured row interval, lint) and in Amaranth's simulator for long rows."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from intvit.hw.export import export_verilog
from intvit.golden_model import registry
from intvit.golden_model.integer import signed_range
from intvit.golden_model.ops import softmax as sm
from intvit.golden_model.vectors import load_vectors, make_row_vectors, save_vectors
from intvit.hw.softmax_shift import (BitExpSoftmaxUnit, ShiftmaxUnit, bit_exp_u_max, shiftmax_a_max,
                              shiftmax_k_divider)
from intvit.sim.toolchain import verilator_env
from intvit.sim.verify import verify

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_rowpipe import run_rows  # noqa: E402

MAX_ROW = 64
IPTQ, IVIT = "softmax/iptq", "softmax/ivit"
UNITS = {IPTQ: BitExpSoftmaxUnit, IVIT: ShiftmaxUnit}

IPTQ_EXAMPLE = sm.BitExpSoftmaxConfig.from_scale(0.05)
IPTQ_COARSE = sm.BitExpSoftmaxConfig.from_scale(0.2, in_bits=6, out_bits=6, max_row=MAX_ROW)
IVIT_EXAMPLE = sm.ShiftmaxConfig.from_scale(0.05)
IVIT_PUBLISHED = sm.ShiftmaxConfig.published(0.1, out_bits=6)

# One back-pressured and one free-running build per unit; the free-running ones are reused by
# the interval test (the Verilator build is cached by its Verilog).
CASES = [
    pytest.param(IPTQ, IPTQ_EXAMPLE, 4, 0.25, id="iptq-example-lanes4-stalls"),
    pytest.param(IPTQ, IPTQ_COARSE, 1, 0.0, id="iptq-6bit-s0.2-lanes1"),
    pytest.param(IVIT, IVIT_EXAMPLE, 1, 0.25, id="ivit-example-lanes1-stalls"),
    pytest.param(IVIT, IVIT_PUBLISHED, 4, 0.0, id="ivit-published-n15-out6-lanes4"),
]
FREE_RUNNING = [pytest.param(IPTQ, IPTQ_COARSE, 1, id="iptq-lanes1"),
                pytest.param(IVIT, IVIT_PUBLISHED, 4, id="ivit-lanes4")]


@pytest.mark.parametrize("name, cfg, lanes, stall", CASES)
def test_rtl_equals_golden_on_the_row_sweep(name, cfg, lanes, stall, tmp_path):
    # Each unit's stalled case runs the full 2,000 random rows; its second config 400, to keep
    # the suite's simulation time in bounds.
    rows = 2000 if stall else 400
    outcome = verify(name, cfg, lanes=lanes, max_row=MAX_ROW, work_dir=tmp_path,
                     source_idle=stall, sink_stall=stall, row_count=rows)
    vectors = load_vectors(outcome.vectors)
    assert len(vectors.lengths) >= rows and vectors.lengths.max() == MAX_ROW
    assert outcome.result.mismatches == 0, outcome.summary()
    assert outcome.result.checked == int(vectors.lengths.sum())


def full_rows(cfg, count, seed):
    lo, hi = signed_range(cfg.in_bits)
    return list(np.random.default_rng(seed).integers(lo, hi, (count, MAX_ROW), endpoint=True))


@pytest.mark.parametrize("name, cfg, lanes", FREE_RUNNING)
def test_back_to_back_full_rows_reach_the_stated_interval(name, cfg, lanes, tmp_path):
    """The interval is the cycle difference of runs with ``2N`` and ``N`` full rows, over ``N``
    (fill and drain cancel)."""
    cycles = {}
    for count in (20, 40):
        rows = full_rows(cfg, count, seed=count)
        path = save_vectors(tmp_path / f"rows{count}.npz",
                            make_row_vectors(name, cfg, rows, registry.get(name).run))
        outcome = verify(name, cfg, lanes=lanes, max_row=MAX_ROW, work_dir=tmp_path / str(count),
                         vectors_path=path)
        assert outcome.result.mismatches == 0, outcome.summary()
        cycles[count] = outcome.result.cycles
    interval = (cycles[40] - cycles[20]) / 20
    beats = -(-MAX_ROW // lanes)
    unit = UNITS[name](cfg, lanes=lanes, max_row=MAX_ROW)
    assert beats <= interval <= beats + unit.row_overhead, interval


def test_verilog_is_lint_clean(tmp_path):
    for name, cfg in ((IPTQ, IPTQ_EXAMPLE), (IVIT, IVIT_EXAMPLE)):
        target = tmp_path / f"{name.split('/')[1]}.v"
        target.write_text(export_verilog(UNITS[name](cfg, lanes=4, max_row=MAX_ROW), "top"))
        lint = subprocess.run(["verilator", "--lint-only", str(target)], env=verilator_env(),
                              capture_output=True, text=True)
        assert lint.returncode == 0, lint.stderr


# --- no Verilator: widths follow max_row, the constant divider is exact ---------------------

def all_offsets(cfg):
    lo, hi = signed_range(cfg.in_bits)
    return np.arange(lo - hi, 1, dtype=np.int64)


LONG = [pytest.param(IPTQ, IPTQ_EXAMPLE, 1024, False, id="iptq-1024"),
        pytest.param(IVIT, IVIT_EXAMPLE, 1024, False, id="ivit-1024"),
        pytest.param(IVIT, sm.ShiftmaxConfig.published(0.0005, in_bits=12), 64, True,
                     id="ivit-published-fine-sum-clamps")]


@pytest.mark.parametrize("name, cfg, max_row, clamps", LONG)
def test_row_sum_and_buffer_follow_max_row(name, cfg, max_row, clamps):
    """The sum register holds ``max_row`` copies of the largest exponential (found from the
    golden exponential over every offset), and a full row of equal scores, which reaches that
    sum, comes out exact (Amaranth simulation). The last case's sum exceeds I-ViT's 2**31 - 1
    and exercises the clamp."""
    run = registry.get(name).run
    exp = sm.bit_exp if name == IPTQ else sm.shift_exp
    top = int(exp(cfg, all_offsets(cfg)).max())
    unit = UNITS[name](cfg, lanes=4, max_row=max_row)
    assert unit.max_beats == max_row // 4
    assert unit.sum_shape.width == (max_row * top).bit_length()
    if clamps:
        assert max_row * top > sm.ShiftmaxConfig.sum_limit
    lo, hi = signed_range(cfg.in_bits)
    rng = np.random.default_rng(max_row)
    rows = [[hi] * max_row, list(rng.integers(lo, hi, max_row - 1, endpoint=True)), [lo],
            [0] * max_row]
    got, _ = run_rows(unit, rows, stall=0.0, seed=0)
    assert got == [list(run(cfg, np.array([row]))[0]) for row in rows]


@pytest.mark.parametrize("cfg", [IVIT_EXAMPLE, IVIT_PUBLISHED,
                                 sm.ShiftmaxConfig.from_scale(0.003, in_bits=12, max_row=256),
                                 sm.ShiftmaxConfig.published(2.0 ** -16, in_bits=16)])
def test_shiftmax_constant_divider_is_exact_over_its_range(cfg):
    """``(a * M) >> sd == a // X`` for every ``a`` in ``0..a_max``, and ``a_max`` covers every
    ``a = -max(t, n*x0)`` the inputs give."""
    a_max = shiftmax_a_max(cfg)
    reach = -np.maximum(sm.log2e_shift_add(all_offsets(cfg)), cfg.n * cfg.x0)
    assert int(reach.max()) == a_max
    mult, shift = shiftmax_k_divider(cfg)
    a = np.arange(a_max + 1, dtype=object)  # Python ints: no int64 overflow
    assert all((a * mult) >> shift == a // -cfg.x0)


def test_bit_exp_exponent_bound_covers_every_offset():
    """``u_max`` (the k-saturation is dropped when ``u_max >> F <= k_max``) is the largest
    ``u = round(-23 d R / 2**s)`` over every offset, in Python ints."""
    for cfg in (IPTQ_EXAMPLE, IPTQ_COARSE):
        half = (1 << cfg.scale_shift) >> 1
        u = [(-23 * int(d) * cfg.scale_mult + half) >> cfg.scale_shift for d in all_offsets(cfg)]
        assert max(u) == bit_exp_u_max(cfg)

