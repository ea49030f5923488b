"""``softmax/iptq``: the Bit-exp row unit (``hw/softmax/iptq.py``) under Verilator equals the
golden model on every output (8-bit example at 4 lanes with back-pressure; 6-bit coarse config
at one lane; 16-bit output at 197-element rows), keeps its stated interval on full rows, its
Verilog is lint clean, and 1024-element rows run bit-exact in Amaranth's simulator with the row
sum sized for them."""
import numpy as np
import pytest

from intvit.golden_model.ops.softmax.iptq import BitExpSoftmaxConfig, bit_exp
from intvit.hw.softmax.iptq import UNIT
from intvit.sim.softmax_checks import (MAX_ROW, STALL, WIDE_OUT_BITS,
                                       check_full_rows_interval, check_lint_clean,
                                       check_rows_in_amaranth, check_rtl_equals_golden,
                                       check_wide_output, extreme_rows)

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

NAME = "softmax/iptq"
EXAMPLE = BitExpSoftmaxConfig.from_scale(0.05)
COARSE = BitExpSoftmaxConfig.from_scale(0.2, in_bits=6, out_bits=6, max_row=MAX_ROW)
WIDE = BitExpSoftmaxConfig.from_scale(0.05, out_bits=WIDE_OUT_BITS, max_row=197)


@pytest.mark.parametrize("cfg, lanes, stall", [
    pytest.param(EXAMPLE, 4, STALL, id="example-lanes4-stalls"),
    pytest.param(COARSE, 1, 0.0, id="6bit-s0.2-lanes1"),
])
def test_rtl_equals_golden(cfg, lanes, stall, tmp_path):
    check_rtl_equals_golden(NAME, cfg, lanes, stall, tmp_path)


def test_full_rows_back_to_back_at_the_stated_interval(tmp_path):
    check_full_rows_interval(NAME, COARSE, 1, tmp_path)


def test_verilog_is_lint_clean(tmp_path):
    check_lint_clean(UNIT(EXAMPLE, lanes=4, max_row=MAX_ROW), tmp_path)


def test_row_sum_follows_max_row():
    """The sum register holds 1024 copies of the largest golden exponential over every offset;
    a full row of equal scores reaches that sum and comes out exact."""
    offsets = np.arange(1 - (1 << EXAMPLE.in_bits), 1, dtype=np.int64)
    unit = UNIT(EXAMPLE, lanes=4, max_row=1024)
    assert unit.sum_shape.width == (1024 * int(bit_exp(EXAMPLE, offsets).max())).bit_length()
    check_rows_in_amaranth(NAME, unit, EXAMPLE, extreme_rows(EXAMPLE, 1024, seed=1024))


def test_16bit_output_equals_golden(tmp_path):
    """16-bit probability codes (issue 15) at the config's longest row, 197 elements, 4 lanes
    with back-pressure: saturation, all-equal rows, the most negative offset, ties and random
    rows."""
    check_wide_output(NAME, WIDE, 4, STALL, tmp_path)
