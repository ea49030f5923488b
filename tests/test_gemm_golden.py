"""The golden integer GEMM, its tiling, int4 packing and accumulator bound, against independent
references (numpy int64 matmul, Python-int loops with exact rational requantization)."""
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from intvit.golden_model.errors import ConfigError, IntvitError
from intvit.golden_model.gemm import (ARRAY_STAGES, DEIT_TINY_SHAPES, GemmConfig, drain_cycles,
                               gemm, gemm_accumulate, gemm_beats, output_latency, pack_int4,
                               predicted_cycles, reassemble, requant_latency, tile_period,
                               unpack_int4, utilization)
from intvit.golden_model.ops.requant import ChannelRequant, RequantConfig
from integer_trap import FloatOperationError, trap_floats

REQUANT = RequantConfig.from_scale(0.0173, bits=8, zero_point=-5)


def operands(config, shape, seed, bias_bits=20):
    rng = np.random.default_rng(seed)
    m, k, n = shape
    a_half, w_half = 1 << (config.act_bits - 1), 1 << (config.weight_bits - 1)
    return (rng.integers(-a_half, a_half, size=(m, k)), rng.integers(-w_half, w_half, size=(k, n)),
            rng.integers(-(1 << (bias_bits - 1)), 1 << (bias_bits - 1), size=n))


def exact_layer(a, w, bias, cfg: RequantConfig):
    """Python ints: sum of products plus bias, then round half up of acc * m / 2**e (a Fraction),
    plus the zero point, saturated."""
    lo, hi = cfg.out_range
    rows = []
    for i in range(len(a)):
        row = []
        for j in range(len(bias)):
            acc = sum(int(a[i][t]) * int(w[t][j]) for t in range(len(w))) + int(bias[j])
            rounded = math.floor(Fraction(acc * cfg.multiplier, 1 << cfg.shift) + Fraction(1, 2))
            row.append(min(max(rounded + cfg.zero_point, lo), hi))
        rows.append(row)
    return rows


@pytest.mark.parametrize("weight_bits", [8, 4])
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 7, 6), (9, 33, 2), (3, 64, 11)])
def test_matches_numpy_matmul_and_exact_requantization(weight_bits, shape):
    config = GemmConfig(rows=4, cols=4, k_max=64, weight_bits=weight_bits)
    a, w, bias = operands(config, shape, seed=sum(shape))
    expected_acc = np.matmul(a.astype(np.int64), w.astype(np.int64)) + bias
    assert np.array_equal(gemm_accumulate(config, a, w, bias), expected_acc)
    assert gemm(config, REQUANT, a, w, bias).tolist() == exact_layer(a, w, bias, REQUANT)


def test_run_is_integer_only():
    config = GemmConfig(rows=4, cols=4, k_max=64)
    a, w, bias = operands(config, (5, 7, 6), seed=1)
    with pytest.raises(FloatOperationError):
        trap_floats(a) * 0.5
    y = gemm(config, REQUANT, trap_floats(a), trap_floats(w), trap_floats(bias))
    assert y.tolist() == exact_layer(a, w, bias, REQUANT)


@pytest.mark.parametrize("config", [GemmConfig(rows=4, cols=4, k_max=64),
                                    GemmConfig(rows=3, cols=6, k_max=64, weight_bits=4),
                                    GemmConfig(rows=1, cols=2, k_max=64)],
                         ids=["4x4w8", "3x6w4", "1x2w8"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 5, 13), (8, 3, 12)])
def test_beats_carry_the_operands_and_reassemble_exactly(config, shape):
    a, w, bias = operands(config, shape, seed=7)
    beats = gemm_beats(config, REQUANT, a, w, bias)
    m, k, n = shape
    rows, cols = config.rows, config.cols
    tiles = [(m0, n0) for m0 in range(0, m, rows) for n0 in range(0, n, cols)]
    assert reassemble(config, m, n, beats.out).tolist() == exact_layer(a, w, bias, REQUANT)
    assert len(beats.act) == len(beats.weight) == len(tiles) * k
    assert len(beats.out) == len(tiles) * rows
    weights = (unpack_int4(beats.weight) if config.weight_bits == 4
               else beats.weight.astype(np.int64) - (beats.weight >= 128) * 256)
    for t, (m0, n0) in enumerate(tiles):
        for step in range(k):
            beat = t * k + step
            assert beats.act[beat].tolist() == [int(a[i, step]) if i < m else 0
                                                for i in range(m0, m0 + rows)]
            assert weights[beat].tolist() == [int(w[step, j]) if j < n else 0
                                              for j in range(n0, n0 + cols)]
            assert beats.act_last[beat] == (step == k - 1)
        assert beats.bias[t].tolist() == [int(bias[j]) if j < n else 0
                                          for j in range(n0, n0 + cols)]
        assert beats.out_last[t * rows:(t + 1) * rows].tolist() == [False] * (rows - 1) + [True]


def test_padding_outputs_are_what_the_array_computes():
    """Padding rows see zero activations (output = requantized bias), padding columns zero
    weights and bias (output = requantized 0, the zero point)."""
    config = GemmConfig(rows=4, cols=4, k_max=64)
    a, w, bias = operands(config, (2, 3, 2), seed=3)
    out = gemm_beats(config, REQUANT, a, w, bias).out
    bias_only = exact_layer(np.zeros((1, 1), int), np.zeros((1, 2), int), bias, REQUANT)[0]
    assert out[2:, :2].tolist() == [bias_only, bias_only]
    assert (out[:, 2:] == REQUANT.zero_point).all()


def test_int4_packing_round_trips_every_pair_low_nibble_first():
    pairs = np.array(list(itertools.product(range(-8, 8), repeat=2)))
    packed = pack_int4(pairs)
    assert packed.dtype == np.uint8 and packed.shape == (256, 1)
    assert sorted(packed[:, 0].tolist()) == list(range(256))
    assert np.array_equal(unpack_int4(packed), pairs)
    assert pack_int4([1, -1, -8, 7]).tolist() == [0xF1, 0x78]


def extreme_sums(k, act_bits, weight_bits):
    """The smallest and largest sums of k products, found by trying every corner product."""
    products = [x * y for x in (-(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1)
                for y in (-(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1)]
    return k * min(products), k * max(products)


@pytest.mark.parametrize("k_max", [1, 2, 3, 127, 128, 768, 4096, 65536])
@pytest.mark.parametrize("weight_bits", [8, 4])
def test_accumulator_width_is_the_tightest_that_holds_k_max_products(k_max, weight_bits):
    config = GemmConfig(k_max=k_max, weight_bits=weight_bits, cols=8)
    lo, hi = extreme_sums(k_max, 8, weight_bits)
    fits = [bits for bits in range(2, 64)
            if -(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1]
    assert config.acc_bits == fits[0]
    bias_lo, bias_hi = -(1 << (config.bias_bits - 1)), (1 << (config.bias_bits - 1)) - 1
    assert -(1 << 31) <= lo + bias_lo and hi + bias_hi <= (1 << 31) - 1


def test_largest_accumulator_is_reached():
    config = GemmConfig(rows=2, cols=2, k_max=16)
    acc = gemm_accumulate(config, np.full((1, 16), -128), np.full((16, 1), -128))
    assert acc[0, 0] == 16 * 128 * 128 and acc[0, 0] >= 1 << (config.acc_bits - 2)


@pytest.mark.parametrize("fields, words", [
    ({"weight_bits": 6}, "weight_bits"), ({"weight_bits": 4, "cols": 7}, "even"),
    ({"rows": 0}, "rows"), ({"act_bits": 4}, "act_bits"), ({"k_max": 0}, "k_max"),
    ({"k_max": 65537}, "k_max"), ({"bias_bits": 32}, "bias_bits"),
    ({"per_channel": 1}, "per_channel"), ({"out_bits": 1}, "out_bits"),
    ({"requant_lanes": 0}, "requant_lanes"), ({"requant_lanes": 16}, "requant_lanes"),
    ({"requant_lanes": 3}, "divide")])
def test_bad_configs_are_one_line_errors(fields, words):
    with pytest.raises(ConfigError, match=words) as error:
        GemmConfig(**fields)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("a, w, bias, words", [
    (np.ones((2, 3)), np.ones((3, 2), int), None, "integer"),
    (np.ones((2, 3), int), np.ones((4, 2), int), None, "M x K"),
    (np.ones((2, 65), int), np.ones((65, 2), int), None, "k_max"),
    (np.full((2, 3), 128), np.ones((3, 2), int), None, "activations"),
    (np.ones((2, 3), int), np.full((3, 2), 8), None, "weights"),
    (np.ones((2, 3), int), np.ones((3, 2), int), [1, 2, 3], "bias"),
    (np.ones((2, 3), int), np.ones((3, 2), int), [1 << 30, 0], "bias")])
def test_bad_operands_are_one_line_errors(a, w, bias, words):
    config = GemmConfig(rows=4, cols=4, k_max=64, weight_bits=4, bias_bits=30)
    with pytest.raises(IntvitError, match=words):
        gemm(config, REQUANT, a, w, bias)


def test_deit_tiny_large_layers_reach_the_utilization_goal():
    """Issue 6's goal, >= 90% on an 8x8 array; the only loss is padding 197 tokens to 200."""
    config = GemmConfig(rows=8, cols=8)
    for name, (m, k, n) in DEIT_TINY_SHAPES.items():
        cycles = predicted_cycles(m, k, n, config)
        assert cycles >= -(-m // 8) * -(-n // 8) * k, name  # one beat per cycle at best
        assert 0.9 <= utilization(m, k, n, config, cycles) <= 1.0, name


@pytest.mark.parametrize("cols, lanes", [(8, 2), (6, 2), (7, 1), (1, 1), (2, 2)])
def test_requant_lanes_default_to_two_where_the_columns_allow(cols, lanes):
    config = GemmConfig(rows=4, cols=cols)
    assert config.requant_lanes == lanes
    assert config == GemmConfig(rows=4, cols=cols, requant_lanes=lanes)
    assert drain_cycles(config) == 4 * cols // lanes


@pytest.mark.parametrize("k", [1, 16, 34, 35, 36, 768])
def test_tile_period_is_the_reduction_or_the_time_shared_drain(k):
    """8x8 with two lanes: 32 drain steps, and the buffer is free ARRAY_STAGES edges later."""
    config = GemmConfig(rows=8, cols=8)
    assert drain_cycles(config) == 32
    period = max(k, 32 + ARRAY_STAGES)
    assert tile_period(config, k) == period
    tiles = 3 * 2  # M = 17 -> 3 row tiles, N = 16 -> 2 column tiles
    assert predicted_cycles(17, k, 16, config) == (k + 5 * period + ARRAY_STAGES + 32
                                                   + requant_latency(config) + 1)
    assert predicted_cycles(17, k, 16, config) - predicted_cycles(8, k, 8, config) == \
        (tiles - 1) * tile_period(config, k)
    assert output_latency(config, 4) == ARRAY_STAGES + 4 + requant_latency(config) + 1


def exact_channel_layer(a, w, bias, requant: ChannelRequant):
    """Python ints: per output channel ``j``, round half up of ``acc * m_j / 2**e_j`` (a
    Fraction), saturated to signed ``out_bits``."""
    lo, hi = -(1 << (requant.out_bits - 1)), (1 << (requant.out_bits - 1)) - 1
    return [[min(max(math.floor(Fraction((sum(int(a[i][t]) * int(w[t][j]) for t in range(len(w)))
                                          + int(bias[j])) * requant.multipliers[j],
                                         1 << requant.shifts[j]) + Fraction(1, 2)), lo), hi)
             for j in range(len(bias))] for i in range(len(a))]


PER_CHANNEL = GemmConfig(rows=4, cols=4, k_max=64, per_channel=True)


@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 5, 13), (8, 3, 12)])
def test_per_channel_beats_carry_each_columns_requantizer(shape):
    a, w, bias = operands(PER_CHANNEL, shape, seed=11)
    m, _, n = shape
    requant = ChannelRequant.from_scales(np.geomspace(0.002, 0.05, n), bits=8)
    beats = gemm_beats(PER_CHANNEL, requant, a, w, bias)
    want = exact_channel_layer(a, w, bias, requant)
    assert gemm(PER_CHANNEL, requant, a, w, bias).tolist() == want
    assert reassemble(PER_CHANNEL, m, n, beats.out).tolist() == want
    tiles = [n0 for _ in range(0, m, 4) for n0 in range(0, n, 4)]
    for t, n0 in enumerate(tiles):
        columns = range(n0, n0 + 4)
        assert beats.multiplier[t].tolist() == [requant.multipliers[j] if j < n else 0
                                                for j in columns]
        assert beats.shift[t].tolist() == [requant.shifts[j] if j < n else 0 for j in columns]
        for lane in range(max(n - n0, 0), 4):  # padding columns: m = e = 0, outputs 0
            assert (beats.out[4 * t:4 * t + 4, lane] == 0).all()


@pytest.mark.parametrize("config, requant, words", [
    (PER_CHANNEL, REQUANT, "ChannelRequant"),
    (GemmConfig(rows=4, cols=4, k_max=64), ChannelRequant((1, 1), (0, 0)), "RequantConfig"),
    (PER_CHANNEL, ChannelRequant((1,), (0,)), "N=2"),
    (PER_CHANNEL, ChannelRequant((1, 1), (0, 0), out_bits=16), "8-bit")])
def test_requantizer_of_the_wrong_mode_is_a_one_line_error(config, requant, words):
    with pytest.raises(IntvitError, match=words) as error:
        gemm(config, requant, np.ones((2, 3), int), np.ones((3, 2), int))
    assert "\n" not in str(error.value)
