"""Activation statistics gathered batch by batch, in memory that does not grow with the number of
calibration images (build time only).

The integer model is calibrated on its layers' activations (:mod:`intvit.golden_model.qvit`):
clips (the percentile and MSE calibrators), the non-linear configs' data-aware fits, the
residual and logit ranges. Holding every activation of every image costs about 270 MB per
224 x 224 DeiT-Tiny image; instead each tap keeps

- its exact running ``max |x|`` (the min-max calibrator, the residual and logit ranges), and
- a uniform sample of its rows (the last axis), without replacement, of at most
  :data:`SAMPLE_VALUES` values: *bottom-k sampling* (each row draws a key from a seeded
  generator in arrival order and the ``k`` rows of smallest key are kept), so the sample does not
  depend on how the images are batched, and a tap with no more than ``k`` rows keeps all of them
  in arrival order, i.e. small calibration sets (the bundled models') are calibrated on exactly
  their activations. The percentile and MSE clip searches and the data-aware fits run on the
  sample (intvit's choice; a 2**20-value sample puts about 100 values above the 99.99th
  percentile).
"""
import numpy as np
import torch

from . import swin
from .errors import IntvitError

SAMPLE_VALUES = 1 << 20
"""At most this many values of each tap are kept, in the dtype they come in (the float model's
taps are float32: 4 MiB; the integer model's dequantized taps float64: 8 MiB). The bundled
models' largest tap on their 100 calibration images (mnist's GELU input, 960,000 values) fits
whole."""
SAMPLE_SEED = 0
TAP_BUDGET_BYTES = 1 << 30
"""One batch's recorded activations (float32 taps and their float64 copies) stay below this."""


class TapSample:
    """The running ``max |x|`` and the bottom-k row sample of one tap."""

    def __init__(self, name: str, seed: int = SAMPLE_SEED):
        self.name = name
        self.max_abs = 0.0
        self.rows_seen = 0
        self._rng = np.random.default_rng(seed)
        self._keys = np.empty(0)
        self._order = np.empty(0, np.int64)
        self._rows = None
        self._sample = None

    def add(self, values) -> None:
        """Take one batch of the tap's values (any shape; rows are the last axis)."""
        self._sample = None
        x = np.asarray(values)
        x = x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise IntvitError(f"calibration of {self.name}: the activations contain NaN or "
                              "infinite values; check the model and the images")
        rows = x.reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1)
        if rows.size:
            self.max_abs = max(self.max_abs, float(np.max(np.abs(rows))))
        keys = self._rng.random(len(rows))
        order = np.arange(self.rows_seen, self.rows_seen + len(rows))
        self.rows_seen += len(rows)
        capacity = max(1, SAMPLE_VALUES // rows.shape[1])
        if self._rows is not None and len(self._keys) >= capacity:
            wanted = keys < self._keys.max()  # only rows that can enter the sample are copied
            rows, keys, order = rows[wanted], keys[wanted], order[wanted]
        kept = rows if self._rows is None else np.concatenate([self._rows, rows])
        keys = np.concatenate([self._keys, keys])
        order = np.concatenate([self._order, order])
        if len(keys) > capacity:
            best = np.argpartition(keys, capacity - 1)[:capacity]
            kept, keys, order = kept[best], keys[best], order[best]
        self._rows, self._keys, self._order = kept, keys, order

    def sample(self) -> np.ndarray:
        """The kept rows in arrival order, float64 ``(rows, row length)``: one array until the
        next :meth:`add` (so that callers may hold it by identity)."""
        if self._rows is None or not len(self._rows):
            raise IntvitError(f"calibration of {self.name}: no activations recorded; give at "
                              "least one image")
        if self._sample is None:
            self._sample = self._rows[np.argsort(self._order, kind="stable")].astype(np.float64)
        return self._sample


class TapStatistics:
    """:class:`TapSample` per tap name: ``stats.sample(name)`` and ``stats.max_abs(name)``."""

    def __init__(self, names=None):
        self.names = None if names is None else set(names)
        self.taps: dict[str, TapSample] = {}

    def add(self, taps: dict) -> None:
        """One batch's taps (name -> array or tensor); names outside ``names`` are ignored."""
        for name, value in taps.items():
            if self.names is not None and name not in self.names:
                continue
            if torch.is_tensor(value):
                value = value.detach().float().numpy()
            self.taps.setdefault(name, TapSample(name)).add(value)

    def _tap(self, name: str) -> TapSample:
        if name not in self.taps:
            raise IntvitError(f"calibration of {name}: no activations recorded for this layer")
        return self.taps[name]

    def sample(self, name: str) -> np.ndarray:
        return self._tap(name).sample()

    def max_abs(self, name: str) -> float:
        return self._tap(name).max_abs

    @classmethod
    def from_arrays(cls, taps: dict) -> "TapStatistics":
        """Statistics of taps already held in memory (every image as one batch)."""
        stats = cls()
        stats.add(taps)
        return stats


def tap_values_per_image(config) -> int:
    """How many activation values one image records over all taps of the float model."""
    if isinstance(config, swin.SwinConfig):
        return swin.tap_values_per_image(config)
    n, d, m, h = config.num_tokens, config.embed_dim, config.mlp_hidden, config.num_heads
    per_block = 8 * n * d + 2 * h * n * n + 2 * n * m
    return config.in_chans * config.img_size ** 2 + config.depth * per_block + 2 * n * d


def batch_size(config, requested: int | None = None) -> int:
    """Images per batch: ``requested``, or as many as keep one batch's taps (float32 plus a
    float64 copy, 12 bytes a value) within :data:`TAP_BUDGET_BYTES`."""
    if requested is not None:
        return requested
    return max(1, TAP_BUDGET_BYTES // (12 * tap_values_per_image(config)))


def batches(count: int, size: int):
    """``(start, stop)`` of consecutive batches of ``size`` over ``count`` items."""
    for start in range(0, count, size):
        yield start, min(start + size, count)


def float_statistics(model, images, names=None, batch: int | None = None,
                     progress=None) -> TapStatistics:
    """Statistics of the float model's taps (and ``"logits"``) over ``images``, batch by batch;
    ``progress(done, total)`` after each batch."""
    stats = TapStatistics(names)
    size = batch_size(model.config, batch)
    model.eval()
    if progress:
        progress(0, len(images))
    with torch.no_grad():
        for start, stop in batches(len(images), size):
            taps: dict = {}
            logits = model(images[start:stop], taps)
            taps["logits"] = logits
            stats.add(taps)
            if progress:
                progress(stop, len(images))
    return stats
