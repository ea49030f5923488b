"""Hugging Face ``ViTForImageClassification`` checkpoints mapped onto :class:`VisionTransformer`.

Files: what ``save_pretrained`` writes, a directory with ``config.json`` and ``model.safetensors``
(or the older ``pytorch_model.bin``), or one of those weight files with ``config.json`` beside it.
State-dict keys (transformers ``models/vit/modeling_vit.py``, the classic on-disk names) become
timm's (``N`` a layer; modules have ``.weight`` and ``.bias``)::

    vit.embeddings.cls_token                           cls_token
    vit.embeddings.position_embeddings                 pos_embed
    vit.embeddings.patch_embeddings.projection         patch_embed.proj
    vit.encoder.layer.N.layernorm_before               blocks.N.norm1
    vit.encoder.layer.N.attention.attention.query      blocks.N.attn.qkv, rows [q; k; v]
                                    ... .key, .value
    vit.encoder.layer.N.attention.output.dense         blocks.N.attn.proj
    vit.encoder.layer.N.layernorm_after                blocks.N.norm2
    vit.encoder.layer.N.intermediate.dense             blocks.N.mlp.fc1
    vit.encoder.layer.N.output.dense                   blocks.N.mlp.fc2
    vit.layernorm                                      norm
    classifier                                         head

The network is the same: HF splits each of q, k, v into heads as ``(B, N, H, d)`` views (timm's
layout of the fused output), scales the scores by ``d**-0.5``, ``hidden_act="gelu"`` is the exact
erf GELU, and the classifier reads token 0 after the final LayerNorm.

``config.json`` gives ``num_attention_heads``, ``image_size``, ``patch_size`` and
``layer_norm_eps`` (HF's 1e-12, carried into :attr:`ViTConfig.layer_norm_eps`); intvit models only
``hidden_act="gelu"`` and ``qkv_bias=true``, and refuses anything else (or their absence) in one
line naming the option. The other shapes come from the weights, checked against the file.
"""
import json
import re
from pathlib import Path

import torch

from .errors import ConfigError, IntvitError
from .vit import ViTConfig

PREFIXES = ("vit.", "classifier.")
"""A state dict with a key starting so is taken for a Hugging Face ViT."""
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
"""The weight files ``save_pretrained`` writes, in the order a directory is searched."""
CONFIG_FILE = "config.json"
TOP_TENSORS = {"vit.embeddings.cls_token": "cls_token",
               "vit.embeddings.position_embeddings": "pos_embed"}
TOP_MODULES = {"vit.embeddings.patch_embeddings.projection": "patch_embed.proj",
               "vit.layernorm": "norm", "classifier": "head"}
LAYER_MODULES = {"layernorm_before": "norm1", "attention.output.dense": "attn.proj",
                 "layernorm_after": "norm2", "intermediate.dense": "mlp.fc1",
                 "output.dense": "mlp.fc2"}
QKV_MODULES = ("attention.attention.query", "attention.attention.key",
               "attention.attention.value")
"""Fused in this order into ``attn.qkv`` (timm's output columns ``[q | k | v]``)."""
PARAMETERS = ("weight", "bias")
MODELLED = {"hidden_act": "gelu", "qkv_bias": True}
"""config.json options that intvit models only with this value."""
REQUIRED = ("num_attention_heads", "image_size", "patch_size", "layer_norm_eps")
SHAPE_FIELDS = {"hidden_size": "embed_dim", "num_hidden_layers": "depth",
                "num_channels": "in_chans"}
"""config.json fields that the weights also record: checked to agree."""
HINT = ("give what ViTForImageClassification.save_pretrained writes (config.json with "
        "model.safetensors or pytorch_model.bin)")


def is_hf_state(state: dict) -> bool:
    return any(key.startswith(PREFIXES) for key in state)


def weights_in(directory: Path) -> Path:
    """The weight file of a ``save_pretrained`` directory."""
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    raise IntvitError(f"checkpoint directory {directory} holds neither "
                      f"{' nor '.join(WEIGHT_FILES)}; {HINT}")


def hf_keys(depth: int) -> list[str]:
    """Every key of a classic-named ViTForImageClassification state dict of ``depth`` layers."""
    keys = list(TOP_TENSORS)
    keys += [f"{module}.{p}" for module in TOP_MODULES for p in PARAMETERS]
    keys += [f"vit.encoder.layer.{n}.{module}.{p}" for n in range(depth)
             for module in (*LAYER_MODULES, *QKV_MODULES) for p in PARAMETERS]
    return keys


def hf_depth(state: dict) -> int:
    """Layers in the state dict: one more than the largest ``vit.encoder.layer.N``."""
    layers = [int(m.group(1)) for key in state
              if (m := re.match(r"vit\.encoder\.layer\.(\d+)\.", key))]
    return 1 + max(layers, default=-1)


def timm_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict under timm's keys, q/k/v fused (module docstring); every key of
    :func:`hf_keys` must be present."""
    out = {timm: state[hf] for hf, timm in TOP_TENSORS.items()}
    out.update({f"{timm}.{p}": state[f"{hf}.{p}"] for hf, timm in TOP_MODULES.items()
                for p in PARAMETERS})
    for n in range(hf_depth(state)):
        layer = f"vit.encoder.layer.{n}"
        out.update({f"blocks.{n}.{timm}.{p}": state[f"{layer}.{hf}.{p}"]
                    for hf, timm in LAYER_MODULES.items() for p in PARAMETERS})
        for p in PARAMETERS:
            out[f"blocks.{n}.attn.qkv.{p}"] = torch.cat(
                [state[f"{layer}.{module}.{p}"] for module in QKV_MODULES])
    return out


def read_config(path: Path, source: str) -> dict:
    """``config.json`` of the checkpoint at ``path`` (in the directory, or beside the file)."""
    config_path = (path if path.is_dir() else path.parent) / CONFIG_FILE
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise IntvitError(f"checkpoint {source} has Hugging Face keys but no {config_path}; "
                          f"{HINT}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise IntvitError(f"{config_path} is not JSON; {HINT}") from None
    if not isinstance(config, dict):
        raise IntvitError(f"{config_path} is not a JSON object; {HINT}")
    return config


def vit_config(hf: dict, state: dict[str, torch.Tensor], depth: int, source: str) -> ViTConfig:
    """The :class:`ViTConfig` of a Hugging Face ViT: ``config.json`` ``hf`` for what the weights
    do not record, the (timm-named) weights ``state`` for the rest; options intvit does not
    model are refused, naming the option."""
    where = f"checkpoint {source}: config.json"
    if hf.get("model_type", "vit") != "vit":
        raise IntvitError(f"{where} has model_type {hf['model_type']!r}; intvit reads "
                          "Hugging Face ViT (model_type 'vit') checkpoints only")
    for option, value in MODELLED.items():
        if option not in hf:
            raise IntvitError(f"{where} lacks {option}; intvit models {option}={value!r} "
                              "only, so it cannot tell what the model computes")
        if hf[option] != value:
            raise IntvitError(f"{where} sets {option}={hf[option]!r}, which intvit does not "
                              f"model; only {option}={value!r} is supported")
    missing = [field for field in REQUIRED if field not in hf]
    if missing:
        raise IntvitError(f"{where} lacks {', '.join(missing)}; {HINT}")
    embed_dim, in_chans = state["patch_embed.proj.weight"].shape[:2]
    shapes = {"embed_dim": embed_dim, "depth": depth, "in_chans": in_chans}
    for field, ours in SHAPE_FIELDS.items():
        if field in hf and hf[field] != shapes[ours]:
            raise IntvitError(f"{where} sets {field}={hf[field]!r} but the weights have "
                              f"{shapes[ours]}; the files do not belong together")
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    try:
        return ViTConfig(img_size=square(hf["image_size"], "image_size", where),
                         patch_size=square(hf["patch_size"], "patch_size", where),
                         num_classes=state["head.weight"].shape[0],
                         num_heads=hf["num_attention_heads"], mlp_ratio=hidden / embed_dim,
                         layer_norm_eps=hf["layer_norm_eps"], **shapes)
    except ConfigError as error:
        raise IntvitError(f"{where}: {error}") from None


def square(value, field: str, where: str) -> int:
    """An image or patch size: one int, or ``[s, s]`` (HF allows pairs; intvit is square)."""
    if isinstance(value, list) and len(value) == 2 and value[0] == value[1]:
        value = value[0]
    if not isinstance(value, int) or isinstance(value, bool):
        raise IntvitError(f"{where} sets {field}={value!r}; intvit models square sizes given "
                          "as one integer")
    return value
