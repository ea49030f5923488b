"""The GEMM array under Verilator equals the golden GEMM on every output, and takes exactly the
cycles the dataflow model predicts.

Two 4x4 builds (int8 and int4 weights, two requantizer lanes time-shared by the drain) serve
the per-tensor tests; one 16-bit requantizer with a zero point keeps the outputs informative
(random sums land around +-300, the accumulator extremes around +-25,000 without saturating)
while the extreme biases saturate both ends. Two more 4x4 builds (int8 and int4) requantize per
output channel (``m, e`` streamed with the bias), checked on random matrices with random
per-channel requantizers, on extreme ``m, e`` and on the integer ViT's real QKV layer against
the model's own output. Builds with one lane and with a lane per column check the drain's
other sharing factors, and sources that wait for ``ready`` before raising ``valid`` check the
handshake.
"""
import dataclasses

import numpy as np
import pytest

from intvit.hw.export import export_verilog
from intvit.golden_model.gemm import (GemmConfig, example_channel_requant, example_config,
                               example_requant, gemm_beats)
from intvit.golden_model.integer import signed_range
from intvit.golden_model.ops.requant import MAX_SHIFT, MULTIPLIER_BITS, ChannelRequant, RequantConfig
from intvit.hw.gemm import Gemm
from intvit.sim.gemm_bench import BENCH, random_operands, save_gemm_vectors, simulate_gemm
from intvit.sim.runner import run_bench
from intvit.sim.toolchain import lint_verilog

K_MAX = 128
INT8 = GemmConfig(rows=4, cols=4, k_max=K_MAX, weight_bits=8)
INT4 = GemmConfig(rows=4, cols=4, k_max=K_MAX, weight_bits=4)
PER_CHANNEL = GemmConfig(rows=4, cols=4, k_max=K_MAX, weight_bits=8, per_channel=True)
PER_CHANNEL_INT4 = dataclasses.replace(PER_CHANNEL, weight_bits=4)
ONE_LANE = dataclasses.replace(INT8, requant_lanes=1)
LANE_PER_COLUMN = dataclasses.replace(INT4, requant_lanes=4)
REQUANT = RequantConfig.from_scale(0.0123, bits=16, zero_point=7)

SHAPES = {
    "5x7x6": (5, 7, 6),        # M, K, N not multiples of 4
    "M1": (1, 9, 6),
    "K1": (6, 1, 7),           # K < drain + 2: the time-shared drain paces the tiles
    "N1": (7, 10, 1),
    "1x1x1": (1, 1, 1),
    "K=R": (8, 4, 8),
    "9x33x10": (9, 33, 10),
}
INT4_SHAPES = ("5x7x6", "M1", "9x33x10")
"""Int4 weights change only the weight unpacking, so a few shapes suffice for them."""
CASES = ([pytest.param(INT8, shape, id=f"w8-{name}") for name, shape in SHAPES.items()] +
         [pytest.param(INT4, SHAPES[name], id=f"w4-{name}") for name in INT4_SHAPES] +
         [pytest.param(config, SHAPES[name], id=f"{label}-{name}")
          for config, label in ((ONE_LANE, "w8-1lane"), (LANE_PER_COLUMN, "w4-4lanes"))
          for name in ("K1", "9x33x10")])


def check(run):
    """No mismatch, and every lane of every output beat was compared (R*C per tile)."""
    m, _, n = run.shape
    assert run.result.mismatches == 0, run.summary()
    assert run.result.checked == -(-m // 4) * -(-n // 4) * 16


@pytest.mark.parametrize("config, shape", CASES)
def test_random_matrices_bit_exact_in_predicted_cycles(config, shape, tmp_path):
    a, w, bias = random_operands(config, shape, np.random.default_rng(sum(shape)))
    run = simulate_gemm(config, REQUANT, a, w, bias, work_dir=tmp_path)
    check(run)
    assert run.result.cycles == run.predicted


def test_bundled_fc1_shape_in_predicted_cycles(tmp_path):
    shape = (17, 64, 128)  # the bundled model's FC1
    a, w, bias = random_operands(INT8, shape, np.random.default_rng(3))
    run = simulate_gemm(INT8, REQUANT, a, w, bias, work_dir=tmp_path)
    check(run)
    assert run.result.cycles == run.predicted


@pytest.fixture(scope="module")
def qkv_layer():
    """Block 0's QKV of the W8A8 integer model: real int8 activations (a calibration image),
    the model's int8 weights, int32 bias and per-channel requantizer, and the model's output."""
    from intvit.golden_model.checkpoint import load_bundled
    from intvit.golden_model.dataset import load_splits
    from intvit.golden_model.qvit import QuantSpec, build_integer_vit, default_assignment, quantize_images

    model, config, _ = load_bundled()
    calibration = load_splits()["calibration"].images
    qmodel = build_integer_vit(model, calibration, default_assignment(config), QuantSpec())
    taps: dict = {}
    qmodel.forward(quantize_images(calibration[:1].numpy()), taps)
    linear = qmodel.blocks[0]["qkv"]
    x = taps["blocks.0.attn.qkv"][0]
    return x, linear, linear(x)


def test_real_bundled_qkv_layer(qkv_layer, tmp_path):
    x, linear, _ = qkv_layer
    run = simulate_gemm(INT8, REQUANT, x, linear.weight.T, linear.bias, work_dir=tmp_path)
    check(run)
    assert run.result.cycles == run.predicted


def test_real_qkv_layer_per_channel_equals_the_integer_model(qkv_layer, tmp_path):
    """With the model's own per-channel requantizer the array's output is the integer ViT's QKV
    output, read back from the output beats, bit for bit."""
    x, linear, model_out = qkv_layer
    config = dataclasses.replace(PER_CHANNEL, out_bits=linear.requant.out_bits)
    run = simulate_gemm(config, linear.requant, x, linear.weight.T, linear.bias,
                        work_dir=tmp_path)
    check(run)
    assert run.result.cycles == run.predicted
    assert np.array_equal(run.output, model_out)


PER_CHANNEL_CASES = ([pytest.param(PER_CHANNEL, shape, id=f"w8-{shape}")
                      for shape in [(5, 7, 6), (9, 33, 10), (1, 1, 1)]] +
                     [pytest.param(PER_CHANNEL_INT4, (9, 33, 10), id="w4-(9, 33, 10)")])


@pytest.mark.parametrize("config, shape", PER_CHANNEL_CASES)
def test_per_channel_random_matrices_bit_exact_in_predicted_cycles(config, shape, tmp_path):
    rng = np.random.default_rng(sum(shape))
    a, w, bias = random_operands(config, shape, rng)
    run = simulate_gemm(config, example_channel_requant(shape[2], rng), a, w, bias,
                        work_dir=tmp_path)
    check(run)
    assert run.result.cycles == run.predicted


@pytest.mark.parametrize("config", [PER_CHANNEL, PER_CHANNEL_INT4], ids=["w8", "w4"])
def test_per_channel_extreme_multipliers_and_shifts(config, tmp_path):
    """Per column: the largest ``m`` with the smallest and largest ``e``, ``m = 0``, ``e = 0``
    (no rounding constant), on the accumulator extremes, with back-pressure."""
    a, w, bias = extreme_operands(config)
    m_max = (1 << MULTIPLIER_BITS) - 1
    requant = ChannelRequant((m_max, m_max, 0, 1, 3 << 28, m_max), (MAX_SHIFT, 0, 5, 0, 31, 40))
    run = simulate_gemm(config, requant, a, w, bias, work_dir=tmp_path, sink_stall=0.3,
                        source_idle=0.2, seed=4)
    check(run)


def extreme_operands(config: GemmConfig):
    """K = k_max; activation rows all -128 / all 127 / alternating, weight columns all min /
    all max / alternating, so outputs hit both ends of the accumulator; two more columns carry
    the bias extremes on top (the int32 sum into the requantizer at its widest)."""
    a_lo, a_hi = signed_range(config.act_bits)
    w_lo, w_hi = signed_range(config.weight_bits)
    k = config.k_max
    alternating = np.resize([a_lo, a_hi], k)
    a = np.stack([np.full(k, a_lo), np.full(k, a_hi), alternating, np.full(k, a_lo),
                  np.full(k, a_hi)])
    w_columns = [np.full(k, w_lo), np.full(k, w_hi), np.resize([w_hi, w_lo], k),
                 np.full(k, w_lo), np.full(k, w_lo), np.full(k, w_hi)]
    b_lo, b_hi = signed_range(config.bias_bits)
    bias = np.array([0, 0, 0, 0, b_hi, b_lo])
    return a, np.stack(w_columns, axis=1), bias


@pytest.mark.parametrize("config", [INT8, INT4], ids=["w8", "w4"])
def test_extremes_stress_the_accumulator(config, tmp_path):
    a, w, bias = extreme_operands(config)
    a_lo, _ = signed_range(config.act_bits)
    w_lo, _ = signed_range(config.weight_bits)
    # all -128 times all -128 (-8) is the largest sum, which needs every accumulator bit
    assert a_lo * w_lo * config.k_max == 1 << (config.acc_bits - 2)
    run = simulate_gemm(config, REQUANT, a, w, bias, work_dir=tmp_path)
    check(run)
    assert run.result.cycles == run.predicted


def test_random_back_pressure_and_idle_sources(tmp_path):
    a, w, bias = random_operands(INT8, (9, 13, 10), np.random.default_rng(5))
    run = simulate_gemm(INT8, REQUANT, a, w, bias, work_dir=tmp_path, sink_stall=0.4,
                        source_idle=0.3, seed=11)
    check(run)
    assert run.result.cycles > run.predicted


@pytest.mark.parametrize("config", [INT8, PER_CHANNEL_INT4], ids=["w8", "w4-per-channel"])
def test_sources_that_wait_for_ready_are_served(config, tmp_path):
    """Every source raises ``valid`` only after seeing ``ready`` (AXI4-Stream allows it): the
    array's ``ready`` must not wait for any ``valid``, else nothing moves."""
    rng = np.random.default_rng(6)
    a, w, bias = random_operands(config, (9, 13, 10), rng)
    requant = example_channel_requant(10, rng) if config.per_channel else REQUANT
    run = simulate_gemm(config, requant, a, w, bias, work_dir=tmp_path, wait_ready=True,
                        sink_stall=0.2, seed=9)
    check(run)


def test_a_wrong_expectation_is_reported_with_a_waveform(tmp_path):
    """The bench can fail: one corrupted golden output is one mismatch, named, with a wave."""
    a, w, bias = random_operands(INT8, (3, 5, 6), np.random.default_rng(7))
    beats = gemm_beats(INT8, REQUANT, a, w, bias)
    out = beats.out.copy()
    out[5, 1] += 1  # tile 1 (rows 0..3, columns 4..7), row 1, lane 1: y[1, 5]
    path = save_gemm_vectors(tmp_path / "bad.npz", INT8, REQUANT,
                             dataclasses.replace(beats, out=out))
    result = run_bench(Gemm(INT8, REQUANT), BENCH, path, work_dir=tmp_path / "sim")
    assert result.mismatches == 1
    assert "y[1, 5]" in result.first_mismatch
    assert result.waveform is not None and result.waveform.stat().st_size > 0


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_8x8_verilog_is_lint_clean(per_channel, tmp_path):
    unit = (Gemm(example_config(rows=8, cols=8, per_channel=True)) if per_channel
            else Gemm(example_config(rows=8, cols=8), example_requant()))
    lint = lint_verilog(export_verilog(unit, "intvit_gemm"), tmp_path / "gemm.v")
    assert lint.returncode == 0 and "%Warning" not in lint.stderr, lint.stderr
