"""The float Vision Transformer: timm/DeiT architecture with timm's parameter names, and layer taps.

Architecture (ViT, Dosovitskiy et al. 2021, sec. 3.1; DeiT, Touvron et al. 2021, same network):
patch embedding by a ``patch x patch`` stride-``patch`` convolution, a class token prepended, a
learned position embedding added, ``depth`` pre-norm blocks
``x = x + attn(norm1(x)); x = x + mlp(norm2(x))``, a final LayerNorm, and a linear head on the
class token. LayerNorm eps is the config's ``layer_norm_eps`` (timm's ``1e-6`` by default; Hugging
Face ViT uses ``1e-12``) and GELU is the exact erf form, as in timm. Attention has
a bias on QKV (``qkv_bias=True``, the timm/DeiT default) and is written op by op:
``softmax(q @ k^T * head_dim**-0.5) @ v``.

State-dict keys are timm's (``timm/models/vision_transformer.py``: ``VisionTransformer``,
``Block``, ``Attention``, ``Mlp``, ``PatchEmbed``), so a timm ViT/DeiT checkpoint loads as is.

Distilled DeiT (Touvron et al. 2021, sec. 5; timm ``VisionTransformerDistilled``,
``config.distilled``): a distillation token ``dist_token`` is prepended after the class token
(the position embedding covers both), a second head ``head_dist`` reads it, and the eval-mode
output is the mean of the two heads: ``(head(h_0) + head_dist(h_1)) / 2``.

Taps
----
``model(x, taps)`` with a dict ``taps`` records, under a name, the **input** of every linear and
non-linear layer (detached tensors). A layer's tap name is its module path; ops without a module
get the name of their kind. For block ``i`` (``B`` images, ``N`` tokens, ``D`` embed dim, ``H``
heads, ``d = D / H``, ``M`` MLP hidden width):

::

    name                       shape             input of
    patch_embed.proj           (B, C, img, img)  patch-embedding convolution (the image)
    blocks.i.norm1             (B, N, D)         first LayerNorm (the residual stream)
    blocks.i.attn.qkv          (B, N, D)         QKV linear
    blocks.i.attn.q            (B, H, N, d)      q @ k^T, left operand (q before scaling)
    blocks.i.attn.k            (B, H, N, d)      q @ k^T, right operand (k before ^T)
    blocks.i.attn.softmax      (B, H, N, N)      softmax: q @ k^T * d**-0.5
    blocks.i.attn.probs        (B, H, N, N)      probs @ v, left operand
    blocks.i.attn.v            (B, H, N, d)      probs @ v, right operand
    blocks.i.attn.proj         (B, N, D)         attention output projection
    blocks.i.norm2             (B, N, D)         second LayerNorm (the residual stream)
    blocks.i.mlp.fc1           (B, N, D)         first MLP linear
    blocks.i.mlp.gelu          (B, N, M)         GELU
    blocks.i.mlp.fc2           (B, N, M)         second MLP linear
    norm                       (B, N, D)         final LayerNorm
    head                       (B, P*D)          classifier: the P = config.prefix_tokens
                                                 normalized leading tokens side by side (the
                                                 class token; distilled: class, distillation)

:func:`tap_names` lists them in forward order; :func:`nonlinear_layers` maps the softmax, GELU
and LayerNorm taps to their operator kind.
"""
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .integer import check_int, check_scale
from .ops.layernorm.common import EPS

LAYERNORM_EPS = EPS
"""timm ViT/DeiT LayerNorm epsilon, the default of :attr:`ViTConfig.layer_norm_eps`."""
INIT_STD = 0.02
"""Truncated-normal std of weights and position embedding at initialization (timm default)."""


@dataclass(frozen=True)
class ViTConfig:
    """Shape of a ViT: everything needed to build it (weights aside).

    ``mlp_ratio`` sets the MLP hidden width ``int(embed_dim * mlp_ratio)`` (timm's rule);
    ``distilled`` adds DeiT's distillation token and head; ``layer_norm_eps`` is every
    LayerNorm's epsilon (float model, and the integer LayerNorms' float reference and
    calibration).
    """

    img_size: int
    patch_size: int
    in_chans: int
    num_classes: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    distilled: bool = False
    layer_norm_eps: float = LAYERNORM_EPS

    def __post_init__(self):
        owner = "ViTConfig"
        check_int(owner, "img_size", self.img_size, 1, 4096)
        check_int(owner, "patch_size", self.patch_size, 1, self.img_size)
        check_int(owner, "in_chans", self.in_chans, 1, 64)
        check_int(owner, "num_classes", self.num_classes, 1, 100_000)
        check_int(owner, "embed_dim", self.embed_dim, 1, 16_384)
        check_int(owner, "depth", self.depth, 1, 256)
        check_int(owner, "num_heads", self.num_heads, 1, self.embed_dim)
        check_scale(owner, "mlp_ratio", self.mlp_ratio)
        check_scale(owner, "layer_norm_eps", self.layer_norm_eps)
        if not isinstance(self.distilled, bool):
            raise ConfigError(f"{owner}: distilled must be True or False (got "
                              f"{self.distilled!r})")
        if self.img_size % self.patch_size:
            raise ConfigError(f"{owner}: img_size {self.img_size} is not a multiple of "
                              f"patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"{owner}: embed_dim {self.embed_dim} is not a multiple of "
                              f"num_heads {self.num_heads}")
        if self.mlp_hidden < 1:
            raise ConfigError(f"{owner}: mlp_ratio {self.mlp_ratio} gives an empty MLP")

    @property
    def grid(self) -> int:
        """Patches per image side."""
        return self.img_size // self.patch_size

    @property
    def prefix_tokens(self) -> int:
        """Tokens before the patches: the class token, and the distillation token if any."""
        return 2 if self.distilled else 1

    @property
    def num_tokens(self) -> int:
        """Sequence length: the patches plus the prefix tokens."""
        return self.grid * self.grid + self.prefix_tokens

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    def to_dict(self) -> dict:
        return asdict(self)


def _imagenet(embed_dim: int, num_heads: int, distilled: bool = False) -> ViTConfig:
    return ViTConfig(img_size=224, patch_size=16, in_chans=3, num_classes=1000,
                     embed_dim=embed_dim, depth=12, num_heads=num_heads, mlp_ratio=4.0,
                     distilled=distilled)


PRESETS: dict[str, ViTConfig] = {
    # timm vit_*_patch16_224 and deit_*_patch16_224 (DeiT Table 1): head_dim 64, depth 12.
    "vit_tiny_patch16_224": _imagenet(192, 3),
    "vit_small_patch16_224": _imagenet(384, 6),
    "vit_base_patch16_224": _imagenet(768, 12),
    "deit_tiny_patch16_224": _imagenet(192, 3),
    "deit_small_patch16_224": _imagenet(384, 6),
    "deit_base_patch16_224": _imagenet(768, 12),
    # timm deit_*_distilled_patch16_224 (DeiT Table 1, the "⚗" rows): the same plus dist_token.
    "deit_tiny_distilled_patch16_224": _imagenet(192, 3, distilled=True),
    "deit_small_distilled_patch16_224": _imagenet(384, 6, distilled=True),
    "deit_base_distilled_patch16_224": _imagenet(768, 12, distilled=True),
    # The bundled digits model (golden_model/dataset.py, scripts/train_bundled.py):
    # 8x8 images, 2x2 patches -> 16 patches + class token = 17 tokens.
    "bundled": ViTConfig(img_size=8, patch_size=2, in_chans=1, num_classes=10,
                         embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0),
}


def _tap(taps: dict | None, name: str, tensor: torch.Tensor) -> None:
    if taps is not None:
        taps[name] = tensor.detach()


def _op(replace: dict | None, name: str, function, x: torch.Tensor) -> torch.Tensor:
    """``function(x)``, or ``replace[name](x)`` when the caller swaps this non-linear layer (the
    IPTQ perturbation term runs the float model with one layer on an integer candidate)."""
    if replace and name in replace:
        return replace[name](x)
    return function(x)


class PatchEmbed(nn.Module):
    """``proj``: conv ``patch x patch``, stride ``patch``; output flattened to
    ``(B, grid**2, D)``, patches in row-major order."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.proj = nn.Conv2d(config.in_chans, config.embed_dim, config.patch_size,
                              stride=config.patch_size)

    def forward(self, x, taps=None):
        _tap(taps, "patch_embed.proj", x)
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention, op by op: ``qkv``, ``q @ k^T * d**-0.5``, softmax, ``@ v``,
    ``proj``. QKV output columns are ``[q | k | v]``, each split into heads (timm layout)."""

    def __init__(self, config: ViTConfig, name: str):
        super().__init__()
        self.name = name
        self.num_heads = config.num_heads
        self.scale = config.head_dim ** -0.5
        self.qkv = nn.Linear(config.embed_dim, 3 * config.embed_dim)
        self.proj = nn.Linear(config.embed_dim, config.embed_dim)

    def forward(self, x, taps=None, replace=None):
        batch, tokens, dim = x.shape
        _tap(taps, f"{self.name}.qkv", x)
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        _tap(taps, f"{self.name}.q", q)
        _tap(taps, f"{self.name}.k", k)
        scores = (q @ k.transpose(-2, -1)) * self.scale
        _tap(taps, f"{self.name}.softmax", scores)
        probs = _op(replace, f"{self.name}.softmax", lambda t: t.softmax(dim=-1), scores)
        _tap(taps, f"{self.name}.probs", probs)
        _tap(taps, f"{self.name}.v", v)
        context = (probs @ v).transpose(1, 2).reshape(batch, tokens, dim)
        _tap(taps, f"{self.name}.proj", context)
        return self.proj(context)


class Mlp(nn.Module):
    """``fc2(gelu(fc1(x)))`` with exact (erf) GELU."""

    def __init__(self, dim: int, hidden: int, name: str):
        super().__init__()
        self.name = name
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x, taps=None, replace=None):
        _tap(taps, f"{self.name}.fc1", x)
        hidden = self.fc1(x)
        _tap(taps, f"{self.name}.gelu", hidden)
        hidden = _op(replace, f"{self.name}.gelu", F.gelu, hidden)
        _tap(taps, f"{self.name}.fc2", hidden)
        return self.fc2(hidden)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, config: ViTConfig, index: int):
        super().__init__()
        self.name = f"blocks.{index}"
        self.norm1 = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.attn = Attention(config, f"{self.name}.attn")
        self.norm2 = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.mlp = Mlp(config.embed_dim, config.mlp_hidden, f"{self.name}.mlp")

    def forward(self, x, taps=None, replace=None):
        _tap(taps, f"{self.name}.norm1", x)
        x = x + self.attn(_op(replace, f"{self.name}.norm1", self.norm1, x), taps, replace)
        _tap(taps, f"{self.name}.norm2", x)
        return x + self.mlp(_op(replace, f"{self.name}.norm2", self.norm2, x), taps, replace)


class VisionTransformer(nn.Module):
    """Class-token ViT/DeiT classifier (distilled DeiT too);
    ``forward(x, taps=None) -> logits (B, num_classes)``."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        if config.distilled:
            self.dist_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_tokens, config.embed_dim))
        self.patch_embed = PatchEmbed(config)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.depth))
        self.norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.head = nn.Linear(config.embed_dim, config.num_classes)
        if config.distilled:
            self.head_dist = nn.Linear(config.embed_dim, config.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """timm's default init: truncated normal (std 0.02) weights and position embedding,
        zero biases, unit LayerNorm gain, class token normal with std 1e-6 (distillation token:
        truncated normal, std 0.02)."""
        nn.init.trunc_normal_(self.pos_embed, std=INIT_STD)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.config.distilled:
            nn.init.trunc_normal_(self.dist_token, std=INIT_STD)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(module.weight, std=INIT_STD)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, taps: dict | None = None,
                replace: dict | None = None) -> torch.Tensor:
        """Logits of ``x``; ``taps`` records layer inputs, ``replace`` maps non-linear layer names
        (:func:`nonlinear_layers`) to functions used instead of the float operation."""
        tokens = self.patch_embed(x, taps)
        prefix = [self.cls_token, self.dist_token] if self.config.distilled else [self.cls_token]
        prefix = torch.cat(prefix, dim=1).expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([prefix, tokens], dim=1) + self.pos_embed
        return self.forward_from(0, tokens, taps, replace)

    def forward_from(self, block: int, tokens: torch.Tensor, taps: dict | None = None,
                     replace: dict | None = None) -> torch.Tensor:
        """Logits from the residual stream ``tokens`` entering block ``block`` (``depth``: the
        final LayerNorm), e.g. a cached ``blocks.{block}.norm1`` tap: swapping one layer needs
        only the rest of the network re-run."""
        for module in self.blocks[block:]:
            tokens = module(tokens, taps, replace)
        _tap(taps, "norm", tokens)
        features = _op(replace, "norm", self.norm, tokens)[:, :self.config.prefix_tokens]
        features = features.flatten(1)
        _tap(taps, "head", features)
        return self.classify(features)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """The logits of the ``head`` tap: ``head(h_0)``, or for a distilled DeiT
        ``(head(h_0) + head_dist(h_1)) / 2`` (timm's eval-mode output), ``h_i`` the normalized
        prefix tokens side by side in ``features``."""
        if not self.config.distilled:
            return self.head(features)
        cls, dist = features.chunk(2, dim=-1)
        return (self.head(cls) + self.head_dist(dist)) / 2


def _block_tap_names(index: int) -> list[str]:
    block = f"blocks.{index}"
    return [f"{block}.norm1", f"{block}.attn.qkv", f"{block}.attn.q", f"{block}.attn.k",
            f"{block}.attn.softmax", f"{block}.attn.probs", f"{block}.attn.v",
            f"{block}.attn.proj", f"{block}.norm2", f"{block}.mlp.fc1", f"{block}.mlp.gelu",
            f"{block}.mlp.fc2"]


def tap_names(config: ViTConfig) -> list[str]:
    """Every tap name of a model with this config, in forward order."""
    names = ["patch_embed.proj"]
    for index in range(config.depth):
        names += _block_tap_names(index)
    return names + ["norm", "head"]


def nonlinear_layers(config: ViTConfig) -> dict[str, str]:
    """The softmax, GELU and LayerNorm taps in forward order, mapped to their operator kind."""
    kinds = {"norm1": "layernorm", "attn.softmax": "softmax", "norm2": "layernorm",
             "mlp.gelu": "gelu"}
    layers = {}
    for index in range(config.depth):
        for suffix, kind in kinds.items():
            layers[f"blocks.{index}.{suffix}"] = kind
    layers["norm"] = "layernorm"
    return layers


def parameter_count(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters())
