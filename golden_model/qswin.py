"""The integer-only Swin Transformer, built from a float :class:`~.swin.SwinTransformer` the way
:mod:`intvit.golden_model.qvit` builds the integer ViT, from the same pieces: per-channel
weights and int32 biases (:class:`~.qvit.IntLinear`), dyadic requantizers
(:class:`~.ops.requant.ChannelRequant`), the activation calibrators, one residual scale for the
whole model, and every non-linear layer (:func:`~.swin.nonlinear_layers`) on its assigned
registry candidate (:class:`~.qvit.LayerPlan`), calibrated on that layer's inputs.

What Swin adds (Liu et al., ICCV 2021), each on integers at run time:

- window attention (sec. 3.2): tokens are rolled (a cyclic shift, shifted blocks) and cut into
  windows, permutations of the codes; the score requantizer's output ``s`` (codes at the
  scores' scale ``S``) gets the relative position bias (eq. 4) added as int codes
  ``round(B / S)``, quantized at build time, and saturates to the softmax's input width;
- shifted windows' mask (sec. 3.2): masked positions are excluded from the softmax row (the
  candidates' ``keep`` argument): they add nothing to the row and get probability 0;
- patch merging (sec. 3.1): the 2x2 neighbours' residual codes concatenated (a permutation),
  requantized to the merging LayerNorm's input, LayerNorm, the reduction GEMM (no bias) onto the
  residual scale; the patch embedding's LayerNorm likewise sits between the patch GEMM and the
  residual stream;
- the final average pooling as an integer mean: the final LayerNorm's output codes summed over
  the ``L`` tokens (int32), then one dyadic requantizer ``S_norm / (L * S_pool)`` that folds the
  ``1/L``.

The run-time constants live in the frozen requantizers and int arrays of
:class:`IntegerSwin`; scales are build-time records (for dequantizing taps), as in the ViT.
"""
from dataclasses import dataclass, field

import numpy as np

from . import registry
from .calibration import input_scale, qmax, quantize
from .errors import IntvitError
from .exact import fast_codes, float_codes
from .integer import as_int_array, clamp, signed_range
from .ops.requant import ChannelRequant
from .qvit import (HEADROOM, IMAGE_BITS, LOGIT_BITS, IntegerViT, QuantSpec,
                   _Builder, _patchify, _recorder, _requant_product,
                   check_assignment)
from .swin import (SwinConfig, SwinTransformer, attention_keep, merge_neighbours,
                   nonlinear_layers, partition, relative_position_index, roll, unpartition)
from .tapstats import TapStatistics, float_statistics


@dataclass
class IntegerSwin:
    """The integer Swin. ``forward`` is integer-only; ``scales`` and ``plans`` are build-time
    records used to dequantize taps for metrics (as :class:`~.qvit.IntegerViT`)."""
    patch_size: int
    patch_embed: object          # IntLinear onto the patch-embedding LayerNorm's input codes
    stages: list                 # per stage: {"downsample": dict or None, "blocks": [dict]}
    norm: dict                   # the final LayerNorm's input requantizer
    pool: ChannelRequant         # sum over tokens -> pooled codes (the 1/L folded in)
    head: object
    plans: dict
    scales: dict
    spec: QuantSpec
    assignment: dict
    residual_range: tuple = field(default=(0, 0))
    zero_points: dict = field(default_factory=dict)

    dequantize = IntegerViT.dequantize
    predict = IntegerViT.predict
    _saturate = IntegerViT._saturate
    _residual_add = IntegerViT._residual_add
    _requant_residual = IntegerViT._requant_residual
    _nonlinear = IntegerViT._nonlinear
    _out_bound = IntegerViT._out_bound
    _mlp_half = IntegerViT._mlp_half

    @property
    def masked_layers(self) -> frozenset:
        """The softmax layers whose rows a window mask cuts (the shifted blocks')."""
        return frozenset(f"{block['name']}.attn.softmax" for stage in self.stages
                         for block in stage["blocks"] if block["keep"] is not None)

    @property
    def first_qkv(self) -> tuple[str, object]:
        """The first block's QKV layer: its tap name and its :class:`~.qvit.IntLinear`."""
        return "layers.0.blocks.0.attn.qkv", self.stages[0]["blocks"][0]["qkv"]

    def forward(self, images, taps: dict | None = None) -> np.ndarray:
        """int8 images ``(B, C, H, W)`` -> int16 logits ``(B, classes)``; ``taps`` gets every
        layer's integer input codes under the float model's tap names and ``"<layer>:in"`` /
        ``"<layer>:out"`` for the non-linear layers (as :meth:`~.qvit.IntegerViT.forward`,
        with the same two evaluations: int64 for the integer-only trap, float codes proven
        exact otherwise)."""
        x = as_int_array(images, "images")
        lo, hi = signed_range(IMAGE_BITS)
        if x.ndim != 4 or x.size == 0 or x.min() < lo or x.max() > hi:
            raise IntvitError("images must be int8 codes shaped (batch, channels, height, width)")
        record = _recorder(taps)
        record("patch_embed.proj", x)
        fast = np.float64 if fast_codes(x) else False
        h = self.patch_embed(_patchify(x, self.patch_size), codes=fast)
        record("patch_embed.norm", h)
        h = self._nonlinear("patch_embed.norm", h, record, self.patch_embed.requant)
        r = self._to_residual(self.stages[0]["embed_out"], h)
        for stage in self.stages:
            if stage["downsample"] is not None:
                r = self._merge(stage["downsample"], r, record)
            for block in stage["blocks"]:
                r = self._block(block, r, record)
        record("norm", r)
        h = self._nonlinear("norm", self._requant_residual(self.norm["in"], r), record,
                            self.norm["in"])
        if float_codes(h):
            h = h.astype(np.int64)  # int8 codes: exact
        pooled = self.pool(h.sum(axis=1))
        record("head.fc", pooled)
        logits = self.head(pooled)
        return logits.astype(np.int64) if float_codes(logits) else logits

    def _to_residual(self, requant, h):
        """LayerNorm output codes onto the residual scale (a requantizer, saturating)."""
        if float_codes(h):
            h = h.astype(np.int64)
        return self._saturate(requant(h))

    def _merge(self, merge, r, record):
        """Patch merging: concatenated neighbours, LayerNorm, reduction onto the residual."""
        name = merge["name"]
        r = merge_neighbours(r, merge["resolution"])
        record(f"{name}.norm", r)
        h = self._nonlinear(f"{name}.norm", self._requant_residual(merge["norm_in"], r), record,
                            merge["norm_in"])
        record(f"{name}.reduction", h)
        return self._saturate(merge["reduction"](h, a_max=self._out_bound(f"{name}.norm"),
                                                 codes=np.float64 if float_codes(r) else None))

    def _block(self, block, r, record):
        p = block["name"]
        record(f"{p}.norm1", r)
        h = self._nonlinear(f"{p}.norm1", self._requant_residual(block["norm1_in"], r), record,
                            block["norm1_in"])
        resolution, window, shift = block["resolution"], block["window"], block["shift"]
        h = partition(roll(h, resolution, -shift), resolution, window)
        context = self._attention(block, h, record, r.shape[0])
        wide = np.float64 if float_codes(r) else None
        out = block["proj"](context, codes=wide, a_max=1 << (block["context"].out_bits - 1))
        r = self._residual_add(r, roll(unpartition(out, resolution, window), resolution, shift))
        return self._mlp_half(p, block, r, record, wide)

    def _attention(self, block, h, record, batch):
        """Window attention on ``(windows, n, C)`` codes: QKV, scores requantized, the bias
        codes added and saturated, the (masked) softmax, ``probs @ v``, the context codes."""
        p = block["name"]
        windows, tokens, dim = h.shape
        heads = block["heads"]
        record(f"{p}.attn.qkv", h)
        qkv = block["qkv"](h, a_max=self._out_bound(f"{p}.norm1"))
        qkv = qkv.reshape(windows, tokens, 3, heads, dim // heads)
        q, k, v = (qkv[:, :, j].transpose(0, 2, 1, 3) for j in range(3))
        record(f"{p}.attn.q", q)
        record(f"{p}.attn.k", k)
        record(f"{p}.attn.v", v)
        code = 1 << (block["qkv"].requant.out_bits - 1)
        wide = np.float64 if float_codes(h) else None
        scores = _requant_product(block["scores"], q, k.transpose(0, 1, 3, 2), code, code,
                                  codes=wide)
        bias = block["bias"]
        if float_codes(scores):
            bias = bias.astype(scores.dtype)  # at most 16-bit codes: exact
        lo, hi = signed_range(block["scores"].out_bits)
        scores = clamp(scores + bias, lo, hi)
        record(f"{p}.attn.softmax", scores)
        name = f"{p}.attn.softmax"
        if block["keep"] is None:
            probs = self._nonlinear(name, scores, record, block["scores"])
        else:
            probs = self._masked_softmax(name, scores, block["keep"], batch, record)
        record(f"{p}.attn.probs", probs)
        context = block["probs_v"].requantized(block["context"], probs, v, code,
                                               self._out_bound(name))
        context = context.transpose(0, 2, 1, 3).reshape(windows, tokens, dim)
        record(f"{p}.attn.proj", context)
        return context

    def _masked_softmax(self, name, scores, keep, batch, record):
        """The shifted block's softmax: the operator's ``run`` with the window mask ``keep``
        ``(windows per image, 1, n, n)`` repeated over the batch (tapped as ``<name>:keep``, the
        mask of each input row, for the layer's test vectors)."""
        plan = self.plans[name]
        record(f"{name}:in", scores)
        keep = np.tile(keep, (batch, 1, 1, 1))
        record(f"{name}:keep", np.broadcast_to(keep, scores.shape))
        codes = float_codes(scores)
        if codes:
            scores = scores.astype(np.int64)
        y = registry.get(plan.op).run(plan.config, scores, keep=keep)
        record(f"{name}:out", y)
        return y.astype(np.float32) if codes else y


def calibration_tap_names(config: SwinConfig) -> set:
    """The taps :func:`build_integer_swin` calibrates on: every non-linear layer's input, q, k,
    v, the attention context, the pooled features and the logits."""
    attention = [f"layers.{s}.blocks.{b}.attn.{t}" for s, b in config.blocks()
                 for t in ("q", "k", "v", "proj")]
    return {*nonlinear_layers(config), *attention, "head.fc", "logits"}


def build_integer_swin(model: SwinTransformer, calibration_images, assignment: dict,
                       spec: QuantSpec = QuantSpec(), taps=None) -> IntegerSwin:
    """Quantize the Swin ``model`` with every non-linear layer on its assigned candidate;
    ``taps`` as :func:`~.qvit.build_integer_vit` takes them (the float model's statistics on
    ``calibration_images`` by default)."""
    assignment = check_assignment(model.config, assignment)
    if taps is None:
        taps = float_statistics(model, calibration_images, calibration_tap_names(model.config))
    elif not isinstance(taps, TapStatistics):
        taps = TapStatistics.from_arrays(taps)
    return _SwinBuilder(model, assignment, spec, taps).build()


class _SwinBuilder(_Builder):
    """The steps of :func:`build_integer_swin`; the ViT builder's scales, linears, non-linear
    configs, LayerNorms and MLPs, with Swin's embedding, window attention, merging and head."""

    def __init__(self, model: SwinTransformer, assignment: dict, spec: QuantSpec, taps):
        self.model = model
        super().__init__(model, assignment, spec, taps)
        for stage in range(1, self.config.stages):  # the reduction has no bias: a zero one
            rows = self.state[f"layers.{stage}.downsample.reduction.weight"].shape[0]
            self.state[f"layers.{stage}.downsample.reduction.bias"] = np.zeros(rows)

    def _residual_scale(self) -> float:
        """Max-abs over every LayerNorm input on the residual stream, plus headroom."""
        names = [name for name in nonlinear_layers(self.config)
                 if name != "patch_embed.norm" and not name.endswith((".softmax", ".gelu"))]
        largest = max(self.taps.max_abs(name) for name in names)
        return largest * HEADROOM / qmax(self.spec.residual_bits)

    def build(self) -> IntegerSwin:
        patch_embed, embed_out = self.patch_embedding()
        stages = []
        for stage in range(self.config.stages):
            stages.append({"downsample": self.merging(stage) if stage else None,
                           "blocks": [self.block(stage, b)
                                      for b in range(self.config.depths[stage])]})
        stages[0]["embed_out"] = embed_out
        norm_in, pool, head = self.head()
        return IntegerSwin(patch_size=self.config.patch_size, patch_embed=patch_embed,
                           stages=stages, norm={"in": norm_in}, pool=pool, head=head,
                           plans=self.plans, scales=self.scales, spec=self.spec,
                           assignment=self.assignment,
                           residual_range=signed_range(self.spec.residual_bits),
                           zero_points=self.zero_points)

    def patch_embedding(self):
        """The patch GEMM onto the embedding LayerNorm's input codes, and the requantizer of
        that LayerNorm's output onto the residual scale."""
        cfg = self.nonlinear("patch_embed.norm", gamma=self.state["patch_embed.norm.weight"],
                             beta=self.state["patch_embed.norm.bias"])
        self.scales["patch_embed.norm"] = input_scale(cfg)
        linear = self.linear("patch_embed.proj", self.spec.image_scale, input_scale(cfg),
                             cfg.in_bits)
        out = ChannelRequant.from_scales([cfg.out_scale / self.s_res], self.spec.residual_bits)
        return linear, out

    def merging(self, stage: int) -> dict:
        """Patch merging: the LayerNorm over the concatenated residual codes and the reduction
        onto the residual scale."""
        name = f"layers.{stage}.downsample"
        ln, norm_in = self.layernorm(f"{name}.norm")
        self.scales[f"{name}.reduction"] = ln.out_scale
        reduction = self.linear(f"{name}.reduction", ln.out_scale, self.s_res,
                                self.spec.residual_bits)
        return {"name": name, "resolution": self.config.resolution(stage - 1),
                "norm_in": norm_in, "reduction": reduction}

    def block(self, stage: int, index: int) -> dict:
        p = f"layers.{stage}.blocks.{index}"
        keep = attention_keep(self.config.resolution(stage), self.config.window(stage),
                              self.config.shift(stage, index))
        return {"name": p, "heads": self.config.num_heads[stage],
                "resolution": self.config.resolution(stage),
                "window": self.config.window(stage), "shift": self.config.shift(stage, index),
                "keep": None if keep is None else keep[:, None],
                **self.window_attention(stage, p), **self.mlp(p)}

    def window_attention(self, stage: int, p: str) -> dict:
        """norm1, QKV, the scores' requantizer and bias codes, softmax, probs @ v, proj."""
        dim = self.config.dim(stage)
        parts = self.attention_of(p, dim, dim // self.config.num_heads[stage])
        return {**parts, "bias": self.bias_codes(p, self.scales[f"{p}.attn.softmax"],
                                                 self.plans[f"{p}.attn.softmax"].config.in_bits)}

    def bias_codes(self, p: str, s_scores: float, bits: int) -> np.ndarray:
        """``(H, n, n)`` relative position bias as codes on the scores' scale (round,
        saturate): ``B[h, i, j] = table[index(i, j), h]`` (Swin eq. 4)."""
        table = self.state[f"{p}.attn.relative_position_bias_table"]
        window = round((table.shape[0] ** 0.5 + 1) / 2)
        bias = table[relative_position_index(window)].transpose(2, 0, 1)
        return quantize(bias, s_scores, bits)

    def head(self):
        """The final LayerNorm, the integer mean over tokens and the classifier."""
        norm, norm_in = self.layernorm("norm")
        tokens = self.config.resolution(self.config.stages - 1) ** 2
        s_pool = self.act_scale("head.fc")
        self.scales["head.fc"] = s_pool
        pool = ChannelRequant.from_scales([norm.out_scale / (tokens * s_pool)],
                                          self.spec.act_bits)
        s_logit = self.taps.max_abs("logits") * HEADROOM / qmax(LOGIT_BITS)
        head = self.linear("head.fc", s_pool, s_logit, LOGIT_BITS)
        self.scales["logits"] = s_logit
        return norm_in, pool, head


def layer_shapes(config: SwinConfig, shape_type) -> dict:
    """``{layer: shape_type(row_length, rows)}``: the rows one image sends through each
    non-linear layer's unit (softmax: heads x windows x n rows of n; LayerNorm: one row per
    token of the width; GELU: one row per token of the MLP width)."""
    shapes = {"patch_embed.norm": shape_type(config.dim(0), config.resolution(0) ** 2)}
    for stage, block in config.blocks():
        tokens, dim = config.resolution(stage) ** 2, config.dim(stage)
        n = config.window(stage) ** 2
        if stage and block == 0:
            shapes[f"layers.{stage}.downsample.norm"] = shape_type(2 * dim, tokens)
        p = f"layers.{stage}.blocks.{block}"
        shapes.update({f"{p}.norm1": shape_type(dim, tokens),
                       f"{p}.attn.softmax": shape_type(n, config.num_heads[stage] * tokens),
                       f"{p}.norm2": shape_type(dim, tokens),
                       f"{p}.mlp.gelu": shape_type(config.mlp_hidden(stage), tokens)})
    last = config.stages - 1
    shapes["norm"] = shape_type(config.dim(last), config.resolution(last) ** 2)
    return shapes
