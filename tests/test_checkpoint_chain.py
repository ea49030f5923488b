"""A user's own checkpoint through every stage (issue 15): a small timm-shaped ViT (two blocks,
width 96, three heads; no preset has these shapes, so ``--heads`` gives the head count), real
images as PNG files (scikit-learn's digits, resized by the folder loader), ``intvit quantize``
with separate calibration and evaluation images, ``intvit vectors --quant`` from the
checkpoint's real activations, and every distinct unit of the mix simulated under Verilator on
them (about a minute per unit the first time, cached after). The bench
``bench/deit_scale.py`` runs the same chain, ``intvit demo`` with its cost and report stages, on
DeiT-Tiny at 224 x 224.
"""
import json

import numpy as np
import pytest
import torch

from intvit.cli import main
from intvit.golden_model.quantfile import load_run
from intvit.golden_model.vit import ViTConfig, VisionTransformer

CONFIG = ViTConfig(img_size=32, patch_size=8, in_chans=3, num_classes=10, embed_dim=96, depth=2,
                   num_heads=3)


def write_digits(directory, images) -> str:
    from PIL import Image

    directory.mkdir()
    for index, image in enumerate(images):
        pixels = (np.asarray(image) * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels).convert("RGB").save(directory / f"{index:03d}.png")
    return str(directory)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The checkpoint quantized (``--rule all-iptq``: three distinct units) and its layer
    vectors on two evaluation images."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("checkpoint")
    torch.manual_seed(0)
    torch.save(VisionTransformer(CONFIG).state_dict(), root / "small.pth")
    digits = load_digits().images
    calibration = write_digits(root / "calibration", digits[:24])
    evaluation = write_digits(root / "eval", digits[24:30])
    assert main(["quantize", "--model", str(root / "small.pth"), "--heads", "3",
                 "--calibration", calibration, "--eval", evaluation, "--score-images", "8",
                 "--rule", "all-iptq", "-o", str(root / "q")]) == 0
    assert main(["vectors", "--quant", str(root / "q" / "quant.json"), "--images", "2",
                 "-o", str(root / "vectors")]) == 0
    return root


def test_quantize_records_fidelity_on_the_separate_evaluation_images(run):
    """The fidelity quant.json states is that of the saved integer model on the evaluation
    images, recomputed here from the float model on the same images (loaded again) and the
    formulas written out."""
    from intvit.golden_model.checkpoint import load_checkpoint
    from intvit.golden_model.images import load_images

    quant = json.loads((run / "q" / "quant.json").read_text())
    assert quant["images"] == {"calibration": 24, "score": 8, "test": 6}
    _, qmodel, codes = load_run(run / "q" / "quant.json")
    assert codes.shape == (6, 3, 32, 32) and qmodel.assignment == quant["assignment"]
    model = load_checkpoint(run / "small.pth", num_heads=3)
    with torch.no_grad():
        z_float = model(torch.from_numpy(load_images(run / "eval", 3, 32))).double().numpy()
    z_int = qmodel.forward(codes) * qmodel.scales["logits"]
    ratios = [np.linalg.norm(f) / np.linalg.norm(f - q) for f, q in zip(z_float, z_int)]
    p = np.exp(z_float - z_float.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    q = np.exp(z_int - z_int.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    fidelity = quant["fidelity"]
    assert fidelity["images"] == 6
    assert fidelity["logit_sqnr_db"] == pytest.approx(20 * np.log10(np.mean(ratios)), abs=1e-6)
    assert fidelity["kl"] == pytest.approx(np.mean(np.sum(p * np.log(p / q), axis=1)), rel=1e-4)
    assert fidelity["agreement"] == np.mean(z_float.argmax(1) == z_int.argmax(1))


def test_vectors_cover_every_layer_of_the_checkpoint(run):
    files = sorted(path.stem for path in (run / "vectors").glob("*.npz"))
    assert len(files) == 4 * CONFIG.depth + 1


def test_every_unit_of_the_mix_is_bit_exact_on_the_checkpoints_activations(run, capsys):
    _, qmodel, _ = load_run(run / "q" / "quant.json")
    first = {}
    for layer, plan in qmodel.plans.items():
        first.setdefault(plan.op, layer)
    assert len(first) == 3
    for op, layer in first.items():
        capsys.readouterr()
        assert main(["sim", op, "--vectors", str(run / "vectors" / f"{layer}.npz"),
                     "--work-dir", str(run / "sim" / op.replace("/", "_"))]) == 0
        out = capsys.readouterr().out
        assert f"{op}: PASS" in out and " 0 mismatches" in out, out
