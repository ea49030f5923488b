"""Load timm Swin Transformer checkpoints into :class:`~intvit.golden_model.swin.SwinTransformer`.

Accepted: a state dict with timm 1.0's ``SwinTransformer`` keys (``swin_*_patch4_window7_224``
and smaller models of the same layout: merging at the start of stages >= 1, no absolute position
embedding), as a dict, a ``torch.save`` file, or wrapped as ``{"model": ...}`` /
``{"state_dict": ...}``. The relative position index and attention masks are rebuilt, so stored
``relative_position_index`` / ``attn_mask`` buffers (older timm) are ignored.

The shapes give every field but the image size, which no Swin weight records: it is given, or
taken from the preset (:data:`intvit.golden_model.swin.PRESETS`) of the same shapes. The
window is read from the first block's bias table (``(2M - 1)**2`` rows), the heads from every
stage's first table (one column per head).
"""
import math
import re

from .checkpoint_io import key_mismatch, load_weights, read_checkpoint
from .errors import ConfigError, IntvitError
from .swin import PRESETS, SwinConfig, SwinTransformer

HINT = "export a timm SwinTransformer state dict (timm >= 0.9 layout)"
REBUILT = ("relative_position_index", "attn_mask")
"""Buffers older timm versions store; rebuilt here from the config."""
TABLE = "layers.{}.blocks.0.attn.relative_position_bias_table"


def _table_window(state: dict, stage: int, source: str) -> int:
    rows = state[TABLE.format(stage)].shape[0]
    side = math.isqrt(rows)
    if side * side != rows or side % 2 == 0:
        raise IntvitError(f"checkpoint {source}: {TABLE.format(stage)} has {rows} rows, not "
                          f"(2M - 1)**2 for a window M; {HINT}")
    return (side + 1) // 2


def infer_swin_config(state: dict, source: str = "(in memory)",
                      img_size: int | None = None) -> SwinConfig:
    """The config of a timm Swin state dict from its shapes; ``img_size`` given, or else from
    the preset of the same shapes."""
    needed = ("patch_embed.proj.weight", "head.fc.weight", TABLE.format(0),
              "layers.0.blocks.0.mlp.fc1.weight")
    missing = [key for key in needed if key not in state]
    if missing:
        raise key_mismatch(source, missing, (), HINT, "Swin")
    embed_dim, in_chans, patch_size, _ = state["patch_embed.proj.weight"].shape
    blocks = {}
    for key in state:
        if match := re.match(r"layers\.(\d+)\.blocks\.(\d+)\.", key):
            stage, block = map(int, match.groups())
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    stages = range(len(blocks))
    if sorted(blocks) != list(stages) or any(TABLE.format(s) not in state for s in stages):
        raise IntvitError(f"checkpoint {source}: stages {sorted(blocks)} are not numbered "
                          f"0, 1, ... each with blocks.0; {HINT}")
    shapes = dict(patch_size=patch_size, embed_dim=embed_dim,
                  depths=tuple(blocks[s] for s in stages),
                  num_heads=tuple(state[TABLE.format(s)].shape[1] for s in stages),
                  window_size=_table_window(state, 0, source),
                  mlp_ratio=state["layers.0.blocks.0.mlp.fc1.weight"].shape[0] / embed_dim)
    if img_size is None:
        matches = [p for p in PRESETS.values()
                   if all(getattr(p, field) == value for field, value in shapes.items())]
        if not matches:
            raise IntvitError(f"checkpoint {source} matches no Swin preset, so its image size "
                              "is unknown; give it (--img-size N, or img_size=...)")
        img_size = matches[0].img_size
    try:
        return SwinConfig(**shapes, img_size=img_size, in_chans=in_chans,
                          num_classes=state["head.fc.weight"].shape[0])
    except ConfigError as error:
        raise IntvitError(f"checkpoint {source}: {error}") from None


def is_swin_state(state: dict) -> bool:
    """Whether ``state`` has timm Swin keys (``layers.S.blocks.i.*``)."""
    return any(re.match(r"layers\.\d+\.blocks\.", key) for key in state)


def load_swin_checkpoint(checkpoint, config: SwinConfig | None = None,
                         img_size: int | None = None) -> SwinTransformer:
    """A float :class:`SwinTransformer` in eval mode with the weights of ``checkpoint`` (a path
    or a possibly wrapped state dict): :func:`swin_from_state`."""
    state, source, _ = read_checkpoint(checkpoint, HINT)
    return swin_from_state(state, source, config, img_size)


def swin_from_state(state: dict, source: str, config: SwinConfig | None = None,
                    img_size: int | None = None) -> SwinTransformer:
    """A float :class:`SwinTransformer` in eval mode with the named tensors ``state``;
    ``config`` inferred (:func:`infer_swin_config`) when omitted, else checked against the
    shapes. A mismatch is a one-line :class:`IntvitError`."""
    state = {key: value for key, value in state.items()
             if key.rsplit(".", 1)[-1] not in REBUILT}
    if config is None:
        config = infer_swin_config(state, source, img_size)

    def window_mismatch(key):
        """A relative-position table of another shape: the window differs."""
        if key.endswith("relative_position_bias_table"):
            stage = int(key.split(".")[1])
            raise IntvitError(f"checkpoint {source}: {key} is a table for windows of "
                              f"{_table_window(state, stage, source)}, but stage {stage} uses "
                              f"windows of {config.window(stage)}; give the architecture "
                              "(window, image size) the checkpoint was trained with, or none to "
                              "infer it")

    return load_weights(SwinTransformer(config), state, source, HINT, "Swin", window_mismatch)
