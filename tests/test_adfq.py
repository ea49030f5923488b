"""ADFQ-ViT: the log2quant operator against exact Python-int and Fraction implementations, the
per-patch outlier quantizer against the paper's formulas written per row, its int16 variant
against an integer implementation, AdaRound's definition, reconstruction lowering the module
error, and one-line errors for bad settings."""
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from intvit.golden_model import adfq as A
from intvit.golden_model import adfq_pipeline as P
from intvit.golden_model import reconstruct as R
from intvit.golden_model.checkpoint import load_bundled
from intvit.golden_model.dataset import Split, load_splits
from intvit.golden_model.errors import ConfigError, IntvitError
from intvit.golden_model.ops import log2quant as L
from intvit.golden_model.registry import get
from integer_trap import trap_floats

# ------------------------------------------------------------------------ log2quant operator

CONFIGS = [L.example_config(),
           L.example_config(in_scale=0.01, scale=4.0, in_signed=True, minimum=-0.17),
           L.example_config(steps=1),
           L.example_config(in_scale=0.01, scale=4.0, in_signed=True, minimum=-0.17, steps=1),
           L.example_config(in_bits=12, in_scale=2.0 ** -12, out_bits=6),
           L.example_config(in_bits=16, in_scale=1e-4, scale=3.0, out_bits=8, in_signed=True,
                            minimum=-0.2),
           L.example_config(in_bits=16, in_scale=1e-4, scale=3.0, out_bits=8, steps=1),
           L.example_config(in_bits=2, in_scale=0.5, out_bits=1),
           L.example_config(in_scale=0.01, scale=4.0, in_signed=True, minimum=-0.17,
                            align_zero=True),
           L.Log2QuantConfig(in_bits=6, in_signed=True, out_bits=3, offset=-5, ref_shift=0,
                             steps=1, round_thresholds=L.round_thresholds(5, 1), in_scale=1.0)]
IDS = ["softmax", "shift-gelu", "softmax-base2", "shift-gelu-base2", "u12-k6", "s16-k8",
       "u16-k8-base2", "u2-k1", "shift-gelu-aligned", "negative-offset"]


def exact_code(cfg, q: int) -> int:
    """clamp(n ref_shift - round(n log2 x)) in Python ints, with round(log2 x) = l + [x**2 >=
    2**(2l+1)] (n = 1) and round(2 log2 x) = 2l + [x**4 >= 2**(4l+1)] + [x**4 >= 2**(4l+3)]
    (n = 2); no ties, as those powers of two are no squares or fourth powers."""
    x = q + cfg.offset
    if x < 1:
        return cfg.top_code
    lead = x.bit_length() - 1
    if cfg.steps == 1:
        rounded = lead + (x ** 2 >= 1 << (2 * lead + 1))
    else:
        rounded = 2 * lead + (x ** 4 >= 1 << (4 * lead + 1)) + (x ** 4 >= 1 << (4 * lead + 3))
    return min(max(cfg.steps * cfg.ref_shift - rounded, 0), cfg.top_code)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_log2quant_equals_exact_implementation_on_every_input(cfg):
    x = L.sweep_inputs(cfg, np.random.default_rng(0))
    lo, hi = cfg.in_range
    assert x.tolist() == list(range(lo, hi + 1))
    assert L.log2_quantize(cfg, x).tolist() == [exact_code(cfg, int(q)) for q in x]


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_log2quant_is_the_papers_float_quantizer(cfg):
    x = L.sweep_inputs(cfg, np.random.default_rng(0))
    got = cfg.dequantize_output(L.log2_quantize(cfg, x))
    want = L.log2_quantize_reference(cfg, x * cfg.in_scale)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * cfg.scale)


def test_shift_log2_dequantizes_the_minimum_and_saturates_large_values():
    base2 = L.example_config(in_scale=0.01, scale=4.0, in_signed=True, minimum=-0.17, steps=1)
    # min(X) - eps = -offset * S: the calibrated minimum -0.17 is one step above it
    assert base2.offset == 18 and math.isclose(-base2.offset * base2.in_scale, -0.17 - 0.01)
    assert base2.ref_shift == 9  # s = 0.01 * 2**9 = 5.12, the power of two nearest to 4 / 0.01
    codes = L.log2_quantize(base2, np.array([-17, -18, -128, 127, -16]))
    # x = 1 -> 9 - 0; x <= 0 -> zero code; x = 145 -> 9 - round(7.18); x = 2 -> 9 - 1
    assert codes.tolist() == [9, 15, 15, 2, 8]
    assert base2.dequantize_output(15) == pytest.approx(-0.18)  # the zero code: min(X) - eps
    sqrt2 = L.example_config(in_scale=0.01, scale=4.0, in_signed=True, minimum=-0.17)
    codes = L.log2_quantize(sqrt2, np.array([-17, -18, 127, -16, -9]))
    # 2 ref_shift = 18; x = 1 -> 18 (past the last level 14: zero code); x = 145 -> 18 -
    # round(14.36); x = 2 -> 18 - 2 -> 16, zero code; x = 9 -> 18 - round(6.34)
    assert codes.tolist() == [15, 15, 4, 15, 12]
    assert sqrt2.dequantize_output(4) == pytest.approx(5.12 / 4 - 0.18)


@pytest.mark.parametrize("steps", [1, 2])
def test_aligned_shift_log_quantizer_returns_zero_exactly(steps):
    cfg = L.example_config(in_scale=0.01, scale=4.0, in_signed=True, minimum=-0.17, steps=steps,
                           align_zero=True)
    assert cfg.offset == 32  # 1 - round(-17) = 18, up to a power of two
    got = cfg.dequantize_output(L.log2_quantize(cfg, np.array([0, -17, 127])))
    assert got[0] == 0.0  # X = 0 is the level s * 2**(-(ref_shift - 5))
    want = L.log2_quantize_reference(cfg, np.array([0.0, -0.17, 1.27]))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 2])
def test_rounding_thresholds_are_ceilings_of_the_level_midpoints(steps):
    """``t_j`` is the least ``m`` with ``log2(m / 2**(W-1)) >= (2j - 1) / 2n``."""
    n = 2 * steps
    for width in range(1, 19):
        for j, t in enumerate(L.round_thresholds(width, steps), start=1):
            bound = Fraction(2 ** (2 * j - 1)) * Fraction(1 << (width - 1)) ** n
            assert Fraction(t) ** n >= bound > Fraction(t - 1) ** n


def test_log2quant_run_is_integer_only():
    for cfg in CONFIGS[:4]:
        x = L.sweep_inputs(cfg, np.random.default_rng(0))
        assert L.log2_quantize(cfg, trap_floats(x)).tolist() == L.log2_quantize(cfg, x).tolist()
    for mcfg in (L.Log2MultiplyConfig(4, 4, 14), L.Log2MultiplyConfig(4, 4, 7, steps=2)):
        packed = np.arange(-128, 128)
        assert L.log2_multiply(mcfg, trap_floats(packed)).tolist() == \
            L.log2_multiply(mcfg, packed).tolist()


def test_widths_fit_the_stated_bounds():
    """The widest input (16 bits, the largest offset) normalizes within 17 bits; every product
    of the multiply path fits its signed ``out_bits`` port."""
    for steps in (1, 2):
        widest = L.Log2QuantConfig(in_bits=16, in_signed=False, out_bits=8, offset=1 << 16,
                                   ref_shift=0, steps=steps,
                                   round_thresholds=L.round_thresholds(17, steps), in_scale=1.0)
        assert widest.mantissa_bits == 17
        assert L.log2_quantize(widest, np.array([(1 << 16) - 1])).tolist() == [0]
    for cfg in (L.Log2MultiplyConfig(4, 4, 14), L.Log2MultiplyConfig(8, 8, 24),
                L.Log2MultiplyConfig(4, 4, 7, steps=2), L.Log2MultiplyConfig(8, 16, 16, 2)):
        packed = np.arange(-(1 << (cfg.in_bits - 1)), 1 << (cfg.in_bits - 1), 7)
        out = L.log2_multiply(cfg, packed)
        assert out.min() >= -(1 << (cfg.out_bits - 1)) and out.max() < 1 << (cfg.out_bits - 1)


def test_log2quant_is_registered():
    operator = get("log2quant")
    assert operator.run is L.log2_quantize and not operator.row_wise
    assert isinstance(operator.example_config(), L.Log2QuantConfig)


@pytest.mark.parametrize("weight_bits, frac_bits", [(4, 14), (8, 10), (2, 0), (16, 16)])
def test_log2_multiply_is_a_floored_power_of_two_product(weight_bits, frac_bits):
    cfg = L.Log2MultiplyConfig(code_bits=4, weight_bits=weight_bits, frac_bits=frac_bits)
    rng = np.random.default_rng(weight_bits)
    weights = rng.integers(-(1 << (weight_bits - 1)), 1 << (weight_bits - 1), 3000)
    codes = rng.integers(0, 16, 3000)
    got = L.log2_multiply(cfg, L.pack_operands(cfg, codes, weights))
    want = [0 if c == 15 else math.floor(Fraction(int(w) * 2 ** frac_bits, 2 ** int(c)))
            for w, c in zip(weights, codes)]
    assert got.tolist() == want


@pytest.mark.parametrize("weight_bits, frac_bits", [(4, 7), (8, 12), (16, 16)])
def test_base_sqrt2_multiply_is_w_times_2_to_the_minus_half_code(weight_bits, frac_bits):
    """Within one unit (the floor) plus the dyadic sqrt(2)'s 1.1e-4 relative error of
    ``w * 2**(frac_bits - c/2)``, and exact for even codes."""
    cfg = L.Log2MultiplyConfig(code_bits=4, weight_bits=weight_bits, frac_bits=frac_bits,
                               steps=2)
    rng = np.random.default_rng(weight_bits)
    weights = rng.integers(-(1 << (weight_bits - 1)), 1 << (weight_bits - 1), 3000)
    codes = rng.integers(0, 16, 3000)
    got = L.log2_multiply(cfg, L.pack_operands(cfg, codes, weights))
    for p, w, c in zip(got.tolist(), weights.tolist(), codes.tolist()):
        if c == 15:
            assert p == 0
            continue
        exact = w * 2.0 ** (frac_bits - c / 2)
        if c % 2 == 0:
            assert p == math.floor(Fraction(w * 2 ** frac_bits, 2 ** (c // 2)))
        assert exact - 1 - 1.2e-4 * abs(exact) <= p <= exact + 1.2e-4 * abs(exact)


# ---------------------------------------------------------------------------- ADFQ quantizers


def per_row_poq(x: np.ndarray, alpha: float, bits: int) -> np.ndarray:
    """The paper's formulas, one patch (row) at a time, in Python floats."""
    levels = 2 ** bits - 1
    out = np.empty_like(x)
    for i, row in enumerate(x.reshape(-1, x.shape[-1])):
        inliers = [0.0 if v >= alpha else float(v) for v in row]
        low, high = min(min(inliers), 0.0), max(max(inliers), 0.0)
        s = (high - low) / levels
        z = math.floor(-low / s + 0.5)
        for j, v in enumerate(row):
            if v >= alpha:
                out.reshape(-1, x.shape[-1])[i, j] = v
            else:
                q = min(max(math.floor(v / s + 0.5) + z, 0), levels)
                out.reshape(-1, x.shape[-1])[i, j] = s * (q - z)
    return out


def test_per_patch_quantizer_follows_the_paper_and_keeps_outliers():
    x = torch.randn(3, 17, 64, dtype=torch.float64) * 1.5
    x[0, 2, 5], x[2, 16, 0] = 7.5, 12.0
    quantizer = A.PatchOutlierQuantizer(4, alpha=5.0)
    quantizer.counting = True
    got = quantizer(x).numpy()
    np.testing.assert_allclose(got, per_row_poq(x.numpy(), 5.0, 4), atol=1e-9)
    assert got[0, 2, 5] == 7.5 and got[2, 16, 0] == 12.0
    assert quantizer.ratio() == float((x >= 5.0).double().mean())


def test_int16_variant_equals_its_integer_implementation():
    rng = np.random.default_rng(4)
    x = torch.tensor(rng.normal(0, 1.5, (4, 17, 64)))
    x[1, 3, 7] = 9.0
    quantizer = A.PatchOutlierQuantizer(4, alpha=5.0, outliers="int16")
    got = quantizer(x).numpy()  # the first call calibrates S16
    s16 = float(quantizer.int16_scale)
    x16 = np.clip(np.floor(x.numpy() / s16 + 0.5), -A.INT16_MAX, A.INT16_MAX).astype(np.int64)
    codes, zero, span, outliers = A.patch_outlier_quantize_int(x16, quantizer.alpha_code, 4)
    want = s16 * (span / 15 * (codes - zero) + outliers)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert outliers[1, 3, 7] == x16[1, 3, 7] and outliers.sum() == x16[x16 >= quantizer.alpha_code].sum()


def test_integer_patch_quantizer_rounds_half_up_exactly():
    rng = np.random.default_rng(5)
    x = rng.integers(-300, 300, (40, 12))
    x[0] = [-30, 30, 15, -15, 5, 0, 29, 1, -1, 2, -2, 10]  # span 60, L = 15: x/4 ties
    codes, zero, span, outliers = A.patch_outlier_quantize_int(trap_floats(x), 250, 4)
    for i, row in enumerate(x):
        inl = [0 if v >= 250 else int(v) for v in row]
        s = max(max(inl), 0) - min(min(inl), 0)
        assert span[i, 0] == s
        z = math.floor(Fraction(-min(min(inl), 0) * 15, s) + Fraction(1, 2))
        assert zero[i, 0] == z
        want = [min(max(math.floor(Fraction(v * 15, s) + Fraction(1, 2)) + z, 0), 15) for v in inl]
        assert codes[i].tolist() == want


def test_integer_patch_linear_is_the_fake_quantized_product():
    rng = np.random.default_rng(6)
    x16 = rng.integers(-9000, 9000, (17, 32))
    x16[4, 4] = 30000
    w = rng.integers(-7, 8, (10, 32))
    s16, s_w = 1e-3, rng.uniform(0.01, 0.1, 10)
    codes, zero, span, outliers = A.patch_outlier_quantize_int(x16, 20000, 4)
    x_hat = s16 * (span / 15 * (codes - zero) + outliers)
    want = x_hat @ (w * s_w[:, None]).T
    numerator = A.patch_outlier_linear_int(trap_floats(x16), trap_floats(w), 20000, 4)
    real = numerator.view(np.ndarray) * s16 * s_w / 15
    np.testing.assert_allclose(real, want, rtol=1e-9, atol=1e-9)


def test_log2_quantizer_in_torch_equals_the_integer_operator():
    """With s a power-of-two multiple of the input step, fake quantization is the operator."""
    for cfg in CONFIGS[:4]:
        quantizer = A.Log2Quantizer(cfg.out_bits, shifted=cfg.offset != 0, steps=cfg.steps)
        quantizer.calibrated = True
        with torch.no_grad():
            quantizer.scale.fill_(cfg.scale)
            quantizer.shift.fill_(-cfg.offset * cfg.in_scale)
        q = L.sweep_inputs(cfg, np.random.default_rng(0))
        got = quantizer(torch.tensor(q * cfg.in_scale, dtype=torch.float64)).detach().numpy()
        np.testing.assert_allclose(got, cfg.dequantize_output(L.log2_quantize(cfg, q)),
                                   rtol=1e-6, atol=1e-6 * cfg.scale)


def test_shift_log_quantizer_keeps_gelu_zeros_exact_when_aligned():
    """Post-GELU-like data (many exact zeros, a minimum of -0.17): the aligned scale puts X = 0 on
    a level, s = -shift * 2**(c/steps) for an integer c; the plain MSE grid does not."""
    torch.manual_seed(3)
    x = F.gelu(torch.randn(40000, dtype=torch.float64) * 2.0 - 0.5)
    x[::5] = 0.0
    for steps in (1, 2):
        aligned = A.Log2Quantizer(4, shifted=True, steps=steps)
        y = aligned(x).detach()
        assert float(y[x == 0].abs().max()) < 1e-12
        c = steps * math.log2(float(aligned.scale.detach()) / -float(aligned.shift))
        assert abs(c - round(c)) < 1e-9 and 0 <= round(c) <= 14
        plain = A.Log2Quantizer(4, shifted=True, steps=steps, align_zero=False)
        assert float((plain(x).detach()[x == 0]).abs().max()) > 1e-3


def test_calibrated_quantizers_beat_min_max_and_stay_on_their_grids():
    x = torch.randn(20000, dtype=torch.float64) ** 3
    uniform = A.UniformQuantizer(4)
    y = uniform(x).detach()
    codes = y / uniform.scale.detach() + uniform.zero_point
    assert torch.allclose(codes, codes.round(), atol=1e-6) and codes.min() >= 0 and codes.max() <= 15
    s = (x.max() - x.min()) / 15
    minmax = s * (torch.clamp(torch.floor(x / s + 0.5) + torch.floor(-x.min() / s + 0.5), 0, 15)
                  - torch.floor(-x.min() / s + 0.5))
    assert ((y - x) ** 2).mean() <= ((minmax - x) ** 2).mean()
    weight = torch.randn(8, 50)
    quantizer = A.WeightQuantizer(weight, 4)
    assert quantizer.codes().abs().max() <= 7
    peak = weight.abs().amax(1, keepdim=True) / 7
    naive = torch.clamp(torch.floor(weight / peak + 0.5), -7, 7) * peak
    assert ((quantizer() - weight) ** 2).sum() <= ((naive - weight) ** 2).sum() + 1e-9


# ------------------------------------------------------------------------------------ AdaRound


def test_adaround_starts_at_the_float_weight_and_hardens_to_floor_or_ceil():
    weight = torch.randn(6, 20)
    quantizer = A.WeightQuantizer(weight, 6)
    quantizer.rounding = R.AdaRound(quantizer.weight, quantizer.scale)
    inside = (weight / quantizer.scale).abs() < quantizer.qmax - 1
    assert torch.allclose(quantizer()[inside], weight[inside], atol=1e-5)
    with torch.no_grad():
        quantizer.rounding.v.normal_()
    quantizer.rounding.soft = False
    scaled = weight / quantizer.scale
    codes = quantizer.codes()
    assert bool(((codes == scaled.floor()) | (codes == scaled.ceil()))[inside].all())


def test_regularizer_vanishes_at_hard_decisions_and_beta_anneals():
    rounder = R.AdaRound(torch.tensor([0.3, 0.7]), torch.tensor(1.0))
    with torch.no_grad():
        rounder.v.copy_(torch.tensor([-30.0, 30.0]))  # h = 0 and 1
    assert float(rounder.regularizer(10.0).detach()) == 0.0
    assert R.beta_at(0, 100) is None and R.beta_at(19, 100) is None
    assert R.beta_at(20, 100) == R.BETA_START and R.beta_at(100, 100) == R.BETA_END
    assert (R.ZETA, R.GAMMA, R.LR_ROUNDING, R.LR_SCALE) == (1.1, -0.1, 3e-3, 4e-5)


def test_attention_kl_matches_its_definition():
    p = torch.softmax(torch.randn(5, 7, dtype=torch.float64), -1)
    q = torch.softmax(torch.randn(5, 7, dtype=torch.float64), -1)
    want = sum(float(sum(a * math.log(a / b) for a, b in zip(pr, qr))) for pr, qr in zip(p, q)) / 5
    assert math.isclose(float(R.attention_kl(p, q)), want, rel_tol=1e-9)
    assert float(R.attention_kl(p, p)) == 0.0


# ------------------------------------------------------------------------- the bundled model


@pytest.fixture(scope="module")
def bundled():
    model, _, _ = load_bundled()
    splits = load_splits()
    small = {"calibration": Split(splits["calibration"].images[:24],
                                  splits["calibration"].labels[:24]),
             "test": Split(splits["test"].images[:60], splits["test"].labels[:60])}
    return model, small


def test_reconstruction_lowers_the_module_error(bundled):
    """Block 0's MHA and MLP, each reconstructed alone against the float block."""
    model, splits = bundled
    images = splits["calibration"].images
    settings = A.AdfqSettings("w4a4", A.parse_components("all"), iterations=150)
    taps: dict = {}
    with A.single_thread(), torch.no_grad():
        qmodel = A.build_adfq(model, images, settings)
        model(images, taps)
        block = model.blocks[0]
        stream = qmodel.embed(images)
        attn_target = block.attn(block.norm1(taps["blocks.0.norm1"]))
        mlp_input = taps["blocks.0.norm2"]
        mlp_target = block.mlp(block.norm2(mlp_input))
    generator = torch.Generator().manual_seed(0)
    with A.single_thread():
        attn = R.reconstruct_module(qmodel.attn[0], stream, attn_target,
                                    taps["blocks.0.attn.probs"], 150, generator)
        mlp = R.reconstruct_module(qmodel.mlp[0], mlp_input, mlp_target, None, 150, generator)
    assert attn["mse_after"] < attn["mse_before"] and mlp["mse_after"] < mlp["mse_before"]
    assert all(not q.rounding.soft for q in A.weight_quantizers(qmodel.attn[0]))


def test_reconstruction_visits_modules_in_forward_order(bundled):
    model, splits = bundled
    settings = A.AdfqSettings("w6a6", A.parse_components("amo"), iterations=1)
    seen = []
    with A.single_thread():
        qmodel = A.build_adfq(model, splits["calibration"].images, settings)
        records = R.reconstruct_model(qmodel, model, splits["calibration"].images, iterations=1,
                                      progress=lambda done, total, name: seen.append(name))
    order = [f"blocks.{i}.{m}" for i in range(4) for m in ("attn", "mlp")]
    assert [r["module"] for r in records] == order == seen
    assert all(q.rounding is not None and not q.rounding.soft
               for block in (*qmodel.attn, *qmodel.mlp) for q in A.weight_quantizers(block))


def test_quantize_adfq_reports_accuracy_outliers_and_time(bundled):
    model, splits = bundled
    result = P.quantize_adfq(model, splits, "w6a6", "poq,amo", iterations=3,
                             alpha_qkv=2.0, alpha_fc1=2.5)
    assert result["components"] == ["poq", "amo"] and result["iterations"] == 3
    assert set(result["outlier_ratio"]) == {f"blocks.{i}.{n}" for i in range(4)
                                            for n in ("attn.qkv", "mlp.fc1")}
    assert any(r > 0 for r in result["outlier_ratio"].values())
    assert result["reconstruction_seconds"] > 0
    assert result["accuracy"]["float"] == pytest.approx(
        float((model(splits["test"].images).argmax(-1) == splits["test"].labels).double().mean()))
    assert result["fidelity"]["logit_sqnr_db"] > 10  # W6A6 stays close to the float logits


@pytest.mark.parametrize("options, text", [
    (dict(bits="w8a8"), "not supported"), (dict(alpha_qkv=0.0), "alpha_qkv"),
    (dict(alpha_fc1=-1.0), "alpha_fc1"), (dict(iterations=0), "iterations"),
    (dict(components="poq,gptq"), "gptq"), (dict(outliers="int8"), "outliers"),
    (dict(log_base="e"), "log base"), (dict(align_zero="yes"), "align_zero")])
def test_bad_settings_are_one_line_errors(bundled, options, text):
    model, splits = bundled
    with pytest.raises(IntvitError) as error:
        P.quantize_adfq(model, splits, **options)
    assert text in str(error.value) and "\n" not in str(error.value)


def test_config_errors_are_config_errors():
    with pytest.raises(ConfigError):
        L.example_config(in_bits=17)


def test_logit_kl_against_a_hand_computed_case():
    """Two classes, logits (0, 0) against (ln 3, 0): p = (1/2, 1/2), q = (3/4, 1/4), so
    KL(p || q) = 1/2 ln(2/3) + 1/2 ln(2) = 1/2 ln(4/3)."""
    import math

    reference = torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=torch.float64)
    approx = torch.tensor([[math.log(3.0), 0.0], [1.0, 2.0]], dtype=torch.float64)
    assert A.logit_kl(reference, approx) == pytest.approx(0.25 * math.log(4 / 3), rel=1e-12)
    assert A.logit_kl(reference, reference) == 0.0
