"""``layernorm/ibert``: the I-BERT LayerNorm unit under Verilator equals the golden model on
every output (8-bit inputs at 4 lanes; 16-bit inputs, which need the overflow shift, at one lane
with back-pressure), its Verilog is lint clean, and the unit's bit-serial root may stand in for
the golden model's Newton root."""
import math

import numpy as np
import pytest

from intvit.golden_model.ops.layernorm.common import newton_isqrt
from intvit.golden_model.ops.layernorm.ibert import NAME, example_ibert
from intvit.hw.layernorm.ibert import UNIT
from intvit.sim.layernorm_checks import STALL, check_lint_clean, check_rtl_equals_golden

WIDE = example_ibert(in_bits=16, out_bits=12, channels=16)
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@pytest.mark.parametrize("cfg, lanes, stall", [
    pytest.param(example_ibert(), 4, 0.0, id="int8-c64-lanes4"),
    pytest.param(WIDE, 1, STALL, id="int16-c16-lanes1-stalls"),
])
def test_rtl_equals_golden(cfg, lanes, stall, tmp_path):
    check_rtl_equals_golden(NAME, cfg, lanes, stall, tmp_path)


def test_wide_config_uses_the_overflow_shift():
    assert WIDE.var_shift > 0


@pytest.mark.parametrize("cfg", [example_ibert(), WIDE], ids=["int8-c64", "int16-c16"])
def test_newton_root_is_the_floor_root(cfg):
    """The unit's bit-serial root stands in for the golden model's Newton root: the Newton root
    equals ``math.isqrt`` on every radicand class up to the config's variance bound (exhaustive
    up to 2**16, every square and its neighbours near the top, random values)."""
    bound = cfg.sumsq_bound
    rng = np.random.default_rng(5)
    top = math.isqrt(bound)
    squares = {m * m + e for m in range(max(0, top - 2000), top + 1) for e in (-1, 0, 1)}
    values = set(range(min(bound, 1 << 16) + 1)) | squares | {bound}
    values |= {int(v) for v in rng.integers(0, bound, 20_000, endpoint=True)}
    v = np.array(sorted(x for x in values if 0 <= x <= bound), dtype=np.int64)
    want = np.array([math.isqrt(int(x)) for x in v])
    assert np.array_equal(newton_isqrt(v, cfg.sqrt_iterations), want)


def test_verilog_is_lint_clean(tmp_path):
    check_lint_clean(UNIT(example_ibert(channels=16), lanes=2), tmp_path)
