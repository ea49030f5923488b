"""ASQNR, SQNR diff, KL and the unified metric against hand-computed values."""
import numpy as np
import pytest

from intvit.golden_model.errors import IntvitError
from intvit.golden_model.metrics import OmegaWeights, asqnr, mean_kl, omega, sqnr_diff


def test_asqnr_of_a_ten_percent_error_is_20_db():
    x = np.ones((4, 10))
    assert asqnr(x, 0.9 * x) == pytest.approx(20.0, abs=1e-9)


def test_asqnr_averages_per_sample_ratios():
    x = np.array([[1.0, 0.0], [2.0, 0.0]])
    q = np.array([[0.9, 0.0], [1.0, 0.0]])  # ratios 10 and 2 -> mean 6
    assert asqnr(x, q) == pytest.approx(20 * np.log10(6.0))


def test_sqnr_diff_is_output_minus_input():
    x = np.ones((2, 5))
    assert sqnr_diff(x, 0.9 * x, x, 0.99 * x) == pytest.approx(20.0)


def test_kl_is_zero_for_equal_logits_and_positive_otherwise():
    z = np.random.default_rng(0).normal(size=(8, 10))
    assert mean_kl(z, z) == pytest.approx(0.0, abs=1e-9)
    assert mean_kl(z, z[::-1]) > 0


def test_omega_prefers_the_candidate_best_in_every_term():
    scores = omega({"a": (30.0, 0.01, 100.0), "b": (20.0, 0.02, 200.0)})
    assert scores["a"] == pytest.approx(1.0)
    # b: q = 2/3, p = 1/2, c = 1/2 -> 2.5 / (1.5 + 2 + 1)
    assert scores["b"] == pytest.approx(2.5 / 4.5)


def test_omega_weights_shift_the_choice():
    terms = {"cheap": (20.0, 0.02, 100.0), "accurate": (30.0, 0.01, 1000.0)}
    assert max(omega(terms, OmegaWeights(1, 1, 0)).items(), key=lambda t: t[1])[0] == "accurate"
    assert max(omega(terms, OmegaWeights(0, 0, 1)).items(), key=lambda t: t[1])[0] == "cheap"


def test_bad_weights():
    with pytest.raises(IntvitError):
        OmegaWeights(0, 0, 0)
    with pytest.raises(IntvitError):
        OmegaWeights(-1, 1, 1)
