"""``softmax/ivit``: the Shiftmax row unit (``hw/softmax/ivit.py``) under Verilator equals the
golden model on every output (example at one lane with back-pressure; I-ViT's published ``n = 15``
at 4 lanes; 16-bit output at 256-element rows), keeps its stated interval on full rows, its
Verilog is lint clean, its constant divider is exact over its range, and long rows (one with a
row sum past I-ViT's ``2**31 - 1`` clamp) run bit-exact in Amaranth's simulator."""
import numpy as np
import pytest

from intvit.golden_model.ops.softmax.ivit import ShiftmaxConfig, shift_exp
from intvit.hw.softmax.common import exact_reciprocal
from intvit.hw.softmax.ivit import UNIT
from intvit.sim.softmax_checks import (MAX_ROW, STALL, WIDE_OUT_BITS,
                                       check_full_rows_interval, check_lint_clean,
                                       check_rows_in_amaranth, check_rtl_equals_golden,
                                       check_wide_output, extreme_rows)

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

NAME = "softmax/ivit"
EXAMPLE = ShiftmaxConfig.from_scale(0.05)
PUBLISHED = ShiftmaxConfig.published(0.1, out_bits=6)
FINE_PUBLISHED = ShiftmaxConfig.published(0.0005, in_bits=12)
WIDE = ShiftmaxConfig.from_scale(1 / 16, out_bits=WIDE_OUT_BITS, max_row=256)


@pytest.mark.parametrize("cfg, lanes, stall", [
    pytest.param(EXAMPLE, 1, STALL, id="example-lanes1-stalls"),
    pytest.param(PUBLISHED, 4, 0.0, id="published-n15-out6-lanes4"),
])
def test_rtl_equals_golden(cfg, lanes, stall, tmp_path):
    check_rtl_equals_golden(NAME, cfg, lanes, stall, tmp_path)


def test_full_rows_back_to_back_at_the_stated_interval(tmp_path):
    check_full_rows_interval(NAME, PUBLISHED, 4, tmp_path)


def test_verilog_is_lint_clean(tmp_path):
    check_lint_clean(UNIT(EXAMPLE, lanes=4, max_row=MAX_ROW), tmp_path)


@pytest.mark.parametrize("cfg", [EXAMPLE, PUBLISHED, FINE_PUBLISHED,
                                 ShiftmaxConfig.from_scale(0.003, in_bits=12, max_row=256),
                                 ShiftmaxConfig.published(2.0 ** -16, in_bits=16)])
def test_octave_divider_is_exact_over_its_range(cfg):
    """``k = (a * M) >> sd == a // -x0`` for every ``a`` in ``0..-t_min``."""
    a_max = -cfg.t_min
    mult, shift = exact_reciprocal(-cfg.x0, a_max)
    a = np.arange(a_max + 1, dtype=object)  # Python ints: no int64 overflow
    assert all((a * mult) >> shift == a // -cfg.x0)


@pytest.mark.parametrize("cfg, max_row, clamps", [
    pytest.param(EXAMPLE, 1024, False, id="example-1024"),
    pytest.param(FINE_PUBLISHED, 64, True, id="published-fine-sum-clamps"),
])
def test_row_sum_follows_max_row(cfg, max_row, clamps):
    """The sum register holds ``max_row`` copies of the largest golden exponential over every
    offset; the second case's sum exceeds I-ViT's 2**31 - 1 and exercises the clamp."""
    offsets = np.arange(1 - (1 << cfg.in_bits), 1, dtype=np.int64)
    top = int(shift_exp(cfg, offsets).max())
    unit = UNIT(cfg, lanes=4, max_row=max_row)
    assert unit.sum_shape.width == (max_row * top).bit_length()
    assert (max_row * top > 2 ** 31 - 1) == clamps
    check_rows_in_amaranth(NAME, unit, cfg, extreme_rows(cfg, max_row, seed=max_row))


def test_16bit_output_equals_golden(tmp_path):
    """16-bit probability codes (issue 15) at the config's longest row, 256 elements, one lane:
    saturation, all-equal rows, the most negative offset, ties and random rows."""
    check_wide_output(NAME, WIDE, 1, 0.0, tmp_path)
