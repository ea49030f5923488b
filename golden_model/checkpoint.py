"""Load timm ViT/DeiT, Hugging Face ViT and timm Swin checkpoints (and the bundled models):
:func:`load_checkpoint` tells the family from the keys.

Accepted: a state dict with timm's ``VisionTransformer`` keys for a class-token model with
``global_pool='token'`` and no register tokens, layer scale or pre-logits layer (timm's
``vit_*_patch16_224`` and DeiT's ``deit_*_patch16_224``), or timm's
``VisionTransformerDistilled`` keys (``deit_*_distilled_patch16_224``: ``dist_token`` and
``head_dist`` besides), or a Hugging Face ``ViTForImageClassification`` state dict
(:mod:`.checkpoint_hf`, which maps its keys and reads its ``config.json``), into
:class:`VisionTransformer`; or timm's ``SwinTransformer`` keys, into
:class:`~intvit.golden_model.swin.SwinTransformer` (:mod:`.swin_checkpoint`, which reads the
window and heads from the relative-position tables; the image size is given or a preset's).
Given as a dict, a path to a ``torch.save`` or ``.safetensors`` file (:mod:`.safetensors_file`),
a ``save_pretrained`` directory, or wrapped as ``{"model": ...}`` / ``{"state_dict": ...}``
(DeiT releases). Tensors are converted to float32.

Without a config, a ViT's shapes give every field but ``num_heads``, which no weight shape records:
it is given, or taken from the preset (:data:`intvit.golden_model.vit.PRESETS`) with the same
image, patch, embedding, depth and MLP sizes; a model matching no preset needs it given.
"""
import json
import re
from pathlib import Path

import torch

from . import checkpoint_hf
from . import swin
from .checkpoint_io import first_keys as _first
from .checkpoint_io import key_mismatch, load_weights, read_checkpoint
from .dataset import ALIASES
from .errors import ConfigError, IntvitError
from .swin_checkpoint import is_swin_state, swin_from_state
from .vit import PRESETS, ViTConfig, VisionTransformer

DATA = Path(__file__).resolve().parent / "data"
BUNDLED_STEMS = {"digits": "bundled_vit", "mnist": "mnist_vit", "mnist-swin": "mnist_swin"}
"""The bundled models by name (each trained on the dataset of the same name; ``mnist-swin``, a
Swin, on mnist) and the stem of their files in :data:`DATA`: ``STEM.pt`` (state dict) and
``STEM.json`` (metadata)."""
BUNDLED_NAMES = (*BUNDLED_STEMS, *ALIASES)
"""Every name :func:`load_bundled` accepts: ``digits``, ``mnist``, ``mnist-swin`` and ``bundled``
(= digits)."""
BUNDLED_WEIGHTS = DATA / "bundled_vit.pt"
BUNDLED_META = DATA / "bundled_vit.json"
HINT = ("export a timm VisionTransformer state dict (class token, global_pool='token', "
        "no register tokens, layer scale or pre_logits; VisionTransformerDistilled too)")
FAMILIES = ("a timm ViT/DeiT (patch_embed.proj.weight, pos_embed, blocks.N.attn.qkv.weight, "
            "head.weight; distilled DeiT adds dist_token, head_dist.weight) or a Hugging Face "
            "ViTForImageClassification (vit.embeddings.*, vit.encoder.layer.N.*, "
            "classifier.weight) or a timm Swin (patch_embed.proj.weight, "
            "layers.S.blocks.N.attn.relative_position_bias_table, head.fc.weight)")
"""What a checkpoint's keys must look like: every family intvit reads."""
ARCHITECTURES = {**PRESETS, **swin.PRESETS}
"""Every preset config by timm name: the ViT/DeiT and the Swin ones."""


def _is_timm(state: dict) -> bool:
    return any(key in ("patch_embed.proj.weight", "pos_embed", "cls_token")
               or key.startswith("blocks.") for key in state)


def _from_hf(state: dict, source: str, path: Path | None, config: ViTConfig | None,
             num_heads: int | None) -> tuple[dict, ViTConfig]:
    """A Hugging Face ViT state dict under timm's keys, and its config: from ``config.json``
    beside a file (``config``/``num_heads`` refused: it sets them), or ``config`` for a dict."""
    depth = checkpoint_hf.hf_depth(state)
    expected = checkpoint_hf.hf_keys(depth)
    missing, unexpected = set(expected) - state.keys(), state.keys() - set(expected)
    if missing or unexpected:
        raise key_mismatch(source, missing, unexpected, checkpoint_hf.HINT,
                           "Hugging Face ViTForImageClassification")
    if path is not None and (config is not None or num_heads is not None):
        raise IntvitError(f"checkpoint {source} is a Hugging Face ViT whose config.json sets "
                          "its architecture; leave out the architecture and heads (--arch, "
                          "--heads)")
    if path is None and config is None:
        raise IntvitError("an in-memory Hugging Face ViT state dict needs config=ViTConfig(...) "
                          "(with its layer_norm_eps), or load it from its directory")
    state = checkpoint_hf.timm_state(state)
    if config is None:
        config = checkpoint_hf.vit_config(checkpoint_hf.read_config(path, source), state, depth,
                                          source)
    return state, config


def infer_config(state: dict[str, torch.Tensor], source: str = "(in memory)",
                 num_heads: int | None = None) -> ViTConfig:
    """The config of a timm ViT state dict, from its tensor shapes; ``num_heads`` given, or
    else from the preset of the same shapes."""
    needed = ("patch_embed.proj.weight", "pos_embed", "head.weight", "blocks.0.mlp.fc1.weight")
    missing = [key for key in needed if key not in state]
    if missing:
        raise key_mismatch(source, missing, (), HINT, "ViT")
    for key, ndim in zip(needed, (4, 3, 2, 2)):
        if state[key].dim() != ndim:
            raise IntvitError(f"checkpoint {source}: {key} has shape {tuple(state[key].shape)}, "
                              f"expected {ndim} dimensions; {HINT}")
    embed_dim, in_chans, patch_size, _ = state["patch_embed.proj.weight"].shape
    distilled = "dist_token" in state
    prefix = 2 if distilled else 1
    patches = state["pos_embed"].shape[1] - prefix
    grid = round(max(patches, 0) ** 0.5)
    if grid * grid != patches:
        raise IntvitError(f"checkpoint {source}: pos_embed has {patches + prefix} positions, not "
                          f"a square grid plus {prefix} prefix token(s); " + HINT)
    depth = 1 + max(int(m.group(1)) for key in state if (m := re.match(r"blocks\.(\d+)\.", key)))
    shapes = dict(img_size=grid * patch_size, patch_size=patch_size, embed_dim=embed_dim,
                  depth=depth, mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / embed_dim,
                  distilled=distilled)
    matches = [preset for preset in PRESETS.values()
               if all(getattr(preset, field) == value for field, value in shapes.items())]
    if num_heads is None and not matches:
        described = ", ".join(f"{field}={value}" for field, value in shapes.items())
        raise IntvitError(f"checkpoint {source} ({described}) matches no preset, so num_heads "
                          "is unknown; give it (--heads N, or config=ViTConfig(...))")
    heads = num_heads if num_heads is not None else matches[0].num_heads
    try:
        return ViTConfig(**shapes, in_chans=in_chans, num_classes=state["head.weight"].shape[0],
                         num_heads=heads)
    except ConfigError as error:
        raise IntvitError(f"checkpoint {source}: {error}") from None


def load_checkpoint(checkpoint, config: ViTConfig | swin.SwinConfig | None = None,
                    num_heads: int | None = None, img_size: int | None = None):
    """A float :class:`VisionTransformer` or, for timm Swin keys,
    :class:`~intvit.golden_model.swin.SwinTransformer`, in eval mode with the checkpoint's
    weights.

    ``checkpoint`` is a path or a (possibly wrapped) state dict; ``config`` is inferred from the
    shapes when omitted (a ViT's heads ``num_heads``, else a preset's; a Swin's image size
    ``img_size``, else a preset's), else checked against them (a Hugging Face ViT's comes from
    its ``config.json``). A Swin's tables record its heads, a ViT's position embedding its
    image size: giving those is refused. Anything unsupported is a one-line
    :class:`IntvitError` naming the first few offending keys, or, for keys of no supported
    family, what was expected.
    """
    state, source, path = read_checkpoint(checkpoint, HINT)
    if is_swin_state(state):
        _check_family(source, "timm Swin", config, swin.SwinConfig)
        if num_heads is not None:
            raise IntvitError(f"checkpoint {source} is a timm Swin, whose relative-position "
                              "tables record its heads; leave out the heads (--heads)")
        return swin_from_state(state, source, config, img_size)
    if img_size is not None:
        raise IntvitError(f"checkpoint {source} is a ViT, whose position embedding sets its "
                          "image size; leave out the image size (--img-size)")
    if checkpoint_hf.is_hf_state(state):
        state, config = _from_hf(state, source, path, config, num_heads)
    elif not _is_timm(state):
        raise IntvitError(f"checkpoint {source} matches no supported model family (its keys "
                          f"include {_first(state) or 'nothing'}); expected {FAMILIES}")
    _check_family(source, "ViT", config, ViTConfig)
    if config is None:
        config = infer_config(state, source, num_heads)
    return load_weights(VisionTransformer(config), state, source, HINT, "ViT")


def _check_family(source: str, family: str, config, kind: type) -> None:
    """A ``config`` given for another family than the checkpoint's is a one-line error."""
    if config is not None and not isinstance(config, kind):
        raise IntvitError(f"checkpoint {source} is a {family}, but the architecture given "
                          f"(--arch, config) is a {type(config).__name__}; give a {family} "
                          "architecture, or none to infer it")


def bundled_name(name: str) -> str:
    """The bundled model ``name`` stands for (``bundled`` is ``digits``); a one-line error for a
    name that is not bundled."""
    resolved = ALIASES.get(name, name)
    if resolved not in BUNDLED_STEMS:
        raise IntvitError(f"{name!r} is not a bundled model; use one of "
                          f"{', '.join(BUNDLED_NAMES)} (bundled = digits)")
    return resolved


def load_bundled(name: str = "digits") -> tuple[VisionTransformer, ViTConfig, dict]:
    """The bundled model ``name`` (:data:`BUNDLED_NAMES`): ``(model, config, meta)``, meta being
    its ``STEM.json`` (config, split seed and sizes, float accuracies, training record). Its
    dataset is ``dataset.load_splits(meta["split_seed"], name)``."""
    stem = BUNDLED_STEMS[bundled_name(name)]
    weights, meta_path = DATA / f"{stem}.pt", DATA / f"{stem}.json"
    if not (weights.is_file() and meta_path.is_file()):
        raise IntvitError(f"bundled model files {stem}.pt and {stem}.json are missing in {DATA}; "
                          f"run scripts/train_bundled.py --model {bundled_name(name)} to "
                          "recreate them")
    meta = json.loads(meta_path.read_text())
    kind = swin.SwinConfig if meta.get("architecture") == "swin" else ViTConfig
    config = kind(**meta["config"])
    return load_checkpoint(weights, config), config, meta
