"""Checks shared by the softmax testbenches (``sim/test_softmax_<candidate>.py``): the unit under
Verilator equals the golden model on every output of a row sweep (corner rows, the operator's
sweep rows, random rows up to ``MAX_ROW``), 16-bit probability codes at the config's longest row
(issue 15), full rows back to back keep the stated interval, the Verilog passes Verilator's lint,
and long rows run bit-exact in Amaranth's simulator."""
import sys
from pathlib import Path

import numpy as np

from intvit.golden_model import registry
from intvit.golden_model.integer import signed_range
from intvit.golden_model.vectors import load_vectors, make_row_vectors, save_vectors
from intvit.hw.export import export_verilog
from intvit.hw.units import unit_class
from intvit.sim.toolchain import lint_verilog
from intvit.sim.verify import ROW_COUNT, verify

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_rowpipe import run_rows  # noqa: E402

MAX_ROW = 64
"""Row capacity of the units under Verilator."""
STALL = 0.25
"""Probability of an idle source cycle and of a stalled sink cycle in the back-pressure cases."""
UNSTALLED_ROWS = 400
"""Random rows of a case without stalls (a stalled case runs the full ``ROW_COUNT``), to keep
the suite's simulation time in bounds."""
WIDE_OUT_BITS = 16
"""The widest probability codes of the reciprocal candidates (``iptq``, ``ivit``, ``ibert``)."""
WIDE_RANDOM_ROWS = 12
"""Random rows of each kind in :func:`wide_output_rows`."""
WIDE_SIGMAS = (1.0, 3.0)
"""Spreads, in real units, of the Gaussian score rows of :func:`wide_output_rows`."""


def check_rtl_equals_golden(name, cfg, lanes, stall, work_dir):
    """Every output of the row sweep bit-exact, rows up to ``MAX_ROW`` long."""
    rows = ROW_COUNT if stall else UNSTALLED_ROWS
    outcome = verify(name, cfg, lanes=lanes, max_row=MAX_ROW, work_dir=work_dir,
                     source_idle=stall, sink_stall=stall, row_count=rows)
    lengths = load_vectors(outcome.vectors).lengths
    assert len(lengths) > rows and lengths.max() == MAX_ROW
    assert outcome.result.mismatches == 0, outcome.summary()
    assert outcome.result.checked == int(lengths.sum())


def check_full_rows_interval(name, cfg, lanes, work_dir):
    """24 full rows without stalls: the largest gap between the final beats of consecutive rows
    (the bench's ``max_row_interval``) is within the model's ``row_interval(MAX_ROW)``."""
    lo, hi = signed_range(cfg.in_bits)
    rows = [np.random.default_rng(i).integers(lo, hi, MAX_ROW, endpoint=True) for i in range(24)]
    path = save_vectors(Path(work_dir) / "full.npz",
                        make_row_vectors(name, cfg, rows, registry.get(name).run))
    outcome = verify(name, cfg, lanes=lanes, max_row=MAX_ROW, work_dir=work_dir,
                     vectors_path=path)
    assert outcome.result.mismatches == 0, outcome.summary()
    beats = -(-MAX_ROW // lanes)
    interval = unit_class(name)(cfg, lanes=lanes, max_row=MAX_ROW).row_interval(MAX_ROW)
    assert beats <= outcome.result.max_row_interval <= interval


def check_lint_clean(unit, work_dir):
    """``verilator --lint-only`` accepts the unit's Verilog."""
    lint = lint_verilog(export_verilog(unit, "top"), Path(work_dir) / "top.v")
    assert lint.returncode == 0, lint.stderr


def extreme_rows(cfg, length, seed):
    """A full row at the top code (the largest row sum), a random row one short, a single
    element at the bottom code and a full row of zeros."""
    lo, hi = signed_range(cfg.in_bits)
    random = np.random.default_rng(seed).integers(lo, hi, length - 1, endpoint=True)
    return [[hi] * length, list(random), [lo], [0] * length]


def check_rows_in_amaranth(name, unit, cfg, rows):
    """``rows`` through ``unit`` in Amaranth's simulator equal the golden outputs."""
    got, _ = run_rows(unit, rows, stall=0.0, seed=0)
    run = registry.get(name).run
    assert got == [list(run(cfg, np.array([row]))[0]) for row in rows]


def wide_output_rows(cfg, seed):
    """Rows for a wide-output check, ``n = cfg.max_row`` the longest row the config allows:
    one element (probability 1, which saturates at the top code), ``n`` equal elements at the
    top, zero and bottom codes (``1/n`` each), the bottom code with one top-code peak (the most
    negative offset ``lo - hi`` everywhere else), a two-way tie at the top, and random rows:
    ``WIDE_RANDOM_ROWS`` of uniform codes of random length ``1..n``, and as many Gaussian score
    rows of length ``n`` per spread in :data:`WIDE_SIGMAS` (real units, quantized at
    ``in_scale``)."""
    rng = np.random.default_rng(seed)
    lo, hi = signed_range(cfg.in_bits)
    n = cfg.max_row
    peak = np.full(n, lo)
    peak[n // 3] = hi
    corners = [[hi], [hi] * n, [0] * n, [lo] * n, list(peak), [hi, hi] + [lo] * (n - 2)]
    uniform = [rng.integers(lo, hi, int(rng.integers(1, n + 1)), endpoint=True)
               for _ in range(WIDE_RANDOM_ROWS)]
    gaussian = [np.clip(np.round(rng.normal(0.0, sigma / cfg.in_scale, n)), lo, hi)
                for sigma in WIDE_SIGMAS for _ in range(WIDE_RANDOM_ROWS)]
    return corners + [list(r) for r in uniform] + [list(r.astype(np.int64)) for r in gaussian]


def check_wide_output(name, cfg, lanes, stall, work_dir):
    """:func:`wide_output_rows` through the unit under Verilator (a buffer of ``cfg.max_row``)
    equal the golden outputs; the vectors reach the top code (saturation) and the full row."""
    rows = wide_output_rows(cfg, seed=cfg.out_bits)
    vectors = make_row_vectors(name, cfg, rows, registry.get(name).run)
    assert vectors.y.max() == (1 << cfg.out_bits) - 1
    assert vectors.lengths.max() == cfg.max_row
    path = save_vectors(Path(work_dir) / "wide.npz", vectors)
    outcome = verify(name, cfg, lanes=lanes, max_row=cfg.max_row, work_dir=work_dir,
                     source_idle=stall, sink_stall=stall, vectors_path=path)
    assert outcome.result.mismatches == 0, outcome.summary()
    assert outcome.result.checked == int(vectors.lengths.sum())
