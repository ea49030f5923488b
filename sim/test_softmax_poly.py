"""The i-exp softmax units (``softmax/ibert``, ``softmax/fqvit``) under Verilator equal the golden
model on every element: corner, sweep and 2,000 random rows up to the unit's ``max_row``, lanes 1
and 4, two configs per unit, back-pressure, and the measured initiation interval of full rows.

Four Verilator builds in all (the interval tests reuse the lanes-1 builds)."""
import gc
import subprocess

import numpy as np
import pytest

from intvit.hw.export import export_verilog
from intvit.golden_model import registry
from intvit.golden_model.ops.softmax import IBertSoftmaxConfig, LogIntSoftmaxConfig
from intvit.golden_model.vectors import make_row_vectors, save_vectors
from intvit.hw.softmax_poly import exact_reciprocal
from intvit.hw.units import build_unit
from intvit.sim.toolchain import verilator_env
from intvit.sim.verify import ROW_COUNT, verify

MAX_ROW = 64
IBERT_EXAMPLE = IBertSoftmaxConfig.from_scale(0.05)
IBERT_FINE = IBertSoftmaxConfig.from_scale(0.02, out_bits=6)
FQVIT_EXAMPLE = LogIntSoftmaxConfig.from_scale(0.05)
FQVIT_FINE = LogIntSoftmaxConfig.from_scale(0.02, out_bits=5)



CASES = [
    pytest.param("softmax/ibert", IBERT_EXAMPLE, 1, 0.0, id="ibert-s0.05-out8-lanes1"),
    pytest.param("softmax/ibert", IBERT_FINE, 4, 0.25, id="ibert-s0.02-out6-lanes4-stalls"),
    pytest.param("softmax/fqvit", FQVIT_EXAMPLE, 4, 0.25, id="fqvit-s0.05-out4-lanes4-stalls"),
    pytest.param("softmax/fqvit", FQVIT_FINE, 1, 0.0, id="fqvit-s0.02-out5-lanes1"),
]


@pytest.mark.parametrize("name, cfg, lanes, stall", CASES)
def test_rtl_equals_golden(name, cfg, lanes, stall, tmp_path):
    # Each unit's stalled case runs the full 2,000 random rows; its second config 400, to keep
    # the suite's simulation time in bounds.
    rows = ROW_COUNT if stall else 400
    outcome = verify(name, cfg, lanes=lanes, max_row=MAX_ROW, work_dir=tmp_path,
                     source_idle=stall, sink_stall=stall, row_count=rows)
    lengths = np.load(outcome.vectors)["lengths"]
    assert len(lengths) > rows and lengths.max() == MAX_ROW
    assert outcome.result.mismatches == 0, outcome.summary()
    assert outcome.result.checked == lengths.sum()


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")  # row_overhead only
@pytest.mark.parametrize("name, cfg", [("softmax/ibert", IBERT_EXAMPLE),
                                       ("softmax/fqvit", FQVIT_FINE)])
def test_full_rows_back_to_back_at_the_stated_interval(name, cfg, tmp_path):
    """Rows of ``max_row`` elements with no stalls: the largest gap between the final beats of
    consecutive rows (the bench's ``max_row_interval``) is within ``beats + row_overhead``."""
    operator = registry.get(name)
    rows = [np.random.default_rng(i).integers(-128, 128, MAX_ROW) for i in range(24)]
    path = save_vectors(tmp_path / "full.npz", make_row_vectors(name, cfg, rows, operator.run))
    outcome = verify(name, cfg, lanes=1, max_row=MAX_ROW, work_dir=tmp_path, vectors_path=path)
    assert outcome.result.mismatches == 0, outcome.summary()
    interval = outcome.result.max_row_interval
    unit = build_unit(name, cfg, lanes=1, max_row=MAX_ROW)
    overhead = unit.row_overhead
    del unit
    gc.collect()  # its UnusedElaboratable warning falls inside this test's filter
    assert MAX_ROW <= interval <= MAX_ROW + overhead


@pytest.mark.parametrize("name, cfg", [("softmax/ibert", IBERT_EXAMPLE),
                                       ("softmax/fqvit", FQVIT_EXAMPLE)])
def test_verilog_is_lint_clean(name, cfg, tmp_path):
    target = tmp_path / "top.v"
    target.write_text(export_verilog(build_unit(name, cfg, lanes=2, max_row=MAX_ROW), "top"))
    lint = subprocess.run(["verilator", "--lint-only", str(target)], env=verilator_env(),
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stderr


@pytest.mark.parametrize("divisor", [1, 2, 3, 7, 14, 35, 69, 97, 128, 693, 1000])
@pytest.mark.parametrize("n_max", [255, 4095, 65535])
def test_constant_divider_is_exact_over_its_range(divisor, n_max):
    mult, shift = exact_reciprocal(divisor, n_max)
    n = np.arange(n_max + 1, dtype=object)  # Python ints: no overflow in the check itself
    assert all((n * mult) >> shift == n // divisor)
