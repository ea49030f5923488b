"""The row bench under Verilator, on the framework's toy row unit (tests/toy_row.py): rows of
every length, back-pressure, a measured initiation interval, and a bench that can fail."""
import dataclasses
import sys
from pathlib import Path

import numpy as np

from intvit.golden_model.vectors import make_row_vectors, save_vectors
from intvit.sim.runner import run_bench

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from toy_row import ToyConfig, ToyRowUnit, toy_run  # noqa: E402

MAX_ROW = 24


def toy_rows(count, seed=0):
    rng = np.random.default_rng(seed)
    rows = [[-128] * MAX_ROW, [5], [3] * 7, [127] + [-128] * (MAX_ROW - 1)]
    rows += [rng.integers(-128, 128, rng.integers(1, MAX_ROW + 1)) for _ in range(count)]
    return rows


def run_toy(tmp_path, rows, lanes, stall=0.0, corrupt=False):
    vectors = make_row_vectors("toy", ToyConfig(), rows, toy_run)
    if corrupt:
        y = vectors.y.copy()
        y[3, 0] += 1
        vectors = dataclasses.replace(vectors, y=y)
    path = save_vectors(tmp_path / "rows.npz", vectors)
    return run_bench(ToyRowUnit(lanes=lanes, max_row=MAX_ROW), "intvit.sim.row_bench", path,
                     env={"INTVIT_LANES": str(lanes), "INTVIT_SOURCE_IDLE": str(stall),
                          "INTVIT_SINK_STALL": str(stall)}, work_dir=tmp_path / "sim")


def test_toy_rows_bit_exact_with_back_pressure(tmp_path):
    rows = toy_rows(300)
    result = run_toy(tmp_path, rows, lanes=4, stall=0.25)
    assert result.mismatches == 0, result.first_mismatch
    assert result.checked == sum(len(r) for r in rows)


def test_full_rows_back_to_back_at_the_stated_interval(tmp_path):
    """The largest gap between row ends within ``row_interval``, the whole run within
    ``row_latency + (rows - 1) * row_interval``."""
    rows = [np.random.default_rng(i).integers(-128, 128, MAX_ROW) for i in range(30)]
    result = run_toy(tmp_path, rows, lanes=2)
    assert result.mismatches == 0, result.first_mismatch
    unit = ToyRowUnit(lanes=2, max_row=MAX_ROW)
    assert result.max_row_interval <= unit.row_interval(MAX_ROW)
    assert result.cycles <= unit.row_latency(MAX_ROW) + 29 * unit.row_interval(MAX_ROW)


def test_short_rows_within_the_stated_interval(tmp_path):
    """One lane, rows of 17 back to back: the largest gap between row ends within
    ``row_interval(17)`` (the toy's 21-bit divider sets it, 24 cycles; the softmax units
    reach 17, ``tests/test_rowpipe.py``)."""
    rows = [np.random.default_rng(i).integers(-128, 128, 17) for i in range(30)]
    result = run_toy(tmp_path, rows, lanes=1)
    assert result.mismatches == 0, result.first_mismatch
    unit = ToyRowUnit(lanes=1, max_row=MAX_ROW)
    assert result.max_row_interval <= unit.row_interval(17)


def test_a_wrong_expectation_fails_with_a_waveform(tmp_path):
    result = run_toy(tmp_path, toy_rows(5), lanes=4, corrupt=True)
    assert result.mismatches == 1
    assert "row 3 element 0" in result.first_mismatch
    assert result.waveform is not None
