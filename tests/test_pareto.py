"""The Pareto bench (bench/pareto.py): its front against a hand-worked example, the exactness of
its faster integer forward and cached builds, and a short real run (the digits model at W8A8,
5 random mixes, 20 images) whose dominance claims are checked against its own points."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import pareto  # noqa: E402
from intvit.golden_model.qvit import (build_integer_vit, check_assignment,  # noqa: E402
                                      default_assignment)
from intvit.golden_model.select import RULES, calibrate_mix  # noqa: E402


def test_front_of_a_hand_worked_example():
    # (cost, KL). By hand: A (1, 5) is the cheapest: on the front. B (2, 3) and its twin F
    # (2, 3): nothing is cheaper and closer than them (A is cheaper but further), and equal
    # points do not dominate each other: both on. C (3, 4) is beaten by B (cheaper and closer).
    # D (4, 1) is the closest: on. E (5, 1) ties D on KL but costs more: D dominates it.
    # G (0.5, 9) is the cheapest of all: on.
    points = [(1, 5), (2, 3), (3, 4), (4, 1), (5, 1), (2, 3), (0.5, 9)]
    assert pareto.pareto_front(points) == [6, 0, 1, 5, 3]
    assert pareto.dominators(points, 2) == [1, 5]
    assert pareto.dominators(points, 4) == [3]
    assert pareto.dominators(points, 1) == []
    assert not pareto.dominates((2, 3), (2, 3))
    assert pareto.dominates((2, 3), (2, 4)) and pareto.dominates((1, 3), (2, 3))
    # three measures: (1, 2, 3) beats (1, 2, 4); (0, 5, 1) and (1, 2, 3) do not beat each other
    assert pareto.dominates_nd((1, 2, 3), (1, 2, 4))
    assert not pareto.dominates_nd((0, 5, 1), (1, 2, 3))
    assert not pareto.dominates_nd((1, 2, 3), (0, 5, 1))


def test_exact_types_and_the_fallback():
    assert pareto.exact_dtype(2.0 ** 24 - 1) is np.float32
    assert pareto.exact_dtype(2.0 ** 24) is np.float64
    assert pareto.exact_dtype(2.0 ** 53) is None


@pytest.fixture(scope="module")
def context():
    torch.set_num_threads(1)
    return pareto.prepare("digits", "w4a8", 20)


def test_cached_faster_builds_are_the_plain_ones(context):
    """A random mix and all-fqvit (log2 probabilities): the bench's stage-2 build with the
    cached configs and the exact float GEMMs gives the same int16 logits as the plain build and
    forward; so does its stage 3 against ``select.calibrate_mix``."""
    ctx = context
    mixes = [pareto.random_mixes(ctx.config, 1, seed=3)[0],
             default_assignment(ctx.config, "fqvit")]
    calibration = ctx.calibration.images
    for assignment in mixes:
        plain = build_integer_vit(ctx.model, calibration, assignment, ctx.spec)
        cached = pareto.build_mix(ctx, assignment)
        fast = pareto.accelerated(cached)
        assert np.array_equal(fast.forward(ctx.images_q), plain.forward(ctx.images_q))
    assert ctx.cache.hits > 0
    assignment = mixes[0]
    plain3 = calibrate_mix(ctx.model, calibration, assignment, ctx.spec)
    fast3 = pareto.accelerated(pareto.build_mix(ctx, assignment, stage3=True))
    assert np.array_equal(fast3.forward(ctx.images_q), plain3.forward(ctx.images_q))


def test_exact_linear_falls_back_beyond_float64():
    class Linear:
        weight = np.array([[1 << 30, 1 << 30]], dtype=np.int64)
        bias = np.array([0], dtype=np.int64)
        requant = None
    x = np.array([[(1 << 30) + 1, 3]], dtype=np.int64)
    assert pareto.ExactLinear(Linear)(x)[0, 0] == ((1 << 30) + 1) * (1 << 30) + 3 * (1 << 30)


def test_random_mixes_are_valid_distinct_and_seeded(context):
    config = context.config
    singles = pareto.single_method_mixes(config).values()
    mixes = pareto.random_mixes(config, 30, seed=7, exclude=singles)
    keys = [pareto.mix_key(config, m) for m in mixes]
    assert len(set(keys)) == 30
    assert not set(keys) & {pareto.mix_key(config, m) for m in singles}
    for mix in mixes:
        check_assignment(config, mix)
    assert mixes == pareto.random_mixes(config, 30, seed=7, exclude=singles)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    results = pareto.run(("digits",), ("w8a8",), 5, {"digits": 20}, workers=1,
                         log=lambda line: None)
    analyses = [pareto.analyse(r) for r in results]
    path = pareto.plot(results, analyses, tmp_path_factory.mktemp("img") / "pareto_digits.png")
    return results, analyses, path


def test_short_run_dominance_claims_hold(short_run):
    results, analyses, path = short_run
    (result,), (analysis,) = results, analyses
    points = result["points"]
    assert result["images"] == 20 and result["random"] == 5
    assert len(points) >= 5 and all(len(p["kl_images"]) == 20 for p in points)
    labels = [label for p in points for label in p["labels"]]
    assert sorted(labels) == sorted(list(RULES) + [f"random #{i}" for i in range(1, 6)])
    cost = [p["cost"].area_time for p in points]
    kl = [p["kl"] for p in points]
    for rule, info in analysis["rules"].items():
        i = info["index"]
        assert rule in points[i]["labels"]
        beaten_by = [j for j in range(len(points)) if cost[j] <= cost[i] and kl[j] <= kl[i]
                     and (cost[j], kl[j]) != (cost[i], kl[i])]
        assert info["on_front"] == (not beaten_by)
        assert info["on_front"] == (i in analysis["front"])
        if not info["on_front"]:
            best = info["dominators"][0]
            assert best in beaten_by
            assert kl[best] == min(kl[j] for j in beaten_by)
    text = pareto.conclusion(results, analyses)
    on = analysis["rules"]["unified"]["on_front"]
    assert text.startswith("The unified rule's mix is on the measured (area x time, KL) front "
                           f"in {int(on)} of 1 ")
    assert path.is_file() and path.stat().st_size > 10_000


def test_short_run_measures(short_run):
    (result,), _ = short_run[:2]
    for point in result["points"]:
        assert point["kl"] >= 0 and point["kl_se"] >= 0
        assert 0 <= point["agreement"] <= 1 and 0 <= point["top1"] <= 1
        assert np.isfinite(point["sqnr"])
        assert point["cost"].area > 0 and point["cost"].cycles > 0
    body = pareto.section(*short_run[:2], {"digits": "img/pareto_digits.png"}, pareto.SEED,
                          "python bench/pareto.py")
    for rule in RULES:
        assert f"| {rule} |" in body
