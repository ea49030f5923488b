"""``softmax/fqvit``: the Log-Int-Softmax row unit (``hw/softmax/fqvit.py``) under Verilator
equals the golden model on every output (4-bit codes at 4 lanes with back-pressure; 5-bit codes,
whose pipelined divider has 31 stages, at one lane), keeps its stated interval on full rows, and
its Verilog is lint clean."""
import pytest

from intvit.golden_model.ops.softmax.fqvit import LogIntSoftmaxConfig
from intvit.hw.softmax.fqvit import UNIT
from intvit.sim.softmax_checks import (MAX_ROW, STALL, check_full_rows_interval,
                                       check_lint_clean, check_rtl_equals_golden)

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

NAME = "softmax/fqvit"
EXAMPLE = LogIntSoftmaxConfig.from_scale(0.05)
FINE = LogIntSoftmaxConfig.from_scale(0.02, out_bits=5)


@pytest.mark.parametrize("cfg, lanes, stall", [
    pytest.param(EXAMPLE, 4, STALL, id="s0.05-out4-lanes4-stalls"),
    pytest.param(FINE, 1, 0.0, id="s0.02-out5-lanes1"),
])
def test_rtl_equals_golden(cfg, lanes, stall, tmp_path):
    check_rtl_equals_golden(NAME, cfg, lanes, stall, tmp_path)


def test_full_rows_back_to_back_at_the_stated_interval(tmp_path):
    check_full_rows_interval(NAME, FINE, 1, tmp_path)


def test_verilog_is_lint_clean(tmp_path):
    check_lint_clean(UNIT(EXAMPLE, lanes=2, max_row=MAX_ROW), tmp_path)
