"""Checks shared by the LayerNorm testbenches (``sim/test_layernorm_<candidate>.py``): the unit
under Verilator equals the golden model on every output of a sweep (corner rows, the operator's
sweep rows, 2000 random rows), and its Verilog passes Verilator's lint."""
from pathlib import Path

from intvit.golden_model.vectors import load_vectors
from intvit.hw.export import export_verilog
from intvit.hw.units import build_unit
from intvit.sim.toolchain import lint_verilog
from intvit.sim.verify import verify

STALL = 0.25
"""Probability of an idle source cycle and of a stalled sink cycle in the back-pressure cases."""


def check_rtl_equals_golden(name, cfg, lanes, stall, work_dir):
    """Every output bit-exact; without stalls, full rows streamed back to back take no longer
    than the cycle model states: ``row_latency(C) + (rows - 1) * row_interval(C)``."""
    outcome = verify(name, cfg, lanes=lanes, work_dir=work_dir, source_idle=stall,
                     sink_stall=stall)
    rows = len(load_vectors(outcome.vectors).lengths)
    assert rows >= 2000
    assert outcome.result.checked == rows * cfg.channels
    assert outcome.result.mismatches == 0, outcome.summary()
    if stall == 0.0:  # every row is full length (C), streamed back to back
        unit = build_unit(name, cfg, lanes=lanes)
        bound = unit.row_latency(cfg.channels) + (rows - 1) * unit.row_interval(cfg.channels)
        assert outcome.result.cycles <= bound


def check_lint_clean(unit, work_dir):
    """``verilator --lint-only`` accepts the unit's Verilog."""
    lint = lint_verilog(export_verilog(unit, "top"), Path(work_dir) / "top.v")
    assert lint.returncode == 0, lint.stderr
