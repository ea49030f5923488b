"""``layernorm/fqvit``: the FQ-ViT PTF LayerNorm unit under Verilator equals the golden model on
every output (8-bit inputs at 4 lanes; 12-bit inputs with their calibrated power-of-two factors
at one lane with back-pressure), its Verilog is lint clean, and another candidate's config is
refused."""
import pytest

from intvit.golden_model.ops.layernorm.fqvit import NAME, example_fqvit
from intvit.golden_model.ops.layernorm.ivit import example_ivit
from intvit.hw.layernorm.fqvit import UNIT
from intvit.sim.layernorm_checks import STALL, check_lint_clean, check_rtl_equals_golden

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@pytest.mark.parametrize("cfg, lanes, stall", [
    pytest.param(example_fqvit(), 4, 0.0, id="int8-c64-lanes4"),
    pytest.param(example_fqvit(in_bits=12, out_bits=8, channels=16), 1, STALL,
                 id="int12-c16-lanes1-stalls"),
])
def test_rtl_equals_golden(cfg, lanes, stall, tmp_path):
    check_rtl_equals_golden(NAME, cfg, lanes, stall, tmp_path)


def test_verilog_is_lint_clean(tmp_path):
    check_lint_clean(UNIT(example_fqvit(channels=16), lanes=2), tmp_path)


def test_another_candidates_config_is_refused():
    with pytest.raises(TypeError, match="PTFLayerNormConfig"):
        UNIT(example_ivit(channels=16))
