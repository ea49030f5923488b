"""``layernorm/ivit``: the I-ViT shift LayerNorm unit under Verilator equals the golden model on
every output (8-bit inputs at 4 lanes with back-pressure; 6-bit inputs at one lane), its Verilog
is lint clean, and a row buffer too small for the channels is refused."""
import pytest

from intvit.golden_model.ops.layernorm.ivit import NAME, example_ivit
from intvit.hw.layernorm.ivit import UNIT
from intvit.sim.layernorm_checks import STALL, check_lint_clean, check_rtl_equals_golden

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@pytest.mark.parametrize("cfg, lanes, stall", [
    pytest.param(example_ivit(), 4, STALL, id="int8-c64-lanes4-stalls"),
    pytest.param(example_ivit(in_bits=6, out_bits=6, channels=16), 1, 0.0, id="int6-c16-lanes1"),
])
def test_rtl_equals_golden(cfg, lanes, stall, tmp_path):
    check_rtl_equals_golden(NAME, cfg, lanes, stall, tmp_path)


def test_verilog_is_lint_clean(tmp_path):
    check_lint_clean(UNIT(example_ivit(channels=16), lanes=2), tmp_path)


def test_a_row_buffer_below_the_channels_is_refused():
    with pytest.raises(ValueError, match="below the config's 16 channels"):
        UNIT(example_ivit(channels=16), max_row=15)
