"""ASQNR, SQNR diff, KL and the unified metric against hand-computed values: every expected
number below is worked out by hand in the comments beside it."""
import math

import numpy as np
import pytest

from intvit.golden_model.errors import IntvitError
from intvit.golden_model.metrics import (OmegaWeights, Terms, choose, kl_mean_and_se, mean_kl,
                                         normalized, omega, omega_difference_noise, asqnr,
                                         sqnr_diff)


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


def test_kl_standard_error_is_over_the_images():
    # two images: the first identical (KL 0), the second with logits (0, 0) against (ln 3, 0):
    # KL(p || q) with p = (1/2, 1/2), q = (3/4, 1/4) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3)
    z_float = np.array([[0.0, 0.0], [0.0, 0.0]])
    z = np.array([[0.0, 0.0], [math.log(3), 0.0]])
    kl = 0.5 * math.log(4 / 3)  # 0.143841
    mean, se = kl_mean_and_se(z_float, z)
    assert mean == pytest.approx(kl / 2, rel=1e-9)
    # sample std of (0, kl) = kl / sqrt(2); over sqrt(2) images -> kl / 2
    assert se == pytest.approx(kl / 2, rel=1e-9)


def test_q_enters_as_its_noise_power_ratio():
    # 30 dB -> n = 1e-3, 20 dB -> n = 1e-2: q = 1e-3 / 1e-2 = 0.1 (not 20/30 as Q / max Q gave)
    # 23.0103 dB is 3.0103 dB above 20 dB: a factor of 2 in noise power
    norm = normalized({"a": (30.0, 1.0, 1.0), "b": (20.0, 1.0, 1.0),
                       "c": (23.0103, 1.0, 1.0)})
    assert norm["a"][0] == pytest.approx(1.0)
    assert norm["b"][0] == pytest.approx(0.1)
    assert norm["c"][0] == pytest.approx(0.2, rel=1e-5)


def test_omega_prefers_the_candidate_best_in_every_term():
    scores = omega({"a": (30.0, 0.01, 100.0), "b": (20.0, 0.02, 200.0)})
    assert scores["a"] == pytest.approx(1.0)
    # b: q = 1e-3 / 1e-2 = 0.1, p = 0.01 / 0.02 = 0.5, c = 100 / 200 = 0.5; weights 1, 1, 0.5
    # -> 2.5 / (1 / 0.1 + 1 / 0.5 + 0.5 / 0.5) = 2.5 / 13
    assert scores["b"] == pytest.approx(2.5 / 13)


def test_omega_weights_shift_the_choice():
    terms = {"cheap": (20.0, 0.02, 100.0), "accurate": (30.0, 0.01, 1000.0)}
    assert choose(terms, OmegaWeights(1, 1, 0)).name == "accurate"
    assert choose(terms, OmegaWeights(0, 0, 1)).name == "cheap"
    # Q only: cheap has q = 0.1, accurate 1
    assert omega(terms, OmegaWeights(1, 0, 0)) == pytest.approx({"cheap": 0.1, "accurate": 1.0})


def test_the_noise_of_p_ties_close_candidates_and_the_cheaper_wins():
    """P only (weights 0, 1, 0): Omega = p = P_a / P_b. a: P 0.0100, b: P 0.0105, b cheaper.

    Omega_a = 1, Omega_b = 0.0100 / 0.0105 = 0.952381, a difference of 0.047619. The noise:
    dOmega_b / dP_a = 1 / P_b = 95.2381, dOmega_b / dP_b = -P_a / P_b^2 = -90.7029, Omega_a does
    not move; with standard errors 0.001 each, sigma = sqrt((95.2381 * 0.001)^2 +
    (90.7029 * 0.001)^2) = sqrt(0.0090703 + 0.0082270) = 0.131519 > 0.047619: tied, and b, the
    cheaper, is chosen. With standard errors 0.0001, sigma = 0.0131519 < 0.047619: a wins."""
    weights = OmegaWeights(0, 1, 0)
    noisy = {"a": Terms(30.0, 0.0100, 200.0, 0.001), "b": Terms(30.0, 0.0105, 100.0, 0.001)}
    assert omega(noisy, weights)["b"] == pytest.approx(0.952381, abs=1e-6)
    assert omega_difference_noise(noisy, "a", "b", weights) == pytest.approx(0.131519, abs=1e-6)
    picked = choose(noisy, weights)
    assert (picked.top, picked.tied, picked.name) == ("a", ("a", "b"), "b")
    quiet = {n: t._replace(perturbation_se=0.0001) for n, t in noisy.items()}
    assert omega_difference_noise(quiet, "a", "b", weights) == pytest.approx(0.0131519,
                                                                              abs=1e-7)
    picked = choose(quiet, weights)
    assert (picked.top, picked.tied, picked.name) == ("a", ("a",), "a")


def test_the_noise_under_the_default_weights():
    """Weights 1, 1, 0.5, Q and C equal (q = c = 1), P_a = 0.010, P_b = 0.012, both 0.002.

    Omega_b = 2.5 / (1 + 0.012 / 0.010 + 0.5) = 2.5 / 2.7 = 0.925926 (a difference of 0.074074);
    K_b = w_P Omega_b^2 / 2.5 = 0.857339 / 2.5 = 0.342936; dOmega_b / dP_b = -K_b / P_a =
    -34.2936, dOmega_b / dP_a = K_b P_b / P_a^2 = 41.1523; sigma = 0.002 * sqrt(34.2936^2 +
    41.1523^2) = 0.002 * 53.5683 = 0.107137 > 0.074074: tied; equal cost, so the first name."""
    terms = {"b": Terms(30.0, 0.012, 100.0, 0.002), "a": Terms(30.0, 0.010, 100.0, 0.002)}
    assert omega(terms)["b"] == pytest.approx(2.5 / 2.7)
    assert omega_difference_noise(terms, "a", "b") == pytest.approx(0.107137, abs=1e-5)
    assert choose(terms) .tied == ("a", "b")
    # swap the names: the tie still goes by name, so "a" (now the worse Omega) wins
    swapped = {"a": terms["b"], "b": terms["a"]}
    picked = choose(swapped)
    assert (picked.top, picked.name) == ("b", "a")


def test_exact_ties_without_noise_go_to_the_cheaper_then_the_name():
    same = Terms(25.0, 1e-4, 0.0, 0.0)
    # C weighted 0: equal Omega (1 and 1), no noise; y is cheaper
    assert choose({"y": same._replace(cost=5.0), "x": same._replace(cost=7.0)},
                  OmegaWeights(1, 1, 0)).name == "y"
    assert choose({"y": same._replace(cost=5.0), "x": same._replace(cost=5.0)}).name == "x"
    assert choose({"y": same._replace(cost=5.0), "x": same._replace(cost=5.0)}).tied == ("x",
                                                                                         "y")


@pytest.mark.parametrize("weights", [(0, 0, 0), (-1, 1, 1), (1, float("nan"), 1),
                                     (1, 1, float("inf")), ("1", 1, 1), (True, 1, 1)])
def test_bad_weights(weights):
    with pytest.raises(IntvitError, match="Omega weight"):
        OmegaWeights(*weights)
