"""The float Swin Transformer and its timm checkpoint loader.

References independent of ``intvit.golden_model.swin``: timm 1.0.29's own logits and key list
for a tiny Swin (tests/fixtures/checkpoints, made by timm itself), and timm's published parameter
counts of Swin-T/S/B.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from intvit.golden_model.errors import ConfigError, IntvitError
from intvit.golden_model.swin import PRESETS, SwinConfig, SwinTransformer, nonlinear_layers
from intvit.golden_model.swin_checkpoint import infer_swin_config, load_swin_checkpoint

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints"
SWIN_TINY = FIXTURES / "swin_tiny.pt"


def fixture_state() -> dict:
    return torch.load(SWIN_TINY, map_location="cpu", weights_only=True)


def test_float_logits_equal_timm():
    """intvit's float Swin on the fixture's inputs gives timm's logits (shifted windows, mask,
    relative bias, merging and pooling all inside)."""
    model = load_swin_checkpoint(SWIN_TINY, img_size=28)
    io = np.load(FIXTURES / "swin_tiny_io.npz")
    with torch.no_grad():
        logits = model(torch.from_numpy(io["inputs"])).numpy()
    np.testing.assert_allclose(logits, io["logits"], rtol=0, atol=1e-5)


def test_inferred_config_is_timms_constructor():
    manifest = json.loads((FIXTURES / "manifest.json").read_text())["models"]["swin_tiny"]
    args = manifest["constructor_args"]
    config = infer_swin_config(fixture_state(), img_size=28)
    assert config == SwinConfig(img_size=args["img_size"], patch_size=args["patch_size"],
                                in_chans=args["in_chans"], num_classes=args["num_classes"],
                                embed_dim=args["embed_dim"], depths=args["depths"],
                                num_heads=args["num_heads"], window_size=args["window_size"])


def test_state_dict_keys_and_shapes_are_timms():
    manifest = json.loads((FIXTURES / "manifest.json").read_text())["models"]["swin_tiny"]
    config = infer_swin_config(fixture_state(), img_size=28)
    ours = {key: list(value.shape) for key, value in SwinTransformer(config).state_dict().items()}
    assert ours == manifest["state_dict_keys"]


@pytest.mark.parametrize("name, parameters", [("swin_tiny_patch4_window7_224", 28_288_354),
                                               ("swin_small_patch4_window7_224", 49_606_258),
                                               ("swin_base_patch4_window7_224", 87_768_224)])
def test_preset_parameter_counts_are_timms(name, parameters):
    model = SwinTransformer(PRESETS[name])
    assert sum(p.numel() for p in model.parameters()) == parameters


def test_preset_inferred_without_image_size():
    state = SwinTransformer(PRESETS["swin_tiny_patch4_window7_224"]).state_dict()
    assert infer_swin_config(state) == PRESETS["swin_tiny_patch4_window7_224"]


def test_nonlinear_layers_are_taps():
    """Every non-linear layer is recorded by the taps with its input."""
    config = infer_swin_config(fixture_state(), img_size=28)
    taps: dict = {}
    load_swin_checkpoint(SWIN_TINY, img_size=28)(torch.zeros(1, 3, 28, 28), taps)
    layers = nonlinear_layers(config)
    assert set(layers) <= set(taps)
    assert len(layers) == 1 + 1 + 4 * 4 + 1
    assert "layers.0.blocks.1.attn.keep" in taps and "layers.1.blocks.1.attn.keep" not in taps


def one_line_error(error) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


def test_image_size_not_multiple_of_window_times_patch():
    with pytest.raises(ConfigError) as error:
        SwinConfig(img_size=30, patch_size=2, in_chans=1, num_classes=10, embed_dim=32,
                   depths=(2, 2), num_heads=(2, 4), window_size=7)
    assert "not a multiple of window_size x patch_size" in one_line_error(error)


def test_relative_position_table_of_another_window():
    state = fixture_state()
    key = "layers.1.blocks.0.attn.relative_position_bias_table"
    state[key] = torch.zeros(9 * 9, 4)
    with pytest.raises(IntvitError) as error:
        load_swin_checkpoint(state, img_size=28)
    text = one_line_error(error)
    assert key in text and "windows of 5" in text and "windows of 7" in text


def test_unknown_image_size_is_asked_for():
    with pytest.raises(IntvitError) as error:
        load_swin_checkpoint(fixture_state())
    assert "img_size" in one_line_error(error)


def test_vit_state_dict_is_not_a_swin():
    with pytest.raises(IntvitError) as error:
        load_swin_checkpoint({"patch_embed.proj.weight": torch.zeros(8, 3, 2, 2)})
    assert "missing" in one_line_error(error)


def test_stage_that_cannot_merge_is_refused():
    """42 = 3 x (2 x 7) passes the image-size rule, but its 21 x 21 tokens cannot be merged."""
    with pytest.raises(ConfigError) as error:
        SwinConfig(img_size=42, patch_size=2, in_chans=1, num_classes=10, embed_dim=32,
                   depths=(2, 2), num_heads=(2, 4), window_size=7)
    assert "cannot merge 21 tokens" in one_line_error(error)
