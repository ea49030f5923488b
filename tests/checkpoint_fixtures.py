"""The reference checkpoints of tests/fixtures/checkpoints (made by timm and transformers
themselves, README.md there) and what the tests of issue 19 do with them: the library's float
logits, a W8A8 integer model and its integer-only forward."""
from pathlib import Path

import numpy as np
import pytest
import torch

from intvit.golden_model.checkpoint import load_checkpoint
from intvit.golden_model.errors import IntvitError
from intvit.golden_model.qvit import (QuantSpec, build_integer_vit, default_assignment,
                                      image_scale_for, quantize_images)
from intvit.golden_model.vit import nonlinear_layers, tap_names
from integer_trap import IntegerOnlyArray, integer_only, trap_floats

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints"
ATOL = 1e-5
"""The fixtures' stated tolerance for intvit's float logits against the library's."""
AGREEMENT = 0.75
"""Least share of images on which the W8A8 integer model's top-1 equals the float model's."""


def library_io(name: str) -> tuple[torch.Tensor, np.ndarray]:
    """``(inputs, logits)`` stored with the fixture ``name``: the library's eval-mode logits."""
    io = np.load(FIXTURES / f"{name}_io.npz")
    return torch.from_numpy(io["inputs"]), io["logits"]


def float_logits(model, inputs: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(inputs).numpy()


def random_images(config, count: int, seed: int) -> torch.Tensor:
    """N(0, 1) images of the model's shape (the fixtures' inputs are drawn the same way)."""
    shape = (count, config.in_chans, config.img_size, config.img_size)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def integer_model(model, method: str = "iptq", calibration: int = 32, seed: int = 7):
    """``(integer model, spec)``: W8A8, every layer on ``method``, calibrated on random images."""
    images = random_images(model.config, calibration, seed)
    spec = QuantSpec(image_scale=image_scale_for(images))
    return build_integer_vit(model, images, default_assignment(model.config, method), spec), spec


def traced(qmodel, images_q) -> tuple[np.ndarray, dict]:
    """Logits and taps of a forward inside the integer-only tracer (tests/integer_trap.py);
    every tap and the logits must come out as trapped integer arrays."""
    taps: dict = {}
    with integer_only():
        logits = qmodel.forward(trap_floats(images_q), taps)
    assert isinstance(logits, IntegerOnlyArray)
    untrapped = [name for name, value in taps.items()
                 if not (isinstance(value, IntegerOnlyArray) and value.dtype.kind == "i")]
    assert not untrapped, f"taps computed outside the trap: {untrapped}"
    return np.asarray(logits), taps


def expected_taps(config) -> set:
    layers = nonlinear_layers(config)
    return set(tap_names(config)) | {f"{layer}:{end}" for layer in layers for end in ("in", "out")}


def agreement(model, qmodel, spec, images: torch.Tensor) -> float:
    """Share of ``images`` on which the integer model's top-1 equals the float model's."""
    want = float_logits(model, images).argmax(-1)
    got = qmodel.predict(quantize_images(images.numpy(), spec.image_scale))
    return float(np.mean(got == want))


def one_line_error(checkpoint, **options) -> str:
    """The message of ``load_checkpoint``'s refusal, checked to be one line."""
    with pytest.raises(IntvitError) as error:
        load_checkpoint(checkpoint, **options)
    message = str(error.value)
    assert "\n" not in message
    return message
