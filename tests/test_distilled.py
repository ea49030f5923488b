"""Distilled DeiT (issue 19): timm's VisionTransformerDistilled fixture loads into intvit's float
model, which reproduces timm's eval logits (the mean of the class and distillation heads); the
two heads merge into one linear; the W8A8 integer model runs on integers only, agrees with the
float model, and goes through ``intvit quantize``; inconsistent key sets are one-line errors."""
import json

import numpy as np
import pytest
import torch

from intvit.cli import main
from intvit.golden_model.adfq import AdfqSettings, QuantViT
from intvit.golden_model.checkpoint import infer_config, load_checkpoint
from intvit.golden_model.errors import IntvitError
from intvit.golden_model.qvit import merged_heads, quantize_images
from intvit.golden_model.vit import PRESETS, VisionTransformer
from checkpoint_fixtures import (AGREEMENT, ATOL, FIXTURES, agreement, expected_taps,
                                 float_logits, integer_model, library_io, one_line_error,
                                 random_images, traced)

CHECKPOINT = FIXTURES / "deit_distilled.pt"
HEADS = 2
"""The fixture's num_heads (manifest.json), which no weight shape records."""


@pytest.fixture(scope="module")
def deit():
    return load_checkpoint(CHECKPOINT, num_heads=HEADS)


def test_float_logits_match_timm(deit):
    inputs, logits = library_io("deit_distilled")
    assert deit.config.distilled and deit.config.num_tokens == 16 + 2
    np.testing.assert_allclose(float_logits(deit, inputs), logits, rtol=0, atol=ATOL)


def test_head_tap_holds_both_tokens(deit):
    inputs, _ = library_io("deit_distilled")
    taps: dict = {}
    with torch.no_grad():
        deit(inputs, taps)
    normed = deit.norm(taps["norm"])
    assert torch.equal(taps["head"], torch.cat([normed[:, 0], normed[:, 1]], dim=1))


def test_merged_heads_are_the_mean_of_the_two(deit):
    """One linear on [h0, h1] against timm's formula written out on the two heads."""
    features = torch.randn(5, 2 * deit.config.embed_dim, dtype=torch.float64)
    state = {k: v.double().numpy() for k, v in deit.state_dict().items()}
    merged = merged_heads(state)
    got = features.numpy() @ merged["head.weight"].T + merged["head.bias"]
    cls, dist = np.split(features.numpy(), 2, axis=1)
    want = (cls @ state["head.weight"].T + state["head.bias"]
            + dist @ state["head_dist.weight"].T + state["head_dist.bias"]) / 2
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_preset_gives_the_heads():
    state = VisionTransformer(PRESETS["deit_tiny_distilled_patch16_224"]).state_dict()
    assert infer_config(state) == PRESETS["deit_tiny_distilled_patch16_224"]
    assert infer_config(state).num_tokens == 198


@pytest.mark.parametrize("method", ["iptq", "ibert"])
def test_integer_model_is_integer_only_and_agrees(deit, method):
    qmodel, spec = integer_model(deit, method)
    inputs, _ = library_io("deit_distilled")
    images_q = quantize_images(inputs.numpy(), spec.image_scale)
    logits, taps = traced(qmodel, images_q)
    assert logits.tolist() == qmodel.forward(images_q).tolist()
    assert set(taps) == expected_taps(deit.config)
    assert taps["head"].shape == (4, 2 * deit.config.embed_dim)
    assert agreement(deit, qmodel, spec, random_images(deit.config, 64, 11)) >= AGREEMENT


def test_inconsistent_distilled_keys():
    state = torch.load(CHECKPOINT, weights_only=True)
    del state["head_dist.bias"]
    assert "missing head_dist.bias" in one_line_error(state, num_heads=HEADS)
    state = torch.load(CHECKPOINT, weights_only=True)
    del state["dist_token"]
    message = one_line_error(state, num_heads=HEADS)
    assert "pos_embed has 18 positions" in message and "1 prefix token" in message


def test_cli_quantizes_the_checkpoint(deit, tmp_path, capsys):
    images = tmp_path / "cal.npy"
    np.save(images, random_images(deit.config, 20, 3).numpy())
    out = tmp_path / "run"
    assert main(["quantize", "--model", str(CHECKPOINT), "--heads", str(HEADS),
                 "--calibration", str(images), "--score-images", "8", "-o", str(out)]) == 0
    quant = json.loads((out / "quant.json").read_text())
    assert len(quant["assignment"]) == 9  # 2 blocks x 4 non-linear layers + the final norm
    assert "fidelity to float" in capsys.readouterr().out


def test_cli_refuses_a_checkpoint_of_no_family(tmp_path, capsys):
    checkpoint = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 7, 7), "fc.weight": torch.zeros(10, 4)},
               checkpoint)
    images = tmp_path / "cal.npy"
    np.save(images, np.zeros((4, 3, 32, 32), np.float32))
    out = tmp_path / "run"
    assert main(["quantize", "--model", str(checkpoint), "--calibration", str(images),
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matches no supported model family" in err
    assert "conv1.weight" in err and "expected a timm ViT/DeiT" in err
    assert not out.exists()


def test_adfq_refuses_a_distilled_model(deit):
    with pytest.raises(IntvitError, match="distilled DeiT .* not supported by --method adfq"):
        QuantViT(deit, AdfqSettings("w4a4", frozenset()))
