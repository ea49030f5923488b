"""The accelerator's program of a Swin Transformer (Liu et al., ICCV 2021), for the cycle model
(``intvit perf``, issue 19).

:func:`compile_swin_program` lists the steps the engine of :mod:`~intvit.golden_model.program`
runs for an :class:`~intvit.golden_model.qswin.IntegerSwin` (or a :class:`SwinShape`: a timm
Swin's shape alone, no weights), with the ViT's step kinds (``input``, ``gemm``, ``row``), so
:mod:`intvit.hw.accelerator_timing` costs every step with the cycle models it uses for a ViT.
The program is shape-only (word counts, no constants): it is neither run on numpy nor generated
(``intvit verilog accelerator`` takes a ViT).

Steps of one image, in :meth:`IntegerSwin.forward`'s order (a stage of ``T`` tokens and ``C``
channels, windows of ``n = M*M`` tokens, ``H`` heads of ``d = C / H``, MLP width ``F``):

- ``input`` (the pixels), the patch-embedding GEMM ``T x (in*p*p) x C`` onto the embedding
  LayerNorm's input codes, that LayerNorm (``T`` rows of ``C``) into the residual stream;
- each stage but the first, patch merging (sec. 3.1): the merging LayerNorm, ``T`` rows of
  ``2C`` (the ``2x2`` neighbours' ``C/2`` channels each), then the reduction GEMM ``T x 2C x
  C`` (no bias) onto the residual. The ``2x2`` gather costs nothing: it is the address pattern of
  the LayerNorm's reads (the row engine reads one element per cycle, at any word and lane);
- each block: ``norm1`` (``T`` rows of ``C``); the QKV GEMM ``T x C x 3C`` (two steps as in the
  ViT: ``q, k`` written token-tiled, ``v`` row-major); per window and head the scores ``q @ k^T``
  (``n x d x n``), the softmax (``n`` rows of ``n``) and ``probs @ v`` (``n x n x d``); the
  projection ``T x C x C`` with the residual add; ``norm2``, FC1 ``T x C x F``, GELU (``T`` rows
  of ``F``), FC2 ``T x F x C`` with the residual add;
- the final LayerNorm (``T`` rows of ``C``, written row-major: ``h`` is then the weight
  operand, as ``v`` is), the mean pooling as a GEMM ``ones(1 x T) @ h`` (``1 x T x C``; the
  ones a constant row kept in the activation memory; its requantizer is the pool's, the ``1/T``
  folded in: :class:`IntegerSwin`'s sum and one dyadic requantizer), the head GEMM ``1 x C x
  classes``.

What costs no cycles, by choice (stated, not measured):

- window partition and the cyclic shift (sec. 3.2) are address patterns of the per-window
  steps' reads and of the writes of ``probs @ v`` (a window's rows gathered from the stage's
  token grid); the array tiles of a window's GEMMs are padded to ``ceil(n / L) * L`` rows,
  which ``predicted_cycles`` counts;
- the relative position bias (eq. 4) is added in the scores step's write-back (post
  :data:`RELPOS`, a constant word per output beat read beside it, as ``clspos`` adds the class
  token and position embedding), which costs what a post-add costs today: nothing beyond the
  write-back's cycles (:func:`~intvit.hw.accelerator_timing.gemm_step_cycles`). Its codes are
  held expanded, one word per scores beat (``H * n * ceil(n / L)`` words a block);
- shifted windows' masked softmax rows are as long as the others: the row unit takes a keep bit
  per element, so cycles do not change (the keep bits' memory is not counted);
- the embedding LayerNorm's output requantizer onto the residual scale
  (``IntegerSwin._to_residual``): the row engine has no requantizer after its unit; that
  stage's latency, a few cycles once per image, is not counted.
"""
from typing import NamedTuple

import numpy as np

from . import registry
from .errors import IntvitError
from .gemm import padded
from .integer import signed_range
from .program import (AcceleratorConfig, ModelShape, Program, Step, UnitTable, _a_width,
                      _Memory, _out_width, _ShapeLinear, _ShapeRequant, compile_program)
from .qswin import IntegerSwin, layer_shapes
from .qvit import IMAGE_BITS, LOGIT_BITS, LayerPlan, QuantSpec, default_assignment
from .swin import SwinConfig

RELPOS = "relpos"
"""The scores step's post-add: the relative position bias codes (Swin eq. 4), saturated to the
softmax's input width, added in the write-back like ``clspos``."""


class SwinShape:
    """What :func:`compile_swin_program` reads of an :class:`IntegerSwin`, from a
    :class:`~intvit.golden_model.swin.SwinConfig` alone (as
    :class:`~intvit.golden_model.program.ModelShape` for a ViT): every non-linear layer of kind
    ``k`` is operator ``ops[k]`` at its example config, a LayerNorm at its layer's width, the
    softmax sized for the longest window row."""

    def __init__(self, swin_config, ops: dict, spec=None):
        from .swin import nonlinear_layers

        spec = spec or QuantSpec()
        c, res = swin_config, spec.residual_bits
        self.patch_size = c.patch_size
        self.patch_embed = _ShapeLinear(c.dim(0), c.in_chans * c.patch_size ** 2)
        self.stages = []
        for s in range(c.stages):
            dim, hidden = c.dim(s), c.mlp_hidden(s)
            merge = None if s == 0 else {"name": f"layers.{s}.downsample",
                                         "norm_in": _ShapeRequant(),
                                         "reduction": _ShapeLinear(dim, 2 * dim, res)}
            blocks = [{"name": f"layers.{s}.blocks.{b}", "heads": c.num_heads[s],
                       "resolution": c.resolution(s), "window": c.window(s),
                       "shift": c.shift(s, b), "norm1_in": _ShapeRequant(),
                       "qkv": _ShapeLinear(3 * dim, dim), "scores": _ShapeRequant(),
                       "context": _ShapeRequant(), "proj": _ShapeLinear(dim, dim, res),
                       "norm2_in": _ShapeRequant(), "fc1": _ShapeLinear(hidden, dim),
                       "fc2": _ShapeLinear(dim, hidden, res)} for b in range(c.depths[s])]
            self.stages.append({"downsample": merge, "blocks": blocks})
        self.norm = {"in": _ShapeRequant()}
        self.pool = _ShapeRequant(spec.act_bits)
        self.head = _ShapeLinear(c.num_classes, c.dim(c.stages - 1), LOGIT_BITS)
        self.residual_range = signed_range(res)
        widths = {layer: length for layer, (length, _) in
                  layer_shapes(c, lambda length, rows: (length, rows)).items()}
        longest = max(c.window(s) ** 2 for s in range(c.stages))
        configs: dict = {}  # one per kind and LayerNorm width: equal layers share a unit
        self.plans = {}
        for layer, kind in nonlinear_layers(c).items():
            width = widths[layer] if kind == "layernorm" else 0
            if (kind, width) not in configs:
                options = {"layernorm": {"channels": width}, "softmax": {"max_row": longest}}
                configs[kind, width] = registry.get(ops[kind]).example_config(
                    **options.get(kind, {}))
            self.plans[layer] = LayerPlan(ops[kind], configs[kind, width])


def _check_model(qmodel, lanes: int):
    if not isinstance(qmodel, (IntegerSwin, SwinShape)):
        raise IntvitError("the Swin program is compiled from an IntegerSwin (intvit quantize "
                          f"--model mnist-swin) or a timm Swin's shape; got "
                          f"{type(qmodel).__name__}")
    for stage in qmodel.stages:
        block = stage["blocks"][0]
        dim = block["qkv"].weight.shape[1]
        head_dim = dim // block["heads"]
        if head_dim % lanes or dim % lanes:
            raise IntvitError(f"a {lanes} x {lanes} array cannot hold this Swin's widths: the "
                              f"head width {head_dim} and the stage width {dim} must be "
                              f"multiples of {lanes}; choose --rows/--cols dividing {head_dim}")


class _BlockShape(NamedTuple):
    """A block's tokens ``T``, width ``C``, MLP width ``F``, window tokens ``n``, windows,
    heads ``H`` and head width ``d``."""
    tokens: int
    dim: int
    hidden: int
    n: int
    windows: int
    heads: int
    head_dim: int

    @classmethod
    def of(cls, block: dict) -> "_BlockShape":
        dim, side, window = block["qkv"].weight.shape[1], block["resolution"], block["window"]
        return cls(side * side, dim, block["fc1"].weight.shape[0], window * window,
                   (side // window) ** 2, block["heads"], dim // block["heads"])


def _sized(memory: _Memory, name: str, layout: str, shapes) -> tuple:
    """Region ``name`` as large as the largest ``(rows, cols)`` of ``shapes`` (every stage's
    tensor of that role shares it)."""
    def words(shape):
        probe = _Memory(memory.lanes)
        probe.region(name, layout, *shape)
        return probe.top

    return memory.region(name, layout, *max(shapes, key=words))


def compile_swin_program(qmodel, config: AcceleratorConfig = AcceleratorConfig()) -> Program:
    """The shape-only program of the Swin ``qmodel`` (:class:`IntegerSwin` or
    :class:`SwinShape`) on a ``config.lanes``-square array (the module docstring lists the
    steps)."""
    lanes = config.lanes
    _check_model(qmodel, lanes)
    patch = qmodel.patch_size
    dim0, patch_k = qmodel.patch_embed.weight.shape
    chans = patch_k // (patch * patch)
    blocks = [block for stage in qmodel.stages for block in stage["blocks"]]
    grid = blocks[0]["resolution"]
    tokens0 = grid * grid
    classes, last_dim = qmodel.head.weight.shape
    last_tokens = blocks[-1]["resolution"] ** 2
    plans = qmodel.plans
    units = UnitTable(plans)

    shapes = [_BlockShape.of(block) for block in blocks]
    merged = [(stage["blocks"][0]["resolution"] ** 2, stage["downsample"]["reduction"]
               .weight.shape[1]) for stage in qmodel.stages if stage["downsample"]]
    memory = _Memory(lanes)
    streams = [(b.tokens, b.dim) for b in shapes]
    res_base, res_stride = _sized(memory, "residual", "T", streams)
    h_base, h_stride = _sized(memory, "normed", "T", [(tokens0, dim0), *merged, *streams])
    scratch = memory.top
    img_base, img_stride = memory.region("image", "T", tokens0, patch_k)
    memory.top = scratch
    qk_base, qk_stride = _sized(memory, "qk", "T", [(b.tokens, 2 * b.dim) for b in shapes])
    v_base, v_stride = _sized(memory, "v", "RM", streams)
    s_base, s_stride = _sized(memory, "scores", "RM", [(b.n, b.n) for b in shapes])
    p_base, p_stride = _sized(memory, "probs", "T", [(b.n, b.n) for b in shapes])
    ctx_base, ctx_stride = _sized(memory, "context", "T", streams)
    attn_top = memory.top
    memory.top = scratch
    g_base, g_stride = _sized(memory, "hidden", "T", [(b.tokens, b.hidden) for b in shapes])
    hidden_top = memory.top
    memory.top = scratch
    f_base, f_stride = memory.region("final", "RM", last_tokens, last_dim)
    pool_base, pool_stride = memory.region("pooled", "T", 1, last_dim)
    memory.top = max(memory.top, attn_top, hidden_top)
    ones_base, ones_stride = memory.region("ones", "T", 1, last_tokens)

    words = {"weights": 0, "biases": 0, "channels": 0, "relpos": 0}
    chan_bits = []

    def linear_rom(linear, columns=None):
        """Word counts of ``linear``'s weights ``(tn, k)`` and biases (columns ``columns``)."""
        out, k = linear.weight.shape
        lo, hi = columns if columns else (0, out)
        tiles = padded(hi - lo, lanes) // lanes
        w_base, b_base = words["weights"], words["biases"]
        words["weights"] += tiles * k
        words["biases"] += tiles
        return w_base, b_base

    def constant_requant():
        """One bias word ``0, m, e`` for a product without bias."""
        words["biases"] += 1
        return words["biases"] - 1

    def channel_requant(requant, width):
        base = words["channels"]
        words["channels"] += width
        chan_bits.append(requant.out_bits)
        return base

    def gemm(name, linear, a_base, a_stride, m, k, n, o_layout, o_base, o_stride,
             post="none", columns=None):
        w_base, b_base = linear_rom(linear, columns)
        return Step("gemm", name, m=m, k=k, n=n, a_base=a_base, a_stride=a_stride,
                    w_base=w_base, b_base=b_base, out_bits=linear.requant.out_bits, post=post,
                    o_layout=o_layout, o_base=o_base, o_stride=o_stride)

    def layernorm(layer, requant, rows, width, o_layout="T", o_base=h_base, o_stride=h_stride):
        unit, index = units.unit_for(layer)
        return Step("row", layer, unit=unit, layer=index, m=rows, n=width, a_layout="T",
                    a_base=res_base, a_stride=res_stride,
                    chan_base=channel_requant(requant, width), o_layout=o_layout,
                    o_base=o_base, o_stride=o_stride)

    steps = [Step("input", "image", grid=grid, patch=patch, channels=chans, o_base=img_base,
                  o_stride=img_stride),
             gemm("patch_embed.proj", qmodel.patch_embed, img_base, img_stride, tokens0,
                  patch_k, dim0, "T", h_base, h_stride)]
    unit, index = units.unit_for("patch_embed.norm")
    steps.append(Step("row", "patch_embed.norm", unit=unit, layer=index, m=tokens0, n=dim0,
                      a_base=h_base, a_stride=h_stride, o_base=res_base, o_stride=res_stride))
    for stage in qmodel.stages:
        merge = stage["downsample"]
        if merge is not None:
            rows = stage["blocks"][0]["resolution"] ** 2
            dim, width = merge["reduction"].weight.shape
            steps.append(layernorm(f"{merge['name']}.norm", merge["norm_in"], rows, width))
            steps.append(gemm(f"{merge['name']}.reduction", merge["reduction"], h_base,
                              h_stride, rows, width, dim, "T", res_base, res_stride))
        for block in stage["blocks"]:
            p = block["name"]
            tokens, dim, hidden, n, windows, heads, head_dim = _BlockShape.of(block)
            softmax = f"{p}.attn.softmax"
            top = getattr(plans[softmax].config, "top_code", None) or 0
            scores_b, context_b = constant_requant(), constant_requant()
            words["relpos"] += heads * n * padded(n, lanes) // lanes
            steps.append(layernorm(f"{p}.norm1", block["norm1_in"], tokens, dim))
            steps.append(gemm(f"{p}.attn.qkv[q,k]", block["qkv"], h_base, h_stride, tokens,
                              dim, 2 * dim, "T", qk_base, qk_stride, columns=(0, 2 * dim)))
            steps.append(gemm(f"{p}.attn.qkv[v]", block["qkv"], h_base, h_stride, tokens, dim,
                              dim, "RM", v_base, v_stride, columns=(2 * dim, 3 * dim)))
            for w in range(windows):
                for h in range(heads):
                    steps += [
                        Step("gemm", f"{p}.attn.scores[{w},{h}]", m=n, k=head_dim, n=n,
                             a_base=qk_base + h * head_dim, a_stride=qk_stride, w_src="act",
                             w_base=qk_base + dim + h * head_dim, w_tn_stride=qk_stride,
                             w_k_stride=1, b_base=scores_b, out_bits=block["scores"].out_bits,
                             post=RELPOS, o_layout="RM", o_base=s_base, o_stride=s_stride),
                        Step("row", f"{softmax}[{w},{h}]", unit=units.unit_for(softmax)[0],
                             m=n, n=n, a_layout="RM", a_base=s_base, a_stride=s_stride,
                             o_base=p_base, o_stride=p_stride),
                        Step("gemm", f"{p}.attn.context[{w},{h}]", m=n, k=n, n=head_dim,
                             a_base=p_base, a_stride=p_stride, a_top=top, w_src="act",
                             w_base=v_base + h * head_dim // lanes, w_tn_stride=1,
                             w_k_stride=v_stride, b_base=context_b,
                             out_bits=block["context"].out_bits,
                             o_base=ctx_base + h * head_dim, o_stride=ctx_stride)]
            steps.append(gemm(f"{p}.attn.proj", block["proj"], ctx_base, ctx_stride, tokens,
                              dim, dim, "T", res_base, res_stride, post="residual"))
            steps.append(layernorm(f"{p}.norm2", block["norm2_in"], tokens, dim))
            steps.append(gemm(f"{p}.mlp.fc1", block["fc1"], h_base, h_stride, tokens, dim,
                              hidden, "T", g_base, g_stride))
            steps.append(Step("row", f"{p}.mlp.gelu", unit=units.unit_for(f"{p}.mlp.gelu")[0],
                              m=tokens, n=hidden, a_base=g_base, a_stride=g_stride,
                              o_base=g_base, o_stride=g_stride))
            steps.append(gemm(f"{p}.mlp.fc2", block["fc2"], g_base, g_stride, tokens, hidden,
                              dim, "T", res_base, res_stride, post="residual"))
    steps.append(layernorm("norm", qmodel.norm["in"], last_tokens, last_dim, "RM", f_base,
                           f_stride))
    steps.append(Step("gemm", "head.pool", m=1, k=last_tokens, n=last_dim, a_base=ones_base,
                      a_stride=ones_stride, w_src="act", w_base=f_base, w_tn_stride=1,
                      w_k_stride=f_stride, b_base=constant_requant(),
                      out_bits=qmodel.pool.out_bits, o_base=pool_base, o_stride=pool_stride))
    steps.append(gemm("head.fc", qmodel.head, pool_base, pool_stride, 1, last_dim, classes, "T",
                      0, 0, post="logits"))

    residual_bits = int(qmodel.residual_range[1]).bit_length() + 1
    unit_list = units.frozen()
    lane_bits = max(residual_bits, LOGIT_BITS,
                    *(_out_width(c) for _, configs in unit_list for c in configs))
    act_bits = max(IMAGE_BITS, *(_a_width(qmodel, step, plans) for step in steps
                                 if step.kind == "gemm"))
    return Program(lanes=lanes, requant_lanes=config.requant_lanes, lane_bits=lane_bits,
                   act_bits=act_bits, residual_bits=residual_bits, tokens=tokens0,
                   classes=classes, image=(chans, grid * patch, grid * patch), units=unit_list,
                   regions=memory.regions, act_words=memory.top, steps=steps,
                   weights=np.zeros((words["weights"], 0), dtype=np.int8),
                   biases=np.zeros((words["biases"], 0, 3), dtype=np.int8),
                   channels=np.zeros((words["channels"], 2), dtype=np.int64),
                   clspos=np.zeros((words["relpos"], 0), dtype=np.int8), chan_bits=chan_bits,
                   position="relative position bias")


def model_shape(config, method: str = "ivit"):
    """The shape of a ViT (:class:`~.program.ModelShape`) or a Swin (:class:`SwinShape`)
    ``config`` with every non-linear layer on ``method``'s candidates."""
    assignment = default_assignment(config, method)
    ops = {kind: next(op for op in assignment.values() if op.startswith(kind))
           for kind in ("layernorm", "softmax", "gelu")}
    return (SwinShape if isinstance(config, SwinConfig) else ModelShape)(config, ops)


def cycle_program(model, config: AcceleratorConfig = AcceleratorConfig()) -> Program:
    """The program the cycle model costs for ``model``: an integer Swin's or a Swin shape's
    (:func:`compile_swin_program`), else an integer ViT's or a ViT shape's
    (:func:`~.program.compile_program`)."""
    if isinstance(model, (IntegerSwin, SwinShape)):
        return compile_swin_program(model, config)
    return compile_program(model, config)
