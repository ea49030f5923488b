"""The accelerator's program (golden_model/program.py) against the integer ViT's forward.

The program on numpy is a second implementation of the integer forward (memory layouts, tiles,
per-step requantizers and saturation); its logits must equal ``IntegerViT.forward`` bit for bit
for every mix, and each step's writes must stay inside its region.
"""
import dataclasses
import json

import numpy as np
import pytest

from intvit.golden_model.checkpoint import load_bundled
from intvit.golden_model.dataset import load_splits
from intvit.golden_model.errors import IntvitError
from intvit.golden_model.program import (AcceleratorConfig, compile_program, image_pixels,
                                         run_program)
from intvit.golden_model.qvit import (QuantSpec, build_integer_vit, default_assignment,
                                      quantize_images)

IMAGES = 12


@pytest.fixture(scope="module")
def bundled():
    model, config, _ = load_bundled()
    splits = load_splits()
    images = quantize_images(splits["test"].images[:IMAGES].numpy())
    return model, config, splits, images


@pytest.mark.parametrize("method", ["iptq", "ivit", "fqvit", "ibert"])
def test_program_equals_integer_forward(bundled, method):
    model, config, splits, images = bundled
    qmodel = build_integer_vit(model, splits["calibration"].images,
                               default_assignment(config, method), QuantSpec())
    program = compile_program(qmodel)
    expected = qmodel.forward(images)
    got = np.stack([run_program(program, pixels) for pixels in image_pixels(program, images)])
    np.testing.assert_array_equal(got, expected)


def test_steps_write_inside_their_regions(bundled):
    model, config, splits, images = bundled
    qmodel = build_integer_vit(model, splits["calibration"].images,
                               default_assignment(config, "iptq"), QuantSpec())
    program = compile_program(qmodel, AcceleratorConfig(lanes=16))
    taps = {}
    run_program(program, image_pixels(program, images[:1])[0], taps)
    spans = [(base, base + words) for _, base, _, _, _, words in program.regions.values()]
    for index, (word, _, _) in taps.items():
        if word is None:
            continue
        assert any(lo <= word.min() and word.max() < hi for lo, hi in spans), \
            program.steps[index].name


def test_program_json_is_readable(tmp_path, bundled):
    model, config, splits, _ = bundled
    qmodel = build_integer_vit(model, splits["calibration"].images,
                               default_assignment(config, "ivit"), QuantSpec())
    program = compile_program(qmodel)
    program.write(tmp_path / "program.json")
    text = json.loads((tmp_path / "program.json").read_text())
    kinds = [step["kind"] for step in text["steps"]]
    assert kinds[0] == "input" and kinds[-1] == "gemm" and text["steps"][-1]["post"] == "logits"
    depth, heads = config.depth, config.num_heads
    # per block: 2 LayerNorms, QKV in two parts, 3 steps per head, proj, fc1, GELU, fc2
    assert len(kinds) == 2 + depth * (2 + 2 + 3 * heads + 4) + 2


def test_bad_input(bundled):
    model, config, splits, images = bundled
    qmodel = build_integer_vit(model, splits["calibration"].images,
                               default_assignment(config, "iptq"), QuantSpec())
    with pytest.raises(IntvitError, match="multiples of 32"):
        compile_program(qmodel, AcceleratorConfig(lanes=32))
    with pytest.raises(IntvitError, match="power of two"):
        AcceleratorConfig(lanes=12)
    program = compile_program(qmodel)
    with pytest.raises(IntvitError, match="shape"):
        image_pixels(program, np.zeros((1, 1, 16, 16), dtype=np.int64))
    with pytest.raises(IntvitError, match="IntegerViT"):
        compile_program(model)
    with pytest.raises(IntvitError, match="distilled"):
        compile_program(dataclasses.replace(qmodel, prefix_tokens=2))
