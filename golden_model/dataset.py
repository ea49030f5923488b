"""Real handwritten digits for the bundled model: scikit-learn's ``load_digits`` (UCI optical
recognition of handwritten digits, 1797 images, 8x8 pixels, integer values 0..16; the data ships
inside scikit-learn, no download).

Preprocessing: images stay 8x8 (no resampling), one channel; a pixel ``p`` becomes
``x = (p - 8) / 8`` in ``[-1, 1]``. The value is a multiple of 1/8, so an int8 input quantizer
with scale 1/8 and zero point 0 represents every image exactly (``q = p - 8``): the integer model
sees the same image as the float model. With 2x2 patches this gives 16 patches + class token.

Split: a permutation of all images drawn from ``numpy.random.default_rng(seed)``, cut into
train / calibration / test of :data:`SPLIT_SIZES` images.
"""
from dataclasses import dataclass

import numpy as np
import torch

PIXEL_MAX = 16
"""``load_digits`` pixels are integers in ``0..PIXEL_MAX`` (UCI dataset description)."""
PIXEL_OFFSET = 8
PIXEL_STEP = 8
"""``x = (p - PIXEL_OFFSET) / PIXEL_STEP`` maps ``0..16`` onto ``[-1, 1]`` in steps of 1/8."""
SPLIT_SEED = 0
SPLIT_SIZES = {"train": 1297, "calibration": 100, "test": 400}
"""Images per split; they add up to the 1797 images of the dataset."""


@dataclass(frozen=True)
class Split:
    """One split: ``images`` float32 ``(n, 1, 8, 8)`` normalized, ``labels`` int64 ``(n,)``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def normalize(pixels: np.ndarray) -> torch.Tensor:
    """``(p - 8) / 8`` as float32, with a channel axis: ``(n, 8, 8) -> (n, 1, 8, 8)``."""
    pixels = np.asarray(pixels, dtype=np.float32)
    return torch.from_numpy((pixels - PIXEL_OFFSET) / PIXEL_STEP).unsqueeze(1)


def split_indices(seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """The image indices of each split (disjoint, covering the dataset)."""
    order = np.random.default_rng(seed).permutation(sum(SPLIT_SIZES.values()))
    indices, start = {}, 0
    for name, size in SPLIT_SIZES.items():
        indices[name] = order[start:start + size]
        start += size
    return indices


def load_splits(seed: int = SPLIT_SEED) -> dict[str, Split]:
    """``{"train": Split, "calibration": Split, "test": Split}`` of the digits dataset."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = normalize(digits.images)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    return {name: Split(images[index], labels[index])
            for name, index in split_indices(seed).items()}
