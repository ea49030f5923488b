"""`intvit quantize`: a user checkpoint end to end, and one-line errors for bad input."""
import json

import numpy as np
import pytest

from intvit.golden_model.checkpoint import BUNDLED_WEIGHTS
from intvit.golden_model.dataset import load_splits
from intvit.cli import main


def test_user_checkpoint_with_its_own_calibration_images(tmp_path, capsys):
    images = tmp_path / "cal.npy"
    np.save(images, load_splits()["calibration"].images[:12].numpy() * 0.9)  # off the 1/8 grid
    out = tmp_path / "run"
    assert main(["quantize", "--model", str(BUNDLED_WEIGHTS), "--arch", "bundled",
                 "--calibration", str(images), "--rule", "all-ibert", "-o", str(out)]) == 0
    quant = json.loads((out / "quant.json").read_text())
    assert set(quant["assignment"].values()) == {"layernorm/ibert", "softmax/ibert",
                                                 "gelu/ibert"}
    assert quant["spec"]["image_scale"] == pytest.approx(0.9 / 127)
    assert quant["accuracy"]["stage3"] >= 0.9  # agreement with the float model
    assert "top-1 agreement" in capsys.readouterr().out


@pytest.mark.parametrize("make, words", [
    (lambda p: np.save(p, np.full((2, 1, 8, 8), np.nan, np.float32)), "finite"),
    (lambda p: np.save(p, np.zeros((2, 1, 16, 16), np.float32)), "shape"),
    (lambda p: np.save(p, np.zeros((0, 1, 8, 8), np.float32)), "no image"),
    (lambda p: p.write_bytes(b"junk"), "not a .npy"),
    (lambda p: np.save(p, np.zeros((2, 1, 8, 8), np.int64)), "dtype int64"),
    (lambda p: np.save(p, np.zeros((2, 3, 8, 8), np.float32)), "3 channels"),
    (lambda p: np.save(p, np.where(np.arange(128).reshape(2, 1, 8, 8) == 70, np.inf,
                                   0).astype(np.float32)), "first at index (1, 0, 0, 6)"),
])
def test_bad_calibration_images(make, words, tmp_path, capsys):
    images = tmp_path / "cal.npy"
    make(images)
    out = tmp_path / "run"
    assert main(["quantize", "--model", str(BUNDLED_WEIGHTS), "--calibration", str(images),
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
    assert not out.exists()


@pytest.mark.parametrize("argv, words", [
    (["--arch", "resnet50", "--model", "x.pth", "--calibration", "c.npy"], "architecture"),
    (["--model", "x.pth"], "--calibration"),
    (["--bits", "w3a3"], "bits"),
    (["--rule", "best"], "rule"),
    (["--weights", "1,1"], "three numbers"),
    (["--calibrator", "median"], "calibrator"),
    (["--method", "gptq"], "invalid choice"),  # argparse's own errors are one line too
    (["--method", "adfq", "--log-base", "3"], "--log-base"),
])
def test_bad_options(argv, words, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["quantize", *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
    assert not out.exists()


def test_adfq_method_end_to_end(tmp_path, capsys):
    """``--method adfq``: a short reconstruction, the report with the settings it ran."""
    out = tmp_path / "run"
    assert main(["quantize", "--method", "adfq", "--bits", "w6a6", "--components", "log2,slq,amo",
                 "--iterations", "1", "--log-base", "2", "-o", str(out)]) == 0
    result = json.loads((out / "adfq.json").read_text())
    assert (result["bits"], result["log_base"], result["iterations"]) == ("w6a6", "2", 1)
    assert result["components"] == ["slq", "log2", "amo"]
    assert result["calibration_images"] == 1024  # the paper's count, from the training split
    assert result["fidelity"]["logit_sqnr_db"] > 5
    assert "log base 2" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["--bits", "w8a8x"], "not supported"),
    (["--components", "poq,gptq"], "gptq"),
    (["--iterations", "0"], "iterations"),
    (["--model", "x.pth"], "bundled model only"),
])
def test_adfq_bad_options(argv, words, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["quantize", "--method", "adfq", *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
    assert not out.exists()


def write_images(path, count: int):
    np.save(path, np.random.default_rng(0).normal(size=(count, 1, 8, 8)).astype(np.float32))
    return str(path)


@pytest.mark.parametrize("extra, words", [
    (["--eval-count", "12"], "too few to hold out 12"),
    (["--eval", "bad"], "evaluation images"),
    (["--eval-count", "2", "--eval-labels", "labels"], "expected (2,)"),
    (["--eval", "good", "--eval-count", "2"], "use one"),
    (["--arch", "bundled", "--heads", "4"], "not both"),
    (["--softmax-bits", "17"], "8..16"),
    (["--calibration", "folder"], "Pillow cannot read"),
])
def test_bad_evaluation_split_and_checkpoint_options(extra, words, tmp_path, capsys):
    """Issue 15's bad input: too few images for the split, bad evaluation images or labels,
    contradictory options, a folder with an unreadable file: one line, exit 2, nothing written."""
    files = {"good": write_images(tmp_path / "good.npy", 4),
             "bad": str(tmp_path / "bad.npy"), "labels": str(tmp_path / "labels.npy"),
             "folder": str(tmp_path / "folder")}
    np.save(files["bad"], np.zeros((2, 1, 9, 9), np.float32))
    np.save(files["labels"], np.zeros(5, np.int64))
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.png").write_bytes(b"junk")
    argv = ["quantize", "--model", str(BUNDLED_WEIGHTS), "--calibration",
            write_images(tmp_path / "cal.npy", 12)] + [files.get(a, a) for a in extra]
    out = tmp_path / "run"
    assert main(argv + ["-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert not out.exists()
