"""The integer Swin: integer-only (the tracer of :mod:`integer_trap`, as tests/test_integer_only.py
does for the ViT), its two evaluations equal bit for bit, and its layers close to the float
Swin's (the independent reference) on timm's tiny Swin fixture (shifted windows, merging)."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from intvit.golden_model import qswin, registry, select
from intvit.golden_model.metrics import asqnr
from intvit.golden_model.ops.requant import ChannelRequant
from intvit.golden_model.qvit import (IntLinear, QuantSpec, default_assignment, float_taps,
                                      image_scale_for, quantize_images)
from intvit.golden_model.swin import nonlinear_layers
from intvit.golden_model.swin_checkpoint import load_swin_checkpoint
from integer_trap import IntegerOnlyArray, integer_only, trap_floats

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "checkpoints" / "swin_tiny.pt"
METHODS = ["iptq", "ivit", "ibert", "fqvit"]
SHIFTED = "layers.0.blocks.1.attn.softmax"


@pytest.fixture(scope="module")
def swin():
    model = load_swin_checkpoint(FIXTURE, img_size=28)
    generator = torch.Generator().manual_seed(3)
    calibration = torch.randn(32, 3, 28, 28, generator=generator)
    images = torch.randn(8, 3, 28, 28, generator=generator)
    spec = QuantSpec(image_scale=image_scale_for(calibration))
    return model, calibration, images, spec


def build(swin, method, weight_bits=8):
    model, calibration, images, spec = swin
    spec = QuantSpec(weight_bits=weight_bits, image_scale=spec.image_scale)
    qmodel = qswin.build_integer_swin(model, calibration,
                                      default_assignment(model.config, method), spec)
    return qmodel, quantize_images(images.numpy(), spec.image_scale)


@pytest.mark.parametrize("weight_bits", [8, 4], ids=["w8a8", "w4a8"])
@pytest.mark.parametrize("method", METHODS)
def test_every_tap_is_computed_on_integers(swin, method, weight_bits):
    qmodel, images_q = build(swin, method, weight_bits)
    taps: dict = {}
    with integer_only() as tracer:
        logits = qmodel.forward(trap_floats(images_q[:2]), taps)
    assert np.asarray(logits).tolist() == qmodel.forward(images_q[:2]).tolist()
    layers = nonlinear_layers(swin[0].config)
    assert {f"{layer}:{end}" for layer in layers for end in ("in", "out")} <= set(taps)
    # The shifted block's window mask (its ``:keep`` tap) is a constant of the model, not
    # computed from the image; it must be booleans.
    masks = {name: value for name, value in taps.items() if name.endswith(":keep")}
    assert all(value.dtype == bool for value in masks.values())
    untrapped = [name for name, value in taps.items() if name not in masks
                 and not (isinstance(value, IntegerOnlyArray) and value.dtype.kind == "i")]
    assert not untrapped, f"taps computed outside the trap: {untrapped}"
    ran = {registry.get(name).run.__code__ for name in set(qmodel.assignment.values())}
    ran |= {qswin.IntegerSwin.forward.__code__, qswin.IntegerSwin._masked_softmax.__code__,
            IntLinear.__call__.__code__, ChannelRequant.__call__.__code__}
    assert ran <= tracer.codes


@pytest.mark.parametrize("method", METHODS)
def test_integer_logits_follow_the_float_model(swin, method):
    qmodel, images_q = build(swin, method)
    model, _, images, _ = swin
    with torch.no_grad():
        reference = model(images).double().numpy()
    logits = qmodel.forward(images_q) * qmodel.scales["logits"]
    assert asqnr(reference, logits) > 18
    assert np.mean(reference.argmax(-1) == logits.argmax(-1)) >= 0.75


def test_scores_with_bias_and_pooled_mean_match_the_float_taps(swin):
    """The first block's softmax input (scores + relative bias codes) and the pooled mean,
    dequantized, against the float model's taps; without the bias codes the scores drift."""
    qmodel, images_q = build(swin, "iptq")
    model, _, images, _ = swin
    reference = float_taps(model, images)
    taps: dict = {}
    qmodel.forward(images_q, taps)
    first = "layers.0.blocks.0.attn.softmax"
    scores = qmodel.dequantize(first, taps[first])
    assert asqnr(reference[first], scores) > 25
    bias = qmodel.stages[0]["blocks"][0]["bias"] * qmodel.scales[first]
    assert asqnr(reference[first], scores - bias) < asqnr(reference[first], scores) - 3
    assert asqnr(reference["head.fc"], qmodel.dequantize("head.fc", taps["head.fc"])) > 18


@pytest.mark.parametrize("method", METHODS)
def test_shifted_window_rows_exclude_the_masked_positions(swin, method):
    """In the shifted block every masked position of every row gets probability 0, and the
    float model's mask is the one applied."""
    qmodel, images_q = build(swin, method)
    reference = float_taps(swin[0], swin[2])
    taps: dict = {}
    qmodel.forward(images_q, taps)
    keep = reference["layers.0.blocks.1.attn.keep"] > 0
    assert 0 < keep.mean() < 1
    assert np.array_equal(taps[f"{SHIFTED}:keep"], keep)  # the mask the vectors will carry
    probabilities = qmodel.plans[SHIFTED].config.dequantize_output(taps[f"{SHIFTED}:out"])
    assert (probabilities[~keep] == 0).all()
    assert (probabilities[keep] > 0).any()


def test_rerun_from_every_entry_gives_the_float_logits(swin):
    """The selection's re-run from a layer's cached entry tap (block, merging, embedding or the
    final LayerNorm) reproduces the float model's logits."""
    model, _, images, _ = swin
    reference = float_taps(model, images[:2])
    for layer in nonlinear_layers(model.config):
        with torch.no_grad():
            logits = select._rerun(model, layer, reference, {})
        np.testing.assert_allclose(logits.double().numpy(), reference["logits"], atol=1e-5)


def test_selection_scores_and_quantizes_a_swin(swin):
    model, calibration, images, spec = swin
    splits = {"calibration": SimpleNamespace(images=calibration[:8], labels=None),
              "test": SimpleNamespace(images=images, labels=None)}
    result = select.quantize_model(model, splits, spec)
    assert set(result.assignment) == set(nonlinear_layers(model.config))
    assert set(result.scores[SHIFTED]) == {f"softmax/{m}" for m in METHODS}
    linear = [score for op, score in result.scores[SHIFTED].items() if op != "softmax/fqvit"]
    assert min(score.sqnr_out for score in linear) > 20  # masked rows scored as run
    assert result.fidelity["agreement"] >= 0.75 and result.fidelity["logit_sqnr_db"] > 18
