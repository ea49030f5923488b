"""The float ViT, its taps, the digits dataset, checkpoint loading and the bundled model.

References are independent of ``intvit.golden_model.vit``: timm's key list written out by hand from
``timm/models/vision_transformer.py`` (``VisionTransformer``, ``Block``, ``Attention``, ``Mlp``),
``torch.nn.MultiheadAttention``, ``F.scaled_dot_product_attention`` / ``F.layer_norm`` /
``F.unfold``, the erf formula of GELU, and scikit-learn's raw digits.
"""
import argparse
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from intvit.golden_model.checkpoint import infer_config, load_bundled, load_checkpoint
from intvit.golden_model.dataset import SPLIT_SIZES, load_splits, split_indices
from intvit.golden_model.errors import ConfigError, IntvitError
from intvit.golden_model.vit import PRESETS, ViTConfig, VisionTransformer, nonlinear_layers, tap_names

SMALL = ViTConfig(img_size=8, patch_size=2, in_chans=2, num_classes=5, embed_dim=24, depth=2,
                  num_heads=3, mlp_ratio=2.5)
"""A config matching no preset: 16 patches + class token, head_dim 8, MLP width 60."""


def random_model(config: ViTConfig, seed: int = 0) -> VisionTransformer:
    """A float64 model with every parameter drawn from N(0, 0.3^2), so attention is not flat."""
    torch.manual_seed(seed)
    model = VisionTransformer(config).double().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    return model


def images(config: ViTConfig, batch: int = 3, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, config.in_chans, config.img_size, config.img_size,
                       generator=generator, dtype=torch.float64)


# timm vit_tiny_patch16_224 (embed 192, depth 12, heads 3, MLP 768, 14x14 patches + class token),
# in timm's state_dict order: own parameters, patch_embed, blocks, norm, head.
TIMM_VIT_TINY_TOP = [("cls_token", (1, 1, 192)), ("pos_embed", (1, 197, 192)),
                     ("patch_embed.proj.weight", (192, 3, 16, 16)),
                     ("patch_embed.proj.bias", (192,))]
TIMM_VIT_TINY_BLOCK = [("norm1.weight", (192,)), ("norm1.bias", (192,)),
                       ("attn.qkv.weight", (576, 192)), ("attn.qkv.bias", (576,)),
                       ("attn.proj.weight", (192, 192)), ("attn.proj.bias", (192,)),
                       ("norm2.weight", (192,)), ("norm2.bias", (192,)),
                       ("mlp.fc1.weight", (768, 192)), ("mlp.fc1.bias", (768,)),
                       ("mlp.fc2.weight", (192, 768)), ("mlp.fc2.bias", (192,))]
TIMM_VIT_TINY_END = [("norm.weight", (192,)), ("norm.bias", (192,)),
                     ("head.weight", (1000, 192)), ("head.bias", (1000,))]
VIT_TINY_PARAMETERS = 5_717_416
"""timm reports 5.7M parameters for vit_tiny_patch16_224 (ViT-Ti/16; DeiT-Ti, DeiT Table 1)."""


def timm_vit_tiny_keys() -> list[tuple[str, tuple]]:
    blocks = [(f"blocks.{i}.{name}", shape)
              for i in range(12) for name, shape in TIMM_VIT_TINY_BLOCK]
    return TIMM_VIT_TINY_TOP + blocks + TIMM_VIT_TINY_END


def reference_forward(state: dict, config: ViTConfig, x: torch.Tensor) -> torch.Tensor:
    """The ViT forward written with functional torch on timm's key names (unfold for patches,
    scaled_dot_product_attention for attention)."""
    dim, patch = config.embed_dim, config.patch_size
    patches = F.unfold(x, patch, stride=patch).transpose(1, 2)
    tokens = patches @ state["patch_embed.proj.weight"].reshape(dim, -1).T
    tokens = tokens + state["patch_embed.proj.bias"]
    tokens = torch.cat([state["cls_token"].expand(len(x), -1, -1), tokens], 1) + state["pos_embed"]

    def heads(t):
        return t.unflatten(-1, (config.num_heads, -1)).transpose(1, 2)

    for i in range(config.depth):
        def w(name):
            return state[f"blocks.{i}.{name}"]
        h = F.layer_norm(tokens, (dim,), w("norm1.weight"), w("norm1.bias"), eps=1e-6)
        q, k, v = F.linear(h, w("attn.qkv.weight"), w("attn.qkv.bias")).chunk(3, dim=-1)
        context = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        context = context.transpose(1, 2).flatten(2)
        tokens = tokens + F.linear(context, w("attn.proj.weight"), w("attn.proj.bias"))
        h = F.layer_norm(tokens, (dim,), w("norm2.weight"), w("norm2.bias"), eps=1e-6)
        h = F.gelu(F.linear(h, w("mlp.fc1.weight"), w("mlp.fc1.bias")))
        tokens = tokens + F.linear(h, w("mlp.fc2.weight"), w("mlp.fc2.bias"))
    cls = F.layer_norm(tokens[:, 0], (dim,), state["norm.weight"], state["norm.bias"], eps=1e-6)
    return F.linear(cls, state["head.weight"], state["head.bias"])


# --- the model -----------------------------------------------------------------------------------

def test_forward_shape_and_reference():
    model = random_model(SMALL)
    x = images(SMALL)
    logits = model(x)
    assert logits.shape == (3, SMALL.num_classes)
    torch.testing.assert_close(logits, reference_forward(model.state_dict(), SMALL, x),
                               rtol=1e-10, atol=1e-10)


def test_vit_tiny_keys_match_timm():
    model = VisionTransformer(PRESETS["vit_tiny_patch16_224"])
    ours = [(key, tuple(value.shape)) for key, value in model.state_dict().items()]
    assert ours == timm_vit_tiny_keys()
    assert sum(p.numel() for p in model.parameters()) == VIT_TINY_PARAMETERS


@pytest.mark.parametrize("name, dim, heads", [
    ("vit_tiny_patch16_224", 192, 3), ("vit_small_patch16_224", 384, 6),
    ("vit_base_patch16_224", 768, 12), ("deit_tiny_patch16_224", 192, 3),
    ("deit_small_patch16_224", 384, 6), ("deit_base_patch16_224", 768, 12)])
def test_imagenet_presets(name, dim, heads):
    assert PRESETS[name] == ViTConfig(img_size=224, patch_size=16, in_chans=3, num_classes=1000,
                                      embed_dim=dim, depth=12, num_heads=heads, mlp_ratio=4.0)


def test_attention_matches_multihead_attention():
    model = random_model(SMALL)
    attention = model.blocks[0].attn
    reference = torch.nn.MultiheadAttention(SMALL.embed_dim, SMALL.num_heads, batch_first=True,
                                            dtype=torch.float64)
    with torch.no_grad():
        reference.in_proj_weight.copy_(attention.qkv.weight)
        reference.in_proj_bias.copy_(attention.qkv.bias)
        reference.out_proj.weight.copy_(attention.proj.weight)
        reference.out_proj.bias.copy_(attention.proj.bias)
    x = torch.randn(2, SMALL.num_tokens, SMALL.embed_dim, dtype=torch.float64)
    expected, _ = reference(x, x, x, need_weights=False)
    torch.testing.assert_close(attention(x), expected, rtol=1e-10, atol=1e-10)


def test_mlp_is_exact_erf_gelu():
    mlp = random_model(SMALL).blocks[1].mlp
    x = torch.randn(2, SMALL.num_tokens, SMALL.embed_dim, dtype=torch.float64)
    hidden = x @ mlp.fc1.weight.T + mlp.fc1.bias
    hidden = 0.5 * hidden * (1.0 + torch.erf(hidden / math.sqrt(2.0)))
    torch.testing.assert_close(mlp(x), hidden @ mlp.fc2.weight.T + mlp.fc2.bias,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("norm", ["blocks.0.norm1", "blocks.1.norm2", "norm"])
def test_layernorm_eps_1e6(norm):
    layer = random_model(SMALL).get_submodule(norm)
    x = 1e-3 * torch.randn(4, SMALL.embed_dim, dtype=torch.float64)  # small variance: eps matters
    mean = x.mean(-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(-1, keepdim=True)
    expected = (x - mean) / torch.sqrt(variance + 1e-6) * layer.weight + layer.bias
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("field, value", [("img_size", 9), ("num_heads", 5), ("depth", 0),
                                          ("mlp_ratio", 0.0)])
def test_config_rejects(field, value):
    with pytest.raises(ConfigError, match=field):
        replace(SMALL, **{field: value})


# --- taps ----------------------------------------------------------------------------------------

def expected_taps(config: ViTConfig, batch: int) -> dict[str, tuple]:
    b, n, d, h = batch, config.num_tokens, config.embed_dim, config.num_heads
    hd, m, img = d // h, config.mlp_hidden, config.img_size
    taps = {"patch_embed.proj": (b, config.in_chans, img, img)}
    for i in range(config.depth):
        taps.update({f"blocks.{i}.norm1": (b, n, d), f"blocks.{i}.attn.qkv": (b, n, d),
                     f"blocks.{i}.attn.q": (b, h, n, hd), f"blocks.{i}.attn.k": (b, h, n, hd),
                     f"blocks.{i}.attn.softmax": (b, h, n, n),
                     f"blocks.{i}.attn.probs": (b, h, n, n), f"blocks.{i}.attn.v": (b, h, n, hd),
                     f"blocks.{i}.attn.proj": (b, n, d), f"blocks.{i}.norm2": (b, n, d),
                     f"blocks.{i}.mlp.fc1": (b, n, d), f"blocks.{i}.mlp.gelu": (b, n, m),
                     f"blocks.{i}.mlp.fc2": (b, n, m)})
    taps.update({"norm": (b, n, d), "head": (b, d)})
    return taps


def test_taps_names_shapes_and_order():
    model = random_model(SMALL)
    x = images(SMALL)
    taps = {}
    logits = model(x, taps)
    expected = expected_taps(SMALL, len(x))
    assert [(k, tuple(v.shape)) for k, v in taps.items()] == list(expected.items())
    assert tap_names(SMALL) == list(expected)
    torch.testing.assert_close(logits, model(x), rtol=0, atol=0)


def test_taps_are_layer_inputs():
    model = random_model(SMALL)
    taps = {}
    model(images(SMALL), taps)
    block = model.blocks[1]
    scores = taps["blocks.1.attn.q"] @ taps["blocks.1.attn.k"].transpose(-2, -1) / math.sqrt(8)
    torch.testing.assert_close(taps["blocks.1.attn.softmax"], scores)
    torch.testing.assert_close(taps["blocks.1.attn.probs"], scores.softmax(-1))
    torch.testing.assert_close(taps["blocks.1.attn.qkv"], block.norm1(taps["blocks.1.norm1"]))
    torch.testing.assert_close(taps["blocks.1.mlp.fc1"], block.norm2(taps["blocks.1.norm2"]))
    torch.testing.assert_close(taps["blocks.1.mlp.fc2"], F.gelu(taps["blocks.1.mlp.gelu"]))
    torch.testing.assert_close(taps["head"], model.norm(taps["norm"])[:, 0])


def test_nonlinear_layers():
    assert nonlinear_layers(SMALL) == {
        "blocks.0.norm1": "layernorm", "blocks.0.attn.softmax": "softmax",
        "blocks.0.norm2": "layernorm", "blocks.0.mlp.gelu": "gelu",
        "blocks.1.norm1": "layernorm", "blocks.1.attn.softmax": "softmax",
        "blocks.1.norm2": "layernorm", "blocks.1.mlp.gelu": "gelu", "norm": "layernorm"}


# --- dataset -------------------------------------------------------------------------------------

def test_splits_are_disjoint_seeded_and_exact():
    from sklearn.datasets import load_digits

    digits = load_digits()
    indices = split_indices()
    assert {name: len(index) for name, index in indices.items()} == SPLIT_SIZES
    assert sorted(np.concatenate(list(indices.values()))) == list(range(len(digits.target)))
    assert all(np.array_equal(indices[k], split_indices()[k]) for k in indices)
    assert not np.array_equal(indices["test"], split_indices(seed=1)["test"])
    test = load_splits()["test"]
    assert test.images.shape == (400, 1, 8, 8) and test.images.dtype == torch.float32
    pixels = digits.images[indices["test"]]
    assert np.array_equal(test.images[:, 0].numpy() * 8 + 8, pixels)  # exact in float32
    assert np.array_equal(test.labels.numpy(), digits.target[indices["test"]])


# --- checkpoints ---------------------------------------------------------------------------------

def one_line_error(checkpoint, config=None) -> str:
    with pytest.raises(IntvitError) as error:
        load_checkpoint(checkpoint, config)
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("wrapper", [None, "model", "state_dict"])
def test_load_checkpoint_from_file(tmp_path, wrapper):
    model = random_model(SMALL).float()
    state = model.state_dict()
    path = tmp_path / "vit.pth"
    torch.save(state if wrapper is None else {wrapper: state, "epoch": torch.tensor(3)}, path)
    loaded = load_checkpoint(path, SMALL)
    assert not loaded.training
    x = images(SMALL).float()
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_timm_shaped_checkpoint_infers_preset():
    state = {key: torch.empty(shape) for key, shape in timm_vit_tiny_keys()}
    state["head.weight"], state["head.bias"] = torch.empty(10, 192), torch.empty(10)
    assert infer_config(state) == replace(PRESETS["vit_tiny_patch16_224"], num_classes=10)


def test_half_precision_checkpoint_loads_as_float32():
    model = random_model(PRESETS["bundled"]).float()
    loaded = load_checkpoint({"model": model.half().state_dict()})
    assert loaded.config == PRESETS["bundled"] and loaded.pos_embed.dtype == torch.float32
    torch.testing.assert_close(loaded.pos_embed, model.pos_embed.float(), rtol=0, atol=0)


def test_unknown_shape_needs_config():
    assert "num_heads" in one_line_error(random_model(SMALL).state_dict())


def test_missing_key():
    state = random_model(SMALL).state_dict()
    del state["blocks.1.attn.qkv.bias"]
    assert "missing blocks.1.attn.qkv.bias" in one_line_error(state, SMALL)


def test_missing_block_with_inferred_config():
    state = VisionTransformer(PRESETS["bundled"]).state_dict()
    state = {key: value for key, value in state.items() if not key.startswith("blocks.2.")}
    assert "missing blocks.2.attn.proj.bias" in one_line_error(state)


def test_unexpected_keys():
    state = random_model(SMALL).state_dict()
    for i in range(5):
        state[f"pre_logits.fc{i}.weight"] = torch.zeros(1)
    message = one_line_error(state, SMALL)
    assert "unexpected pre_logits.fc0.weight, pre_logits.fc1.weight, pre_logits.fc2.weight" \
        " (+2 more)" in message


def test_distilled_keys_need_a_distilled_config():
    state = random_model(SMALL).state_dict()
    state["dist_token"] = torch.zeros(1, 1, SMALL.embed_dim)
    state["head_dist.weight"] = torch.zeros(5, SMALL.embed_dim)
    message = one_line_error({"model": state}, SMALL)
    assert "unexpected dist_token, head_dist.weight" in message


def test_wrong_shape_for_config():
    state = random_model(SMALL).state_dict()
    message = one_line_error(state, replace(SMALL, num_classes=7))
    assert "head.weight" in message and "(5, 24)" in message


def test_not_a_state_dict():
    assert "holds a list" in one_line_error([1, 2, 3])
    assert "not named tensors" in one_line_error({"pos_embed": [0.0]})


def test_unreadable_files(tmp_path):
    garbage, truncated, with_objects = (tmp_path / name for name in ("a.pth", "b.pth", "c.pth"))
    garbage.write_bytes(b"this is not a torch file\n" * 4)
    torch.save(random_model(SMALL).state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    torch.save({"model": {}, "args": argparse.Namespace(lr=0.1)}, with_objects)
    for path in (garbage, truncated, with_objects):
        assert f"cannot read checkpoint {path}" in one_line_error(path)
    assert "does not exist" in one_line_error(tmp_path / "absent.pth")


# --- the bundled model ---------------------------------------------------------------------------

def test_bundled_model_accuracy():
    model, config, meta = load_bundled()
    assert config == PRESETS["bundled"]
    test = load_splits(meta["split_seed"])["test"]
    with torch.no_grad():
        correct = (model(test.images).argmax(1) == test.labels).sum().item()
    assert correct / len(test) >= meta["float_accuracy"]["test"] >= 0.95


def test_replace_swaps_exactly_the_named_layer():
    from intvit.golden_model.checkpoint import load_bundled
    model, config, _ = load_bundled()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        plain = model(x)
        same = model(x, replace={"blocks.1.mlp.gelu": torch.nn.functional.gelu})
        zeroed = model(x, replace={"blocks.1.attn.softmax": torch.zeros_like})
    assert torch.equal(plain, same)
    assert not torch.allclose(plain, zeroed)


def test_forward_from_a_cached_block_input_equals_the_full_forward():
    from intvit.golden_model.checkpoint import load_bundled
    model, config, _ = load_bundled()
    x = torch.randn(3, 1, 8, 8)
    taps: dict = {}
    with torch.no_grad():
        full = model(x, taps)
        for block in range(config.depth):
            torch.testing.assert_close(model.forward_from(block, taps[f"blocks.{block}.norm1"]),
                                       full)
        torch.testing.assert_close(model.forward_from(config.depth, taps["norm"]), full)
