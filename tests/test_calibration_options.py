"""The calibration options of issue 16 item 5, each against an independent computation: the
per-layer clip choice, GELU's asymmetric output with FC2's folded zero point, and the snapped
score scale of the shift-based softmax candidates."""
import math
from fractions import Fraction

import numpy as np
import pytest

from intvit.golden_model.calibration import (mse_scale, per_layer_choice, per_layer_scale,
                                             percentile_scale)
from intvit.golden_model.errors import IntvitError
from intvit.golden_model.ops.gelu import asymmetric_output, gelu
from intvit.golden_model.ops.requant import ChannelRequant
from intvit.golden_model.ops.softmax import SCALE_SNAPS, iptq, ivit
from intvit.golden_model.ops.softmax.common import log2e_shift_add
from intvit.golden_model.qvit import IntLinear, QuantSpec, fold_input_zero_point
from intvit.golden_model.registry import get

LOG2E = math.log2(math.e)


def direct_mse(x, scale):
    """Quantize-dequantize error of a symmetric 8-bit quantizer, written out."""
    codes = np.clip(np.round(x / scale), -127, 127)
    return float(np.mean((codes * scale - x) ** 2))


def test_per_layer_clip_beats_the_percentile_on_heavy_tails():
    x = np.random.default_rng(0).standard_t(2, 100_000)
    percentile = np.percentile(np.abs(x), 99.99) / 127
    grid = [np.max(np.abs(x)) * k / 64 / 127 for k in range(64, 0, -1)]
    searched = min(grid, key=lambda scale: direct_mse(x, scale))  # ties: the larger clip
    assert percentile_scale(x, 8) == pytest.approx(percentile)
    assert mse_scale(x, 8) == pytest.approx(searched)
    assert direct_mse(x, searched) < direct_mse(x, percentile)
    assert per_layer_choice(x, 8) == ("mse", pytest.approx(searched))
    # the percentile's clipping costs more than its whole rounding grid (step**2 / 12)
    assert direct_mse(x, percentile) > 2 * percentile ** 2 / 12


@pytest.mark.parametrize("sample", ["laplace", "normal", "uniform", "student"])
def test_per_layer_clip_is_the_lower_mse_of_the_two(sample):
    rng = np.random.default_rng(3)
    x = {"laplace": rng.laplace(size=1000), "normal": rng.normal(size=10_000),
         "uniform": rng.uniform(-1, 1, 100_000), "student": rng.standard_t(3, 20_000)}[sample]
    candidates = {"percentile": percentile_scale(x, 8), "mse": mse_scale(x, 8)}
    best = min(candidates, key=lambda name: direct_mse(x, candidates[name]))
    assert per_layer_choice(x, 8)[0] == best
    assert per_layer_scale(x, 8) == candidates[best]


def test_both_clips_occur():
    rng = np.random.default_rng(3)
    assert per_layer_choice(rng.uniform(-1, 1, 100_000), 8)[0] == "percentile"
    assert per_layer_choice(rng.standard_t(2, 100_000), 8)[0] == "mse"


@pytest.mark.parametrize("name", ["gelu/iptq", "gelu/ivit", "gelu/ibert"])
def test_asymmetric_gelu_output_spans_every_code(name):
    symmetric = get(name).example_config()
    cfg = asymmetric_output(symmetric)
    q = np.arange(-128, 128)
    exact = gelu(q * cfg.in_scale)
    assert cfg.out_scale == pytest.approx((exact.max() - exact.min()) / 255)
    assert cfg.out_scale < 0.52 * symmetric.out_scale  # about half the step
    y = get(name).run(cfg, q)
    assert y.min() == -128 and y.max() == 127
    assert cfg.dequantize_output(cfg.out_zero_point) == 0.0
    error = np.abs(cfg.dequantize_output(y) - exact).max()
    assert error < np.abs(symmetric.dequantize_output(get(name).run(symmetric, q)) - exact).max()


def test_folded_zero_point_equals_subtracting_it():
    rng = np.random.default_rng(1)
    cfg = asymmetric_output(get("gelu/iptq").example_config())
    z = cfg.out_zero_point
    assert z < -100  # GELU's negative side takes only a few codes
    y = get("gelu/iptq").run(cfg, rng.integers(-128, 128, (5, 7, 32)))
    weight = rng.integers(-127, 128, (24, 32))
    bias = rng.integers(-(1 << 20), 1 << 20, 24)
    expected = (y - z) @ weight.T + bias
    raw = fold_input_zero_point(IntLinear(weight, bias, None), z)
    assert np.array_equal(raw(y), expected)
    requant = ChannelRequant.from_scales(rng.uniform(1e-4, 1e-3, 24), 16)
    folded = fold_input_zero_point(IntLinear(weight, bias, requant), z)
    assert np.array_equal(folded(y), requant(expected))


@pytest.mark.parametrize("scale", [0.05, 0.037, 0.0213, 0.3, 0.0011])
@pytest.mark.parametrize("fold", [False, True])
def test_snapped_ivit_scale_makes_x0_and_log2e_exact(scale, fold):
    snap = ivit.snap_scale(scale, fold_log2e=fold)
    cfg = ivit.ShiftmaxConfig.from_scale(snap.config)
    assert snap.codes >= scale  # never finer: nothing clips that did not
    assert -cfg.x0 * snap.config == pytest.approx(1.0, abs=1e-15)  # x0 is exactly -1/S
    # the base-2 exponent Shiftmax reads, t / -x0, against the true d * S * log2(e)
    d = -16 * np.arange(1, 16)  # multiples of 16: the shift-add's floors are exact
    exponent = log2e_shift_add(d) / -cfg.x0
    truth = d * snap.codes * LOG2E
    if fold:
        np.testing.assert_allclose(exponent, truth, rtol=1e-12)
    else:
        np.testing.assert_allclose(exponent, truth * 1.4375 / LOG2E, rtol=1e-12)


@pytest.mark.parametrize("scale", [0.05, 0.037, 0.0213, 0.3, 0.0011])
@pytest.mark.parametrize("fold", [False, True])
def test_snapped_iptq_scale_makes_the_multiplier_and_log2e_exact(scale, fold):
    snap = iptq.snap_scale(scale, fold_log2e=fold)
    cfg = iptq.BitExpSoftmaxConfig.from_scale(snap.config)
    assert snap.codes >= scale and snap.codes < scale * (1 + 2 ** -14)
    assert Fraction(cfg.scale_mult, 1 << cfg.scale_shift) == Fraction(snap.config) * 2 ** 8
    x = np.arange(256)
    u = iptq.bit_exp_exponent(cfg, x)  # the base-2 exponent, 2**-12 units, rounded
    truth = x * snap.codes * LOG2E * 2 ** cfg.frac_bits
    if fold:
        assert np.abs(u - truth).max() <= 0.5 + 1e-6
    else:
        assert np.abs(u - truth).max() > 1  # 1.4375 is 0.36 % short of log2(e)


def test_only_the_shift_based_softmaxes_snap():
    assert sorted(SCALE_SNAPS) == ["softmax/iptq", "softmax/ivit"]


@pytest.mark.parametrize("field, value", [("calibrator", "median"), ("gelu_output", "unsigned"),
                                          ("score_snap", "pow2")])
def test_quant_spec_refuses_unknown_options(field, value):
    with pytest.raises(IntvitError, match=field) as error:
        QuantSpec(**{field: value})
    assert "\n" not in str(error.value)
