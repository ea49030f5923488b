"""Hugging Face ViTForImageClassification checkpoints (issue 19): the fixture that transformers
wrote (config.json with model.safetensors, and the same state dict as pytorch_model.bin) loads
into intvit's float model, which reproduces transformers' logits; its W8A8 integer model runs on
integers only; bad files and unmodelled options are one-line errors, exit 2 through the CLI."""
import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from intvit.cli import main
from intvit.golden_model.checkpoint import load_checkpoint
from intvit.golden_model.qvit import quantize_images
from intvit.golden_model.safetensors_file import bfloat16_to_float32, read_safetensors
from intvit.golden_model.vit import ViTConfig
from checkpoint_fixtures import (AGREEMENT, ATOL, FIXTURES, agreement, expected_taps,
                                 float_logits, integer_model, library_io, one_line_error,
                                 random_images, traced)

HF = FIXTURES / "hf_vit"
HF_EPS = 1e-12
"""The fixture's config.json layer_norm_eps (transformers' default; timm's is 1e-6)."""


@pytest.fixture(scope="module")
def hf_model():
    return load_checkpoint(HF)


@pytest.mark.parametrize("path", ["hf_vit", "hf_vit/model.safetensors",
                                  "hf_vit/pytorch_model.bin"])
def test_float_logits_match_transformers(path):
    model = load_checkpoint(FIXTURES / path)
    inputs, logits = library_io("hf_vit")
    np.testing.assert_allclose(float_logits(model, inputs), logits, rtol=0, atol=ATOL)


def test_config_is_carried_over(hf_model):
    assert hf_model.config == ViTConfig(img_size=32, patch_size=8, in_chans=3, num_classes=10,
                                        embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0,
                                        layer_norm_eps=HF_EPS)
    norms = [m for m in hf_model.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 5 and all(m.eps == HF_EPS for m in norms)


def test_safetensors_reader_matches_the_bin_file():
    """Our reader against torch.load of the same state dict, saved by torch (manifest notes)."""
    ours = read_safetensors(HF / "model.safetensors")
    theirs = torch.load(HF / "pytorch_model.bin", weights_only=True)
    assert ours.keys() == theirs.keys()
    for key, tensor in theirs.items():
        assert ours[key].dtype == tensor.dtype and torch.equal(ours[key], tensor), key


def test_bfloat16_widening_matches_torch():
    values = torch.tensor([0.0, -1.5, 3.140625, 1e-30, -65280.0, float("inf")])
    bits = values.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    widened = bfloat16_to_float32(bits)
    assert np.array_equal(widened, values.to(torch.bfloat16).float().numpy())


def test_integer_model_is_integer_only_and_agrees(hf_model):
    qmodel, spec = integer_model(hf_model)
    layernorms = [plan.config for name, plan in qmodel.plans.items() if "norm" in name]
    assert len(layernorms) == 5 and all(cfg.eps == HF_EPS for cfg in layernorms)
    images_q = quantize_images(library_io("hf_vit")[0].numpy(), spec.image_scale)
    logits, taps = traced(qmodel, images_q)
    assert logits.tolist() == qmodel.forward(images_q).tolist()
    assert set(taps) == expected_taps(hf_model.config)
    assert agreement(hf_model, qmodel, spec, random_images(hf_model.config, 64, 11)) >= AGREEMENT


def test_in_memory_state_dict_takes_a_config(hf_model):
    state = torch.load(HF / "pytorch_model.bin", weights_only=True)
    assert "config=ViTConfig" in one_line_error(state)
    model = load_checkpoint(state, hf_model.config)
    inputs, logits = library_io("hf_vit")
    np.testing.assert_allclose(float_logits(model, inputs), logits, rtol=0, atol=ATOL)


def copy_with_config(tmp_path, **changes):
    """The fixture directory with ``config.json`` changed (``None`` deletes a field)."""
    directory = tmp_path / "hf"
    shutil.copytree(HF, directory)
    config = json.loads((HF / "config.json").read_text())
    for field, value in changes.items():
        if value is None:
            del config[field]
        else:
            config[field] = value
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.parametrize("changes, words", [
    ({"qkv_bias": None}, "lacks qkv_bias"),
    ({"qkv_bias": False}, "qkv_bias=False"),
    ({"hidden_act": "gelu_new"}, "hidden_act='gelu_new'"),
    ({"hidden_act": None}, "lacks hidden_act"),
    ({"layer_norm_eps": None}, "layer_norm_eps"),
    ({"layer_norm_eps": 0}, "layer_norm_eps must be finite and > 0"),
    ({"num_attention_heads": 3}, "not a multiple of num_heads 3"),
    ({"hidden_size": 64}, "hidden_size=64"),
    ({"image_size": [32, 24]}, "image_size"),
    ({"model_type": "deit"}, "model_type 'deit'"),
])
def test_unmodelled_config_is_one_line(tmp_path, changes, words):
    assert words in one_line_error(copy_with_config(tmp_path, **changes))


def test_key_sets(tmp_path):
    state = torch.load(HF / "pytorch_model.bin", weights_only=True)
    del state["vit.encoder.layer.1.attention.attention.key.bias"]
    state["vit.pooler.dense.weight"] = torch.zeros(2, 2)
    message = one_line_error(state)
    assert "not a supported Hugging Face ViTForImageClassification" in message
    assert "missing vit.encoder.layer.1.attention.attention.key.bias" in message
    assert "unexpected vit.pooler.dense.weight" in message
    message = one_line_error({"encoder.weight": torch.zeros(1), "decoder.bias": torch.zeros(1)})
    assert "matches no supported model family" in message and "decoder.bias" in message
    assert "timm ViT/DeiT" in message and "ViTForImageClassification" in message
    (tmp_path / "empty").mkdir()
    assert "neither model.safetensors nor pytorch_model.bin" in one_line_error(tmp_path / "empty")
    lone = tmp_path / "lone" / "model.safetensors"
    lone.parent.mkdir()
    shutil.copy(HF / "model.safetensors", lone)
    assert "has Hugging Face keys but no" in one_line_error(lone)


@pytest.mark.parametrize("damage", [
    lambda data: data[:5],
    lambda data: (10 ** 9).to_bytes(8, "little") + data[8:],
    lambda data: data[:8] + b"\xff" * 8 + data[16:],
    lambda data: data[:-100],
])
def test_damaged_safetensors(tmp_path, damage):
    path = tmp_path / "model.safetensors"
    path.write_bytes(damage((HF / "model.safetensors").read_bytes()))
    assert f"cannot read safetensors file {path}" in one_line_error(path)


def test_cli_quantizes_the_directory(tmp_path, capsys):
    images = tmp_path / "cal.npy"
    np.save(images, random_images(ViTConfig(32, 8, 3, 10, 32, 2, 2), 20, 3).numpy())
    out = tmp_path / "run"
    assert main(["quantize", "--model", str(HF), "--calibration", str(images), "--rule",
                 "all-ivit", "--score-images", "8", "-o", str(out)]) == 0
    quant = json.loads((out / "quant.json").read_text())
    assert set(quant["assignment"].values()) == {"layernorm/ivit", "softmax/ivit", "gelu/ivit"}
    assert "top-1 agreement" in capsys.readouterr().out


@pytest.mark.parametrize("changes, extra, words", [
    ({"qkv_bias": None}, [], "qkv_bias"),
    ({"hidden_act": "relu"}, [], "hidden_act='relu'"),
    ({}, ["--heads", "4"], "config.json sets its architecture"),
])
def test_cli_refuses_in_one_line(tmp_path, capsys, changes, extra, words):
    images = tmp_path / "cal.npy"
    np.save(images, np.zeros((4, 3, 32, 32), np.float32))
    out = tmp_path / "run"
    assert main(["quantize", "--model", str(copy_with_config(tmp_path, **changes)),
                 "--calibration", str(images), *extra, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
    assert not out.exists()
