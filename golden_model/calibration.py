"""Scales of symmetric uniform quantizers, from calibration data (build time only).

A real tensor ``x`` becomes ``q = clamp(round(x / S), -(2**(b-1) - 1), 2**(b-1) - 1)``
(symmetric, zero point 0, the most negative code unused so that ``-q`` is always representable).
Weights are quantized per output channel by their max-abs; activations per tensor by one of
:data:`CALIBRATORS`: ``minmax`` (nothing clips), ``percentile`` (rare outliers clip), ``mse`` (the
clip of least quantization MSE on a grid), or ``per-layer``, which takes, for each tensor on its
own, whichever of ``percentile`` and ``mse`` gives the lower quantization MSE on that tensor's
calibration data (intvit's definition; issue 16: on heavy-tailed inputs such as GELU's the
99.99-percentile clip can cost more error than the 8-bit grid itself).
"""
import numpy as np

from .errors import IntvitError
from .integer import check_int, clamp, signed_range, unsigned_range

PERCENTILE = 99.99
"""Percentile calibrator: the max-abs is taken at this percentile of ``|x|`` (FQ-ViT, PTQ4ViT
and others use 99.9..99.999)."""
MSE_GRID = 64
"""MSE calibrator: clipping ratios ``1, (G-1)/G, ..., 1/G`` of the max-abs are tried."""


def qmax(bits: int) -> int:
    """Largest code of a symmetric ``bits``-bit quantizer."""
    return (1 << (bits - 1)) - 1


def finite_samples(owner: str, samples) -> np.ndarray:
    """Calibration samples as a float64 array; empty or non-finite data is a one-line error."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        raise IntvitError(f"{owner}: no calibration data; give at least one image")
    if not np.all(np.isfinite(x)):
        raise IntvitError(f"{owner}: calibration data contains NaN or infinite values; check the "
                          "model and the images")
    return x


def fake_quantize(x: np.ndarray, scale: float, bits: int) -> np.ndarray:
    """Quantize-dequantize ``x`` (for choosing scales and for error figures, never run time)."""
    limit = qmax(bits)
    return np.clip(np.round(x / scale), -limit, limit) * scale


def quantization_mse(x: np.ndarray, scale: float, bits: int) -> float:
    """Mean squared error of quantize-dequantize ``x`` at ``scale`` (rounding and clipping)."""
    return float(np.mean((fake_quantize(x, scale, bits) - x) ** 2))


def minmax_scale(x: np.ndarray, bits: int) -> float:
    """``max|x| / qmax``: nothing clips."""
    return max(float(np.max(np.abs(x))), 1e-8) / qmax(bits)


def percentile_scale(x: np.ndarray, bits: int) -> float:
    """``percentile(|x|, 99.99) / qmax``: rare outliers clip."""
    return max(float(np.percentile(np.abs(x), PERCENTILE)), 1e-8) / qmax(bits)


def mse_scale(x: np.ndarray, bits: int) -> float:
    """The clipping of the max-abs (on a grid of :data:`MSE_GRID` ratios) that minimizes the
    quantization MSE of ``x``."""
    top = minmax_scale(x, bits)
    flat = x.reshape(-1)
    if flat.size > 200_000:  # a fixed, evenly spaced subsample keeps the search fast
        flat = flat[:: flat.size // 200_000]
    best, best_error = top, np.inf
    for step in range(MSE_GRID, 0, -1):
        scale = top * step / MSE_GRID
        error = quantization_mse(flat, scale, bits)
        if error < best_error:
            best, best_error = scale, error
    return best


PER_LAYER_CHOICES = ("percentile", "mse")
"""The clips the ``per-layer`` calibrator chooses between, in the order ties go."""


def per_layer_choice(x: np.ndarray, bits: int) -> tuple[str, float]:
    """``(name, scale)`` of the clip among :data:`PER_LAYER_CHOICES` with the lowest
    quantization MSE on all of ``x`` (a tie goes to the first)."""
    scales = {name: CALIBRATORS[name](x, bits) for name in PER_LAYER_CHOICES}
    name = min(PER_LAYER_CHOICES, key=lambda n: quantization_mse(x, scales[n], bits))
    return name, scales[name]


def per_layer_scale(x: np.ndarray, bits: int) -> float:
    """The scale of :func:`per_layer_choice`."""
    return per_layer_choice(x, bits)[1]


CALIBRATORS = {"minmax": minmax_scale, "percentile": percentile_scale, "mse": mse_scale,
               "per-layer": per_layer_scale}
"""Per-tensor activation calibrators by name."""


def activation_scale(owner: str, samples, bits: int, method: str) -> float:
    """The scale of a per-tensor ``bits``-bit activation quantizer from ``samples``."""
    check_int(owner, "bits", bits, 2, 16)
    if method not in CALIBRATORS:
        raise IntvitError(f"{owner}: unknown calibrator {method!r}; use one of "
                          f"{', '.join(CALIBRATORS)}")
    return CALIBRATORS[method](finite_samples(owner, samples), bits)


def weight_scales(owner: str, weight, bits: int) -> np.ndarray:
    """Per-output-channel (axis 0) max-abs scales of a weight tensor."""
    check_int(owner, "weight bits", bits, 2, 8)
    w = finite_samples(owner, weight)
    peak = np.max(np.abs(w.reshape(w.shape[0], -1)), axis=1)
    return np.maximum(peak, 1e-8) / qmax(bits)


def quantize(x, scale, bits: int) -> np.ndarray:
    """``clamp(round(x / scale))`` as int64 (``scale`` broadcasts: per channel on the last or
    first axis as the caller arranges). Build time only."""
    limit = qmax(bits)
    return np.clip(np.round(np.asarray(x, np.float64) / scale), -limit, limit).astype(np.int64)


def input_scale(config):
    """The real value of one input code of an operator config: per channel where the config
    has ``channel_scales`` (FQ-ViT's power-of-two factors), else ``in_scale``."""
    scales = getattr(config, "channel_scales", None)
    return scales if scales is not None else config.in_scale


def quantize_input(config, x) -> np.ndarray:
    """An operator config's input quantizer (build time: for scoring, vectors and figures):
    ``clamp(round(x / input_scale))`` over its input range."""
    lo, hi = signed_range(config.in_bits) if config.in_signed else unsigned_range(config.in_bits)
    scaled = np.asarray(x, np.float64) / input_scale(config)
    return clamp(np.round(scaled).astype(np.int64), lo, hi)

