"""The integer-only ViT on the bundled model: int16 logits, accuracy against the float model,
per-channel requantization, calibration errors (the integer-only proof is in
``test_integer_only.py``)."""
import numpy as np
import pytest
import torch

from intvit.golden_model.calibration import activation_scale, mse_scale, minmax_scale, percentile_scale
from intvit.golden_model.checkpoint import load_bundled
from intvit.golden_model.dataset import load_splits
from intvit.golden_model.errors import IntvitError
from intvit.golden_model.metrics import asqnr
from intvit.golden_model.ops.requant import ChannelRequant, RequantConfig, requantize
from intvit.golden_model.qvit import (QuantSpec, build_integer_vit, check_assignment,
                               default_assignment, float_taps, integer_taps, quantize_images)


@pytest.fixture(scope="module")
def bundled():
    model, config, meta = load_bundled()
    return model, config, load_splits()


@pytest.fixture(scope="module")
def w8a8(bundled):
    model, config, splits = bundled
    return build_integer_vit(model, splits["calibration"].images,
                             default_assignment(config, "iptq"), QuantSpec())


def float_accuracy(model, split):
    with torch.no_grad():
        return float((model(split.images).argmax(-1) == split.labels).float().mean())


def test_logits_are_int16_codes(bundled, w8a8):
    _, _, splits = bundled
    logits = w8a8.forward(quantize_images(splits["test"].images[:8].numpy()))
    assert logits.dtype == np.int64 and logits.min() >= -(1 << 15) and logits.max() < 1 << 15


@pytest.mark.parametrize("method", ["iptq", "ivit", "ibert", "fqvit"])
def test_w8a8_accuracy_close_to_float(bundled, method):
    model, config, splits = bundled
    q = build_integer_vit(model, splits["calibration"].images,
                          default_assignment(config, method), QuantSpec())
    test = splits["test"]
    got = float(np.mean(q.predict(quantize_images(test.images.numpy())) == test.labels.numpy()))
    assert got >= float_accuracy(model, test) - 0.02


def test_w4a8_accuracy_close_to_float(bundled):
    model, config, splits = bundled
    q = build_integer_vit(model, splits["calibration"].images,
                          default_assignment(config, "iptq"), QuantSpec(weight_bits=4))
    test = splits["test"]
    got = float(np.mean(q.predict(quantize_images(test.images.numpy())) == test.labels.numpy()))
    assert got >= float_accuracy(model, test) - 0.05


def test_integer_taps_track_float_taps(bundled, w8a8):
    model, _, splits = bundled
    images = splits["calibration"].images[:32]
    ftaps = float_taps(model, images)
    itaps = integer_taps(w8a8, quantize_images(images.numpy()))
    assert asqnr(ftaps["blocks.0.norm1"], itaps["blocks.0.norm1"]) > 30
    assert asqnr(ftaps["logits"], itaps["logits"]) > 15


def test_channel_requant_equals_per_channel_requantizers():
    ratios = [0.0042, 0.3, 3 / 64, 1e-12]
    requant = ChannelRequant.from_scales(ratios, 8)
    acc = np.random.default_rng(0).integers(-(1 << 31), 1 << 31, (300, 4))
    y = requant(acc)
    for c, ratio in enumerate(ratios[:3]):
        assert y[:, c].tolist() == requantize(RequantConfig.from_scale(ratio), acc[:, c]).tolist()
    assert not y[:, 3].any()


def test_calibrators_clip_as_stated():
    x = np.concatenate([np.random.default_rng(1).normal(size=100_000), [40.0]])
    assert minmax_scale(x, 8) == pytest.approx(40.0 / 127)
    assert percentile_scale(x, 8) < 6 / 127
    assert mse_scale(x, 8) < minmax_scale(x, 8)


def test_nan_calibration_data_is_one_line_error():
    with pytest.raises(IntvitError, match="NaN") as error:
        activation_scale("layer", np.array([1.0, np.nan]), 8, "minmax")
    assert "\n" not in str(error.value)
    with pytest.raises(IntvitError, match="calibrator"):
        activation_scale("layer", np.ones(3), 8, "median")


@pytest.mark.parametrize("text", ["w9a8", "w8a3", "x8", "w8", "wa8"])
def test_bad_bit_specs(text):
    with pytest.raises(IntvitError):
        QuantSpec.parse(text)


def test_assignment_must_match_the_model(bundled):
    _, config, _ = bundled
    good = default_assignment(config, "ivit")
    with pytest.raises(IntvitError, match="missing"):
        check_assignment(config, {k: v for k, v in list(good.items())[1:]})
    wrong = dict(good)
    wrong["blocks.0.norm1"] = "softmax/ivit"
    with pytest.raises(IntvitError, match="layernorm"):
        check_assignment(config, wrong)


def test_images_off_the_grid_are_refused():
    with pytest.raises(IntvitError, match="grid"):
        quantize_images(np.full((1, 1, 8, 8), 0.01))


@pytest.mark.parametrize("softmax", ["iptq", "ivit"])
def test_every_calibration_option_on(bundled, softmax):
    """Per-layer clips, asymmetric GELU output and the log2e-snapped score scale together: the
    taps still dequantize to the float model's (zero points and snapped scales recorded), and
    the accuracy stays close to float."""
    model, config, splits = bundled
    assignment = default_assignment(config, "iptq")
    assignment.update({layer: f"softmax/{softmax}" for layer in assignment
                       if layer.endswith("softmax")})
    spec = QuantSpec(calibrator="per-layer", gelu_output="asymmetric", score_snap="log2e")
    q = build_integer_vit(model, splits["calibration"].images, assignment, spec)
    images = splits["calibration"].images[:32]
    ftaps, itaps = float_taps(model, images), integer_taps(q, quantize_images(images.numpy()))
    zero_point = q.plans["blocks.0.mlp.gelu"].config.requant.zero_point
    assert q.zero_points["blocks.0.mlp.fc2"] == zero_point < 0
    assert asqnr(ftaps["blocks.0.mlp.fc2"], itaps["blocks.0.mlp.fc2"]) > 15
    assert asqnr(ftaps["blocks.0.attn.softmax"], itaps["blocks.0.attn.softmax"]) > 25
    plan = q.plans["blocks.0.attn.softmax"]
    assert plan.code_scale == pytest.approx(plan.config.in_scale * 1.4375 / np.log2(np.e))
    test = splits["test"]
    got = float(np.mean(q.predict(quantize_images(test.images.numpy())) == test.labels.numpy()))
    assert got >= float_accuracy(model, test) - 0.02


def test_a_quant_file_from_before_the_calibration_options_rebuilds_its_own_model(tmp_path):
    """A quant.json written before ``score_snap`` and ``gelu_output`` existed loads with both
    off (the model it was built with), not with today's defaults."""
    import json

    from intvit.golden_model.quantfile import load_quant

    path = tmp_path / "quant.json"
    path.write_text(json.dumps({"spec": {"weight_bits": 8, "act_bits": 8}, "rule": "unified",
                                "assignment": {}}))
    spec = load_quant(path)["spec"]
    assert (spec.score_snap, spec.gelu_output) == ("off", "symmetric")
    assert QuantSpec().score_snap == "grid"


def test_softmax_bits_widen_the_linear_probabilities_only(bundled):
    """``QuantSpec(softmax_bits=12)``: the Bit-exp softmax layers put out 12-bit probabilities
    and their attention context moves closer to the float model's (12 bits leave less rounding
    in ``probs @ v`` than 8); FQ-ViT's log2 codes keep their 4 bits."""
    model, config, splits = bundled
    images = splits["calibration"].images[:32]
    assignment = default_assignment(config, "iptq")
    assignment["blocks.1.attn.softmax"] = "softmax/fqvit"
    wide = build_integer_vit(model, images, assignment, QuantSpec(softmax_bits=12))
    narrow = build_integer_vit(model, images, assignment, QuantSpec())
    assert wide.plans["blocks.0.attn.softmax"].config.out_bits == 12
    assert narrow.plans["blocks.0.attn.softmax"].config.out_bits == 8
    assert wide.plans["blocks.1.attn.softmax"].config.out_bits == 4
    codes = quantize_images(splits["test"].images[:16].numpy())
    reference = float_taps(model, splits["test"].images[:16])["blocks.0.attn.probs"]
    sqnr = {}
    for name, qmodel in (("wide", wide), ("narrow", narrow)):
        taps: dict = {}
        qmodel.forward(codes, taps)
        probs = qmodel.dequantize("blocks.0.attn.softmax:out", taps["blocks.0.attn.softmax:out"])
        sqnr[name] = asqnr(reference, probs)
    assert sqnr["wide"] > sqnr["narrow"]
    with pytest.raises(IntvitError, match="softmax_bits"):
        QuantSpec(softmax_bits=17)
