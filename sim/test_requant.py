"""The Requantizer RTL under Verilator equals the golden requantizer on every vector."""
import dataclasses

import pytest

from intvit.golden_model.ops.requant import example_config
from intvit.golden_model.errors import IntvitError
from intvit.golden_model.vectors import load_vectors, save_vectors
from intvit.hw.units import build_unit
from intvit.sim.runner import run_bench
from intvit.sim.verify import ELEMENTWISE_BENCH, sweep_vectors, verify

# 3/64 has exact .5 ties inside int32 (m = 3 * 2**29, e = 35); 0.0042 has none (see corner_inputs).
CASES = [
    pytest.param(example_config(), 1, 0.0, id="int8-lanes1"),
    pytest.param(example_config(ratio=3 / 64, bits=4, zero_point=3), 4, 0.3,
                 id="int4-zp3-lanes4-stalls"),
]


@pytest.mark.parametrize("cfg, lanes, stall", CASES)
def test_rtl_equals_golden(cfg, lanes, stall, tmp_path):
    outcome = verify("requant", cfg, lanes=lanes, work_dir=tmp_path, source_idle=stall,
                     sink_stall=stall)
    assert outcome.result.checked >= 100_000
    assert outcome.result.mismatches == 0, outcome.summary()
    if stall == 0.0:  # fully pipelined: one beat per cycle plus the pipeline fill
        beats = -(-outcome.result.checked // lanes)
        assert outcome.result.cycles <= beats + 10


def test_a_wrong_expectation_is_reported_with_a_waveform(tmp_path):
    """The bench can fail: one corrupted golden output gives exactly one mismatch and a wave
    (the bench is run directly: ``verify`` refuses such a file as bad input before any RTL)."""
    cfg = example_config()
    vectors = sweep_vectors("requant", cfg)
    y = vectors.y[:500].copy()
    y[123] += 1
    path = save_vectors(tmp_path / "bad.npz",
                        dataclasses.replace(vectors, x=vectors.x[:500], y=y))
    with pytest.raises(IntvitError):
        verify("requant", cfg, lanes=1, work_dir=tmp_path, vectors_path=path)
    result = run_bench(build_unit("requant", cfg), ELEMENTWISE_BENCH, path,
                       work_dir=tmp_path / "sim")
    assert result.mismatches == 1
    assert result.waveform is not None and result.waveform.stat().st_size > 0
    assert str(int(load_vectors(path).x[123])) in str(result.first_mismatch)
