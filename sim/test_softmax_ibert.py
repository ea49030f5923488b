"""``softmax/ibert``: the i-exp softmax row unit (``hw/softmax/ibert.py``) under Verilator equals
the golden model on every output (example at one lane; a 6-bit-output config at 4 lanes with
back-pressure; 16-bit output at 197-element rows), keeps its stated interval on full rows, its
Verilog is lint clean, the published preset with the released code's polynomial runs bit-exact
in Amaranth's simulator, and the constant divider of i-exp's range reduction is exact."""
import numpy as np
import pytest

from intvit.golden_model.ops.softmax.ibert import IBertSoftmaxConfig
from intvit.hw.softmax.common import exact_reciprocal
from intvit.hw.softmax.ibert import UNIT
from intvit.sim.softmax_checks import (MAX_ROW, STALL, WIDE_OUT_BITS,
                                       check_full_rows_interval, check_lint_clean,
                                       check_rows_in_amaranth, check_rtl_equals_golden,
                                       check_wide_output, extreme_rows)

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

NAME = "softmax/ibert"
EXAMPLE = IBertSoftmaxConfig.from_scale(0.05)
FINE = IBertSoftmaxConfig.from_scale(0.02, out_bits=6)
WIDE = IBertSoftmaxConfig.from_scale(0.03, out_bits=WIDE_OUT_BITS, max_row=197)


@pytest.mark.parametrize("cfg, lanes, stall", [
    pytest.param(EXAMPLE, 1, 0.0, id="s0.05-out8-lanes1"),
    pytest.param(FINE, 4, STALL, id="s0.02-out6-lanes4-stalls"),
])
def test_rtl_equals_golden(cfg, lanes, stall, tmp_path):
    check_rtl_equals_golden(NAME, cfg, lanes, stall, tmp_path)


def test_full_rows_back_to_back_at_the_stated_interval(tmp_path):
    check_full_rows_interval(NAME, EXAMPLE, 1, tmp_path)


def test_verilog_is_lint_clean(tmp_path):
    check_lint_clean(UNIT(EXAMPLE, lanes=2, max_row=MAX_ROW), tmp_path)


@pytest.mark.parametrize("scale", [0.05, 0.0123])
def test_code_polynomial_preset_is_bit_exact(scale):
    """The released code's ``r*(r + b_int) + c_int`` (``published``, ``b2_int = 0``) through the
    same unit: extreme rows and 16 random rows, 2 lanes."""
    cfg = IBertSoftmaxConfig.published(scale, max_row=MAX_ROW)
    assert cfg.polynomial == "code" and cfg.b2_int == 0
    rng = np.random.default_rng(7)
    rows = extreme_rows(cfg, MAX_ROW, seed=3) + [
        list(rng.integers(-128, 128, int(rng.integers(1, MAX_ROW + 1)))) for _ in range(16)]
    check_rows_in_amaranth(NAME, UNIT(cfg, lanes=2, max_row=MAX_ROW), cfg, rows)


@pytest.mark.parametrize("divisor", [1, 2, 3, 7, 14, 35, 69, 97, 128, 693, 1000])
@pytest.mark.parametrize("n_max", [255, 4095, 65535])
def test_constant_divider_is_exact_over_its_range(divisor, n_max):
    mult, shift = exact_reciprocal(divisor, n_max)
    n = np.arange(n_max + 1, dtype=object)  # Python ints: no overflow in the check itself
    assert all((n * mult) >> shift == n // divisor)


def test_16bit_output_equals_golden(tmp_path):
    """16-bit probability codes (issue 15) at the config's longest row, 197 elements, 2 lanes
    with back-pressure: saturation, all-equal rows, the most negative offset, ties and random
    rows."""
    check_wide_output(NAME, WIDE, 2, STALL, tmp_path)


def test_scores_finer_than_one_octave_of_the_input_range(tmp_path):
    """DeiT-Tiny's calibrated score scale (0.00227: ``x0_int = -306``, so every 8-bit
    difference stays within one octave and ``k`` is always 0): the unit's ``k`` keeps one bit
    (it had none, and Verilator refused the Verilog), lints clean, and is bit-exact."""
    cfg = IBertSoftmaxConfig.from_scale(0.00227)
    assert -cfg.x0_int > (1 << cfg.in_bits) - 1
    check_lint_clean(UNIT(cfg, lanes=1, max_row=MAX_ROW), tmp_path)
    rows = extreme_rows(cfg, MAX_ROW, seed=5) + [
        list(np.random.default_rng(5).integers(-128, 128, MAX_ROW)) for _ in range(8)]
    check_rows_in_amaranth(NAME, UNIT(cfg, lanes=1, max_row=MAX_ROW), cfg, rows)
