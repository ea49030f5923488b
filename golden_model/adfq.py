"""ADFQ-ViT quantizers and the simulated (fake-quantized) W4A4 / W6A6 ViT they are measured on.

ADFQ-ViT (Jiang, Sun, Xie, Yang, Li; ``docs/method.md`` sec. 3) is a post-training
accuracy method, so it is simulated here in torch: every quantized tensor is quantized and
dequantized in float (``x^ = s * (q - z)``), exactly as the paper evaluates it. Components:

- ``poq``  per-patch outlier-aware quantizer (:class:`PatchOutlierQuantizer`) on the inputs of QKV
  (alpha 5) and FC1 (alpha 10), the post-LayerNorm activations;
- ``slq``  shift-log quantizer (:class:`Log2Quantizer`, shifted) on the input of FC2 (post-GELU);
- ``log2`` log quantizer (:class:`Log2Quantizer`) on the post-Softmax probabilities;
  both base sqrt(2) by default, as the authors' released code (``llwx593/adfq-vit``,
  ``quant/quant_layer.py``: ``LogSqrt2Quantizer``, ``FC2Quantizer``); ``log_base="2"`` is the
  paper's text (on the bundled model it loses 6 dB of input SQNR on both tensors, see
  ``docs/results.md``);
- ``amo``  attention-score enhanced module-wise reconstruction (:mod:`intvit.golden_model.reconstruct`).

Without a component its tensor gets the plain quantizer: per-tensor asymmetric uniform
(:class:`UniformQuantizer`). Weights are per-output-channel symmetric uniform (codes
``-(2**(b-1) - 1) .. 2**(b-1) - 1``, as :mod:`intvit.golden_model.calibration`), rounded to nearest unless
``amo`` learns the rounding.

intvit's choices where the paper is silent:
- Quantized tensors: the inputs of QKV, proj, FC1, FC2 and of the two attention matmuls (q, k,
  probabilities, v), at the activation bits. Patch embedding and head keep 8-bit weights; the
  head input is 8-bit; the image needs no quantizer (``dataset.py``: it is exact int8 codes).
  LayerNorm, Softmax, GELU and the residual stream stay float, as in the paper's simulation
  (intvit's integer candidates for them are :mod:`intvit.golden_model.qvit`'s business).
- Activation quantizers are calibrated progressively: one pass over the calibration images
  (:func:`adfq_splits`: 1024 training images, the paper's count) in which each quantizer, on its
  first input, picks its parameters (uniform: the clipping of ``[min, max]`` with the least MSE
  on a 64-point grid; log: the scale with the least MSE on a grid over one and a half octaves),
  seeing the inputs that the quantizers before it produce. The authors' code searches
  percentiles instead; the shift of its shift-log quantizer is the minimum of each batch at run
  time, here a calibrated constant, so that the integer path knows it.
- Per-patch scales come from each patch at run time (the paper's formula); the authors' code
  calibrates one scale per token position instead.
- Outliers are ``X >= alpha`` as the paper writes (the authors' code takes ``|X| > alpha``).
- Rounding is half up (``floor(v + 0.5)``), what the integer hardware does.

Where it leaves integer arithmetic (``outliers="float"``, the paper's form): per-patch scales
``s_i = (max_i - min_i) / (2**k - 1)`` are real numbers computed at run time from real inputs, and
the outliers ``M_o = X * 1(X >= alpha)`` are multiplied with the weights in full precision.
``outliers="int16"`` is the integer variant: the input is first put on an int16 grid of a
calibrated per-tensor step ``S16``; outliers stay int16 codes (an int16 x int-weight sparse GEMM);
the per-patch range, zero point and codes are integer divisions of int16 codes
(:func:`patch_outlier_quantize_int`), and the GEMM is integer up to one constant per output
channel (:func:`patch_outlier_linear_int`), which the dyadic requantizer absorbs.
"""
import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .dataset import Split
from .errors import IntvitError
from .integer import as_int_array, check_int, clamp

BITS = {"w4a4": (4, 4), "w6a6": (6, 6)}
"""Supported settings: (weight bits, activation bits), the paper's two."""
COMPONENTS = ("poq", "slq", "log2", "amo")
ALPHA_QKV = 5.0
ALPHA_FC1 = 10.0
"""Outlier thresholds on the real post-LayerNorm values (ADFQ-ViT: alpha 5 for QKV, 10 for FC1)."""
OUTLIER_MODES = ("float", "int16")
LOG_BASES = {"sqrt2": 2, "2": 1}
"""Log quantizer base -> levels per octave: base sqrt(2) is the authors' released code (default),
base 2 the paper's text."""
EDGE_BITS = 8
"""Patch embedding and head: 8-bit weights (and an 8-bit head input) at every setting."""
INT16_MAX = 32767
HEADROOM = 1.25
"""The int16 grid covers 1.25 x the calibrated max |x| (the residual-stream rule of qvit.py)."""
UNIFORM_GRID = 64
"""Uniform calibration: clipping ratios ``1, 63/64, ..., 1/64`` of ``[min, max]``."""
LOG2_GRID = np.linspace(-1.0, 0.5, 61)
"""Log2 calibration: scales ``max(X') * 2**t`` for these ``t`` (the levels repeat every octave)."""
CALIBRATION_SAMPLES = 50_000
"""Calibration searches use at most this many evenly spaced elements of a tensor."""
EVAL_BATCH = 200


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x + 0.5)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half up forward, identity backward (straight-through estimator)."""
    return x + (round_half_up(x) - x).detach()


def _subsample(x: torch.Tensor) -> torch.Tensor:
    flat = x.detach().reshape(-1).float()
    if flat.numel() > CALIBRATION_SAMPLES:
        flat = flat[:: flat.numel() // CALIBRATION_SAMPLES]
    return flat


# ---------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class AdfqSettings:
    """One ADFQ run: bits (``w4a4``/``w6a6``), the enabled components, outlier thresholds and
    precision, and the reconstruction iterations per module."""

    bits: str
    components: frozenset
    alpha_qkv: float = ALPHA_QKV
    alpha_fc1: float = ALPHA_FC1
    outliers: str = "float"
    iterations: int = 1
    log_base: str = "sqrt2"
    align_zero: bool = True

    def __post_init__(self):
        if self.bits not in BITS:
            raise IntvitError(f"ADFQ bits {self.bits!r} are not supported; use "
                              f"{' or '.join(BITS)}")
        unknown = sorted(set(self.components) - set(COMPONENTS))
        if unknown:
            raise IntvitError(f"unknown ADFQ component(s) {', '.join(unknown)}; use any of "
                              f"{', '.join(COMPONENTS)}")
        for name in ("alpha_qkv", "alpha_fc1"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value <= 0:
                raise IntvitError(f"ADFQ {name} must be a finite number > 0 (got {value!r}); "
                                  "it is the outlier threshold on post-LayerNorm values")
        if self.outliers not in OUTLIER_MODES:
            raise IntvitError(f"ADFQ outliers {self.outliers!r}: use float (the paper) or int16 "
                              "(integer variant)")
        if not isinstance(self.align_zero, bool):
            raise IntvitError(f"ADFQ align_zero must be True or False (got {self.align_zero!r})")
        if self.log_base not in LOG_BASES:
            raise IntvitError(f"ADFQ log base {self.log_base!r}: use sqrt2 (the authors' code) "
                              "or 2 (the paper's text)")
        check_int("ADFQ", "iterations", self.iterations, 1, 1_000_000,
                  "reconstruction needs at least one iteration per module")

    @property
    def weight_bits(self) -> int:
        return BITS[self.bits][0]

    @property
    def act_bits(self) -> int:
        return BITS[self.bits][1]

    @property
    def log_steps(self) -> int:
        """Levels per octave of the log quantizers."""
        return LOG_BASES[self.log_base]


def parse_components(components) -> frozenset:
    """``"all"``, ``"none"``, ``"poq,amo"`` or an iterable of names."""
    if isinstance(components, str):
        text = components.strip().lower()
        if text == "all":
            return frozenset(COMPONENTS)
        if text in ("", "none"):
            return frozenset()
        components = [part.strip() for part in text.split(",")]
    return frozenset(components)


# -------------------------------------------------------------------------------- quantizers


class UniformQuantizer(nn.Module):
    """Per-tensor asymmetric uniform: ``q = clamp(round(x/s) + z, 0, 2**k - 1)``,
    ``x^ = s (q - z)``; ``s`` learnable (straight-through rounding, LSQ-style gradient)."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits
        self.levels = (1 << bits) - 1
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("zero_point", torch.tensor(0.0))
        self.calibrated = False

    def _fake(self, x, scale, zero_point):
        q = torch.clamp(round_ste(x / scale) + zero_point, 0, self.levels)
        return (q - zero_point) * scale

    def calibrate(self, x: torch.Tensor) -> None:
        """The clipping of ``[min(x, 0), max(x, 0)]`` with the least quantization MSE."""
        flat = _subsample(x)
        lo, hi = min(float(flat.min()), 0.0), max(float(flat.max()), 0.0)
        best, best_error = None, math.inf
        for step in range(UNIFORM_GRID, 0, -1):
            ratio = step / UNIFORM_GRID
            scale = max((hi - lo) * ratio / self.levels, 1e-8)
            zero_point = float(np.floor(-lo * ratio / scale + 0.5))
            error = float(torch.mean((self._fake(flat, scale, zero_point) - flat) ** 2))
            if error < best_error:
                best, best_error = (scale, zero_point), error
        with torch.no_grad():
            self.scale.fill_(best[0])
            self.zero_point.fill_(best[1])
        self.calibrated = True

    def forward(self, x):
        if not self.calibrated:
            self.calibrate(x)
        return self._fake(x, self.scale, self.zero_point)


class Log2Quantizer(nn.Module):
    """ADFQ-ViT's log quantizer, ``shifted`` for the shift-log form (docs/method.md sec. 3), with
    ``steps`` levels per octave (1: base 2, the paper's text; 2: base sqrt(2), the authors'
    released code)::

        X' = X - shift,  c = clamp(round(-steps log2(X'/s)), 0, 2**k - 1),
        X^ = s 2**(-c/steps) + shift,   X^ = shift for the top code (zero)

    with ``shift = 0`` (post-Softmax) or ``shift = min(X) - eps`` (post-GELU). The top code
    means zero, as in the authors' code, so the levels are the ``2**k - 1`` codes below it.
    ``eps = (max(X) - min(X)) * 2**-((2**k - 2) / steps)``, the smallest level of the calibrated
    range, so the calibrated minimum lands on the last level (intvit's choice; the paper leaves
    eps open; the authors' code takes 1e-6). ``X' <= 0`` gives the zero code.

    ``s`` is calibrated for the least MSE. With ``align_zero`` (the default, for a shifted
    quantizer whose range holds 0) the candidates are ``s = -shift * 2**(c/steps)``,
    ``c = 0 .. 2**k - 2``, so that ``X = 0`` (where GELU puts the many strongly negative inputs)
    is a level and comes back exactly (intvit's choice; the paper is silent on ``s``; measured in
    ``docs/results.md``); else a grid over one and a half octaves. ``s`` is
    learnable: its gradient is ``2**(-c/steps)`` (exact between rounding steps; the
    straight-through rounding would cancel it), and the input's gradient goes straight through
    the rounding. The integer form is the ``log2quant`` operator
    (:mod:`intvit.golden_model.ops.log2quant`), bit-exact when ``s`` is a power-of-two multiple of the
    input step."""

    def __init__(self, bits: int, shifted: bool = False, steps: int = 2,
                 align_zero: bool = True):
        super().__init__()
        self.bits = bits
        self.top = (1 << bits) - 1
        self.shifted = shifted
        self.steps = steps
        self.align_zero = align_zero
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("shift", torch.tensor(0.0))
        self.calibrated = False

    def _fake(self, x, scale):
        fixed = scale.detach() if isinstance(scale, torch.Tensor) else scale
        floor = fixed * 2.0 ** -((self.top + 1) / self.steps)  # rounds past the top: zero
        shifted = torch.clamp(x - self.shift, min=floor)
        code = torch.clamp(round_ste(-self.steps * torch.log2(shifted / fixed)), 0, self.top)
        level = torch.where(code == self.top, torch.zeros_like(code),
                            torch.exp2(-code / self.steps))
        return fixed * level + (scale - fixed) * level.detach() + self.shift

    def calibrate(self, x: torch.Tensor) -> None:
        flat = _subsample(x)
        if self.shifted:
            lo, hi = float(flat.min()), float(flat.max())
            self.shift.fill_(lo - (hi - lo) * 2.0 ** -((self.top - 1) / self.steps))
        peak = max(float((flat - float(self.shift)).max()), 1e-8)
        zero = -float(self.shift)  # X' of X = 0
        if self.shifted and self.align_zero and zero > 0:
            scales = [zero * 2.0 ** (c / self.steps) for c in range(self.top)]
        else:
            scales = [peak * 2.0 ** exponent for exponent in LOG2_GRID]
        best, best_error = peak, math.inf
        for scale in scales:
            error = float(torch.mean((self._fake(flat, scale) - flat) ** 2))
            if error < best_error:
                best, best_error = scale, error
        with torch.no_grad():
            self.scale.fill_(best)
        self.calibrated = True

    def forward(self, x):
        if not self.calibrated:
            self.calibrate(x)
        return self._fake(x, self.scale)


class PatchOutlierQuantizer(nn.Module):
    """ADFQ-ViT's per-patch outlier-aware quantizer (docs/method.md sec. 3) over the last axis::

        M_o = X * 1(X >= alpha),  M_no = X - M_o
        per patch i: s_i = (max_i - min_i) / (2**k - 1),  z_i = round(-min_i / s_i)
        X^ = s_i (clamp(round(M_no / s_i) + z_i, 0, 2**k - 1) - z_i) + M_o

    ``min_i``/``max_i`` are taken over ``M_no`` (with 0 in the range, so that outlier positions,
    zeros of ``M_no``, come back exactly 0). ``outliers="float"`` keeps ``M_o`` in full precision
    (the paper); ``"int16"`` first puts ``X`` on an int16 grid of step ``S16 = 1.25 max|X| /
    32767`` (calibrated) and keeps ``M_o`` as int16 codes, the arithmetic of
    :func:`patch_outlier_quantize_int`. Counts outliers while ``counting`` is on."""

    def __init__(self, bits: int, alpha: float, outliers: str = "float"):
        super().__init__()
        self.levels = (1 << bits) - 1
        self.alpha = float(alpha)
        self.outliers = outliers
        self.register_buffer("int16_scale", torch.tensor(1.0, dtype=torch.float64))
        self.calibrated = outliers == "float"
        self.counting = False
        self.outlier_count = 0
        self.element_count = 0

    def calibrate(self, x: torch.Tensor) -> None:
        peak = max(float(x.detach().abs().max()), 1e-8)
        self.int16_scale.fill_(peak * HEADROOM / INT16_MAX)
        self.calibrated = True

    @property
    def alpha_code(self) -> int:
        """``alpha`` on the int16 grid: ``X >= alpha`` iff ``x16 >= ceil(alpha / S16)``."""
        return math.ceil(self.alpha / float(self.int16_scale))

    def ratio(self) -> float:
        return self.outlier_count / max(self.element_count, 1)

    def forward(self, x):
        if not self.calibrated:
            self.calibrate(x)
        values = x.double()
        unit, alpha = 1.0, self.alpha
        if self.outliers == "int16":
            unit = self.int16_scale
            values = torch.clamp(round_ste(values / unit), -INT16_MAX, INT16_MAX)
            alpha = self.alpha_code
        mask = values >= alpha
        if self.counting:
            self.outlier_count += int(mask.sum())
            self.element_count += mask.numel()
        inliers = torch.where(mask, torch.zeros_like(values), values)
        low = torch.clamp(inliers.detach().amin(-1, keepdim=True), max=0.0)
        high = torch.clamp(inliers.detach().amax(-1, keepdim=True), min=0.0)
        span = torch.clamp(high - low, min=1e-12)
        zero_point = round_half_up(-low * self.levels / span)
        codes = torch.clamp(round_ste(inliers * self.levels / span) + zero_point, 0, self.levels)
        restored = (codes - zero_point) * span / self.levels + torch.where(mask, values, 0.0)
        return (restored * unit).to(x.dtype)


def patch_outlier_quantize_int(x16, alpha_code: int, bits: int):
    """The int16 variant of :class:`PatchOutlierQuantizer` in integer arithmetic, per row of the
    last axis: ``(codes, zero_points, spans, outliers)``.

    ``span = max(max_i, 0) - min(min_i, 0)`` over the non-outliers (at least 1),
    ``L = 2**bits - 1``, ``z = round(-min_i * L / span)`` and
    ``codes = clamp(round(x * L / span) + z, 0, L)``, each ``round(a / b)`` being
    ``(2a + b) // (2b)`` (half up). Real value of row ``i``:
    ``S16 * (span_i / L * (codes - z_i) + outliers)``. Widths: ``|2 x L| < 2**25`` for 8-bit codes.
    """
    x = as_int_array(x16, "int16 codes")
    if x.size and (x.min() < -INT16_MAX or x.max() > INT16_MAX):
        raise IntvitError(f"patch quantizer: inputs must be int16 codes in +-{INT16_MAX}")
    check_int("patch quantizer", "bits", bits, 2, 8)
    levels = (1 << bits) - 1
    mask = x >= alpha_code
    inliers = np.where(mask, 0, x)
    outliers = np.where(mask, x, 0)
    low = np.minimum(inliers.min(axis=-1, keepdims=True), 0)
    high = np.maximum(inliers.max(axis=-1, keepdims=True), 0)
    span = np.maximum(high - low, 1)
    zero_point = (-2 * low * levels + span) // (2 * span)
    codes = clamp((2 * inliers * levels + span) // (2 * span) + zero_point, 0, levels)
    return codes, zero_point, span, outliers


def patch_outlier_linear_int(x16, weight, alpha_code: int, bits: int) -> np.ndarray:
    """``X^ @ W^T`` of the int16 variant on integers: ``span_i * (codes @ W^T - z_i * sum_j W)
    + L * (outliers @ W^T)``; times ``S16 * S_w[c] / L`` (one constant per output channel, for
    the requantizer) it is the real product. ``weight``: int codes ``(out, in)``."""
    weight = as_int_array(weight, "weight codes")
    codes, zero_point, span, outliers = patch_outlier_quantize_int(x16, alpha_code, bits)
    levels = (1 << bits) - 1
    inlier_acc = codes @ weight.T - zero_point * weight.sum(axis=1)
    return span * inlier_acc + levels * (outliers @ weight.T)


class WeightQuantizer(nn.Module):
    """Per-output-channel symmetric uniform weights: ``q = clamp(round(W/s), -Q, Q)``,
    ``Q = 2**(b-1) - 1``, ``s`` per channel with the least MSE among clippings ``1, 63/64, ...``
    of ``max|W|``. ``rounding`` (set by AdaRound) replaces round-to-nearest by
    ``floor(W/s) + rounding()``."""

    def __init__(self, weight: torch.Tensor, bits: int):
        super().__init__()
        self.bits = bits
        self.qmax = (1 << (bits - 1)) - 1
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("scale", self._search(self.weight))
        self.rounding = None

    def _search(self, weight):
        flat = weight.reshape(weight.shape[0], -1).double()
        peak = flat.abs().amax(1).clamp(min=1e-8)
        ratios = torch.arange(UNIFORM_GRID, 0, -1, dtype=torch.float64) / UNIFORM_GRID
        scales = ratios[:, None] * peak[None, :] / self.qmax               # (G, out)
        codes = torch.clamp(round_half_up(flat[None] / scales[..., None]), -self.qmax, self.qmax)
        errors = ((codes * scales[..., None] - flat[None]) ** 2).sum(-1)    # (G, out)
        best = scales.gather(0, errors.argmin(0)[None])[0]
        return best.to(weight.dtype).reshape(-1, *([1] * (weight.dim() - 1)))

    def codes(self) -> torch.Tensor:
        scaled = self.weight / self.scale
        if self.rounding is None:
            return torch.clamp(round_half_up(scaled), -self.qmax, self.qmax)
        return torch.clamp(torch.floor(scaled) + self.rounding(), -self.qmax, self.qmax)

    def forward(self) -> torch.Tensor:
        return self.codes() * self.scale


class QuantLinear(nn.Module):
    """``linear(act(x), W^, b)``: quantized input (any quantizer above, or none) and weights."""

    def __init__(self, linear: nn.Linear, weight_bits: int, act: nn.Module | None):
        super().__init__()
        self.weights = WeightQuantizer(linear.weight, weight_bits)
        self.register_buffer("bias", linear.bias.detach().clone())
        self.act = act

    def forward(self, x):
        return F.linear(x if self.act is None else self.act(x), self.weights(), self.bias)


# ------------------------------------------------------------------------ quantized modules


def _frozen(module: nn.Module) -> nn.Module:
    module = copy.deepcopy(module)
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


class QuantAttention(nn.Module):
    """ADFQ's MHA module: ``proj(attention(norm1(x)))`` of one block, the branch added to the
    residual stream; ``forward(x, record)`` puts the float probabilities (before their
    quantizer) in ``record["probs"]`` for the attention-score KL."""

    def __init__(self, block, settings: AdfqSettings):
        super().__init__()
        attn, bits, wbits = block.attn, settings.act_bits, settings.weight_bits
        self.norm = _frozen(block.norm1)
        self.num_heads = attn.num_heads
        self.head_scale = attn.scale
        first = (PatchOutlierQuantizer(bits, settings.alpha_qkv, settings.outliers)
                 if "poq" in settings.components else UniformQuantizer(bits))
        self.qkv = QuantLinear(attn.qkv, wbits, first)
        self.quant_q, self.quant_k, self.quant_v = (UniformQuantizer(bits) for _ in range(3))
        self.quant_probs = (Log2Quantizer(bits, steps=settings.log_steps)
                            if "log2" in settings.components
                            else UniformQuantizer(bits))
        self.proj = QuantLinear(attn.proj, wbits, UniformQuantizer(bits))

    def forward(self, x, record: dict | None = None):
        batch, tokens, dim = x.shape
        qkv = self.qkv(self.norm(x)).reshape(batch, tokens, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        scores = (self.quant_q(q) @ self.quant_k(k).transpose(-2, -1)) * self.head_scale
        probs = scores.softmax(dim=-1)
        if record is not None:
            record["probs"] = probs
        context = (self.quant_probs(probs) @ self.quant_v(v)).transpose(1, 2)
        return self.proj(context.reshape(batch, tokens, dim))


class QuantMlp(nn.Module):
    """ADFQ's MLP module: ``fc2(gelu(fc1(norm2(x))))`` of one block."""

    def __init__(self, block, settings: AdfqSettings):
        super().__init__()
        bits, wbits = settings.act_bits, settings.weight_bits
        self.norm = _frozen(block.norm2)
        first = (PatchOutlierQuantizer(bits, settings.alpha_fc1, settings.outliers)
                 if "poq" in settings.components else UniformQuantizer(bits))
        second = (Log2Quantizer(bits, shifted=True, steps=settings.log_steps,
                                align_zero=settings.align_zero)
                  if "slq" in settings.components
                  else UniformQuantizer(bits))
        self.fc1 = QuantLinear(block.mlp.fc1, wbits, first)
        self.fc2 = QuantLinear(block.mlp.fc2, wbits, second)

    def forward(self, x, record: dict | None = None):
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


def scale_parameters(module: nn.Module) -> list:
    """The learnable activation scales of a module (uniform and log2 quantizers)."""
    return [m.scale for m in module.modules() if isinstance(m, (UniformQuantizer, Log2Quantizer))]


def weight_quantizers(module: nn.Module) -> list:
    return [m for m in module.modules() if isinstance(m, WeightQuantizer)]


class QuantViT(nn.Module):
    """The float ViT with every quantizer of the settings in place (fake quantization)."""

    def __init__(self, model, settings: AdfqSettings):
        super().__init__()
        if model.config.distilled:
            raise IntvitError("ADFQ-ViT takes a class-token ViT; a distilled DeiT (two tokens, "
                              "two heads) is not supported by --method adfq")
        self.settings = settings
        self.patch = model.config.patch_size
        self.patch_embed = WeightQuantizer(model.patch_embed.proj.weight, EDGE_BITS)
        self.register_buffer("patch_bias", model.patch_embed.proj.bias.detach().clone())
        self.register_buffer("cls_token", model.cls_token.detach().clone())
        self.register_buffer("pos_embed", model.pos_embed.detach().clone())
        self.attn = nn.ModuleList(QuantAttention(b, settings) for b in model.blocks)
        self.mlp = nn.ModuleList(QuantMlp(b, settings) for b in model.blocks)
        self.norm = _frozen(model.norm)
        self.head = QuantLinear(model.head, EDGE_BITS, UniformQuantizer(EDGE_BITS))

    def embed(self, images):
        """The residual stream entering the first block."""
        tokens = F.conv2d(images, self.patch_embed(), self.patch_bias, stride=self.patch)
        tokens = tokens.flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos_embed

    def classify(self, x):
        return self.head(self.norm(x)[:, 0])

    def forward(self, images):
        x = self.embed(images)
        for attn, mlp in zip(self.attn, self.mlp):
            x = x + attn(x)
            x = x + mlp(x)
        return self.classify(x)

    def patch_quantizers(self) -> dict:
        """Tap name -> per-patch outlier quantizer (empty without ``poq``)."""
        found = {}
        for index, (attn, mlp) in enumerate(zip(self.attn, self.mlp)):
            for name, act in ((f"blocks.{index}.attn.qkv", attn.qkv.act),
                              (f"blocks.{index}.mlp.fc1", mlp.fc1.act)):
                if isinstance(act, PatchOutlierQuantizer):
                    found[name] = act
        return found


# ----------------------------------------------------------------------------------- driver


def logits_of(model, images) -> torch.Tensor:
    """Logits, batched, without gradients."""
    with torch.no_grad():
        return torch.cat([model(images[start:start + EVAL_BATCH])
                          for start in range(0, len(images), EVAL_BATCH)])


def logit_kl(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Mean over images of ``KL(softmax(z) || softmax(z^))``, in nats: how far the quantized
    model's output distribution is from the float model's."""
    log_p = torch.log_softmax(reference.double(), -1)
    log_q = torch.log_softmax(approx.double(), -1)
    return float((log_p.exp() * (log_p - log_q)).sum(-1).mean())


def logit_sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """``10 log10(sum z**2 / sum (z^ - z)**2)`` of the logits against the float logits."""
    noise = float(((approx.double() - reference.double()) ** 2).sum())
    return 10 * math.log10(float((reference.double() ** 2).sum()) / max(noise, 1e-30))


CALIBRATION_IMAGES = 1024
"""Calibration and reconstruction images: the paper's 1024 (docs/method.md sec. 3)."""


def adfq_splits(splits: dict, count: int = CALIBRATION_IMAGES) -> dict:
    """The bundled dataset's splits for ADFQ-ViT: ``calibration`` = the first ``count`` training
    images (the paper calibrates on 1024 training images; intvit's 100-image calibration split
    is too few for module-wise reconstruction), ``selection`` = intvit's calibration split, held
    out from both calibration and test for choosing settings, ``test`` unchanged."""
    train = splits["train"]
    check_int("ADFQ", "calibration images", count, 1, len(train),
              f"the training split has {len(train)} images")
    return {"calibration": Split(train.images[:count], train.labels[:count]),
            "selection": splits["calibration"], "test": splits["test"]}


def build_adfq(model, calibration_images, settings: AdfqSettings) -> QuantViT:
    """The fake-quantized model, every activation quantizer calibrated progressively (one pass
    over ``calibration_images``)."""
    qmodel = QuantViT(model, settings)
    with torch.no_grad():
        qmodel(calibration_images)
    return qmodel


def outlier_ratios(qmodel: QuantViT, images) -> dict:
    """Per POQ layer, the fraction of its input elements at or above alpha on ``images``."""
    quantizers = qmodel.patch_quantizers()
    for quantizer in quantizers.values():
        quantizer.counting, quantizer.outlier_count, quantizer.element_count = True, 0, 0
    with torch.no_grad():
        for start in range(0, len(images), EVAL_BATCH):
            qmodel(images[start:start + EVAL_BATCH])
    for quantizer in quantizers.values():
        quantizer.counting = False
    return {name: quantizer.ratio() for name, quantizer in quantizers.items()}


@contextmanager
def single_thread():
    """Run torch on one thread, then restore the setting: the tensors here are tiny (a few
    thousand tokens of width 64..192), so thread hand-offs cost more than the work (measured:
    a reconstruction step 25x slower on two threads of a busy two-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
