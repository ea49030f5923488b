"""The golden dyadic requantizer against an exact rational second implementation."""
import math
from fractions import Fraction

import numpy as np
import pytest

from intvit.golden_model.errors import ConfigError, IntvitError
from intvit.golden_model.ops.requant import (RequantConfig, corner_inputs, example_config, requantize,
                                      requantize_reference, sweep_inputs)
from integer_trap import FloatOperationError, trap_floats


def exact_requant(acc: int, cfg: RequantConfig) -> int:
    """round-half-up(acc * m / 2**e) + z, saturated, in exact rational arithmetic."""
    value = Fraction(acc * cfg.multiplier, 1 << cfg.shift)
    rounded = math.floor(value + Fraction(1, 2))
    lo, hi = cfg.out_range
    return min(max(rounded + cfg.zero_point, lo), hi)


CONFIGS = [example_config(),
           example_config(ratio=0.0173, bits=4, zero_point=3),
           example_config(ratio=0.61, bits=8, zero_point=100, signed=False),
           example_config(ratio=3.0e-7, bits=8)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"b{c.out_bits}z{c.zero_point}")
def test_matches_exact_rational_implementation(cfg):
    x = sweep_inputs(cfg, np.random.default_rng(1), count=4000)
    expected = [exact_requant(int(a), cfg) for a in x]
    assert requantize(cfg, x).tolist() == expected


@pytest.mark.parametrize("ratio", [1e-9, 3.3e-6, 0.0042, 0.4999999, 0.5, 0.75, 1.0, 7.3, 12345.678,
                                   2.0**30 * 1.9999999])
def test_scale_encoding_error_is_bounded(ratio):
    cfg = RequantConfig.from_scale(ratio)
    relative = abs(Fraction(cfg.multiplier, 1 << cfg.shift) - Fraction(ratio)) / Fraction(ratio)
    assert relative <= Fraction(1, 1 << 30)
    assert cfg.multiplier < 1 << 31


def test_random_scale_encoding_error_is_bounded():
    for ratio in np.exp(np.random.default_rng(2).uniform(np.log(1e-9), np.log(1e9), 500)):
        cfg = RequantConfig.from_scale(float(ratio))
        assert abs(cfg.ratio - ratio) / ratio <= 2.0**-30


def test_rounding_is_half_up_on_exact_ties():
    # m / 2**e = 1/4: acc = 2 -> 0.5 -> 1, acc = -2 -> -0.5 -> 0, acc = 6 -> 1.5 -> 2, -6 -> -1
    cfg = RequantConfig(multiplier=1 << 29, shift=31)
    assert requantize(cfg, np.array([2, -2, 6, -6, 10, -10])).tolist() == [1, 0, 2, -1, 3, -2]


def test_corner_inputs_contain_exact_ties_and_saturation():
    # 3/64 = 0.75 * 2**-4: m = 3 * 2**29, e = 35, so acc = odd * 2**5 lands exactly on .5
    cfg = example_config(ratio=3 / 64)
    corners = corner_inputs(cfg)
    products = [int(a) * cfg.multiplier for a in corners]
    half = 1 << (cfg.shift - 1)
    assert any(p % (1 << cfg.shift) == half for p in products), "no exact .5 tie among corners"
    y = requantize(cfg, corners)
    assert {-128, 127} <= set(y.tolist())
    assert {-(1 << 31), (1 << 31) - 1} <= set(corners.tolist())


def test_saturates_int4_with_zero_point():
    cfg = example_config(ratio=0.5, bits=4, zero_point=3)
    y = requantize(cfg, np.array([1000, -1000, 0, 8, 9, -22, -23]))
    # 0.5*acc rounded half up, +3, clamped to [-8, 7]
    assert y.tolist() == [7, -8, 3, 7, 7, -8, -8]


@pytest.mark.parametrize("cfg", CONFIGS[:2], ids=["int8", "int4"])
def test_close_to_the_float_function(cfg):
    x = np.random.default_rng(3).integers(-(1 << 20), 1 << 20, 20000)
    real = requantize_reference(cfg, x * cfg.in_scale)
    got = cfg.dequantize_output(requantize(cfg, x))
    assert np.max(np.abs(got - real)) <= 0.5 + 1e-6


def test_run_is_integer_only():
    cfg = example_config()
    x = sweep_inputs(cfg, np.random.default_rng(4), count=1000)
    assert requantize(cfg, trap_floats(x)).tolist() == requantize(cfg, x).tolist()


def test_float_trap_catches_float_arithmetic():
    with pytest.raises(FloatOperationError):
        trap_floats(np.arange(4)) * 0.5


def test_rejects_float_and_out_of_range_accumulators():
    cfg = example_config()
    with pytest.raises(IntvitError, match="integer array"):
        requantize(cfg, np.array([1.5]))
    with pytest.raises(IntvitError, match="int32"):
        requantize(cfg, np.array([1 << 31]))


@pytest.mark.parametrize("kwargs, field", [
    (dict(multiplier=5, shift=-1), "shift"), (dict(multiplier=5, shift=63), "shift"),
    (dict(multiplier=-1, shift=3), "multiplier"), (dict(multiplier=1 << 31, shift=3), "multiplier"),
    (dict(multiplier=5, shift=3, out_bits=1), "out_bits"),
    (dict(multiplier=5, shift=3, out_bits=17), "out_bits"),
    (dict(multiplier=5, shift=3, out_bits=4, zero_point=8), "zero_point")])
def test_bad_configs_are_one_line_errors(kwargs, field):
    with pytest.raises(ConfigError, match=field) as error:
        RequantConfig(**kwargs)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("ratio", [0.0, -1.0, float("nan"), float("inf"), 2.0**31, 1e-12])
def test_bad_scales_are_one_line_errors(ratio):
    with pytest.raises(IntvitError) as error:
        RequantConfig.from_scale(ratio)
    assert "\n" not in str(error.value)
