"""`intvit quantize --model PATH` on a timm Swin checkpoint (issue 19): the fixture timm wrote
(tests/fixtures/checkpoints/swin_tiny.pt) through the CLI, checked against timm's own logits,
and one-line errors for bad Swin input."""
import json

import numpy as np
import pytest
import torch

from intvit.cli import main
from intvit.golden_model.checkpoint import BUNDLED_WEIGHTS, load_checkpoint
from intvit.golden_model.quantfile import load_run
from intvit.golden_model.swin import SwinConfig, SwinTransformer
from checkpoint_fixtures import ATOL, FIXTURES, float_logits, library_io

SWIN = FIXTURES / "swin_tiny.pt"
IMG_SIZE = 28
"""The fixture's image size (timm's constructor argument; no Swin weight records it)."""


def test_loader_tells_a_swin_from_its_keys():
    """The one entry point gives a Swin whose float logits are timm's (the stored reference)."""
    model = load_checkpoint(SWIN, img_size=IMG_SIZE)
    assert isinstance(model, SwinTransformer)
    inputs, logits = library_io("swin_tiny")
    np.testing.assert_allclose(float_logits(model, inputs), logits, rtol=0, atol=ATOL)


def test_swin_checkpoint_through_the_cli(tmp_path, capsys):
    """Random calibration images; timm's 4 reference inputs as evaluation images, labelled by
    timm's own top-1: the float model must score 100 %, the integer model stay close to it."""
    inputs, logits = library_io("swin_tiny")
    files = {name: tmp_path / f"{name}.npy" for name in ("calibration", "eval", "labels")}
    np.save(files["calibration"], np.random.default_rng(0).standard_normal(
        (16, 3, IMG_SIZE, IMG_SIZE)).astype(np.float32))
    np.save(files["eval"], inputs.numpy())
    np.save(files["labels"], logits.argmax(-1))
    out = tmp_path / "run"
    assert main(["quantize", "--model", str(SWIN), "--img-size", str(IMG_SIZE),
                 "--calibration", str(files["calibration"]), "--eval", str(files["eval"]),
                 "--eval-labels", str(files["labels"]), "--score-images", "2",
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "evaluation accuracy: float 1.0000" in printed
    assert "fidelity to float on 4 images" in printed
    quant = json.loads((out / "quant.json").read_text())
    assert quant["model"] == str(SWIN)
    assert quant["accuracy"]["float"] == 1.0 and quant["accuracy"]["stage3"] >= 0.75
    assert quant["fidelity"]["logit_sqnr_db"] > 20 and quant["fidelity"]["agreement"] >= 0.75
    assert "layers.0.blocks.1.attn.softmax" in quant["assignment"]  # the shifted, masked block
    _, qmodel, codes = load_run(out / "quant.json")  # what the later stages read
    assert codes.shape == (4, 3, IMG_SIZE, IMG_SIZE)
    integer = qmodel.forward(codes) * qmodel.scales["logits"]
    assert np.mean(integer.argmax(-1) == logits.argmax(-1)) == quant["accuracy"]["stage3"]
    assert sqnr_db(logits, integer) > 20  # against timm's float logits


def sqnr_db(reference: np.ndarray, approximation: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference ** 2) / np.sum((approximation - reference) ** 2)))


def window12(path):
    """A checkpoint of ``swin_tiny_patch4_window12_384``'s shapes: Swin-T's but for the bias
    tables, (2 * 12 - 1)**2 rows. Each tensor is one stored zero, expanded (a small file)."""
    config = SwinConfig(img_size=384, patch_size=4, in_chans=3, num_classes=1000, embed_dim=96,
                        depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=12)
    with torch.device("meta"):  # shapes only
        state = SwinTransformer(config).state_dict()
    torch.save({key: torch.zeros(1).expand(value.shape) for key, value in state.items()}, path)


def truncated(path):
    data = SWIN.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def foreign(path):
    torch.save({"encoder.weight": torch.zeros(2, 2)}, path)


@pytest.mark.parametrize("make, extra, words", [
    (window12, ["--arch", "swin_tiny_patch4_window7_224"], "a table for windows of 12, but "
     "stage 0 uses windows of 7"),
    (None, ["--img-size", "30"], "img_size 30 is not a multiple of window_size x patch_size"),
    (truncated, ["--img-size", "28"], "cannot read checkpoint"),
    (foreign, [], "or a timm Swin (patch_embed.proj.weight, layers.S.blocks.N.attn"),
    (None, [], "give it (--img-size N"),
    (None, ["--img-size", "28", "--heads", "2"], "leave out the heads (--heads)"),
    (None, ["--arch", "deit_tiny_patch16_224"], "is a timm Swin, but the architecture given"),
    (None, ["--arch", "swin_tiny_patch4_window7_224", "--img-size", "28"], "not both"),
    (BUNDLED_WEIGHTS, ["--img-size", "8"], "position embedding sets its image size"),
    (BUNDLED_WEIGHTS, ["--arch", "swin_tiny_patch4_window7_224"], "is a ViT, but the "
     "architecture given"),
])
def test_bad_swin_input(make, extra, words, tmp_path, capsys):
    """One line, exit 2, nothing written into -o."""
    calibration = tmp_path / "cal.npy"
    np.save(calibration, np.zeros((4, 3, IMG_SIZE, IMG_SIZE), np.float32))
    checkpoint = tmp_path / "bad.pt" if callable(make) else make or SWIN
    if callable(make):
        make(checkpoint)
    out = tmp_path / "run"
    assert main(["quantize", "--model", str(checkpoint), "--calibration",
                 str(calibration), *extra, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert not out.exists()


def test_adfq_refuses_a_swin_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["quantize", "--method", "adfq", "--model", str(SWIN), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bundled model only" in err
    assert not out.exists()


def test_demo_with_a_bad_swin_input_leaves_no_run_directory(tmp_path, capsys):
    """``intvit demo`` on a Swin checkpoint whose image size is not a multiple of window x
    patch: one line, exit 2, and the new --out directory is not left behind."""
    calibration = tmp_path / "cal.npy"
    np.save(calibration, np.zeros((4, 3, IMG_SIZE, IMG_SIZE), np.float32))
    out = tmp_path / "demo"
    assert main(["demo", "--model", str(SWIN), "--calibration", str(calibration),
                 "--img-size", "30", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "multiple" in err, err
    assert not out.exists()
