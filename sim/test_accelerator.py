"""The whole bundled ViT on the generated accelerator under Verilator, against
``IntegerViT.forward``: a few real test images per mix (``bench/accelerator.py`` runs all 400),
the cycle model against the simulated cycles, a stall found and named, and the per-step replay
that names the first differing step."""
import pytest

from intvit.golden_model.checkpoint import load_bundled
from intvit.golden_model.dataset import load_splits
from intvit.golden_model.program import compile_program, image_pixels, run_program
from intvit.golden_model.qvit import (QuantSpec, build_integer_vit, default_assignment,
                                      quantize_images)
from intvit.hw.accelerator import Accelerator
from intvit.hw.accelerator_timing import image_cycles
from intvit.sim.accelerator import first_differing_step, run_hex_bench, simulate_accelerator

IMAGES = 3


@pytest.fixture(scope="module")
def bundled():
    model, config, _ = load_bundled()
    splits = load_splits()
    images = quantize_images(splits["test"].images[:IMAGES].numpy())
    return model, config, splits, images


def mix(bundled, method):
    model, config, splits, _ = bundled
    return build_integer_vit(model, splits["calibration"].images,
                             default_assignment(config, method), QuantSpec())


@pytest.mark.parametrize("method", ["iptq", "ivit", "fqvit"])
def test_accelerator_equals_integer_vit(bundled, method, tmp_path):
    """All-IPTQ (Bit-exp softmax, Poly-GELU), all-I-ViT, all-FQ-ViT (log2 probabilities
    decoded for ``probs @ v``): the logits of every image equal the golden model's, and every
    image takes exactly the cycles the cycle model predicts."""
    qmodel = mix(bundled, method)
    images = bundled[3]
    program = compile_program(qmodel)
    accelerator = Accelerator(program)
    cycles = image_cycles(program, accelerator)
    run = simulate_accelerator(program, images, qmodel.forward(images), work_dir=tmp_path,
                               timeout_cycles=cycles, accelerator=accelerator)
    assert (run.images, run.mismatches) == (IMAGES, 0), run.summary()
    assert run.image_cycles == [cycles] * IMAGES


def test_a_stalled_image_names_its_step(bundled, tmp_path):
    """A bound shorter than the model's cycles: the testbench stops with the step it stalled
    in instead of hanging."""
    qmodel = mix(bundled, "iptq")
    images = bundled[3][:1]
    program = compile_program(qmodel)
    run = run_hex_bench(program, images, qmodel.forward(images), work_dir=tmp_path,
                        timeout_cycles=2000)
    assert run.mismatches == 1 and run.images == 0
    assert "STALL: image 0" in run.output and "in step" in run.output


def test_replay_names_the_first_differing_step(bundled):
    """The taps replay (used on a mismatch) on writes made from the program itself: clean, no
    step is named; one element of the third block's second softmax corrupted, that step is."""
    qmodel = mix(bundled, "ivit")
    program = compile_program(qmodel)
    pixels = image_pixels(program, bundled[3][:1])[0]
    taps = {}
    run_program(program, pixels, taps)
    target = next(i for i, s in enumerate(program.steps) if s.name == "blocks.2.attn.softmax[1]")

    def writes(corrupt: bool) -> list:
        bits = program.lane_bits
        found = []
        for index, (word, lane, values) in taps.items():
            if word is None:
                continue
            for position, (w, l, v) in enumerate(zip(word.ravel(), lane.ravel(),
                                                      values.ravel())):
                v = int(v) + (corrupt and index == target and position == 5)
                found.append((index, int(w), (v & ((1 << bits) - 1)) << (int(l) * bits),
                              1 << int(l)))
        return found

    assert first_differing_step(program, pixels, writes(False)) is None
    named = first_differing_step(program, pixels, writes(True))
    assert named is not None and named.startswith(f"step {target} (blocks.2.attn.softmax[1])")
