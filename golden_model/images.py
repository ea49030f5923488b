"""Images in: float images ``(N, C, S, S)`` for calibration and evaluation, and their labels.

Two forms are accepted:

* a ``.npy`` file (as ``numpy.save`` writes it) of float images already normalized as the model
  expects, shape ``(N, channels, size, size)``;
* a folder of image files (:data:`IMAGE_SUFFIXES`, sub-folders included, in the order of their
  paths relative to the folder), each transformed as timm's default evaluation transform for
  ViT/DeiT does (:func:`eval_transform`).

The constants are timm's defaults (``timm/data/constants.py``; ``resolve_data_config`` in
``timm/data/config.py`` falls back to them and to bicubic interpolation when a model's config does
not say otherwise, and ``transforms_imagenet_eval`` in ``timm/data/transforms_factory.py`` resizes
the shorter side to ``floor(size / crop_pct)``, then center crops ``size x size``, then applies
``ToTensor`` (``/ 255``) and ``Normalize(mean, std)``). Every problem is a one-line
:class:`IntvitError` that says what was wrong and what to do.
"""
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import IntvitError

DEFAULT_CROP_PCT = 0.875
"""timm's ``DEFAULT_CROP_PCT``: the center crop keeps this fraction of the resized shorter side."""
IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)
"""timm's ``IMAGENET_DEFAULT_MEAN`` / ``IMAGENET_DEFAULT_STD`` (RGB, on pixels scaled to [0, 1]).
For one (grey) channel intvit uses the mean of the three, 0.449 and 0.226 (timm has no grey
default)."""
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
"""Files of a folder that are read as images (case-insensitive); other files are ignored."""


def load_images(path, channels: int, size: int, what: str = "calibration images") -> np.ndarray:
    """Float32 images ``(N, channels, size, size)`` from a ``.npy`` file or a folder of images.

    ``what`` names the images in error messages."""
    path = Path(path)
    if path.is_dir():
        return load_image_folder(path, channels, size, what)
    if path.is_file() and path.suffix.lower() == ".npy":
        return load_image_array(path, channels, size, what)
    accepted = (f"give a .npy file of float images (N, {channels}, {size}, {size}) or a folder "
                f"of {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} images")
    if not path.exists():
        raise IntvitError(f"{what} {path} do not exist; {accepted}")
    raise IntvitError(f"{what} {path} are {file_kind(path)}, not a .npy file or a folder of "
                      f"images; {accepted}")


def file_kind(path: Path) -> str:
    """How an unaccepted file is described in an error message."""
    if zipfile.is_zipfile(path):
        return "a zip archive (.npz or a torch file)"
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return "a single image file (put it in a folder)"
    return f"a {path.suffix or 'suffix-less'} file"


def open_npy(path: Path, what: str, hint: str) -> np.ndarray:
    """The array of a ``.npy`` file, read without unpickling; an unreadable file, a pickle or
    object array, or a zip archive (``.npz``, a torch file) is a one-line error."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise IntvitError(f"{what} {path} are not a .npy array of numbers "
                          f"({one_line(error)}); {hint}") from None
    if not isinstance(array, np.ndarray):  # np.load opens any zip (.npz, .pth) as an archive
        array.close()
        raise IntvitError(f"{what} {path} are a zip archive (.npz or a torch file), not a .npy "
                          f"array; {hint}")
    return array


def load_image_array(path: Path, channels: int, size: int, what: str) -> np.ndarray:
    """Checked float images from a ``.npy`` file, as float32."""
    expected = (channels, size, size)
    hint = f"save a float array of shape (N, {channels}, {size}, {size}) with numpy.save"
    images = open_npy(path, what, hint)
    if not np.issubdtype(images.dtype, np.floating):
        raise IntvitError(f"{what} {path} have dtype {images.dtype}; they must be floats "
                          f"already normalized as the model expects; {hint}")
    if images.ndim != 4:
        raise IntvitError(f"{what} {path} have {images.ndim} dimensions {images.shape}; {hint}")
    if images.shape[1] != channels:
        raise IntvitError(f"{what} {path} have {images.shape[1]} channels {images.shape}; the "
                          f"model takes {channels}; {hint}")
    if images.shape[1:] != expected:
        raise IntvitError(f"{what} {path} are {images.shape[2]}x{images.shape[3]} pixels "
                          f"{images.shape}; the model takes {size}x{size}; {hint}")
    if len(images) == 0:
        raise IntvitError(f"{what} {path} hold no image; {hint} with at least one image")
    with np.errstate(over="ignore"):  # a float64 beyond float32 becomes inf, reported next
        images = images.astype(np.float32)
    check_finite(images, f"{what} {path}")
    return images


def check_finite(images: np.ndarray, where: str) -> None:
    """A NaN or infinite value (in float32) is a one-line error with the count and the first."""
    bad = ~np.isfinite(images)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise IntvitError(f"{where} hold {int(bad.sum())} NaN or infinite (in float32) values, "
                          f"the first at index {first}; fix or drop those images")


def image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` (sub-folders too; hidden files such as macOS ``._*``
    skipped), sorted by their path relative to ``folder``."""
    files = [p for p in folder.rglob("*")
             if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def load_image_folder(folder: Path, channels: int, size: int, what: str) -> np.ndarray:
    """The images of ``folder`` through :func:`eval_transform`, filled one by one into a
    preallocated float32 array ``(N, channels, size, size)``."""
    if channels not in (1, 3):
        raise IntvitError(f"{what} {folder}: a folder of images gives 1 (grey) or 3 (RGB) "
                          f"channels, the model takes {channels}; give a .npy file of float "
                          f"images (N, {channels}, {size}, {size})")
    files = image_files(folder)
    if not files:
        raise IntvitError(f"{what} {folder} hold no image file "
                          f"({', '.join(IMAGE_SUFFIXES)}, sub-folders included); add images or "
                          "give a .npy file")
    images = np.empty((len(files), channels, size, size), dtype=np.float32)
    for index, file in enumerate(files):
        images[index] = eval_transform(read_image(file, "L" if channels == 1 else "RGB", what),
                                       size)
    return images


def read_image(file: Path, mode: str, what: str) -> Image.Image:
    """The image in ``file`` converted to Pillow ``mode`` ("RGB" or "L"), as timm's dataset
    readers do; a file Pillow cannot read is a one-line error naming it."""
    try:
        with Image.open(file) as image:
            return image.convert(mode)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise IntvitError(f"{what}: Pillow cannot read {file} ({one_line(error)}); replace or "
                          "remove that file") from None


def eval_transform(image: Image.Image, size: int) -> np.ndarray:
    """timm's default evaluation transform, float32 ``(C, size, size)``: bicubic resize of the
    shorter side to ``int(size / DEFAULT_CROP_PCT)``, center crop ``size x size``, scale to
    [0, 1], normalize with the ImageNet mean and std (their average for one channel)."""
    cropped = center_crop(resize_shorter_side(image, int(size / DEFAULT_CROP_PCT)), size)
    pixels = np.asarray(cropped, dtype=np.float32) / np.float32(255)
    if pixels.ndim == 2:
        chw = pixels[None]
        mean, std = np.mean(IMAGENET_DEFAULT_MEAN), np.mean(IMAGENET_DEFAULT_STD)
    else:
        chw = pixels.transpose(2, 0, 1)
        mean, std = np.array(IMAGENET_DEFAULT_MEAN), np.array(IMAGENET_DEFAULT_STD)
    shape = (-1, 1, 1)
    return (chw - np.float32(mean).reshape(shape)) / np.float32(std).reshape(shape)


def resize_shorter_side(image: Image.Image, short: int) -> Image.Image:
    """Bicubic resize to shorter side ``short``, the longer side ``int(short * long / shorter)``
    (torchvision's ``Resize(int)``, which timm's eval transform uses). Pillow returns a copy
    when the size is unchanged."""
    width, height = image.size
    if width <= height:
        new_size = (short, int(short * height / width))
    else:
        new_size = (int(short * width / height), short)
    return image.resize(new_size, Image.Resampling.BICUBIC)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The central ``size x size`` pixels, offsets ``round((side - size) / 2)`` as torchvision's
    ``CenterCrop`` computes them (Python's round: halves go to the even number)."""
    width, height = image.size
    top, left = round((height - size) / 2), round((width - size) / 2)
    return image.crop((left, top, left + size, top + size))


def load_labels(path, count: int) -> np.ndarray:
    """Integer class indices ``(count,)`` (int64) from a ``.npy`` file, one per image; a missing
    file, a wrong length, a non-integer dtype or a negative index is a one-line error."""
    path = Path(path)
    what = "labels"
    hint = f"save {count} non-negative integer class indices, shape ({count},), with numpy.save"
    if not path.is_file() or path.suffix.lower() != ".npy":
        raise IntvitError(f"{what} {path} are not an existing .npy file; {hint}")
    labels = open_npy(path, what, hint)
    if not np.issubdtype(labels.dtype, np.integer):
        raise IntvitError(f"{what} {path} have dtype {labels.dtype}, not integers; {hint}")
    if labels.shape != (count,):
        raise IntvitError(f"{what} {path} have shape {labels.shape}, expected ({count},) for "
                          f"{count} images; {hint}")
    negative = np.flatnonzero(labels < 0)
    if negative.size:
        raise IntvitError(f"{what} {path} hold {negative.size} negative class indices, the "
                          f"first at index {negative[0]}; {hint}")
    return labels.astype(np.int64)


def split_images(images: np.ndarray, eval_count: int) -> tuple[np.ndarray, np.ndarray]:
    """``(calibration, evaluation)``: the last ``eval_count`` images are held out for evaluation
    and the rest calibrate; at least one image must remain for calibration."""
    if isinstance(eval_count, bool) or not isinstance(eval_count, (int, np.integer)) \
            or eval_count < 0:
        raise IntvitError(f"evaluation image count must be a non-negative integer "
                          f"(got {eval_count!r})")
    if len(images) < eval_count + 1:
        raise IntvitError(f"{len(images)} images are too few to hold out {eval_count} for "
                          f"evaluation and keep at least one for calibration; give more images "
                          f"or evaluate on fewer")
    cut = len(images) - eval_count
    return images[:cut], images[cut:]


def one_line(error: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(error).split())
