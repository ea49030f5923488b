"""The log quantizer unit and the shift-log dequantize-multiply unit equal their golden models
bit for bit under Verilator via cocotb, on every input code, base sqrt(2) and base 2 (lanes 1 and
4, back-pressure once), and their Verilog is lint-clean."""

import numpy as np
import pytest

from intvit.hw.export import export_verilog
from intvit.golden_model.ops.log2quant import (Log2MultiplyConfig, example_config, log2_multiply)
from intvit.golden_model.vectors import make_vectors, save_vectors
from intvit.hw.log2quant import Log2MultiplyUnit, Log2QuantUnit
from intvit.sim.runner import run_bench
from intvit.sim.toolchain import lint_verilog
from intvit.sim.verify import ELEMENTWISE_BENCH, verify

STALL = 0.25

CASES = [
    pytest.param(example_config(), 1, 0.0, id="softmax-sqrt2-u8-k4-lanes1"),
    pytest.param(example_config(in_scale=0.01, scale=4.0, in_signed=True, minimum=-0.17,
                                in_bits=10, out_bits=6, steps=1), 4, STALL,
                 id="shift-log2-base2-s10-k6-lanes4-stalls"),
]


@pytest.mark.parametrize("cfg, lanes, stall", CASES)
def test_rtl_equals_golden_on_every_input(cfg, lanes, stall, tmp_path):
    outcome = verify("log2quant", cfg, lanes=lanes, work_dir=tmp_path, source_idle=stall,
                     sink_stall=stall)
    assert outcome.result.checked == 1 << cfg.in_bits
    assert outcome.result.mismatches == 0, outcome.summary()
    if stall == 0.0:  # one beat per cycle after the pipeline fills
        beats = -(-outcome.result.checked // lanes)
        unit = Log2QuantUnit(cfg, lanes=lanes)
        unit._MustUse__silence = True
        assert outcome.result.cycles <= beats + unit.latency


@pytest.mark.parametrize("steps, weight_bits, frac_bits, lanes, stall",
                         [(2, 4, None, 1, 0.0), (1, 8, 10, 4, STALL), (2, 8, 5, 2, 0.0)])
def test_multiply_rtl_equals_golden_on_every_operand_pair(steps, weight_bits, frac_bits, lanes,
                                                          stall, tmp_path):
    """Every (weight, code) pair; ``frac_bits`` below the largest shift exercises the floored
    shifts of negative weights."""
    cfg = Log2MultiplyConfig.for_quantizer(example_config(steps=steps), weight_bits, frac_bits)
    packed = np.arange(-(1 << (cfg.in_bits - 1)), 1 << (cfg.in_bits - 1), dtype=np.int64)
    path = save_vectors(tmp_path / "vectors.npz",
                        make_vectors("log2quant/multiply", cfg, packed,
                                     log2_multiply(cfg, packed)))
    result = run_bench(Log2MultiplyUnit(cfg, lanes=lanes), ELEMENTWISE_BENCH, path,
                       work_dir=tmp_path / "sim",
                       env={"INTVIT_LANES": str(lanes), "INTVIT_SEED": "3",
                            "INTVIT_SOURCE_IDLE": str(stall), "INTVIT_SINK_STALL": str(stall)})
    assert result.checked == 1 << cfg.in_bits
    assert result.mismatches == 0, result.first_mismatch


@pytest.mark.parametrize("unit", [Log2QuantUnit(example_config(), lanes=2),
                                  Log2MultiplyUnit(Log2MultiplyConfig(4, 4, 7, steps=2), lanes=2),
                                  Log2MultiplyUnit(Log2MultiplyConfig(4, 4, 14), lanes=2)],
                         ids=["log2quant", "multiply-sqrt2", "multiply-base2"])
def test_verilog_is_lint_clean(unit, tmp_path):
    lint = lint_verilog(export_verilog(unit, "top"), tmp_path / "top.v")
    assert lint.returncode == 0, lint.stderr
