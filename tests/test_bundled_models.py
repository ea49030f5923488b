"""The bundled models, ``digits`` (alias ``bundled``), ``mnist`` and the Swin ``mnist-swin``
(trained on mnist): they load, their float accuracy on the test split is the one their metadata
states (recomputed here), their splits are deterministic and disjoint and their images exact int8
codes, and every command that runs on a bundled model picks one by ``--model`` and remembers it
in quant.json."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from intvit.cli import main
from intvit.golden_model.checkpoint import (BUNDLED_NAMES, BUNDLED_STEMS, DATA, bundled_name,
                                            load_bundled)
from intvit.golden_model.dataset import dataset, load_splits, split_indices
from intvit.golden_model.errors import IntvitError
from intvit.golden_model.files import write_text_atomic
from intvit.golden_model.qvit import QuantSpec, default_assignment, quantize_images

MODELS = tuple(BUNDLED_STEMS)
MAX_WEIGHT_BYTES = 4_000_000


@pytest.fixture(scope="module", params=MODELS)
def bundled(request):
    """``(name, model, config, meta, splits)`` of one bundled model."""
    model, config, meta = load_bundled(request.param)
    return request.param, model, config, meta, load_splits(meta["split_seed"], request.param)


def test_names_and_alias():
    assert MODELS == ("digits", "mnist", "mnist-swin")
    assert set(BUNDLED_NAMES) == {"digits", "mnist", "mnist-swin", "bundled"}
    assert dataset("mnist-swin") is dataset("mnist")
    assert bundled_name("bundled") == "digits" and dataset("bundled") is dataset("digits")
    digits, alias = load_bundled("digits")[0], load_bundled("bundled")[0]
    assert all(torch.equal(a, b) for a, b in zip(digits.state_dict().values(),
                                                 alias.state_dict().values()))
    with pytest.raises(IntvitError, match="'fashion' is not a bundled model"):
        load_bundled("fashion")


def test_models_load_with_their_configs(bundled):
    name, model, config, meta, _ = bundled
    assert model.config == config and config.to_dict() == meta["config"]
    assert sum(p.numel() for p in model.parameters()) == meta["parameters"]
    assert (DATA / f"{BUNDLED_STEMS[name]}.pt").stat().st_size < MAX_WEIGHT_BYTES


def test_mnist_model_is_deeper_and_wider_than_digits():
    digits, mnist = load_bundled("digits")[1], load_bundled("mnist")[1]
    assert (mnist.img_size, mnist.patch_size, mnist.num_tokens) == (28, 4, 50)
    assert mnist.depth > digits.depth and mnist.embed_dim > digits.embed_dim
    assert mnist.mlp_ratio == digits.mlp_ratio


def test_float_accuracy_is_the_metadata_figure(bundled):
    """Recomputed on the test split; the metadata's figure is a count over its images."""
    _, model, _, meta, splits = bundled
    test = splits["test"]
    with torch.no_grad():
        correct = int((model(test.images).argmax(-1) == test.labels).sum())
    assert correct == round(meta["float_accuracy"]["test"] * len(test))


def test_splits_are_deterministic_disjoint_and_complete(bundled):
    name, _, _, meta, splits = bundled
    sizes = dataset(name).split_sizes
    assert meta["split_sizes"] == sizes
    first, again = split_indices(meta["split_seed"], name), split_indices(meta["split_seed"], name)
    assert all(np.array_equal(first[s], again[s]) for s in sizes)
    everything = np.concatenate([first[s] for s in sizes])
    assert np.array_equal(np.sort(everything), np.arange(sum(sizes.values())))
    assert {s: len(split) for s, split in splits.items()} == sizes
    assert not np.array_equal(split_indices(meta["split_seed"] + 1, name)["test"], first["test"])


def test_splits_reload_identically():
    first, again = load_splits(name="mnist"), load_splits(name="mnist")
    assert all(torch.equal(first[s].images, again[s].images)
               and torch.equal(first[s].labels, again[s].labels) for s in first)


def test_mnist_has_a_thousand_test_images_of_every_class():
    test = load_splits(name="mnist")["test"]
    assert len(test) >= 1000 and test.images.shape[1:] == (1, 28, 28)
    assert set(test.labels.tolist()) == set(range(10))


def test_images_are_exact_int8_codes(bundled):
    """The input quantizer at the dataset's scale represents every image exactly."""
    name, _, _, meta, splits = bundled
    scale = dataset(name).image_scale
    assert meta.get("image_scale", scale) == scale
    for split in splits.values():
        images = split.images.double().numpy()
        codes = quantize_images(images, scale)
        assert codes.min() >= -127 and codes.max() <= 127
        assert np.array_equal(codes * scale, images)


# ------------------------------------------------------------------------- the command line

def expect_refusal(argv, words, directory, capsys):
    before = sorted(directory.rglob("*"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"intvit {argv[0]}: ") and words in err, err
    assert sorted(directory.rglob("*")) == before


@pytest.mark.parametrize("argv", [
    ["quantize", "--model", "fashion", "-o", "run"],
    ["quantize", "--method", "adfq", "--model", "fashion", "-o", "run"],
    ["demo", "--model", "fashion", "--out", "run"],
])
def test_unknown_model_name_is_refused(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    expect_refusal(argv, "'fashion' is neither a bundled model (digits, mnist, mnist-swin, "
                   "bundled", tmp_path,
                   capsys)


def test_demo_on_a_checkpoint_needs_its_images(tmp_path, monkeypatch, capsys):
    """A checkpoint's demo needs --calibration; a bundled model's refuses a user's images."""
    monkeypatch.chdir(tmp_path)
    expect_refusal(["demo", "--model", "vit.pth", "--out", "run"], "needs --calibration",
                   tmp_path, capsys)
    expect_refusal(["demo", "--model", "digits", "--calibration", "x.npy", "--out", "run"],
                   "--calibration goes with --model PATH", tmp_path, capsys)


def test_demo_keeps_one_model_per_directory(tmp_path, monkeypatch, capsys):
    """A directory holding the digits demo is not continued for mnist (``--force`` redoes it)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    write_text_atomic(tmp_path / "run" / "quantize.done", json.dumps({"model": "digits"}))
    expect_refusal(["demo", "--model", "mnist", "--out", "run"], "holds the demo of the digits "
                   "model", tmp_path, capsys)
    expect_refusal(["demo", "--model", "mnist", "--out", "run", "--only", "vectors"],
                   "--force to redo it for mnist", tmp_path, capsys)


def test_vectors_follow_the_model_quant_json_names(tmp_path, capsys):
    """``vectors --quant`` rebuilds the model quant.json names, on its test images, at its input
    scale (the mnist split has 1000 test images, the digits one 400)."""
    config = load_bundled("mnist")[1]
    spec = QuantSpec(image_scale=dataset("mnist").image_scale)
    quant = {"model": "mnist", "spec": dataclasses.asdict(spec), "rule": "all-iptq",
             "assignment": default_assignment(config)}
    write_text_atomic(tmp_path / "quant.json", json.dumps(quant))
    out = tmp_path / "vectors"
    assert main(["vectors", "--quant", str(tmp_path / "quant.json"), "--images", "1",
                 "-o", str(out)]) == 0
    files = sorted(path.stem for path in out.glob("*.npz"))
    assert files == sorted(quant["assignment"]) and len(files) == 6 * 4 + 1
    too_many = ["vectors", "--quant", str(tmp_path / "quant.json"), "--images", "1001",
                "-o", str(tmp_path / "more")]
    assert main(too_many) == 2
    assert "number 1000; give 1..1000" in capsys.readouterr().err


def stub_selection(monkeypatch, describe) -> dict:
    """Replace the selection (scoring every candidate takes minutes) with a stub that records
    ``describe(model)``, the test split's size and the input scale it was handed; returns the
    record, filled when ``intvit quantize`` runs."""
    from intvit.golden_model import select

    seen = {}

    def selection(model, splits, spec, rule, *args, **kwargs):
        seen.update(**describe(model), test=len(splits["test"]), scale=spec.image_scale)
        return select.QuantizationResult(spec, rule, default_assignment(model.config), {},
                                         {"float": 1.0, "stage2": 1.0, "stage3": 1.0})

    monkeypatch.setattr(select, "quantize_model", selection)
    return seen


def test_quantize_records_the_bundled_model(tmp_path, monkeypatch, capsys):
    """``quantize --model mnist`` hands the selection the mnist model, its splits and its input
    scale, and quant.json names the model. The selection itself is stubbed: scoring every
    candidate on the MNIST model takes minutes (the full run is timed in docs/guide.md)."""
    seen = stub_selection(monkeypatch, lambda model: {"tokens": model.config.num_tokens})
    out = tmp_path / "run"
    assert main(["quantize", "--model", "mnist", "--rule", "all-iptq", "-o", str(out)]) == 0
    assert seen == {"tokens": 50, "test": 1000, "scale": dataset("mnist").image_scale}
    quant = json.loads((out / "quant.json").read_text())
    assert quant["model"] == "mnist" and quant["spec"]["image_scale"] == 1 / 128
    assert "the bundled mnist model" in capsys.readouterr().out


def test_quantize_takes_the_bundled_swin(tmp_path, monkeypatch, capsys):
    """``quantize --model mnist-swin`` hands the selection the Swin, the mnist splits and their
    input scale (the selection stubbed as above; bench/swin.py runs it in full)."""
    from intvit.golden_model.swin import SwinTransformer

    seen = stub_selection(monkeypatch,
                          lambda model: {"swin": isinstance(model, SwinTransformer)})
    out = tmp_path / "run"
    assert main(["quantize", "--model", "mnist-swin", "--rule", "all-iptq", "-o", str(out)]) == 0
    assert seen == {"swin": True, "test": 1000, "scale": dataset("mnist").image_scale}
    assert json.loads((out / "quant.json").read_text())["model"] == "mnist-swin"
