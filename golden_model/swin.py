"""The float Swin Transformer: timm's ``SwinTransformer`` with timm's parameter names, and taps.

Architecture (Swin, Liu et al., ICCV 2021, sec. 3.1-3.2; timm 1.0 ``swin_transformer.py``):
patch embedding by a ``patch x patch`` stride-``patch`` convolution followed by a LayerNorm;
stages ``S = 0, 1, ...`` of width ``embed_dim * 2**S``, each but the first opening with a patch
merging (the 2x2 neighbours concatenated in the order ``(0,0), (1,0), (0,1), (1,1)`` (row,
column), LayerNorm, a linear ``4C -> 2C`` without bias, sec. 3.1), then ``depths[S]`` pre-norm
blocks ``x = x + W-MSA(norm1(x)); x = x + mlp(norm2(x))``; a final LayerNorm, the mean over
tokens and a linear head. LayerNorm eps is ``1e-5`` (torch's default, which timm's Swin uses) and
GELU the exact erf form.

Window attention (sec. 3.2): the ``H x W`` token grid is cut into ``M x M`` windows and
multi-head attention runs inside each window: ``softmax(q @ k^T * d**-0.5 + B)`` with ``B`` the
relative position bias ``B[h, i, j] = table[index(i, j), h]``, the table holding
``(2M - 1)**2`` rows, ``index`` the row of the 2-D offset between tokens ``i`` and ``j`` (eq. 4).
Odd blocks shift the grid by ``-floor(M/2)`` in both directions (a cyclic roll) before
partitioning and roll back after; tokens of a window that came from different regions of the
unrolled grid do not attend to each other (the attention mask; here masked positions are
excluded from the softmax row, as the integer model does; timm adds ``-100`` to them, which
changes its float32 output by less than 1e-40). A stage whose resolution is at most ``M`` takes
a window of the whole resolution and no shift (timm's rule). The relative position index and
the mask follow from the config and are rebuilt here, not stored.

Taps (module paths, as in :mod:`intvit.golden_model.vit`; ``L`` tokens and ``C`` channels of
the stage, ``w`` windows of ``n = M*M`` tokens over the batch, ``H`` heads, ``d = C / H``)::

    patch_embed.proj                      (B, in, img, img)  the image
    patch_embed.norm                      (B, L, C)          patch-embedding LayerNorm
    layers.S.downsample.norm              (B, L, 4C)         merging LayerNorm (S >= 1)
    layers.S.downsample.reduction         (B, L, 4C)         merging linear
    layers.S.blocks.i.norm1               (B, L, C)          the residual stream
    layers.S.blocks.i.attn.qkv            (w, n, C)          QKV linear, per window
    layers.S.blocks.i.attn.q / .k / .v    (w, H, n, d)
    layers.S.blocks.i.attn.softmax        (w, H, n, n)       q @ k^T * d**-0.5 + bias
    layers.S.blocks.i.attn.keep           (w, H, n, n)       the mask, 1 = kept (shifted only)
    layers.S.blocks.i.attn.probs          (w, H, n, n)
    layers.S.blocks.i.attn.proj           (w, n, C)
    layers.S.blocks.i.norm2 / mlp.fc1     (B, L, C)
    layers.S.blocks.i.mlp.gelu / mlp.fc2  (B, L, 4C)
    norm                                  (B, L, C)          final LayerNorm
    head.fc                               (B, C)             the token mean
"""
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from .errors import ConfigError
from .integer import check_int, check_scale
from .vit import Mlp, _op, _tap

LAYERNORM_EPS = 1e-5
"""timm's Swin LayerNorm epsilon (torch's default)."""


@dataclass(frozen=True)
class SwinConfig:
    """Shape of a Swin Transformer. ``depths`` and ``num_heads`` hold one entry per stage; stage
    ``S`` is ``embed_dim * 2**S`` wide; the MLP hidden width is ``int(C * mlp_ratio)``."""

    layer_norm_eps: ClassVar[float] = LAYERNORM_EPS
    """Every LayerNorm's epsilon (the integer LayerNorms' float reference takes it)."""

    img_size: int
    patch_size: int
    in_chans: int
    num_classes: int
    embed_dim: int
    depths: tuple
    num_heads: tuple
    window_size: int
    mlp_ratio: float = 4.0

    def __post_init__(self):
        owner = "SwinConfig"
        object.__setattr__(self, "depths", tuple(self.depths))
        object.__setattr__(self, "num_heads", tuple(self.num_heads))
        check_int(owner, "img_size", self.img_size, 1, 4096)
        check_int(owner, "patch_size", self.patch_size, 1, self.img_size)
        check_int(owner, "in_chans", self.in_chans, 1, 64)
        check_int(owner, "num_classes", self.num_classes, 1, 100_000)
        check_int(owner, "embed_dim", self.embed_dim, 1, 16_384)
        check_int(owner, "window_size", self.window_size, 1, 256)
        check_scale(owner, "mlp_ratio", self.mlp_ratio)
        if not self.depths or len(self.depths) != len(self.num_heads):
            raise ConfigError(f"{owner}: depths {self.depths} and num_heads {self.num_heads} "
                              "need one entry per stage each")
        for stage, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
            check_int(owner, f"depths[{stage}]", depth, 1, 256)
            check_int(owner, f"num_heads[{stage}]", heads, 1, self.dim(stage))
            if self.dim(stage) % heads:
                raise ConfigError(f"{owner}: stage {stage} width {self.dim(stage)} is not a "
                                  f"multiple of its {heads} heads")
        tile = self.patch_size * self.window_size
        if self.img_size % tile:
            raise ConfigError(f"{owner}: img_size {self.img_size} is not a multiple of "
                              f"window_size x patch_size = {self.window_size} x "
                              f"{self.patch_size} = {tile}; resize the images or change the "
                              "window or patch")
        for stage in range(1, self.stages):
            if self.resolution(stage - 1) % 2 or self.resolution(stage) % self.window(stage):
                side = self.resolution(stage - 1)
                raise ConfigError(f"{owner}: stage {stage} cannot merge {side} tokens a side "
                                  f"into windows of {self.window(stage)}; use an img_size with "
                                  "more factors of 2, or fewer stages")

    @property
    def stages(self) -> int:
        return len(self.depths)

    def dim(self, stage: int) -> int:
        return self.embed_dim << stage

    def resolution(self, stage: int) -> int:
        """Tokens per side in ``stage``."""
        return (self.img_size // self.patch_size) >> stage

    def window(self, stage: int) -> int:
        """Window side in ``stage``: ``window_size``, or the resolution where that is smaller."""
        return min(self.window_size, self.resolution(stage))

    def shift(self, stage: int, block: int) -> int:
        """Cyclic shift of a block: ``window // 2`` on odd blocks, none where one window covers
        the stage (Swin sec. 3.2, timm's rule)."""
        if block % 2 == 0 or self.resolution(stage) <= self.window_size:
            return 0
        return self.window(stage) // 2

    def mlp_hidden(self, stage: int) -> int:
        return int(self.dim(stage) * self.mlp_ratio)

    def blocks(self):
        """``(stage, block)`` of every block in forward order."""
        return [(s, b) for s in range(self.stages) for b in range(self.depths[s])]

    def to_dict(self) -> dict:
        return {**asdict(self), "depths": list(self.depths), "num_heads": list(self.num_heads)}


def _swin(embed_dim: int, depths: tuple, num_heads: tuple) -> SwinConfig:
    return SwinConfig(img_size=224, patch_size=4, in_chans=3, num_classes=1000,
                      embed_dim=embed_dim, depths=depths, num_heads=num_heads, window_size=7)


PRESETS: dict[str, SwinConfig] = {
    # timm swin_*_patch4_window7_224 (Swin Table 1 / sec. 3.3: T, S, B).
    "swin_tiny_patch4_window7_224": _swin(96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "swin_small_patch4_window7_224": _swin(96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "swin_base_patch4_window7_224": _swin(128, (2, 2, 18, 2), (4, 8, 16, 32)),
}


def relative_position_index(window: int) -> np.ndarray:
    """``(n, n)`` rows of the bias table for tokens ``i, j`` of a ``window x window`` window
    (row-major): ``(dy + M - 1) * (2M - 1) + (dx + M - 1)`` with ``(dy, dx) = pos_i - pos_j``
    (Swin eq. 4: offsets in ``[-M+1, M-1]`` index a ``(2M-1)**2`` table)."""
    rows, cols = np.divmod(np.arange(window * window), window)
    dy = rows[:, None] - rows[None, :] + window - 1
    dx = cols[:, None] - cols[None, :] + window - 1
    return dy * (2 * window - 1) + dx


def window_regions(resolution: int, window: int, shift: int) -> np.ndarray:
    """``(resolution, resolution)`` region labels of the rolled grid: rows and columns split at
    ``-window`` and ``-shift`` into three bands each (Swin sec. 3.2, Fig. 4)."""
    band = np.zeros(resolution, dtype=np.int64)
    band[resolution - window:] = 1
    band[resolution - shift:] = 2
    return band[:, None] * 3 + band[None, :]


def partition(x, resolution: int, window: int):
    """``(B, L, C)`` tokens of a square grid -> ``(B * windows, window**2, C)``, windows in
    row-major order, tokens row-major inside each (numpy or torch)."""
    batch, _, dim = x.shape
    side = resolution // window
    x = x.reshape(batch, side, window, side, window, dim)
    x = x.transpose(0, 1, 3, 2, 4, 5) if isinstance(x, np.ndarray) else x.permute(0, 1, 3, 2, 4, 5)
    return x.reshape(batch * side * side, window * window, dim)


def unpartition(x, resolution: int, window: int):
    """Inverse of :func:`partition`: ``(B * windows, window**2, C) -> (B, L, C)``."""
    side = resolution // window
    dim = x.shape[-1]
    x = x.reshape(-1, side, side, window, window, dim)
    x = x.transpose(0, 1, 3, 2, 4, 5) if isinstance(x, np.ndarray) else x.permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, resolution * resolution, dim)


def roll(x, resolution: int, shift: int):
    """Cyclic shift of ``(B, L, C)`` grid tokens by ``shift`` rows and columns (a permutation;
    numpy or torch); ``-shift`` undoes it."""
    if shift == 0:
        return x
    grid = x.reshape(x.shape[0], resolution, resolution, x.shape[-1])
    grid = np.roll(grid, (shift, shift), (1, 2)) if isinstance(grid, np.ndarray) \
        else torch.roll(grid, (shift, shift), (1, 2))
    return grid.reshape(x.shape)


def attention_keep(resolution: int, window: int, shift: int) -> np.ndarray | None:
    """``(windows, n, n)`` booleans: token ``j`` may be attended by ``i`` in the same window
    (same region of the unrolled grid); ``None`` without a shift (nothing masked)."""
    if shift == 0:
        return None
    labels = partition(window_regions(resolution, window, shift).reshape(1, -1, 1),
                       resolution, window)[..., 0]
    return labels[:, :, None] == labels[:, None, :]


def merge_neighbours(x, resolution: int):
    """Patch merging's concatenation: ``(B, L, C) -> (B, L/4, 4C)``, each output token the
    channels of its 2x2 neighbours in the order (row, col) = (0,0), (1,0), (0,1), (1,1) (Swin
    sec. 3.1; timm's order). Numpy or torch."""
    batch, _, dim = x.shape
    half = resolution // 2
    x = x.reshape(batch, half, 2, half, 2, dim)
    x = x.transpose(0, 1, 3, 4, 2, 5) if isinstance(x, np.ndarray) else x.permute(0, 1, 3, 4, 2, 5)
    return x.reshape(batch, half * half, 4 * dim)


def masked_softmax(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last axis, positions with ``keep`` false excluded (probability 0)."""
    if keep is None:
        return x.softmax(dim=-1)
    return x.masked_fill(~keep, float("-inf")).softmax(dim=-1)


class PatchEmbed(nn.Module):
    """``proj`` (conv ``patch x patch``, stride ``patch``), tokens row-major, then ``norm``."""

    def __init__(self, config: SwinConfig):
        super().__init__()
        self.proj = nn.Conv2d(config.in_chans, config.embed_dim, config.patch_size,
                              stride=config.patch_size)
        self.norm = nn.LayerNorm(config.embed_dim, eps=LAYERNORM_EPS)

    def forward(self, x, taps=None, replace=None):
        _tap(taps, "patch_embed.proj", x)
        x = self.proj(x).flatten(2).transpose(1, 2)
        _tap(taps, "patch_embed.norm", x)
        return _op(replace, "patch_embed.norm", self.norm, x)


class PatchMerging(nn.Module):
    """:func:`merge_neighbours`, ``norm`` over ``4C``, ``reduction`` ``4C -> 2C`` (no bias)."""

    def __init__(self, config: SwinConfig, stage: int):
        super().__init__()
        self.name = f"layers.{stage}.downsample"
        self.resolution = config.resolution(stage - 1)
        dim = config.dim(stage - 1)
        self.norm = nn.LayerNorm(4 * dim, eps=LAYERNORM_EPS)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x, taps=None, replace=None):
        return self.merged(merge_neighbours(x, self.resolution), taps, replace)

    def merged(self, x, taps=None, replace=None):
        """From the concatenated tokens (the ``downsample.norm`` tap) on."""
        _tap(taps, f"{self.name}.norm", x)
        x = _op(replace, f"{self.name}.norm", self.norm, x)
        _tap(taps, f"{self.name}.reduction", x)
        return self.reduction(x)


class WindowAttention(nn.Module):
    """Multi-head attention inside each window with the relative position bias (Swin eq. 4):
    ``softmax(q @ k^T * d**-0.5 + B)`` over the kept positions, ``@ v``, ``proj``. QKV columns
    are ``[q | k | v]``, each split into heads (timm layout)."""

    def __init__(self, config: SwinConfig, stage: int, name: str):
        super().__init__()
        self.name = name
        self.num_heads = config.num_heads[stage]
        dim = config.dim(stage)
        self.scale = (dim // self.num_heads) ** -0.5
        window = config.window(stage)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, self.num_heads))
        self.register_buffer("relative_position_index",
                             torch.from_numpy(relative_position_index(window)), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def bias(self) -> torch.Tensor:
        """``(H, n, n)`` relative position bias."""
        return self.relative_position_bias_table[self.relative_position_index].permute(2, 0, 1)

    def forward(self, x, keep=None, taps=None, replace=None):
        windows, tokens, dim = x.shape
        _tap(taps, f"{self.name}.qkv", x)
        qkv = self.qkv(x).reshape(windows, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        _tap(taps, f"{self.name}.q", q)
        _tap(taps, f"{self.name}.k", k)
        scores = (q * self.scale) @ k.transpose(-2, -1) + self.bias()
        _tap(taps, f"{self.name}.softmax", scores)
        if keep is not None:
            keep = keep.expand_as(scores)
            _tap(taps, f"{self.name}.keep", keep)
        name = f"{self.name}.softmax"
        if replace and name in replace:
            probs = replace[name](scores) if keep is None else replace[name](scores, keep)
        else:
            probs = masked_softmax(scores, keep)
        _tap(taps, f"{self.name}.probs", probs)
        _tap(taps, f"{self.name}.v", v)
        context = (probs @ v).transpose(1, 2).reshape(windows, tokens, dim)
        _tap(taps, f"{self.name}.proj", context)
        return self.proj(context)


class SwinBlock(nn.Module):
    """``x + unpartition(W-MSA(partition(roll(norm1(x), -s))), s)``, then ``x + mlp(norm2(x))``
    (Swin eq. 3; ``s`` the block's shift)."""

    def __init__(self, config: SwinConfig, stage: int, index: int):
        super().__init__()
        self.name = f"layers.{stage}.blocks.{index}"
        dim = config.dim(stage)
        self.resolution, self.window = config.resolution(stage), config.window(stage)
        self.shift = config.shift(stage, index)
        self.norm1 = nn.LayerNorm(dim, eps=LAYERNORM_EPS)
        self.attn = WindowAttention(config, stage, f"{self.name}.attn")
        self.norm2 = nn.LayerNorm(dim, eps=LAYERNORM_EPS)
        self.mlp = Mlp(dim, config.mlp_hidden(stage), f"{self.name}.mlp")
        keep = attention_keep(self.resolution, self.window, self.shift)
        self.register_buffer("keep", None if keep is None else torch.from_numpy(keep)[:, None],
                             persistent=False)

    def forward(self, x, taps=None, replace=None):
        _tap(taps, f"{self.name}.norm1", x)
        h = _op(replace, f"{self.name}.norm1", self.norm1, x)
        h = partition(roll(h, self.resolution, -self.shift), self.resolution, self.window)
        keep = None
        if self.keep is not None:
            keep = self.keep.repeat(x.shape[0], 1, 1, 1)
        h = self.attn(h, keep, taps, replace)
        x = x + roll(unpartition(h, self.resolution, self.window), self.resolution, self.shift)
        _tap(taps, f"{self.name}.norm2", x)
        return x + self.mlp(_op(replace, f"{self.name}.norm2", self.norm2, x), taps, replace)


class SwinStage(nn.Module):
    """``downsample`` (stages >= 1) and ``blocks``."""

    def __init__(self, config: SwinConfig, stage: int):
        super().__init__()
        self.downsample = PatchMerging(config, stage) if stage else None
        self.blocks = nn.ModuleList(SwinBlock(config, stage, i)
                                    for i in range(config.depths[stage]))


class SwinTransformer(nn.Module):
    """Swin classifier; ``forward(x, taps=None, replace=None) -> logits (B, num_classes)``."""

    def __init__(self, config: SwinConfig):
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config)
        self.layers = nn.ModuleList(SwinStage(config, s) for s in range(config.stages))
        self.norm = nn.LayerNorm(config.dim(config.stages - 1), eps=LAYERNORM_EPS)
        self.head = nn.Module()
        self.head.fc = nn.Linear(config.dim(config.stages - 1), config.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """timm's init: truncated normal (std 0.02) weights and bias tables, zero biases, unit
        LayerNorm gain."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, WindowAttention):
                nn.init.trunc_normal_(module.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, taps: dict | None = None,
                replace: dict | None = None) -> torch.Tensor:
        """Logits of images ``x``; ``taps`` records layer inputs, ``replace`` maps non-linear
        layer names to functions used instead of the float operation (a masked softmax's
        function takes ``(scores, keep)``)."""
        return self.forward_from("patch_embed.proj", x, taps, replace)

    def forward_from(self, entry: str, x: torch.Tensor, taps: dict | None = None,
                     replace: dict | None = None) -> torch.Tensor:
        """Logits from the tap ``entry`` (:func:`entry_tap`: the image, a merging's
        concatenated tokens, a block's residual input or the final LayerNorm's input) holding
        ``x``: swapping one layer needs only the rest of the network re-run."""
        started = entry == "patch_embed.proj"
        if started:
            x = self.patch_embed(x, taps, replace)
        for stage in self.layers:
            for index, module in enumerate([stage.downsample, *stage.blocks]):
                if module is None:
                    continue
                if not started and entry == _entry_name(module):
                    started = True
                    if isinstance(module, PatchMerging):
                        x = module.merged(x, taps, replace)
                        continue
                if started:
                    x = module(x, taps, replace)
        _tap(taps, "norm", x)
        features = _op(replace, "norm", self.norm, x).mean(dim=1)
        _tap(taps, "head.fc", features)
        return self.head.fc(features)


def _entry_name(module) -> str:
    return f"{module.name}.norm" if isinstance(module, PatchMerging) else f"{module.name}.norm1"


def entry_tap(layer: str) -> str:
    """The tap :meth:`SwinTransformer.forward_from` restarts from to re-run non-linear layer
    ``layer``: its block's ``norm1``, its merging's ``norm``, the final ``norm`` or the image."""
    if layer == "patch_embed.norm":
        return "patch_embed.proj"
    parts = layer.split(".")
    if parts[0] == "layers" and parts[2] == "blocks":
        return ".".join(parts[:4] + ["norm1"])
    if parts[0] == "layers":
        return ".".join(parts[:3] + ["norm"])
    return "norm"


def nonlinear_layers(config: SwinConfig) -> dict[str, str]:
    """The softmax, GELU and LayerNorm taps in forward order, mapped to their operator kind."""
    layers = {"patch_embed.norm": "layernorm"}
    for stage, block in config.blocks():
        if stage and block == 0:
            layers[f"layers.{stage}.downsample.norm"] = "layernorm"
        name = f"layers.{stage}.blocks.{block}"
        layers.update({f"{name}.norm1": "layernorm", f"{name}.attn.softmax": "softmax",
                       f"{name}.norm2": "layernorm", f"{name}.mlp.gelu": "gelu"})
    layers["norm"] = "layernorm"
    return layers


def tap_values_per_image(config: SwinConfig) -> int:
    """How many activation values one image records over all taps of the float Swin."""
    total = config.in_chans * config.img_size ** 2 + config.dim(0) * config.resolution(0) ** 2
    for stage, block in config.blocks():
        tokens, dim = config.resolution(stage) ** 2, config.dim(stage)
        heads, n = config.num_heads[stage], config.window(stage) ** 2
        total += 8 * tokens * dim + 3 * heads * tokens * n + 2 * tokens * config.mlp_hidden(stage)
        if stage and block == 0:
            total += 4 * tokens * 2 * dim
    return total
