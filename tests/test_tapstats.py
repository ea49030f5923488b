"""Activation statistics in bounded memory (issue 15): each tap keeps its exact max-abs and a
bottom-k uniform sample of its rows that does not depend on the batching, all rows when they fit
(so small calibration sets are calibrated on exactly their activations)."""
import numpy as np
import pytest
import torch

from intvit.golden_model import tapstats
from intvit.golden_model.calibration import percentile_scale
from intvit.golden_model.errors import IntvitError
from intvit.golden_model.tapstats import TapSample, TapStatistics


def feed(sample: TapSample, x: np.ndarray, batch: int) -> TapSample:
    for start in range(0, len(x), batch):
        sample.add(x[start:start + batch])
    return sample


def test_rows_that_fit_are_kept_whole_and_in_order():
    x = np.random.default_rng(1).normal(size=(20, 3, 5)).astype(np.float32)
    sample = feed(TapSample("t"), x, 3)
    assert np.array_equal(sample.sample(), x.reshape(-1, 5).astype(np.float64))
    assert sample.max_abs == float(np.max(np.abs(x)))


def test_sample_is_bounded_and_independent_of_the_batching(monkeypatch):
    monkeypatch.setattr(tapstats, "SAMPLE_VALUES", 400)  # 100 rows of 4
    x = np.random.default_rng(2).normal(size=(1000, 4))
    whole = feed(TapSample("t"), x, 1000).sample()
    for batch in (1, 7, 333):
        assert np.array_equal(feed(TapSample("t"), x, batch).sample(), whole)
    assert whole.shape == (100, 4)
    rows = {tuple(row) for row in x}
    assert all(tuple(row) in rows for row in whole)


def test_sample_is_uniform_over_the_stream(monkeypatch):
    """Rows 0..9999 in arrival order, 1,000 kept: each half of the stream holds about half of
    the sample (binomial standard deviation sqrt(1000/4) ~ 16; 5 of them allowed)."""
    monkeypatch.setattr(tapstats, "SAMPLE_VALUES", 1000)
    x = np.arange(10_000, dtype=np.float64).reshape(-1, 1)
    kept = feed(TapSample("t"), x, 64).sample().ravel()
    assert len(kept) == 1000 and len(set(kept)) == 1000
    assert abs(np.sum(kept < 5000) - 500) < 5 * 16
    assert np.all(np.diff(kept) > 0)  # arrival order


def test_percentile_of_the_sample_is_close_to_the_exact_one(monkeypatch):
    """A 2**16-value sample of 2**20 heavy-tailed values: the 99.99th-percentile clip moves by
    a few percent at most."""
    monkeypatch.setattr(tapstats, "SAMPLE_VALUES", 1 << 16)
    x = np.random.default_rng(3).standard_t(4, size=(1 << 14, 64))
    sample = feed(TapSample("t"), x, 1024).sample()
    assert percentile_scale(sample, 8) == pytest.approx(percentile_scale(x, 8), rel=0.1)


def test_non_finite_activations_are_a_one_line_error():
    with pytest.raises(IntvitError, match="blocks.0.norm1.*NaN or infinite"):
        TapSample("blocks.0.norm1").add(np.array([[1.0, np.inf]]))


def test_statistics_keep_only_the_named_taps_and_take_tensors():
    stats = TapStatistics({"a"})
    stats.add({"a": torch.ones(2, 3), "b": torch.zeros(2, 3)})
    assert stats.max_abs("a") == 1.0 and stats.sample("a").shape == (2, 3)
    with pytest.raises(IntvitError, match="no activations recorded"):
        stats.sample("b")
