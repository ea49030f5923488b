"""The float64 requantizer on float GEMM outputs (issue 15, ``exact.FloatRequant``): equal to the
int64 :class:`ChannelRequant` bit for bit on random and extreme accumulators, declining where its
bound fails; and a DeiT-shaped model's forward with it equals the int64 forward on every tap."""
import dataclasses

import numpy as np
import pytest

from intvit.golden_model import exact, registry
from intvit.golden_model.exact import (FloatRequant, exact_requant_product, int64_products,
                                       int64_requantizers)
from intvit.golden_model.ops.requant import ChannelRequant
from small_deit import SMALL_DEIT, small_integer_deit

INT32 = (1 << 31) - 1


def thresholds(requant):
    """Every channel's accumulators around both saturation points and the .5 ties near 0."""
    lo, hi = -(1 << (requant.out_bits - 1)), (1 << (requant.out_bits - 1)) - 1
    values = {0, 1, -1, 2, -2}
    for m, e in zip(requant.multipliers, requant.shifts):
        if not m:
            continue
        rounding = (1 << e) >> 1
        for edge in (-((rounding - (hi << e)) // m), (((lo + 1) << e) - rounding - 1) // m):
            values.update(range(edge - 3, edge + 4))
    return np.array(sorted(v for v in values if abs(v) <= INT32), dtype=np.int64)


def compare(requant, acc, bias=None):
    """FloatRequant on ``acc`` (float64 copy, bound = its max-abs) against the int64 path;
    returns whether it took the float path."""
    acc = np.asarray(acc, np.int64)
    total = acc if bias is None else acc + bias
    expected = requant(total)
    result = FloatRequant(requant)(acc.astype(np.float64), exact.max_abs(acc), bias)
    if result is not None:
        assert result.dtype == np.int64
        np.testing.assert_array_equal(result, expected)
    return result is not None


@pytest.mark.parametrize("bits", [8, 16])
def test_random_channels_equal_the_int64_requantizer(bits):
    rng = np.random.default_rng(0)
    ratios = 2.0 ** rng.uniform(-20, 4, 64)
    requant = ChannelRequant.from_scales(ratios, bits)
    requant = ChannelRequant(requant.multipliers + (0, 1 << 30, (1 << 31) - 1),
                             requant.shifts + (0, 0, 52), bits)  # m = 0, e = 0, a 2**-21
    channels = len(requant.multipliers)
    corners = thresholds(requant)
    acc = np.broadcast_to(corners[:, None], (len(corners), channels)).copy()
    taken = 0
    for limit in (1 << 8, 1 << 16, 1 << 22, INT32):
        part = acc[np.abs(acc).max(axis=1) <= limit]
        random = rng.integers(-limit, limit, (4000, channels), endpoint=True)
        for block in (part, random):
            taken += compare(requant, block)
            taken += compare(requant, block // 2, rng.integers(-limit // 2, limit // 2, channels))
    assert taken >= 4  # small bounds take the float path


def test_saturation_argument_beyond_the_exact_range():
    """``T * m`` stays below 2**53 although ``|acc| * m`` of int32 accumulators does not: the
    float product of a large accumulator rounds, but the monotone result still saturates
    exactly."""
    requant = ChannelRequant.from_scales([2.0 ** -12, 3.1e-3, 0.7], 8)
    plan = FloatRequant(requant)
    assert plan.limit is None and plan.all_exact < INT32
    acc = np.concatenate([thresholds(requant), [INT32, -INT32, INT32 - 1, 1 << 30]])
    acc = np.broadcast_to(acc[:, None], (len(acc), 3))
    assert compare(requant, acc)


def test_declines_where_the_bound_fails():
    requant = ChannelRequant((1 << 30,), (62,), 16)  # 2**-32 to 16 bits: T = 2**47 > X = 2**23
    plan = FloatRequant(requant)
    assert plan.limit is not None
    assert plan.usable(plan.limit) and not plan.usable(plan.limit + 1)
    assert not FloatRequant(ChannelRequant(((1 << 31) - 1,), (62,), 8)).usable(0)  # 2**61 > 2**53
    assert FloatRequant(ChannelRequant.from_scales([0.01], 8))(
        np.zeros(3), 1 << 31) is None  # may leave int32: the int64 requantizer checks
    a = np.array([[1 << 40]])
    assert exact_requant_product(requant, a, np.array([[1]])) is None  # no float GEMM
    with int64_requantizers():
        assert exact_requant_product(requant, np.ones((2, 2), np.int64),
                                     np.ones((2, 2), np.int64)) is None


@pytest.mark.parametrize("method", ["iptq", "fqvit"])
def test_deit_shaped_forward_equals_the_int64_forward(method, monkeypatch):
    qmodel, images_q, _ = small_integer_deit(method, seed=1, images=6, calibration=4)
    calls = []
    original = FloatRequant.__call__

    def spy(self, acc, bound, bias=None, bias_max=None, codes=False):
        result = original(self, acc, bound, bias, bias_max, codes)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(FloatRequant, "__call__", spy)
    runs = {}
    for name, context in (("fast", None), ("int64 requant", int64_requantizers),
                          ("int64", int64_products)):
        taps: dict = {}
        calls.clear()
        if context is None:
            logits = qmodel.forward(images_q, taps)
            # patch embed, final norm's input, head, and per block norm1's input, QKV, scores,
            # context, proj, norm2's input, FC1, FC2
            assert calls == [True] * (3 + 8 * SMALL_DEIT.depth)
        else:
            with context():
                logits = qmodel.forward(images_q, taps)
            assert calls == []
        runs[name] = logits, taps
    reference_logits, reference = runs["int64"]
    for name in ("fast", "int64 requant"):
        logits, taps = runs[name]
        assert logits.dtype == reference_logits.dtype
        np.testing.assert_array_equal(logits, reference_logits)
        assert taps.keys() == reference.keys()
        for tap, value in reference.items():
            assert taps[tap].dtype == value.dtype, tap
            np.testing.assert_array_equal(taps[tap], value, err_msg=f"{name}: {tap}")


@pytest.mark.parametrize("method,options", [
    ("iptq", {}), ("ivit", {}), ("ibert", {}), ("fqvit", {}),
    ("iptq", {"gelu_output": "asymmetric", "softmax_bits": 16})],
    ids=["iptq", "ivit", "ibert", "fqvit", "iptq-asymmetric-16"])
def test_fast_forward_takes_the_operators_fast_runs(method, options, monkeypatch):
    """The fast forward (float codes between the steps, ``Operator.fast_run``) equals the int64
    forward on every tap and the logits, and every layer whose operator has a fast path took it
    (FQ-ViT's LayerNorm and softmax have none: their layers run ``run`` on int64 codes)."""
    qmodel, images_q, assignment = small_integer_deit(method, seed=2, images=5, calibration=3,
                                                      **options)
    taken = []
    for name in set(assignment.values()):
        operator = registry.get(name)
        if operator.fast_run is None:
            continue

        def spy(config, q, fast=operator.fast_run, name=name):
            result = fast(config, q)
            taken.append((name, result is not None))
            return result

        monkeypatch.setitem(registry.REGISTRY, name, dataclasses.replace(operator, fast_run=spy))
    taps: dict = {}
    logits = qmodel.forward(images_q, taps)
    expected_calls = sum(registry.get(name).fast_run is not None for name in assignment.values())
    assert len(taken) == expected_calls and all(ok for _, ok in taken), taken
    with int64_products():
        reference_taps: dict = {}
        reference = qmodel.forward(images_q, reference_taps)
    assert logits.dtype == reference.dtype == np.int64
    np.testing.assert_array_equal(logits, reference)
    assert taps.keys() == reference_taps.keys()
    for tap, value in reference_taps.items():
        assert taps[tap].dtype == value.dtype, tap
        np.testing.assert_array_equal(taps[tap], value, err_msg=tap)


@pytest.mark.parametrize("decline", ["requantizers", "operators", "both"])
def test_fast_forward_fallbacks_equal_the_int64_forward(decline, monkeypatch):
    """Where the float requantizers or the operators' fast paths decline, the fast forward's
    int64 fallbacks (float codes converted to int64 and back) give the same taps and logits."""
    qmodel, images_q, assignment = small_integer_deit("iptq", seed=3, images=4, calibration=3)
    with int64_products():
        reference_taps: dict = {}
        reference = qmodel.forward(images_q, reference_taps)
    if decline in ("requantizers", "both"):
        monkeypatch.setattr(FloatRequant, "usable", lambda self, bound: False)
    if decline in ("operators", "both"):
        for name in set(assignment.values()):
            monkeypatch.setitem(registry.REGISTRY, name, dataclasses.replace(
                registry.get(name), fast_run=lambda config, q: None))
    taps: dict = {}
    logits = qmodel.forward(images_q, taps)
    np.testing.assert_array_equal(logits, reference)
    assert logits.dtype == np.int64
    for tap, value in reference_taps.items():
        assert taps[tap].dtype == value.dtype, tap
        np.testing.assert_array_equal(taps[tap], value, err_msg=tap)
