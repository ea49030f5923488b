"""Images in (issue 15): ``.npy`` files and folders of image files, against independent
computations: real PNG/JPEG/BMP/WebP files written with Pillow, the expected normalized crop
computed by hand where the resize is the identity, torch's antialiased bicubic resize where it is
not, and every refusal a one-line :class:`IntvitError`."""
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from intvit.golden_model.errors import IntvitError
from intvit.golden_model.images import load_images, load_labels, split_images

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
"""timm's IMAGENET_DEFAULT_MEAN / _STD, retyped here as the independent reference."""
STEP = 0.5 / 255 / STD.min()
"""Half a grey level after normalization: the tolerance for values that went through a resize."""


def normalized(pixels_hwc):
    """``ToTensor`` + ``Normalize`` by hand: uint8 HWC -> float64 CHW."""
    return ((pixels_hwc / 255.0 - MEAN) / STD).transpose(2, 0, 1)


def save(folder, name, pixels, **options):
    """Write ``pixels`` (uint8, HxWx3 or HxW) as the image file ``folder/name``."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **options)
    return path


def refused(words, call, *args):
    """``call(*args)`` raises a one-line IntvitError containing every one of ``words``."""
    with pytest.raises(IntvitError) as caught:
        call(*args)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)
    return message


@pytest.mark.parametrize("height, width, top, left", [(9, 12, 0, 2), (12, 9, 2, 0)])
def test_folder_image_at_the_resize_size_is_cropped_and_normalized_as_by_hand(
        tmp_path, height, width, top, left):
    # size 8: the shorter side is resized to int(8 / 0.875) = 9, so a 9-pixel shorter side is
    # not resized; the 8x8 center crop starts at round(1 / 2) = 0 and round(4 / 2) = 2 (round
    # half to even, as torchvision's CenterCrop).
    pixels = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    save(tmp_path, "only.png", pixels)
    images = load_images(tmp_path, channels=3, size=8)
    assert images.shape == (1, 3, 8, 8) and images.dtype == np.float32
    expected = normalized(pixels[top:top + 8, left:left + 8].astype(np.float64))
    np.testing.assert_allclose(images[0], expected, rtol=0, atol=1e-5)


def test_grey_folder_uses_the_mean_of_the_imagenet_mean_and_std(tmp_path):
    pixels = np.random.default_rng(2).integers(0, 256, (9, 9), dtype=np.uint8)
    save(tmp_path, "grey.png", pixels)
    images = load_images(tmp_path, channels=1, size=8)
    expected = (pixels[:8, :8] / 255.0 - 0.449) / 0.226
    assert images.shape == (1, 1, 8, 8)
    np.testing.assert_allclose(images[0, 0], expected, rtol=0, atol=1e-5)


def test_colour_image_into_one_channel_is_its_pillow_luma(tmp_path):
    pixels = np.zeros((9, 9, 3), np.uint8)
    pixels[..., 0] = 255  # pure red: ITU-R 601-2 luma L = 299/1000 * 255 = 76.245 -> 76
    save(tmp_path, "red.png", pixels)
    images = load_images(tmp_path, channels=1, size=8)
    np.testing.assert_allclose(images, (76 / 255 - 0.449) / 0.226, rtol=0, atol=1e-5)


def test_crop_keeps_the_centre_regions_and_drops_the_outer_ones(tmp_path):
    # 36x72, size 16: resized to 18x36 (scale 1/2), cropped at rows 1..16, columns 10..25.
    # Original columns 0-15 green, 16-35 red, 36-55 blue, 56-71 yellow: resized, green ends at
    # column 7 and yellow starts at 28, outside the crop and outside the bicubic support (2
    # output pixels at scale 1/2); red fills crop columns 0-7, blue 8-15.
    colours = {"green": (0, 255, 0), "red": (255, 0, 0), "blue": (0, 0, 255),
               "yellow": (255, 255, 0)}
    pixels = np.zeros((36, 72, 3), np.uint8)
    for name, (start, stop) in {"green": (0, 16), "red": (16, 36), "blue": (36, 56),
                                "yellow": (56, 72)}.items():
        pixels[:, start:stop] = colours[name]
    save(tmp_path, "stripes.png", pixels)
    image = load_images(tmp_path, channels=3, size=16)[0]
    red, blue = (normalized(np.array(colours[c], float)[None, None])[:, 0, 0] for c in
                 ("red", "blue"))
    np.testing.assert_allclose(image[:, :, :6], np.broadcast_to(red[:, None, None], (3, 16, 6)),
                               rtol=0, atol=STEP)
    np.testing.assert_allclose(image[:, :, 10:], np.broadcast_to(blue[:, None, None], (3, 16, 6)),
                               rtol=0, atol=STEP)
    no_green = (0 - MEAN[1]) / STD[1]
    np.testing.assert_allclose(image[1], no_green, rtol=0, atol=STEP)  # nor yellow


@pytest.mark.parametrize("height, width, resized, top, left", [
    (40, 70, (18, 31), 1, 8),   # 18 * 70 / 40 = 31.5 -> 31; round(2 / 2), round(15 / 2) = 8
    (50, 29, (31, 18), 8, 1),   # 18 * 50 / 29 = 31.03 -> 31; round(15 / 2) = 8
])
def test_downscaled_image_matches_torch_antialiased_bicubic(tmp_path, height, width, resized,
                                                            top, left):
    # torch's antialiased bicubic follows Pillow's filter to within a grey level or two.
    pixels = np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8)
    save(tmp_path, "random.png", pixels)
    image = load_images(tmp_path, channels=3, size=16)[0]
    batch = torch.from_numpy(pixels).permute(2, 0, 1)[None].double()
    scaled = torch.nn.functional.interpolate(batch, size=resized, mode="bicubic", antialias=True,
                                             align_corners=False)
    scaled = scaled.clamp(0, 255).round()[0].permute(1, 2, 0).numpy()
    expected = normalized(scaled[top:top + 16, left:left + 16])
    assert np.abs(image - expected).max() <= 2.01 / 255 / STD.min()


def test_folder_is_read_in_relative_path_order_across_formats_and_sub_folders(tmp_path):
    # One uniform grey level a file; the order of the levels shows the order of the files.
    levels = {"c.png": 40, "b/1.BMP": 120, "a/2.jpg": 200, "a/0.webp": 80, "b/0.JPEG": 160}
    for name, level in levels.items():
        options = {"lossless": True} if name.endswith(".webp") else {}
        save(tmp_path, name, np.full((9, 9, 3), level, np.uint8), **options)
    for junk in ("README.txt", ".DS_Store", "a/._2.jpg", "b/notes.md"):
        (tmp_path / junk).write_bytes(b"not an image")
    images = load_images(tmp_path, channels=3, size=8)
    order = ["a/0.webp", "a/2.jpg", "b/0.JPEG", "b/1.BMP", "c.png"]
    expected = np.stack([normalized(np.full((8, 8, 3), float(levels[n]))) for n in order])
    assert images.shape == (5, 3, 8, 8)
    np.testing.assert_allclose(images, expected, rtol=0, atol=3 * STEP)  # JPEG is lossy


def test_npy_round_trip_and_folder_then_npy_agree(tmp_path):
    floats = np.random.default_rng(4).normal(size=(3, 3, 8, 8))
    np.save(tmp_path / "x.npy", floats)
    loaded = load_images(tmp_path / "x.npy", channels=3, size=8)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, floats.astype(np.float32))
    folder = tmp_path / "folder"
    save(folder, "a.png", np.random.default_rng(5).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    from_folder = load_images(folder, channels=3, size=8)
    np.save(tmp_path / "y.npy", from_folder)
    np.testing.assert_array_equal(load_images(tmp_path / "y.npy", 3, 8), from_folder)


@pytest.mark.parametrize("array, words", [
    (np.zeros((3, 8, 8), np.float32), ["3 dimensions", "(N, 3, 8, 8)"]),
    (np.zeros((2, 1, 8, 8), np.float32), ["1 channels", "takes 3"]),
    (np.zeros((2, 3, 9, 9), np.float32), ["9x9 pixels", "takes 8x8"]),
    (np.zeros((2, 3, 8, 8), np.int64), ["dtype int64", "floats"]),
    (np.zeros((2, 3, 8, 8), bool), ["dtype bool", "floats"]),
    (np.zeros((0, 3, 8, 8), np.float32), ["no image"]),
])
def test_bad_npy_arrays_are_refused(tmp_path, array, words):
    np.save(tmp_path / "x.npy", array)
    refused(words, load_images, tmp_path / "x.npy", 3, 8)


def test_nan_and_inf_are_counted_and_the_first_is_named(tmp_path):
    array = np.zeros((3, 3, 8, 8), np.float32)
    array[2, 0, 0, 0] = np.inf
    array[1, 0, 2, 3] = np.nan
    np.save(tmp_path / "x.npy", array)
    refused(["2 NaN or infinite", "(1, 0, 2, 3)"], load_images, tmp_path / "x.npy", 3, 8)
    overflow = np.zeros((2, 3, 8, 8))
    overflow[1, 2, 7, 0] = 1e300  # finite in float64, infinite in float32
    np.save(tmp_path / "y.npy", overflow)
    refused(["1 NaN or infinite", "(1, 2, 7, 0)"], load_images, tmp_path / "y.npy", 3, 8)


def test_archives_pickles_and_other_files_are_refused(tmp_path):
    np.savez(tmp_path / "x.npz", images=np.zeros((1, 3, 8, 8), np.float32))
    refused(["zip archive", ".npy"], load_images, tmp_path / "x.npz", 3, 8)
    torch.save(torch.zeros(1, 3, 8, 8), tmp_path / "x.pth")
    refused(["zip archive", ".npy"], load_images, tmp_path / "x.pth", 3, 8)
    (tmp_path / "zip.npy").write_bytes((tmp_path / "x.npz").read_bytes())
    refused(["zip archive", "numpy.save"], load_images, tmp_path / "zip.npy", 3, 8)
    np.save(tmp_path / "objects.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    refused(["not a .npy array of numbers", "numpy.save"], load_images,
            tmp_path / "objects.npy", 3, 8)
    (tmp_path / "pickle.npy").write_bytes(pickle.dumps([1.0, 2.0]))
    refused(["not a .npy array of numbers", "pickled"], load_images,
            tmp_path / "pickle.npy", 3, 8)
    (tmp_path / "notes.txt").write_text("images\n")
    refused(["a .txt file", ".npy file", "folder of jpg/jpeg/png/bmp/webp"], load_images,
            tmp_path / "notes.txt", 3, 8)
    image = save(tmp_path, "one.png", np.zeros((9, 9, 3), np.uint8))
    refused(["single image file", "folder"], load_images, image, 3, 8)
    refused(["do not exist", ".npy file", "folder"], load_images, tmp_path / "absent", 3, 8)


def test_bad_folders_are_refused_naming_the_file(tmp_path):
    (tmp_path / "README.txt").write_text("no images here\n")
    refused(["no image file", "sub-folders"], load_images, tmp_path, 3, 8, "evaluation images")
    save(tmp_path, "sub/good.png", np.zeros((9, 9, 3), np.uint8))
    refused(["1 (grey) or 3 (RGB)", "takes 2", ".npy"], load_images, tmp_path, 2, 8)
    (tmp_path / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG")
    message = refused(["Pillow cannot read", "broken.png", "replace or remove"], load_images,
                      tmp_path, 3, 8, "evaluation images")
    assert message.startswith("evaluation images:")
    (tmp_path / "sub" / "broken.png").unlink()
    good = (tmp_path / "sub" / "good.png").read_bytes()
    (tmp_path / "sub" / "truncated.png").write_bytes(good[:len(good) // 2])
    refused(["Pillow cannot read", "truncated.png"], load_images, tmp_path, 3, 8)


def test_labels_are_loaded_and_bad_labels_refused(tmp_path):
    np.save(tmp_path / "ok.npy", np.array([3, 0, 7], np.int32))
    labels = load_labels(tmp_path / "ok.npy", 3)
    assert labels.dtype == np.int64 and labels.tolist() == [3, 0, 7]
    refused(["(3,)", "expected (4,)"], load_labels, tmp_path / "ok.npy", 4)
    np.save(tmp_path / "2d.npy", np.zeros((3, 1), np.int64))
    refused(["(3, 1)", "expected (3,)"], load_labels, tmp_path / "2d.npy", 3)
    np.save(tmp_path / "float.npy", np.array([1.0, 2.0, 3.0]))
    refused(["float64", "not integers"], load_labels, tmp_path / "float.npy", 3)
    np.save(tmp_path / "bool.npy", np.array([True, False, True]))
    refused(["bool", "not integers"], load_labels, tmp_path / "bool.npy", 3)
    np.save(tmp_path / "negative.npy", np.array([1, -1, 2, -5]))
    refused(["2 negative", "first at index 1"], load_labels, tmp_path / "negative.npy", 4)
    np.savez(tmp_path / "x.npz", labels=np.arange(3))
    (tmp_path / "zip.npy").write_bytes((tmp_path / "x.npz").read_bytes())
    refused(["zip archive"], load_labels, tmp_path / "zip.npy", 3)
    refused(["not an existing .npy file", "3 non-negative integer"], load_labels,
            tmp_path / "absent.npy", 3)
    refused(["not an existing .npy file"], load_labels, tmp_path / "x.npz", 3)


def test_split_holds_out_the_last_images():
    images = np.arange(5)
    calibration, evaluation = split_images(images, 2)
    assert calibration.tolist() == [0, 1, 2] and evaluation.tolist() == [3, 4]
    calibration, evaluation = split_images(images, 0)
    assert calibration.tolist() == [0, 1, 2, 3, 4] and evaluation.tolist() == []
    calibration, evaluation = split_images(images, 4)
    assert calibration.tolist() == [0] and evaluation.tolist() == [1, 2, 3, 4]
    refused(["5 images are too few", "hold out 5"], split_images, images, 5)
    refused(["non-negative integer", "-1"], split_images, images, -1)
