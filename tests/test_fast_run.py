"""The operators' internal entry point for the integer ViT (issue 15, ``Operator.fast_run``):
float codes in the input range (a saturating requantizer's output) through float arithmetic
proven exact, equal to the validating ``run`` bit for bit on sweeps, corner rows and widths from
4 to 16 bits; declining (``None``) where a bound or the row shape does not fit."""
import numpy as np
import pytest

from intvit.golden_model.ops.layernorm import (IBertLayerNormConfig, ShiftLayerNormConfig,
                                               example_affine)
from intvit.golden_model.ops.softmax import (BitExpSoftmaxConfig, IBertSoftmaxConfig,
                                             ShiftmaxConfig)
from intvit.golden_model.registry import REGISTRY, get

FAST = sorted(name for name, operator in REGISTRY.items() if operator.fast_run is not None)


def test_the_fast_operators():
    assert FAST == ["gelu/ibert", "gelu/iptq", "gelu/ivit", "layernorm/ibert", "layernorm/ivit",
                    "softmax/ibert", "softmax/iptq", "softmax/ivit"]


def configs(name):
    """The example config and wider and narrower ones of each fast operator."""
    operator = get(name)
    found = [operator.example_config()]
    kind = name.split("/")[0]
    if kind == "gelu":
        found += [operator.example_config(in_bits=4, out_bits=4, in_scale=0.5),
                  operator.example_config(in_bits=12, out_bits=16, in_scale=0.002)]
    elif kind == "softmax":
        found += [operator.example_config(in_bits=6, out_bits=6, max_row=64, in_scale=0.2),
                  operator.example_config(out_bits=16, in_scale=0.02),
                  operator.example_config(in_bits=12, out_bits=12, max_row=256,
                                          in_scale=0.003)]
    else:
        config_type = operator.config_type
        gamma, beta = example_affine(192, seed=3)
        found += [config_type.from_scale(0.02, gamma, beta, in_bits=8, out_bits=8),
                  config_type.from_scale(0.001, gamma, beta, in_bits=16, out_bits=16),
                  config_type.from_scale(0.3, gamma[:5], beta[:5], in_bits=4, out_bits=4)]
    return found


CASES = [(name, index, config) for name in FAST for index, config in enumerate(configs(name))]


def inputs(name, config, rng):
    """The operator's sweep (every code of a GELU; corner and random rows of the others), as rows
    where the operator is row-wise, and for rows more of them in a batch of shape (2, n, C)."""
    operator = get(name)
    q = operator.sweep_inputs(config, rng)
    if operator.row_wise and q.shape[0] % 2 == 0:
        q = q.reshape(2, q.shape[0] // 2, q.shape[1])
    return q


@pytest.mark.parametrize("name,index,config", CASES,
                         ids=[f"{name}-{index}" for name, index, _ in CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_run_equals_run(name, index, config, dtype):
    rng = np.random.default_rng(index)
    operator = get(name)
    q = inputs(name, config, rng)
    expected = operator.run(config, q)
    codes = q.astype(dtype)
    result = operator.fast_run(config, codes)
    assert result is not None
    assert result.dtype == np.float32 and result.shape == expected.shape
    np.testing.assert_array_equal(result.astype(np.int64), expected)
    np.testing.assert_array_equal(codes, q)  # the input is left alone


@pytest.mark.parametrize("config_type", [BitExpSoftmaxConfig, ShiftmaxConfig,
                                         IBertSoftmaxConfig])
def test_softmax_declines_rows_beyond_max_row_and_single_rows_work(config_type):
    config = config_type.from_scale(0.05, max_row=8)
    operator = get(config_type.OP_NAME)
    assert operator.fast_run(config, np.zeros((2, 9), np.float32)) is None
    assert operator.fast_run(config, np.zeros(0, np.float32).reshape(1, 0)) is None
    single = np.array([[3.0], [-128.0]], np.float32)
    np.testing.assert_array_equal(operator.fast_run(config, single),
                                  operator.run(config, single.astype(np.int64)))


@pytest.mark.parametrize("name,config_type", [("layernorm/ibert", IBertLayerNormConfig),
                                              ("layernorm/ivit", ShiftLayerNormConfig)])
def test_layernorm_declines_other_row_lengths(name, config_type):
    gamma, beta = example_affine(16)
    config = config_type.from_scale(0.05, gamma, beta)
    assert get(name).fast_run(config, np.zeros((3, 15), np.float32)) is None
