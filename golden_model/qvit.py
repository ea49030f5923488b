"""The integer-only ViT: every operator on integers, built once from a float model and calibration
images (post-training, no retraining).

Build time (floats allowed): weights are quantized per output channel (symmetric, ``w_bits``),
biases to ``S_in * S_w[c]`` in int32, activations per tensor by a calibrator
(:mod:`intvit.golden_model.calibration`); every rescaling becomes a dyadic requantizer
(:class:`~golden_model.ops.requant.ChannelRequant`); every non-linear layer becomes the config of
its assigned candidate (``layer name -> operator name``), calibrated on that layer's inputs.

Run time (:meth:`IntegerViT.forward`): int8 images in, int16 logits out, integer arithmetic
only: int64 numpy, or, where a stated bound proves every value an exactly representable
integer, the same integers carried in float32/float64 through a BLAS product and the
requantizers (:mod:`intvit.golden_model.exact`; equal bit for bit, tests/test_exact_requant.py).
Data path of one block (``R`` = the residual stream, ``residual_bits`` wide, one scale for
the whole model so that residual additions are plain saturating integer additions):

    R -> requant (per channel, to the LayerNorm's input codes) -> LayerNorm -> int8
      -> QKV GEMM (int32) -> requant -> q, k, v int8
      -> q @ k^T (int32) -> requant (folds head_dim**-0.5) -> softmax -> probabilities
      -> probs @ v (int32; a log2 softmax shifts v instead) -> requant -> int8
      -> proj GEMM -> requant to R's scale -> R + branch (saturating)
    R -> requant -> LayerNorm -> FC1 GEMM -> requant -> GELU -> int8 -> FC2 GEMM -> requant -> R +
and at the end the final LayerNorm, the head GEMM on the class token and a requant to int16
logits (a distilled DeiT: one GEMM on the class and distillation tokens side by side, the two
heads merged at build time, :func:`merged_heads`). Patch embedding is a GEMM over flattened
patches; the prefix tokens and position embedding are int constants on R's scale.

Calibration options (:class:`QuantSpec`, each measured by ``bench/calibration.py``):
``calibrator`` chooses the activation clips (``per-layer``: per tensor, the lower-MSE of the
percentile and the MSE-searched clip); ``gelu_output="asymmetric"`` spreads GELU's output over
all its codes with a zero point ``z`` that FC2 folds into its bias at build time
(``bias - z * sum_k W[:, k]``, :func:`fold_input_zero_point`); ``score_snap`` moves the score
requantizer's target to a scale that suits a shift-based softmax's constants
(``golden_model.ops.softmax.SCALE_SNAPS``). None adds a run-time step.
"""
from dataclasses import dataclass, field

import numpy as np
import torch

from . import registry, swin
from .calibration import (CALIBRATORS, activation_scale, input_scale, qmax, quantize,
                          weight_scales)
from .errors import IntvitError
from .exact import (as_codes, exact_matmul, exact_requant, exact_requant_product, fast_codes,
                    float_codes, is_plain, max_abs)
from .integer import as_int_array, check_int, check_scale, clamp, signed_range
from .ops.gelu import asymmetric_output
from .ops.requant import ACC_BITS, ChannelRequant
from .ops.softmax import LINEAR_PROBABILITIES, SCALE_SNAPS
from .tapstats import TapStatistics, batches, float_statistics
from .vit import VisionTransformer, nonlinear_layers

IMAGE_BITS = 8
LOGIT_BITS = 16
HEADROOM = 1.25
"""Residual and logit scales leave this factor above the calibration max-abs."""
BUNDLED_IMAGE_SCALE = 1.0 / 8
"""The bundled digits are ``(p - 8) / 8``: int8 codes at scale 1/8 represent them exactly."""


GELU_OUTPUTS = ("symmetric", "asymmetric")
"""GELU output codes: symmetric (zero point 0) or asymmetric over GELU's range (a zero point)."""
SCORE_SNAPS = ("off", "grid", "log2e")
"""The score requantizer's target: the calibrated scale (``off``), the nearest coarser scale
that suits a shift-based softmax's constants (``grid``), or that scale with log2(e)'s
correction folded into the requantizer (``log2e``); see ``ops.softmax.SCALE_SNAPS``."""


@dataclass(frozen=True)
class QuantSpec:
    """What to quantize how: weight bits (8 or 4: W8A8, W4A8), activation bits, the residual
    stream's width, the activation calibrator (``minmax``, ``percentile``, ``mse`` or
    ``per-layer``), GELU's output codes (:data:`GELU_OUTPUTS`) and the softmax score scale
    (:data:`SCORE_SNAPS`)."""
    weight_bits: int = 8
    act_bits: int = 8
    residual_bits: int = 16
    calibrator: str = "percentile"
    image_scale: float = BUNDLED_IMAGE_SCALE
    """Real value of one int8 input code (images are quantized before the model sees them)."""
    gelu_output: str = "symmetric"
    score_snap: str = "grid"
    softmax_bits: int = 8
    """Width of the linear-probability softmax outputs (:data:`~intvit.golden_model.ops.softmax.
    LINEAR_PROBABILITIES`), 8..16, which feed ``probs @ v`` (issue 15: long rows leave an 8-bit
    probability about one code; FQ-ViT's log2 codes keep their width)."""
    """Defaults: the options that measurably help (``bench/calibration.py``, docs/results.md):
    ``grid`` lowers the logit KL of a model on ``softmax/ivit`` by 25-60 % (beyond two standard
    errors on mnist at W4A8) and changes nothing measurable on ``softmax/iptq``; ``log2e`` adds
    nothing measurable to it; the ``per-layer`` and ``mse`` clips and the asymmetric GELU
    output did not measurably help (``per-layer`` hurt on mnist at W8A8), so they stay
    options."""

    def __post_init__(self):
        check_scale("QuantSpec", "image_scale", self.image_scale)
        check_int("QuantSpec", "weight_bits", self.weight_bits, 2, 8)
        check_int("QuantSpec", "act_bits", self.act_bits, 4, 8)
        check_int("QuantSpec", "residual_bits", self.residual_bits, 8, 16)
        check_int("QuantSpec", "softmax_bits", self.softmax_bits, 8, 16)
        for field_name, allowed in (("calibrator", tuple(CALIBRATORS)),
                                    ("gelu_output", GELU_OUTPUTS), ("score_snap", SCORE_SNAPS)):
            value = getattr(self, field_name)
            if value not in allowed:
                raise IntvitError(f"QuantSpec: {field_name} must be one of "
                                  f"{', '.join(allowed)} (got {value!r})")

    @classmethod
    def parse(cls, text: str, **options) -> "QuantSpec":
        """``"w8a8"`` or ``"w4a8"`` style names."""
        name = text.lower()
        if not (name.startswith("w") and "a" in name):
            raise IntvitError(f"bits {text!r}: write it as w8a8 or w4a8")
        try:
            w, a = (int(part) for part in name[1:].split("a"))
        except ValueError:
            raise IntvitError(f"bits {text!r}: write it as w8a8 or w4a8") from None
        return cls(weight_bits=w, act_bits=a, **options)


@dataclass(frozen=True)
class IntLinear:
    """``requant(x @ weight.T + bias)``: int weights ``(out, in)``, int32 bias, per-channel
    requantizer (or ``None`` for a raw int32 output)."""
    weight: np.ndarray
    bias: np.ndarray
    requant: ChannelRequant | None

    def __call__(self, x: np.ndarray, a_max: int | None = None, codes=None) -> np.ndarray:
        """With a requantizer, GEMM and requantizer by :func:`~.exact.exact_requant_product`
        (a float BLAS product and a float64 requantizer on it where bounds prove both exact,
        equal to the int64 path bit for bit); otherwise, or where it declines, the GEMM is
        :func:`~.exact.exact_matmul` and the requantizer the int64 one. An ndarray subclass (the
        integer-only trap of the tests) keeps numpy's int64 product and int64 requantizer.

        ``x`` may be float codes (:func:`~.exact.float_codes`, the integer ViT's fast forward);
        ``codes`` returns the requantized codes as float codes, float32 (``True``; the default
        when ``x`` is float codes) or float64 (``np.float64``). ``a_max``: a proven bound on
        ``max |x|`` (measured when ``None``)."""
        codes = float_codes(x) if codes is None else codes
        if is_plain(x, self.weight):
            if self.requant is not None:
                y = exact_requant_product(self.requant, x, self._weight_codes, self.bias,
                                          a_max=a_max, b_max=self._bounds[0],
                                          bias_max=self._bounds[1], codes=codes)
                if y is not None:  # GEMM and requantizer in float, proven exact (exact.py)
                    return y
            if float_codes(x):
                x = x.astype(np.int64)
            acc = exact_matmul(x, self.weight.T)  # a new int64 array: add the bias in place
            acc += self.bias
        else:
            acc = x @ self.weight.T + self.bias
        if self.requant is None:
            return acc
        return as_codes(self.requant(acc), codes)  # at most 16-bit codes: exact

    @property
    def _bounds(self) -> tuple:
        """``(max|weight|, max|bias|)``, measured on first use and kept (the arrays are the
        layer's constants; a frozen dataclass, so the cache goes into ``__dict__``)."""
        bounds = self.__dict__.get("_max_abs")
        if bounds is None:
            bounds = self.__dict__["_max_abs"] = (max_abs(self.weight), max_abs(self.bias))
        return bounds

    @property
    def _weight_codes(self) -> np.ndarray:
        """``weight.T`` as float codes (float32; weights of at most 16 bits are exact), made on
        first use and kept: the float GEMM's right operand without a conversion per call."""
        weight = self.__dict__.get("_float_weight")
        if weight is None:
            if max_abs(self.weight) >= 1 << 24:
                weight = self.weight.T
            else:
                weight = np.ascontiguousarray(self.weight.astype(np.float32)).T
            self.__dict__["_float_weight"] = weight
        return weight


@dataclass
class LayerPlan:
    """Build-time record of one non-linear layer: its operator, config and input/output scales."""
    op: str
    config: object
    in_requant: object = None  # what turns the previous codes into this op's input codes
    code_scale: float | None = None
    """Real value of one input code where it differs from the config's ``in_scale`` (a score
    scale snapped with log2(e)'s correction folded in); ``None``: the config's."""


@dataclass
class IntegerViT:
    """The integer model. ``forward`` is integer-only; ``scales`` and ``plans`` are build-time
    records used to dequantize taps for metrics."""
    depth: int
    num_heads: int
    patch_size: int
    patch_embed: IntLinear
    cls_pos: np.ndarray          # (N, D) residual codes of prefix tokens + position embedding
    blocks: list
    norm: dict
    head: IntLinear
    plans: dict                  # layer name -> LayerPlan
    scales: dict                 # tap name -> input scale (float or per-channel array)
    spec: QuantSpec
    assignment: dict
    residual_range: tuple = field(default=(0, 0))
    zero_points: dict = field(default_factory=dict)  # tap name -> zero point of its codes
    prefix_tokens: int = 1       # class token (1), or class and distillation tokens (2)
    masked_layers = frozenset()  # no softmax row of a ViT is masked (a shifted Swin's are)

    @property
    def first_qkv(self) -> tuple[str, object]:
        """The first block's QKV layer: its tap name and its :class:`IntLinear`."""
        return "blocks.0.attn.qkv", self.blocks[0]["qkv"]

    def forward(self, images, taps: dict | None = None) -> np.ndarray:
        """int8 images ``(B, C, H, W)`` -> int16 logits ``(B, classes)``; ``taps`` (a dict) gets
        the integer input codes of every layer under the float model's tap names, and
        ``"<layer>:out"`` for each non-linear layer's output codes (int64 arrays).

        Two evaluations of the same integer function, equal bit for bit
        (tests/test_exact_requant.py compares every tap and the logits):

        - the int64 path, for an ndarray subclass (the integer-only trap of
          tests/test_integer_only.py, which proves the arithmetic integer) and inside
          :func:`~.exact.int64_products` or :func:`~.exact.int64_requantizers`: int64 codes
          between the steps, every non-linear layer through its operator's validating ``run``;
        - the fast path (issue 15) for a plain ndarray: codes travel as *float codes*
          (:func:`~.exact.float_codes`, float32 or float64 arrays holding the integer codes) from
          each requantizer (:class:`~.exact.FloatRequant`) to the next GEMM, which reads them
          without a conversion, or to the next non-linear layer's ``Operator.fast_run``, which
          skips ``run``'s input range check because its input is a saturating requantizer's
          output, in range by construction. Each step is exact under bounds stated where it is
          defined; where one fails it falls back to the int64 step. Taps and logits are
          converted to int64."""
        x = as_int_array(images, "images")
        lo, hi = signed_range(IMAGE_BITS)
        if x.ndim != 4 or x.size == 0 or x.min() < lo or x.max() > hi:
            raise IntvitError("images must be int8 codes shaped (batch, channels, height, width)")
        record = _recorder(taps)
        record("patch_embed.proj", x)
        # Fast forward (issue 15): activations travel as float codes (exact.float_codes) from
        # each requantizer to the next GEMM or operator (Operator.fast_run), every step exact
        # under its stated bounds; taps and logits are int64. The integer-only trap and the
        # int64 switches take the int64 path.
        fast = np.float64 if fast_codes(x) else False  # the residual stream in float64
        r = self.patch_embed(_patchify(x, self.patch_size), codes=fast)
        cls_pos = self.cls_pos.astype(r.dtype, copy=False)  # 16-bit codes: exact
        lead = self.prefix_tokens
        prefix = np.broadcast_to(cls_pos[:lead], (r.shape[0], lead, r.shape[2]))
        r = self._saturate(np.concatenate([prefix, r + cls_pos[lead:]], axis=1))
        for index, block in enumerate(self.blocks):
            r = self._block(index, block, r, record)
        record("norm", r)
        h = self._nonlinear("norm", self._requant_residual(self.norm["in"], r), record,
                            self.norm["in"])
        features = h[:, :lead].reshape(h.shape[0], -1)  # the prefix tokens side by side
        record("head", features)
        logits = self.head(features, a_max=self._out_bound("norm"))
        return logits.astype(np.int64) if float_codes(logits) else logits

    def _saturate(self, x):
        if float_codes(x):  # the fast forward: in place, on torch's threads
            torch.from_numpy(x).clamp_(*self.residual_range)
            return x
        return clamp(x, *self.residual_range)

    def _residual_add(self, r, branch):
        """``saturate(r + branch)``; float codes (``|r + branch| < 2**17``, exact) added into
        ``branch``, a new array of the branch's requantizer."""
        if float_codes(branch) and float_codes(r):
            torch.from_numpy(branch).add_(torch.from_numpy(r))
            return self._saturate(branch)
        return self._saturate(r + branch)

    def _requant_residual(self, requant, r):
        """``requant(r)`` of saturated residual codes: in float64 by
        :func:`~.exact.exact_requant` (bound: the residual range) where it proves that exact,
        else the int64 requantizer; float codes in, float64 float codes out (for the
        LayerNorm)."""
        codes = np.float64 if float_codes(r) else False
        y = exact_requant(requant, r, max(-self.residual_range[0], self.residual_range[1]),
                          codes=codes)
        if y is not None:
            return y
        return as_codes(requant(r.astype(np.int64)) if codes else requant(r), codes)

    def _nonlinear(self, name, q, record, source):
        """The layer's operator on its input codes ``q``, the output of the requantizer
        ``source``. Float codes (the fast forward) go to the operator's ``fast_run``, which
        skips ``run``'s input range check: ``source`` saturates to signed ``out_bits``, checked
        here to be the operator's signed ``in_bits``, so ``q`` is in range by construction
        (else, or where ``fast_run`` declines, ``run`` on int64 codes); anything else goes to
        ``run``."""
        plan = self.plans[name]
        record(f"{name}:in", q)
        operator = registry.get(plan.op)
        if float_codes(q):
            in_range = source.out_bits == plan.config.in_bits and plan.config.in_signed
            y = operator.fast_run(plan.config, q) \
                if in_range and operator.fast_run is not None else None
            if y is None:
                y = operator.run(plan.config, q.astype(np.int64)).astype(np.float32)
        else:
            y = operator.run(plan.config, q)
        record(f"{name}:out", y)
        return y

    def _out_bound(self, name) -> int:
        """A bound on ``max |y|`` of layer ``name``'s output codes: its operator saturates to
        signed or unsigned ``out_bits``."""
        config = self.plans[name].config
        bits = config.out_bits
        return 1 << (bits - 1) if config.out_signed else (1 << bits) - 1

    def _block(self, index, block, r, record):
        prefix = f"blocks.{index}"
        batch, tokens, dim = r.shape
        heads = self.num_heads
        record(f"{prefix}.norm1", r)
        h = self._nonlinear(f"{prefix}.norm1", self._requant_residual(block["norm1_in"], r),
                            record, block["norm1_in"])
        record(f"{prefix}.attn.qkv", h)
        qkv = block["qkv"](h, a_max=self._out_bound(f"{prefix}.norm1"))
        qkv = qkv.reshape(batch, tokens, 3, heads, dim // heads)
        q, k, v = (qkv[:, :, j].transpose(0, 2, 1, 3) for j in range(3))
        record(f"{prefix}.attn.q", q)
        record(f"{prefix}.attn.k", k)
        record(f"{prefix}.attn.v", v)
        code = 1 << (block["qkv"].requant.out_bits - 1)  # q, k, v are its saturated codes
        wide = np.float64 if float_codes(r) else None  # float codes for an operator's input
        scores = _requant_product(block["scores"], q, k.transpose(0, 1, 3, 2), code, code,
                                  codes=wide)
        record(f"{prefix}.attn.softmax", scores)
        probs = self._nonlinear(f"{prefix}.attn.softmax", scores, record, block["scores"])
        record(f"{prefix}.attn.probs", probs)
        context = block["probs_v"].requantized(block["context"], probs, v, code,
                                               self._out_bound(f"{prefix}.attn.softmax"))
        context = context.transpose(0, 2, 1, 3).reshape(batch, tokens, dim)
        record(f"{prefix}.attn.proj", context)
        r = self._residual_add(r, block["proj"](context, codes=wide,
                                                a_max=1 << (block["context"].out_bits - 1)))
        return self._mlp_half(prefix, block, r, record, wide)

    def _mlp_half(self, prefix, block, r, record, wide):
        """``r + fc2(gelu(fc1(norm2(r))))`` of block ``prefix`` (a ViT's or a Swin's)."""
        record(f"{prefix}.norm2", r)
        h = self._nonlinear(f"{prefix}.norm2", self._requant_residual(block["norm2_in"], r),
                            record, block["norm2_in"])
        record(f"{prefix}.mlp.fc1", h)
        g = block["fc1"](h, a_max=self._out_bound(f"{prefix}.norm2"), codes=wide)
        record(f"{prefix}.mlp.gelu", g)
        g = self._nonlinear(f"{prefix}.mlp.gelu", g, record, block["fc1"].requant)
        record(f"{prefix}.mlp.fc2", g)
        return self._residual_add(r, block["fc2"](g, a_max=self._out_bound(f"{prefix}.mlp.gelu"),
                                                  codes=wide))

    def dequantize(self, name: str, q) -> np.ndarray:
        """Real values of a tap's codes (build-time records; for metrics and reports)."""
        if name.endswith(":out"):
            plan = self.plans[name[:-4]]
            return plan.config.dequantize_output(q)
        if name.endswith(":in"):
            plan = self.plans[name[:-3]]
            scale = plan.code_scale if plan.code_scale is not None else input_scale(plan.config)
            return np.asarray(q, np.float64) * scale
        return (np.asarray(q, np.float64) - self.zero_points.get(name, 0)) * self.scales[name]

    def predict(self, images) -> np.ndarray:
        return np.argmax(self.forward(images), axis=-1)


def _recorder(taps):
    if taps is None:
        return lambda name, value: None

    def record(name, value):
        taps[name] = value.astype(np.int64) if float_codes(value) else value  # fast forward
    return record


def _patchify(x: np.ndarray, patch: int) -> np.ndarray:
    """``(B, C, H, W) -> (B, P, C*patch*patch)`` in the conv weight's ``(C, kh, kw)`` order."""
    b, c, h, w = x.shape
    grid_h, grid_w = h // patch, w // patch
    x = x.reshape(b, c, grid_h, patch, grid_w, patch).transpose(0, 2, 4, 1, 3, 5)
    return x.reshape(b, grid_h * grid_w, c * patch * patch)


def _requant_product(requant, a, b, a_max=None, b_max=None, codes=None):
    """``requant(a @ b)``: :func:`~.exact.exact_requant_product` where it proves the float path
    exact (``a_max``, ``b_max``: proven max-abs bounds, measured when ``None``), else the int64
    requantizer on :func:`~.exact.exact_matmul`. Float codes in (either operand), float codes
    out (float32, or as ``codes`` asks)."""
    if codes is None:
        codes = float_codes(a) or float_codes(b)
    y = exact_requant_product(requant, a, b, a_max=a_max, b_max=b_max, codes=codes) \
        if is_plain(a, b) else None
    if y is not None:
        return y
    if codes:
        return as_codes(requant(exact_matmul(a.astype(np.int64), b.astype(np.int64))), codes)
    return requant(exact_matmul(a, b))


class _ProbsTimesV:
    """``probs @ v`` on integers. Linear probabilities (codes ``y / 2**b``): an int32 GEMM.
    Log2 probabilities (FQ-ViT, codes ``k`` meaning ``2**-k``, the top code meaning 0):
    ``sum_j v_j << (top - 1 - k_j)``, scale ``2**-(top - 1)`` (shifts only, FQ-ViT Sec. 3.3)."""

    def __init__(self, config):
        self.top = getattr(config, "top_code", None)

    def __call__(self, probs, v):
        """Both GEMMs by :func:`~.exact.exact_matmul` with measured bounds: unsigned
        probability codes (up to 16 bits) times int8 ``v`` take float32 while ``197 * max(p) *
        max|v| < 2**24``, else float64; the log2 weights are powers of two up to
        ``2**(top - 1)``, bounded the same way."""
        return exact_matmul(self._weights(probs), v)

    def _weights(self, probs):
        """The GEMM's left operand: the linear codes, or the log2 codes' powers of two."""
        if self.top is None:
            return probs
        shift = np.where(probs == self.top, 0, self.top - 1 - probs)
        return np.where(probs == self.top, 0, np.int64(1) << shift)

    def requantized(self, requant, probs, v, v_max=None, p_max=None):
        """``requant(self(probs, v))``: GEMM and requantizer in float through
        :func:`~.exact.exact_requant_product` where it proves them exact, else (also for the
        integer-only trap) the int64 requantizer on :meth:`__call__`. Float codes in (the fast
        forward), float codes out; ``p_max`` bounds the linear probability codes (log2 codes
        get their weights' bound measured)."""
        codes = float_codes(probs) or float_codes(v)
        if codes and self.top is not None:
            probs = probs.astype(np.int64)  # the log2 weights are shifts of integer codes
        if is_plain(probs, v):
            y = exact_requant_product(requant, self._weights(probs), v,
                                      a_max=p_max if self.top is None else None, b_max=v_max,
                                      codes=codes)
            if y is not None:
                return y
        if codes:
            return requant(self(probs.astype(np.int64), v.astype(np.int64))).astype(np.float32)
        return requant(self(probs, v))

    def scale(self, config) -> float:
        if self.top is None:
            return float(config.dequantize_output(np.array(1)))
        return 2.0 ** -(self.top - 1)


def float_taps(model: VisionTransformer, images: torch.Tensor, batch: int = 256) -> dict:
    """The float model's taps (numpy float64) and logits on ``images``, batched."""
    taps: dict = {}
    logits = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(images), batch):
            part: dict = {}
            logits.append(model(images[start:start + batch], part))
            for name, value in part.items():
                taps.setdefault(name, []).append(value.double().numpy())
    taps = {name: np.concatenate(parts) for name, parts in taps.items()}
    taps["logits"] = torch.cat(logits).double().numpy()
    return taps


def model_layers(model_config) -> dict:
    """The non-linear layers of a ViT or a Swin config (:func:`~.vit.nonlinear_layers`,
    :func:`~.swin.nonlinear_layers`)."""
    if isinstance(model_config, swin.SwinConfig):
        return swin.nonlinear_layers(model_config)
    return nonlinear_layers(model_config)


def default_assignment(model_config, method: str = "iptq") -> dict:
    """Every non-linear layer on one method (``gelu/fqvit`` does not exist: FQ-ViT keeps GELU
    in float, so an all-FQ-ViT model takes I-BERT's i-GELU, the integer GELU it builds on)."""
    assignment = {}
    for layer, kind in model_layers(model_config).items():
        name = f"{kind}/{method}"
        if name not in registry.REGISTRY:
            name = f"{kind}/ibert"
        assignment[layer] = name
    return assignment


def check_assignment(model_config, assignment: dict) -> dict:
    """Every non-linear layer assigned exactly one registered candidate of its kind."""
    layers = model_layers(model_config)
    missing = [layer for layer in layers if layer not in assignment]
    extra = [layer for layer in assignment if layer not in layers]
    if missing or extra:
        raise IntvitError(f"assignment does not match the model: missing {missing[:3]}, "
                          f"unknown {extra[:3]}")
    for layer, name in assignment.items():
        operator = registry.get(name)
        if operator.kind != layers[layer]:
            raise IntvitError(f"layer {layer} is a {layers[layer]}, not a {operator.kind} "
                              f"({name})")
    return dict(assignment)


def calibration_tap_names(model_config) -> set:
    """The taps :func:`build_integer_vit` calibrates on: every non-linear layer's input, q, k, v,
    the attention context (``attn.proj``) and the logits."""
    attention = [f"blocks.{i}.attn.{t}" for i in range(model_config.depth)
                 for t in ("q", "k", "v", "proj")]
    return {*nonlinear_layers(model_config), *attention, "logits"}


def build_integer_vit(model: VisionTransformer, calibration_images, assignment: dict,
                      spec: QuantSpec = QuantSpec(), taps: dict | None = None) -> IntegerViT:
    """Quantize ``model`` with every non-linear layer on its assigned candidate.

    ``taps`` are the (float) activations the activation scales and the non-linear configs are
    calibrated on, as :class:`~intvit.golden_model.tapstats.TapStatistics` or a dict of arrays:
    by default the float model's on ``calibration_images``, gathered batch by batch; the third
    IPTQ stage passes the dequantized taps of the mixed integer model instead."""
    assignment = check_assignment(model.config, assignment)
    if taps is None:
        taps = float_statistics(model, calibration_images)
    elif not isinstance(taps, TapStatistics):
        taps = TapStatistics.from_arrays(taps)
    return _Builder(model, assignment, spec, taps).build()


class _Builder:
    """The steps of :func:`build_integer_vit`, one method per part of the model. Each step
    records, in forward order, the input scale of every tap it reads (``scales``) and the plan
    of every non-linear layer it calibrates (``plans``)."""

    def __init__(self, model: VisionTransformer, assignment: dict, spec: QuantSpec, taps: dict):
        self.config, self.assignment, self.spec, self.taps = model.config, assignment, spec, taps
        self.state = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
        self.s_res = self._residual_scale()
        self.scales: dict = {"patch_embed.proj": spec.image_scale}
        self.zero_points: dict = {}
        self.plans: dict = {}

    def build(self) -> IntegerViT:
        patch_embed, cls_pos = self.patch_embedding()
        blocks = [{**self.attention(f"blocks.{i}"), **self.mlp(f"blocks.{i}")}
                  for i in range(self.config.depth)]
        norm_in, head = self.head()
        return IntegerViT(depth=self.config.depth, num_heads=self.config.num_heads,
                          patch_size=self.config.patch_size, patch_embed=patch_embed,
                          cls_pos=cls_pos, blocks=blocks, norm={"in": norm_in}, head=head,
                          plans=self.plans, scales=self.scales, spec=self.spec,
                          assignment=self.assignment,
                          residual_range=signed_range(self.spec.residual_bits),
                          zero_points=self.zero_points,
                          prefix_tokens=self.config.prefix_tokens)

    def _residual_scale(self) -> float:
        """The residual stream's one scale: max-abs over every LayerNorm input, plus headroom."""
        names = [f"blocks.{i}.norm{j}" for i in range(self.config.depth) for j in (1, 2)]
        largest = max(self.taps.max_abs(name) for name in names + ["norm"])
        return largest * HEADROOM / qmax(self.spec.residual_bits)

    def act_scale(self, name: str) -> float:
        samples = self.taps.sample(name)
        if self.spec.calibrator == "minmax":  # the exact max-abs, not the sample's
            samples = np.array([self.taps.max_abs(name)])
        return activation_scale(f"calibration of {name}", samples, self.spec.act_bits,
                                self.spec.calibrator)

    def linear(self, prefix: str, s_in, out_scale, out_bits: int) -> IntLinear:
        """Per-channel weights, an int32 bias at ``s_in * s_w`` and a requantizer to
        ``out_scale`` (``None``: a raw int32 output)."""
        w = self.state[f"{prefix}.weight"]
        w = w.reshape(w.shape[0], -1)
        s_w = weight_scales(prefix, w, self.spec.weight_bits)
        w_int = quantize(w, s_w[:, None], self.spec.weight_bits)
        bias = np.round(self.state[f"{prefix}.bias"] / (s_in * s_w)).astype(np.int64)
        if out_scale is None:
            return IntLinear(w_int, bias, None)
        ratios = s_in * s_w / np.broadcast_to(out_scale, s_w.shape)
        return IntLinear(w_int, bias, ChannelRequant.from_scales(ratios, out_bits))

    def nonlinear(self, layer: str, in_scale: float | None = None, **params):
        """The assigned candidate's config, calibrated on the layer's input tap (at
        ``in_scale``, else the calibrator's scale of that tap)."""
        operator = registry.get(self.assignment[layer])
        if operator.kind in ("gelu", "layernorm"):
            params["out_bits"] = self.spec.act_bits
        if operator.name in LINEAR_PROBABILITIES:
            params["out_bits"] = self.spec.softmax_bits
        scale = self.act_scale(layer) if in_scale is None else in_scale
        cfg = operator.calibrate(scale, self.taps.sample(layer), in_bits=self.spec.act_bits,
                                 **params)
        self.plans[layer] = LayerPlan(self.assignment[layer], cfg)
        return cfg

    def score_scale(self, layer: str) -> tuple[float, float]:
        """``(codes, config)``: the real value of one score code, which the score requantizer
        targets, and the ``in_scale`` the softmax config is built from; both the calibrated
        scale unless ``spec.score_snap`` snaps it for a shift-based candidate."""
        scale = self.act_scale(layer)
        snap = SCALE_SNAPS.get(self.assignment[layer])
        if self.spec.score_snap == "off" or snap is None:
            return scale, scale
        return snap(scale, fold_log2e=self.spec.score_snap == "log2e")

    def layernorm(self, layer: str):
        """A LayerNorm's config and the requantizer from residual codes to its input codes."""
        cfg = self.nonlinear(layer, gamma=self.state[f"{layer}.weight"],
                             beta=self.state[f"{layer}.bias"], eps=self.config.layer_norm_eps)
        requant = ChannelRequant.from_scales(self.s_res / input_scale(cfg), cfg.in_bits)
        self.plans[layer].in_requant = requant
        self.scales[layer] = self.s_res
        return cfg, requant

    def patch_embedding(self):
        """The patch GEMM onto the residual scale, and the prefix tokens (class, distillation)
        plus position embedding as residual codes."""
        rbits = self.spec.residual_bits
        linear = self.linear("patch_embed.proj", self.spec.image_scale, self.s_res, rbits)
        cls_pos = self.state["pos_embed"][0].copy()
        cls_pos[0] += self.state["cls_token"][0, 0]
        if self.config.distilled:
            cls_pos[1] += self.state["dist_token"][0, 0]
        return linear, quantize(cls_pos, self.s_res, rbits)

    def attention(self, p: str) -> dict:
        """norm1, QKV, the scores' requantizer, softmax, probs @ v and the projection."""
        return self.attention_of(p, self.config.embed_dim, self.config.head_dim)

    def attention_of(self, p: str, dim: int, head_dim: int) -> dict:
        """:meth:`attention` of a block ``dim`` wide with heads ``head_dim`` wide (also a Swin
        stage's window attention, which adds its bias codes)."""
        bits = self.spec.act_bits
        ln1, norm1_in = self.layernorm(f"{p}.norm1")
        s_q, s_k, s_v = (self.act_scale(f"{p}.attn.{t}") for t in "qkv")
        self.scales[f"{p}.attn.qkv"] = ln1.out_scale
        self.scales.update({f"{p}.attn.q": s_q, f"{p}.attn.k": s_k, f"{p}.attn.v": s_v})
        qkv_out = np.concatenate([np.full(dim, s_q), np.full(dim, s_k), np.full(dim, s_v)])
        qkv = self.linear(f"{p}.attn.qkv", ln1.out_scale, qkv_out, bits)
        s_scores, s_config = self.score_scale(f"{p}.attn.softmax")
        sm = self.nonlinear(f"{p}.attn.softmax", in_scale=s_config)
        if s_scores != s_config:
            self.plans[f"{p}.attn.softmax"].code_scale = s_scores
        self.scales[f"{p}.attn.softmax"] = s_scores
        scores = ChannelRequant.from_scales([s_q * s_k * head_dim ** -0.5 / s_scores],
                                            sm.in_bits)
        probs_v = _ProbsTimesV(sm)
        self.scales[f"{p}.attn.probs"] = None
        s_ctx = self.act_scale(f"{p}.attn.proj")
        self.scales[f"{p}.attn.proj"] = s_ctx
        context = ChannelRequant.from_scales([probs_v.scale(sm) * s_v / s_ctx], bits)
        proj = self.linear(f"{p}.attn.proj", s_ctx, self.s_res, self.spec.residual_bits)
        return {"norm1_in": norm1_in, "qkv": qkv, "scores": scores, "probs_v": probs_v,
                "context": context, "proj": proj}

    def mlp(self, p: str) -> dict:
        """norm2, FC1 onto GELU's input codes, GELU and FC2 onto the residual scale (FC2's bias
        carrying GELU's output zero point when the output is asymmetric)."""
        ln2, norm2_in = self.layernorm(f"{p}.norm2")
        self.scales[f"{p}.mlp.fc1"] = ln2.out_scale
        gelu = self.nonlinear(f"{p}.mlp.gelu")
        if self.spec.gelu_output == "asymmetric":
            gelu = asymmetric_output(gelu)
            self.plans[f"{p}.mlp.gelu"].config = gelu
        self.scales[f"{p}.mlp.gelu"] = gelu.in_scale
        fc1 = self.linear(f"{p}.mlp.fc1", ln2.out_scale, gelu.in_scale, gelu.in_bits)
        self.scales[f"{p}.mlp.fc2"] = gelu.out_scale
        fc2 = self.linear(f"{p}.mlp.fc2", gelu.out_scale, self.s_res, self.spec.residual_bits)
        if gelu.out_zero_point:
            self.zero_points[f"{p}.mlp.fc2"] = gelu.out_zero_point
            fc2 = fold_input_zero_point(fc2, gelu.out_zero_point)
        return {"norm2_in": norm2_in, "fc1": fc1, "fc2": fc2}

    def head(self):
        """The final LayerNorm, and the classifier on the prefix tokens (the ``head`` tap) to
        int16 logits."""
        if self.config.distilled:
            self.state.update(merged_heads(self.state))
        norm, norm_in = self.layernorm("norm")
        self.scales["head"] = norm.out_scale
        s_logit = self.taps.max_abs("logits") * HEADROOM / qmax(LOGIT_BITS)
        head = self.linear("head", norm.out_scale, s_logit, LOGIT_BITS)
        self.scales["logits"] = s_logit
        return norm_in, head


def merged_heads(state: dict) -> dict:
    """A distilled DeiT's two heads as one linear on ``[h_0, h_1]`` (the ``head`` tap, class
    and distillation tokens side by side): ``(W h_0 + b + W_d h_1 + b_d) / 2 =
    ([W, W_d] / 2) [h_0; h_1] + (b + b_d) / 2`` (timm's eval-mode mean of the heads), so the
    mean costs no second GEMM; quantized per output channel as any linear."""
    weight = np.concatenate([state["head.weight"], state["head_dist.weight"]], axis=1) / 2
    return {"head.weight": weight, "head.bias": (state["head.bias"] + state["head_dist.bias"]) / 2}


def fold_input_zero_point(linear: IntLinear, zero_point: int) -> IntLinear:
    """``linear`` for input codes ``y`` whose real value is ``(y - z) * S``: ``W (y - z) + b =
    W y + (b - z * sum_k W[:, k])``, so the zero point moves into the int32 bias at build time
    and the GEMM reads ``y`` as it is (the integer-only pipelines' zero-point folding)."""
    bias = linear.bias - zero_point * linear.weight.sum(axis=1)
    lo, hi = signed_range(ACC_BITS)
    if bias.min() < lo or bias.max() > hi:
        raise IntvitError(f"the bias with the folded zero point {zero_point} does not fit int32; "
                          "use a symmetric GELU output (QuantSpec gelu_output='symmetric')")
    return IntLinear(linear.weight, bias, linear.requant)


def quantize_images(images, scale: float = BUNDLED_IMAGE_SCALE) -> np.ndarray:
    """Float images as int8 codes at ``scale`` (round, saturate; build-time input quantizer).
    At the bundled scale the images must lie on its 1/8 grid, which they represent exactly."""
    x = np.asarray(images, np.float64) / scale
    codes = np.round(x)
    if scale == BUNDLED_IMAGE_SCALE and np.max(np.abs(codes - x)) > 1e-6:
        raise IntvitError("images are not on the 1/8 grid of the bundled dataset; give your "
                          "own input scale (QuantSpec.image_scale)")
    limit = qmax(IMAGE_BITS)
    return np.clip(codes, -limit, limit).astype(np.int64)


def image_scale_for(images) -> float:
    """An input scale for a user's images: their max-abs over the int8 range."""
    x = np.asarray(images, np.float64)
    return max(float(np.max(np.abs(x))), 1e-8) / qmax(IMAGE_BITS)


def integer_taps(qmodel: IntegerViT, images_q, names=None) -> dict:
    """The integer model's taps on ``images_q`` (only ``names``, if given), dequantized to
    floats (for metrics and for the third IPTQ stage), with ``"logits"`` the dequantized
    logits."""
    taps: dict = {}
    logits = qmodel.forward(images_q, taps)
    out = {}
    for name, q in taps.items():
        if name.endswith((":in", ":keep", ".probs")) or name == "patch_embed.proj":
            continue
        if names is None or name in names:
            out[name] = qmodel.dequantize(name, q)
    out["logits"] = np.asarray(logits, np.float64) * qmodel.scales["logits"]
    return out


def integer_statistics(qmodel, images_q, names=None, batch: int = 16,
                       progress=None) -> TapStatistics:
    """Statistics of the integer model's taps, dequantized as
    :func:`intvit.golden_model.qvit.integer_taps` gives them, over int8 ``images_q``."""
    stats = TapStatistics(names)
    if progress:
        progress(0, len(images_q))
    for start, stop in batches(len(images_q), batch):
        stats.add(integer_taps(qmodel, images_q[start:stop], names))
        if progress:
            progress(stop, len(images_q))
    return stats
