"""The accelerator's program: the integer ViT compiled into steps for one GEMM array, one unit
per distinct non-linear operator and one activation memory (``docs/fpga.md`` section 10).

The compiler reads the integer model (:class:`~intvit.golden_model.qvit.IntegerViT`), never the
hardware; its output is a list of :class:`Step` s (``program.json``, readable), the memory map
and the constant memories (weights, per-tile bias and requantizer constants, per-channel
LayerNorm-input requantizers, class token + position embedding). :func:`run_program` executes a
program on numpy arrays exactly as the hardware does, step by step: a second implementation of
the integer ViT's forward, equal to it bit for bit (tests/test_program.py), whose per-step
outputs are the taps that name the first differing step when the RTL disagrees.

Activation memory: words of ``L`` lanes (``L`` = the array's rows = its columns), each lane
``lane_bits`` signed. A tensor lives in one of two layouts:

- ``T`` (token-tiled): element ``(t, c)`` is lane ``t % L`` of word ``base + (t // L) * stride
  + c``. A word is ``L`` tokens of one channel: the array's activation beat ``a[m0:m0+L, k]``,
  and, for ``k`` in ``q @ k^T``, its weight beat.
- ``RM`` (row-major): element ``(t, c)`` is lane ``c % L`` of word ``base + t * stride + c //
  L``. A word is ``L`` channels of one token: the weight beat ``v[j, n0:n0+L]`` of ``probs @ v``
  and one output row of the array.

Steps (one per layer operation, in the integer ViT's order):

- ``input``: raster-order int8 pixels ``(channel, y, x)`` in, written to the image region in
  ``T`` layout as token ``1 + patch`` (row 0 is the class token's place), column ``(channel,
  dy, dx)``: the patch embedding's operand without a host-side reorder.
- ``gemm``: ``post(clamp(requant(a @ w + bias)))`` over ``M x K x N``: ``a`` from a ``T``
  region (``a_base + tm * a_stride + k``), optionally decoded from FQ-ViT log2 codes to their
  powers of two (``_ProbsTimesV``); ``w`` from the weight memory (``w_base + tn * K + k``) or
  from a region (``w_base + tn * w_tn_stride + k * w_k_stride``); one bias word per column
  tile. ``post``: ``none``, ``residual`` (saturating add into the destination, the residual
  stream), ``clspos`` (class token + position embedding, token 0's product dropped) or
  ``logits`` (row 0 out of the accelerator).
- ``row``: a softmax, LayerNorm or GELU unit over ``rows`` rows of ``length``, one element per
  cycle; elements read from a region in either layout (through the per-channel requantizer onto
  the LayerNorm's input codes when ``chan_base >= 0``), written to a ``T`` region (GELU in
  place).
"""
import json
from dataclasses import dataclass, field

import numpy as np

from . import registry
from .errors import ConfigError, IntvitError
from .files import write_text_atomic
from .gemm import padded
from .integer import check_int, signed_range
from .ops.layernorm.common import same_datapath
from .qvit import IMAGE_BITS, LOGIT_BITS, IntegerViT

PROGRAM_FORMAT = "intvit accelerator program 1"
KINDS = ("input", "gemm", "row")
POSTS = ("none", "residual", "clspos", "logits")
LAYOUTS = ("T", "RM")
WEIGHT_SOURCES = ("rom", "act")


@dataclass(frozen=True)
class AcceleratorConfig:
    """The accelerator's array: ``lanes x lanes`` (square: the activation memory's word is an
    activation beat and, for ``k``, a weight beat) and its requantizer lanes."""
    lanes: int = 8
    requant_lanes: int = 4

    def __post_init__(self):
        check_int("AcceleratorConfig", "lanes", self.lanes, 2, 32,
                  "the array is lanes x lanes; 8 is the default")
        if self.lanes & (self.lanes - 1):
            raise ConfigError(f"AcceleratorConfig: lanes must be a power of two (got "
                              f"{self.lanes})")
        check_int("AcceleratorConfig", "requant_lanes", self.requant_lanes, 1, self.lanes)
        if self.lanes % self.requant_lanes:
            raise ConfigError(f"AcceleratorConfig: requant_lanes must divide lanes (got "
                              f"{self.requant_lanes} for {self.lanes})")


@dataclass(frozen=True)
class Step:
    """One step; the fields a kind does not use are 0 (``FIELDS`` lists those it uses)."""
    kind: str
    name: str
    unit: int = 0            # row: the unit's index
    layer: int = 0           # row: which of a shared LayerNorm unit's configs
    m: int = 0               # gemm: M x K x N; row: rows (m) of length (n)
    k: int = 0
    n: int = 0
    a_base: int = 0
    a_stride: int = 0
    a_top: int = 0           # gemm: log2 probability codes' top code (0: a as stored)
    a_layout: str = "T"      # row: the source layout
    w_src: str = "rom"
    w_base: int = 0
    w_tn_stride: int = 0
    w_k_stride: int = 0
    b_base: int = 0
    chan_base: int = -1      # row: per-channel requantizer entries (-1: none)
    out_bits: int = 0        # gemm: the requantizer's signed output width
    post: str = "none"
    o_layout: str = "T"
    o_base: int = 0
    o_stride: int = 0
    grid: int = 0            # input: patches per side, patch size and channels
    patch: int = 0
    channels: int = 0

    FIELDS = {"input": ("grid", "patch", "channels", "o_base", "o_stride"),
              "gemm": ("m", "k", "n", "a_base", "a_stride", "a_top", "w_src", "w_base",
                       "w_tn_stride", "w_k_stride", "b_base", "out_bits", "post",
                       "o_layout", "o_base", "o_stride"),
              "row": ("unit", "layer", "m", "n", "a_layout", "a_base", "a_stride", "chan_base",
                      "o_layout", "o_base", "o_stride")}

    def to_json(self) -> dict:
        return {"kind": self.kind, "name": self.name,
                **{key: getattr(self, key) for key in self.FIELDS[self.kind]}}


@dataclass
class Program:
    """A compiled program: steps, memory map, units and constant memories."""
    lanes: int
    requant_lanes: int
    lane_bits: int
    act_bits: int
    residual_bits: int
    tokens: int
    classes: int
    image: tuple               # (channels, height, width)
    units: list                # [(op name, (config, ...))] in unit index order
    regions: dict              # name -> (layout, base, rows, cols, stride, words)
    act_words: int
    steps: list
    weights: np.ndarray        # (words, lanes) int8/int4 codes
    biases: np.ndarray         # (words, lanes, 3): bias, multiplier, shift
    channels: np.ndarray       # (entries, 2): multiplier, shift
    clspos: np.ndarray         # (words, lanes): class token + position embedding, T layout
    chan_bits: list = field(default_factory=list)
    """Output bits of each ``dim``-entry block of ``channels`` (one per LayerNorm)."""
    position: str = "class/position"
    """What ``clspos`` holds, as reports name it (a Swin's: its relative position bias)."""

    def summary(self) -> dict:
        return {"format": PROGRAM_FORMAT, "lanes": self.lanes,
                "requant_lanes": self.requant_lanes, "lane_bits": self.lane_bits,
                "act_bits": self.act_bits, "residual_bits": self.residual_bits,
                "tokens": self.tokens, "classes": self.classes, "image": list(self.image),
                "units": [{"index": i, "op": op, "layers": len(configs)}
                          for i, (op, configs) in enumerate(self.units)],
                "memory": {"act_words": self.act_words,
                           "regions": {name: dict(zip(("layout", "base", "rows", "cols",
                                                       "stride", "words"), value))
                                       for name, value in self.regions.items()},
                           "weight_words": int(len(self.weights)),
                           "bias_words": int(len(self.biases)),
                           "channel_entries": int(len(self.channels)),
                           "clspos_words": int(len(self.clspos))},
                "steps": [step.to_json() for step in self.steps]}

    def write(self, path) -> None:
        """``program.json``: the steps and memory map, one step per line for reading."""
        text = json.dumps(self.summary(), indent=1)
        write_text_atomic(path, text + "\n")


class UnitTable:
    """The program's units: one per distinct operator config; LayerNorms whose configs differ
    only in their per-channel tables share one unit (ops.layernorm.common.same_datapath), a
    step naming the layer whose tables it reads."""

    def __init__(self, plans: dict):
        self.plans, self.units = plans, []  # units: (op, [configs])

    def unit_for(self, layer) -> tuple:
        """``(unit index, layer index within the unit)`` of non-linear layer ``layer``."""
        plan = self.plans[layer]
        for index, (op, configs) in enumerate(self.units):
            if op != plan.op:
                continue
            if plan.config in configs:
                return index, configs.index(plan.config)
            if op.startswith("layernorm/") and same_datapath(configs[0], plan.config):
                configs.append(plan.config)
                return index, len(configs) - 1
        self.units.append((plan.op, [plan.config]))
        return len(self.units) - 1, 0

    def frozen(self) -> list:
        """``[(op, (config, ...))]`` in unit index order (:attr:`Program.units`)."""
        return [(op, tuple(configs)) for op, configs in self.units]


class _Memory:
    """Allocates ``T``/``RM`` regions (rows and columns padded to the lanes)."""

    def __init__(self, lanes: int):
        self.lanes, self.top, self.regions = lanes, 0, {}

    def region(self, name, layout, rows, cols, base=None):
        lanes = self.lanes
        if layout == "T":
            stride = cols
            words = padded(rows, lanes) // lanes * stride
        else:
            stride = padded(cols, lanes) // lanes
            words = padded(rows, lanes) * stride
        base = self.top if base is None else base
        self.regions[name] = (layout, base, rows, cols, stride, words)
        self.top = max(self.top, base + words)
        return base, stride


def _check_model(qmodel, config: AcceleratorConfig):
    if not isinstance(qmodel, (IntegerViT, ModelShape)):
        raise IntvitError("the accelerator compiles an IntegerViT (intvit quantize's model); "
                          f"got {type(qmodel).__name__}")
    if getattr(qmodel, "prefix_tokens", 1) != 1:
        raise IntvitError("the accelerator runs models with one class token; a distilled DeiT "
                          "(class and distillation tokens) is not supported yet")
    dim = qmodel.patch_embed.weight.shape[0]
    head_dim = dim // qmodel.num_heads
    if head_dim % config.lanes or dim % config.lanes:
        raise IntvitError(f"a {config.lanes} x {config.lanes} array cannot hold this model's "
                          f"widths: the head width {head_dim} and the embedding {dim} must be "
                          f"multiples of {config.lanes}; choose --rows/--cols dividing "
                          f"{head_dim}")


def compile_program(qmodel: IntegerViT, config: AcceleratorConfig = AcceleratorConfig(),
                    image_shape: tuple | None = None) -> Program:
    """The program of ``qmodel`` on a ``config.lanes``-square array; ``image_shape`` ``(C, H,
    W)`` (default: square, from the position embedding's tokens)."""
    _check_model(qmodel, config)
    constants = isinstance(qmodel, IntegerViT)  # else a ModelShape: the steps alone
    lanes = config.lanes
    patch = qmodel.patch_size
    dim = qmodel.patch_embed.weight.shape[0]
    tokens = qmodel.cls_pos.shape[0]
    grid = int(round((tokens - 1) ** 0.5))
    chans = qmodel.patch_embed.weight.shape[1] // (patch * patch)
    if image_shape is None:
        image_shape = (chans, grid * patch, grid * patch)
    if grid * grid != tokens - 1 or tuple(image_shape) != (chans, grid * patch, grid * patch):
        raise IntvitError(f"the accelerator takes square images of {grid * patch} x "
                          f"{grid * patch} pixels and {chans} channels")
    heads = qmodel.num_heads
    head_dim = dim // heads
    hidden = qmodel.blocks[0]["fc1"].weight.shape[0] if qmodel.blocks else 0
    classes = qmodel.head.weight.shape[0]
    plans = qmodel.plans

    units = UnitTable(plans)
    unit_for = units.unit_for

    memory = _Memory(lanes)
    res_base, res_stride = memory.region("residual", "T", tokens, dim)
    h_base, h_stride = memory.region("normed", "T", tokens, dim)
    scratch = memory.top
    img_base, img_stride = memory.region("image", "T", tokens, chans * patch * patch)
    memory.top = scratch
    qk_base, qk_stride = memory.region("qk", "T", tokens, 2 * dim)
    v_base, v_stride = memory.region("v", "RM", tokens, dim)
    s_base, s_stride = memory.region("scores", "RM", tokens, tokens)
    p_base, p_stride = memory.region("probs", "T", tokens, tokens)
    ctx_base, ctx_stride = memory.region("context", "T", tokens, dim)
    attn_top = memory.top
    memory.top = scratch
    g_base, g_stride = memory.region("hidden", "T", tokens, hidden)
    memory.top = max(memory.top, attn_top)

    weights, biases, channels, chan_bits = [], [], [], []

    def linear_rom(linear, columns=None):
        """Weight words ``(tn, k)`` and bias words of ``linear`` (columns ``columns``)."""
        out, k = linear.weight.shape
        lo, hi = columns if columns else (0, out)
        n_pad = padded(hi - lo, lanes)
        w_base = sum(len(x) for x in weights)
        b_base = sum(len(x) for x in biases)
        if not constants:
            weights.append(range(n_pad // lanes * k))
            biases.append(range(n_pad // lanes))
            return w_base, b_base
        w = np.asarray(linear.weight, dtype=np.int64)  # (out, in)
        wt = np.zeros((k, n_pad), dtype=np.int64)
        wt[:, :hi - lo] = w[lo:hi].T
        bias = np.zeros((n_pad, 3), dtype=np.int64)
        bias[:hi - lo, 0] = np.asarray(linear.bias, dtype=np.int64)[lo:hi]
        for column, values in ((1, linear.requant.multipliers), (2, linear.requant.shifts)):
            bias[:hi - lo, column] = np.broadcast_to(np.asarray(values, np.int64), (out,))[lo:hi]
        weights.append(wt.reshape(k, n_pad // lanes, lanes).transpose(1, 0, 2)
                       .reshape(-1, lanes))
        biases.append(bias.reshape(n_pad // lanes, lanes, 3))
        return w_base, b_base

    def constant_requant(requant):
        """A bias word for a product without bias: ``0, m, e`` in every lane."""
        b_base = sum(len(x) for x in biases)
        word = np.zeros((1, lanes, 3), dtype=np.int64)
        word[..., 1] = requant.multipliers[0]
        word[..., 2] = requant.shifts[0]
        biases.append(word)
        return b_base

    def channel_requant(requant):
        base = sum(len(x) for x in channels)
        channels.append(np.stack([np.broadcast_to(requant.multipliers, (dim,)),
                                  np.broadcast_to(requant.shifts, (dim,))], axis=1))
        chan_bits.append(requant.out_bits)
        return base

    steps = [Step("input", "image", grid=grid, patch=patch, channels=chans, o_base=img_base,
                  o_stride=img_stride)]
    w_base, b_base = linear_rom(qmodel.patch_embed)
    steps.append(Step("gemm", "patch_embed", m=tokens, k=chans * patch * patch, n=dim,
                      a_base=img_base, a_stride=img_stride, w_base=w_base, b_base=b_base,
                      out_bits=qmodel.patch_embed.requant.out_bits, post="clspos",
                      o_base=res_base, o_stride=res_stride))

    def layernorm(layer, requant, rows):
        unit, index = unit_for(layer)
        return Step("row", layer, unit=unit, layer=index, m=rows, n=dim, a_layout="T",
                    a_base=res_base, a_stride=res_stride, chan_base=channel_requant(requant),
                    o_base=h_base, o_stride=h_stride)

    def gemm(name, linear, a_base, a_stride, k, n, o_layout, o_base, o_stride, post="none",
             columns=None, m=tokens):
        w_base, b_base = linear_rom(linear, columns)
        return Step("gemm", name, m=m, k=k, n=n, a_base=a_base, a_stride=a_stride,
                    w_base=w_base, b_base=b_base, out_bits=linear.requant.out_bits, post=post,
                    o_layout=o_layout, o_base=o_base, o_stride=o_stride)

    for index, block in enumerate(qmodel.blocks):
        p = f"blocks.{index}"
        steps.append(layernorm(f"{p}.norm1", block["norm1_in"], tokens))
        steps.append(gemm(f"{p}.attn.qkv[q,k]", block["qkv"], h_base, h_stride, dim, 2 * dim,
                          "T", qk_base, qk_stride, columns=(0, 2 * dim)))
        steps.append(gemm(f"{p}.attn.qkv[v]", block["qkv"], h_base, h_stride, dim, dim,
                          "RM", v_base, v_stride, columns=(2 * dim, 3 * dim)))
        softmax = f"{p}.attn.softmax"
        top = getattr(plans[softmax].config, "top_code", None) or 0
        for h in range(heads):
            steps.append(Step("gemm", f"{p}.attn.scores[{h}]", m=tokens, k=head_dim, n=tokens,
                              a_base=qk_base + h * head_dim, a_stride=qk_stride, w_src="act",
                              w_base=qk_base + dim + h * head_dim, w_tn_stride=qk_stride,
                              w_k_stride=1, b_base=constant_requant(block["scores"]),
                              out_bits=block["scores"].out_bits, o_layout="RM",
                              o_base=s_base, o_stride=s_stride))
            steps.append(Step("row", f"{softmax}[{h}]", unit=unit_for(softmax)[0], m=tokens,
                              n=tokens, a_layout="RM", a_base=s_base, a_stride=s_stride,
                              o_base=p_base, o_stride=p_stride))
            steps.append(Step("gemm", f"{p}.attn.context[{h}]", m=tokens, k=tokens,
                              n=head_dim, a_base=p_base, a_stride=p_stride, a_top=top,
                              w_src="act", w_base=v_base + h * head_dim // lanes,
                              w_tn_stride=1, w_k_stride=v_stride,
                              b_base=constant_requant(block["context"]),
                              out_bits=block["context"].out_bits, o_base=ctx_base + h * head_dim,
                              o_stride=ctx_stride))
        steps.append(gemm(f"{p}.attn.proj", block["proj"], ctx_base, ctx_stride, dim, dim, "T",
                          res_base, res_stride, post="residual"))
        steps.append(layernorm(f"{p}.norm2", block["norm2_in"], tokens))
        steps.append(gemm(f"{p}.mlp.fc1", block["fc1"], h_base, h_stride, dim, hidden, "T",
                          g_base, g_stride))
        steps.append(Step("row", f"{p}.mlp.gelu", unit=unit_for(f"{p}.mlp.gelu")[0], m=tokens,
                          n=hidden, a_base=g_base, a_stride=g_stride, o_base=g_base,
                          o_stride=g_stride))
        steps.append(gemm(f"{p}.mlp.fc2", block["fc2"], g_base, g_stride, hidden, dim, "T",
                          res_base, res_stride, post="residual"))
    steps.append(layernorm("norm", qmodel.norm["in"], 1))
    steps.append(gemm("head", qmodel.head, h_base, h_stride, dim, classes, "T", 0, 0,
                      post="logits", m=1))

    res_lo, res_hi = qmodel.residual_range
    residual_bits = int(res_hi).bit_length() + 1
    clspos = np.zeros((padded(tokens, lanes), dim), dtype=np.int64)
    if constants:
        clspos[:tokens] = qmodel.cls_pos
    clspos = clspos.reshape(-1, lanes, dim).transpose(0, 2, 1).reshape(-1, lanes)
    units = units.frozen()
    lane_bits = max(residual_bits, LOGIT_BITS,
                    *(_out_width(config) for _, configs in units for config in configs))
    act_bits = max(IMAGE_BITS, *(_a_width(qmodel, step, plans) for step in steps
                                 if step.kind == "gemm"))
    if constants:
        weights, biases = np.concatenate(weights), np.concatenate(biases)
    else:  # the word counts alone
        weights = np.zeros((sum(len(x) for x in weights), 0), dtype=np.int8)
        biases = np.zeros((sum(len(x) for x in biases), 0, 3), dtype=np.int8)
    return Program(lanes=lanes, requant_lanes=config.requant_lanes, lane_bits=lane_bits,
                   act_bits=act_bits, residual_bits=residual_bits, tokens=tokens,
                   classes=classes, image=tuple(image_shape), units=units,
                   regions=memory.regions, act_words=memory.top, steps=steps,
                   weights=weights, biases=biases, channels=np.concatenate(channels),
                   clspos=clspos, chan_bits=chan_bits)


class _ShapeLinear:
    """A linear layer's shape and output width (:class:`ModelShape`)."""

    def __init__(self, out: int, k: int, out_bits: int = 8):
        self.weight = np.broadcast_to(np.int8(0), (out, k))
        self.requant = _ShapeRequant(out_bits)


class _ShapeRequant:
    def __init__(self, out_bits: int = 8):
        self.out_bits, self.multipliers, self.shifts = out_bits, (0,), (0,)


class ModelShape:
    """What :func:`compile_program` reads of an :class:`IntegerViT`, from a ViT's shape alone:
    the program of a model too large to quantize here, for the cycle model (``intvit perf``).
    Every non-linear layer of kind ``k`` is operator ``ops[k]`` at its example config (its
    unit's cycle model depends on the row length, not on the constants)."""

    def __init__(self, vit_config, ops: dict, spec=None):
        from .qvit import LayerPlan, QuantSpec
        from .vit import nonlinear_layers

        spec = spec or QuantSpec()
        c = vit_config
        dim, hidden = c.embed_dim, c.mlp_hidden
        self.patch_size, self.num_heads = c.patch_size, c.num_heads
        self.patch_embed = _ShapeLinear(dim, c.in_chans * c.patch_size ** 2, spec.residual_bits)
        self.cls_pos = np.broadcast_to(np.int16(0), (c.num_tokens, dim))
        self.residual_range = signed_range(spec.residual_bits)
        self.blocks = [{"norm1_in": _ShapeRequant(), "norm2_in": _ShapeRequant(),
                        "qkv": _ShapeLinear(3 * dim, dim), "scores": _ShapeRequant(),
                        "context": _ShapeRequant(),
                        "proj": _ShapeLinear(dim, dim, spec.residual_bits),
                        "fc1": _ShapeLinear(hidden, dim),
                        "fc2": _ShapeLinear(dim, hidden, spec.residual_bits)}
                       for _ in range(c.depth)]
        self.norm = {"in": _ShapeRequant()}
        self.head = _ShapeLinear(c.num_classes, dim, LOGIT_BITS)
        configs = {"layernorm": registry.get(ops["layernorm"]).example_config(channels=dim),
                   "softmax": registry.get(ops["softmax"]).example_config(
                       max_row=c.num_tokens),
                   "gelu": registry.get(ops["gelu"]).example_config()}
        self.plans = {layer: LayerPlan(ops[kind], configs[kind])
                      for layer, kind in nonlinear_layers(c).items()}


def _out_width(config) -> int:
    """Signed lane bits that hold a unit's output codes."""
    return config.out_bits + (0 if getattr(config, "out_signed", True) else 1)


def _a_width(qmodel, step, plans) -> int:
    """Signed bits of a GEMM step's ``a`` operand: 8-bit codes, GELU outputs, linear
    probability codes (unsigned) or decoded log2 probabilities (``2**(top - 1)``)."""
    if step.a_top:
        return step.a_top + 1
    if ".attn.context" in step.name:
        layer = step.name.split(".attn.context")[0] + ".attn.softmax"
        return _out_width(plans[layer].config)
    if step.name.endswith(".mlp.fc2"):
        return _out_width(plans[step.name[:-4] + ".gelu"].config)
    return IMAGE_BITS


# ---------------------------------------------------------------- the program on numpy arrays

def _t_index(base, stride, lanes, rows, cols):
    """Word and lane of every element ``(t, c)`` of a ``T`` region."""
    t, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return base + (t // lanes) * stride + c, t % lanes


def _rm_index(base, stride, lanes, rows, cols):
    t, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return base + t * stride + c // lanes, c % lanes


def _index(layout, base, stride, lanes, rows, cols):
    return (_t_index if layout == "T" else _rm_index)(base, stride, lanes, rows, cols)


def _requant(acc, mult, shift, bits):
    """``clamp((acc * m + 2**(e-1)) >> e)`` to signed ``bits`` (``ops.requant.ChannelRequant``,
    per column)."""
    lo32, hi32 = signed_range(32)
    if acc.size and (acc.min() < lo32 or acc.max() > hi32):
        raise IntvitError("accumulators must fit int32")
    y = (acc * mult + ((np.int64(1) << shift) >> 1)) >> shift
    return np.clip(y, *signed_range(bits))


def image_pixels(program: Program, images) -> np.ndarray:
    """``(B, C*H*W)`` int8 pixels in the raster order the ``input`` step takes."""
    images = np.asarray(images)
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(program.image):
        raise IntvitError(f"the accelerator takes images of shape {tuple(program.image)} "
                          f"(channels, height, width); got {tuple(images.shape[1:])}")
    lo, hi = signed_range(IMAGE_BITS)
    if images.min() < lo or images.max() > hi:
        raise IntvitError("images must be int8 codes")
    return images.reshape(len(images), -1).astype(np.int64)


def run_program(program: Program, pixels: np.ndarray, taps: dict | None = None) -> np.ndarray:
    """The program on one image's ``pixels`` (:func:`image_pixels`): its logits; ``taps`` gets,
    by step index, ``(word, lane, values)`` of each element the step writes (the logits step:
    ``(None, None, logits)``), the elements the RTL's writes must equal."""
    lanes = program.lanes
    mem = np.zeros((program.act_words, lanes), dtype=np.int64)
    logits = None
    for index, step in enumerate(program.steps):
        if step.kind == "input":
            out = _input_values(program, step, pixels)
            word, lane = _t_index(step.o_base, step.o_stride, lanes, *out.shape)
            word, lane, out = word[1:], lane[1:], out[1:]
        elif step.kind == "gemm":
            out = _gemm(program, step, mem)
            if step.post == "logits":
                logits = out[0, :step.n]
                if taps is not None:
                    taps[index] = (None, None, logits.copy())
                continue
            word, lane = _index(step.o_layout, step.o_base, step.o_stride, lanes, *out.shape)
        else:
            out = _row(program, step, mem)
            word, lane = _t_index(step.o_base, step.o_stride, lanes, *out.shape)
        mem[word, lane] = out
        if taps is not None:
            taps[index] = (word, lane, out.copy())
    return logits


def _input_values(program, step, pixels):
    """``(tokens, C*P*P)``: row 0 empty, row ``1 + p`` patch ``p`` in ``(c, dy, dx)`` order."""
    c, g, p = step.channels, step.grid, step.patch
    x = np.asarray(pixels, dtype=np.int64).reshape(c, g, p, g, p).transpose(1, 3, 0, 2, 4)
    out = np.zeros((g * g + 1, c * p * p), dtype=np.int64)
    out[1:] = x.reshape(g * g, c * p * p)
    return out


def _gemm(program, step, mem):
    lanes = program.lanes
    word, lane = _t_index(step.a_base, step.a_stride, lanes, step.m, step.k)
    a = mem[word, lane]
    if step.a_top:
        a = np.where(a == step.a_top, 0, np.int64(1) << np.maximum(step.a_top - 1 - a, 0))
    n_pad = padded(step.n, lanes)
    if step.w_src == "rom":
        w = program.weights[step.w_base:step.w_base + n_pad // lanes * step.k]
        w = w.reshape(n_pad // lanes, step.k, lanes).transpose(1, 0, 2).reshape(step.k, n_pad)
    else:
        k, n = np.meshgrid(np.arange(step.k), np.arange(n_pad), indexing="ij")
        w = mem[step.w_base + (n // lanes) * step.w_tn_stride + k * step.w_k_stride,
                n % lanes]
    bias = program.biases[step.b_base:step.b_base + n_pad // lanes] if step.w_src == "rom" \
        else np.broadcast_to(program.biases[step.b_base], (n_pad // lanes, lanes, 3))
    bias = bias.reshape(n_pad, 3)[:step.n]
    acc = a @ w[:, :step.n] + bias[:, 0]
    y = _requant(acc, bias[:, 1], bias[:, 2], step.out_bits)
    if step.post == "residual":
        word, lane = _t_index(step.o_base, step.o_stride, lanes, step.m, step.n)
        y = np.clip(mem[word, lane] + y, *signed_range(program.residual_bits))
    elif step.post == "clspos":
        word, lane = _t_index(0, step.o_stride, lanes, step.m, step.n)
        y[0] = 0
        y = np.clip(program.clspos[word, lane] + y, *signed_range(program.residual_bits))
    return y


def _row(program, step, mem):
    lanes = program.lanes
    word, lane = _index(step.a_layout, step.a_base, step.a_stride, lanes, step.m, step.n)
    x = mem[word, lane]
    if step.chan_base >= 0:
        chans = program.channels[step.chan_base:step.chan_base + step.n]
        x = _requant(x, chans[:, 0], chans[:, 1], program.chan_bits[step.chan_base // step.n])
    op, configs = program.units[step.unit]
    return registry.get(op).run(configs[step.layer], x)

