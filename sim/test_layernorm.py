"""The LayerNorm row units (layernorm/ibert, layernorm/ivit, layernorm/fqvit) under Verilator
equal the golden model on every output: corner rows, the operator's sweep rows and 2000 random
rows per config, lanes 1 and 4, random back-pressure once per unit, and the row interval of
back-to-back rows within the stated bound."""
import math
import subprocess

import numpy as np
import pytest

from intvit.hw.export import export_verilog
from intvit.golden_model.ops import layernorm as ln
from intvit.golden_model.vectors import load_vectors
from intvit.hw.layernorm import IBertLayerNormUnit, PTFLayerNormUnit, ShiftLayerNormUnit
from intvit.hw.units import build_unit
from intvit.sim.toolchain import verilator_env
from intvit.sim.verify import verify

STALL = 0.25
# Second configs: I-BERT at 16 bits needs the overflow shift (var_shift 2); I-ViT at 6 bits;
# FQ-ViT at 12 bits with its calibrated power-of-two factors. C = 64 rows go 4 lanes wide and
# C = 16 rows one lane wide, which keeps each run near 20 s once built.
IBERT_WIDE = ln.example_ibert(in_bits=16, out_bits=12, channels=16)
CASES = [
    pytest.param("layernorm/ibert", ln.example_ibert(), 4, 0.0, id="ibert-int8-c64-lanes4"),
    pytest.param("layernorm/ibert", IBERT_WIDE, 1, STALL, id="ibert-int16-c16-lanes1-stalls"),
    pytest.param("layernorm/ivit", ln.example_ivit(), 4, STALL, id="ivit-int8-c64-lanes4-stalls"),
    pytest.param("layernorm/ivit", ln.example_ivit(in_bits=6, out_bits=6, channels=16), 1, 0.0,
                 id="ivit-int6-c16-lanes1"),
    pytest.param("layernorm/fqvit", ln.example_fqvit(), 4, 0.0, id="fqvit-int8-c64-lanes4"),
    pytest.param("layernorm/fqvit", ln.example_fqvit(in_bits=12, out_bits=8, channels=16), 1,
                 STALL, id="fqvit-int12-c16-lanes1-stalls"),
]
# Units built only to read their stated overhead, or refused, are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@pytest.mark.parametrize("name, cfg, lanes, stall", CASES)
def test_rtl_equals_golden(name, cfg, lanes, stall, tmp_path):
    outcome = verify(name, cfg, lanes=lanes, work_dir=tmp_path, source_idle=stall,
                     sink_stall=stall)
    rows = len(load_vectors(outcome.vectors).lengths)
    assert rows >= 2000
    assert outcome.result.checked == rows * cfg.channels
    assert outcome.result.mismatches == 0, outcome.summary()
    if stall == 0.0:  # every row is full length (C), streamed back to back
        unit = build_unit(name, cfg, lanes=lanes)
        per_row = outcome.result.cycles / rows
        assert per_row <= math.ceil(cfg.channels / lanes) + unit.row_overhead


@pytest.mark.parametrize("cfg", [ln.example_ibert(), IBERT_WIDE], ids=["int8-c64", "int16-c16"])
def test_ibert_newton_root_is_the_floor_root(cfg):
    """The unit's bit-serial root stands in for the golden model's Newton root: they agree on
    every radicand class up to the config's variance bound (exhaustive up to 2**16, every
    square and its neighbours near the top, random values)."""
    bound = cfg.sumsq_bound
    rng = np.random.default_rng(5)
    top = math.isqrt(bound)
    squares = {m * m + e for m in range(max(0, top - 2000), top + 1) for e in (-1, 0, 1)}
    values = set(range(min(bound, 1 << 16) + 1)) | squares | {bound}
    values |= {int(v) for v in rng.integers(0, bound, 20_000, endpoint=True)}
    v = np.array(sorted(x for x in values if 0 <= x <= bound), dtype=np.int64)
    want = np.array([math.isqrt(int(x)) for x in v])
    assert np.array_equal(ln.newton_isqrt(v, cfg.sqrt_iterations), want)


@pytest.mark.parametrize("cls, make", [(IBertLayerNormUnit, ln.example_ibert),
                                       (ShiftLayerNormUnit, ln.example_ivit),
                                       (PTFLayerNormUnit, ln.example_fqvit)])
def test_verilog_is_lint_clean(cls, make, tmp_path):
    target = tmp_path / "top.v"
    target.write_text(export_verilog(cls(make(channels=16), lanes=2), "top"))
    lint = subprocess.run(["verilator", "--lint-only", str(target)], env=verilator_env(),
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stderr


def test_a_row_buffer_below_the_channels_is_refused():
    with pytest.raises(ValueError, match="below the config's 16 channels"):
        ShiftLayerNormUnit(ln.example_ivit(channels=16), max_row=15)
    with pytest.raises(TypeError, match="PTFLayerNormConfig"):
        PTFLayerNormUnit(ln.example_ivit(channels=16))
