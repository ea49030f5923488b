"""The integer forward is integer-only, proved by the tracer of :mod:`integer_trap` on every tap
of the bundled model and of a timm-shaped one, for every method at W8A8 and W4A8; and the proof
fails on a deliberately broken copy of one step (array floats and Python-scalar floats)."""
import inspect
import math
import sys
import textwrap

import numpy as np
import pytest
import torch

from intvit.golden_model import qvit, registry
from intvit.golden_model.checkpoint import load_bundled, load_checkpoint
from intvit.golden_model.dataset import load_splits
from intvit.golden_model.ops.requant import ChannelRequant
from intvit.golden_model.qvit import (IntegerViT, IntLinear, QuantSpec, build_integer_vit,
                                      default_assignment, image_scale_for, quantize_images)
from intvit.golden_model.vit import ViTConfig, VisionTransformer, nonlinear_layers, tap_names
from integer_trap import FloatOperationError, IntegerOnlyArray, integer_only, trap_floats

METHODS = ["iptq", "ivit", "ibert", "fqvit"]
TIMM_SHAPED = ViTConfig(img_size=8, patch_size=2, in_chans=3, num_classes=7, embed_dim=24,
                        depth=2, num_heads=3, mlp_ratio=2.5)
"""A class-token ViT matching no preset: 17 tokens, 3 heads of 8, MLP width 60."""


def timm_state_dict(config: ViTConfig, seed: int = 0) -> dict:
    """A random state dict under timm's keys, N(0, 0.3^2) so that attention is not flat."""
    torch.manual_seed(seed)
    state = VisionTransformer(config).state_dict()
    return {key: torch.randn_like(value) * 0.3 for key, value in state.items()}


@pytest.fixture(scope="module")
def bundled():
    model, config, _ = load_bundled()
    splits = load_splits()
    return model, splits["calibration"].images, splits["test"].images[:4].numpy(), QuantSpec()


@pytest.fixture(scope="module")
def timm_shaped():
    model = load_checkpoint({"model": timm_state_dict(TIMM_SHAPED)}, TIMM_SHAPED)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(32, 3, 8, 8, generator=generator)
    spec = QuantSpec(image_scale=image_scale_for(images))
    return model, images, images[:4].numpy(), spec


@pytest.fixture(scope="module")
def timm_iptq(timm_shaped):
    model, calibration, images, spec = timm_shaped
    qmodel = build_integer_vit(model, calibration, default_assignment(model.config), spec)
    return qmodel, quantize_images(images, spec.image_scale)


def traced_forward(qmodel: IntegerViT, images_q):
    taps: dict = {}
    with integer_only() as tracer:
        logits = qmodel.forward(trap_floats(images_q), taps)
    return logits, taps, tracer


def expected_taps(config: ViTConfig) -> set:
    layers = nonlinear_layers(config)
    return set(tap_names(config)) | {f"{layer}:{end}" for layer in layers for end in ("in", "out")}


@pytest.mark.parametrize("weight_bits", [8, 4], ids=["w8a8", "w4a8"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("source", ["bundled", "timm_shaped"])
def test_every_tap_is_computed_on_integers(source, method, weight_bits, request):
    model, calibration, images, spec = request.getfixturevalue(source)
    spec = QuantSpec(weight_bits=weight_bits, image_scale=spec.image_scale)
    assignment = default_assignment(model.config, method)
    qmodel = build_integer_vit(model, calibration, assignment, spec)
    images_q = quantize_images(images, spec.image_scale)
    logits, taps, tracer = traced_forward(qmodel, images_q)

    assert np.asarray(logits).tolist() == qmodel.forward(images_q).tolist()
    assert set(taps) == expected_taps(model.config)
    untrapped = [name for name, value in taps.items()
                 if not (isinstance(value, IntegerOnlyArray) and value.dtype.kind == "i")]
    assert not untrapped, f"taps computed outside the trap: {untrapped}"
    assert isinstance(logits, IntegerOnlyArray)
    ran = {registry.get(name).run.__code__ for name in set(assignment.values())}
    ran |= {IntegerViT.forward.__code__, IntLinear.__call__.__code__,
            ChannelRequant.__call__.__code__, qvit._ProbsTimesV.__call__.__code__}
    assert ran <= tracer.codes


def test_bundled_model_has_85_taps(bundled):
    assert len(expected_taps(bundled[0].config)) == 85


def broken_copy(function, old: str, new: str):
    """``function`` recompiled from its source with ``old`` replaced by ``new``, under its own
    file, line numbers and module globals: golden code, as the tracer sees it."""
    lines, first = inspect.getsourcelines(function)
    source = textwrap.dedent("".join(lines))
    assert source.count(old) == 1, f"{old!r} is not once in {function.__qualname__}"
    code = compile("\n" * (first - 1) + source.replace(old, new),
                   inspect.getsourcefile(function), "exec")
    namespace: dict = {}
    exec(code, function.__globals__, namespace)
    return namespace[function.__name__]


PLANTS = {
    "array ufunc (shift as exp2)": (
        ChannelRequant, "__call__", "((np.int64(1) << e) >> 1)) >> e",
        "((np.int64(1) << e) >> 1)) * np.exp2(-e)", r"exp2 produced a float64 array"),
    "numpy float type (GEMM in float64)": (
        IntLinear, "__call__", "x @ self.weight.T", "x @ self.weight.T.astype(np.float64)",
        r"np\.float64 is the type float64"),
    "math call (shift through log2)": (
        ChannelRequant, "__call__", "np.array(self.shifts, dtype=np.int64)",
        "np.array([math.floor(math.log2(1 << s)) for s in self.shifts], dtype=np.int64)",
        r"math\.log2 produced float"),
    "true division inside one expression": (
        IntegerViT, "_block", "dim // heads", "int(dim / heads)", r"true division at .*qvit"),
    "float() of a numpy scalar": (
        IntegerViT, "forward", "x.max() > hi", "float(x.max()) > hi", r"use of float\(\)"),
    "float config field read into the integer path": (
        IntegerViT, "_nonlinear", "plan = self.plans[name]",
        "plan = self.plans[name]; step = plan.config.in_scale", r"variable step holds float"),
}


@pytest.mark.parametrize("plant", PLANTS)
def test_a_planted_float_is_caught(plant, timm_iptq, monkeypatch):
    owner, attribute, old, new, message = PLANTS[plant]
    qmodel, images_q = timm_iptq
    monkeypatch.setattr(owner, attribute, broken_copy(getattr(owner, attribute), old, new))
    with pytest.raises(FloatOperationError, match=message):
        traced_forward(qmodel, images_q)


def test_the_tracer_leaves_nothing_behind(timm_iptq):
    qmodel, images_q = timm_iptq
    before = sys.gettrace()
    with pytest.raises(FloatOperationError):
        with integer_only():
            qvit.clamp(trap_floats(images_q), 0, 0.5)
    assert sys.gettrace() is before
    assert qvit.np is np and sys.modules["intvit.golden_model.ops.requant"].math is math
    assert qmodel.forward(images_q).dtype == np.int64


def test_array_functions_keep_the_trap_and_refuse_floats():
    a = trap_floats(np.arange(6).reshape(2, 3))
    for result in (np.concatenate([a, a]), np.where(a > 2, a, 0), np.broadcast_to(a, (4, 2, 3)),
                   np.einsum("ij,kj->ik", a, a), np.matmul(a, a.T), a[:, 1:].T):
        assert isinstance(result, IntegerOnlyArray)
    for float_operation in (lambda: np.concatenate([a, np.ones((1, 3))]),
                            lambda: np.where(a > 2, a, 0.5), lambda: a.astype(np.float32),
                            lambda: a.mean(), lambda: a * 0.5, lambda: float(a[0, 0:1])):
        with pytest.raises(FloatOperationError):
            float_operation()
    with pytest.raises(FloatOperationError, match="storing"):
        a[0, 0] = 1.5
