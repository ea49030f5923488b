"""The three IPTQ stages: scoring on real layers, the selection rules, quant.json round trip."""
import json

import pytest

from intvit.golden_model.checkpoint import load_bundled
from intvit.golden_model.costs import load_cost_table
from intvit.golden_model.dataset import load_splits
from intvit.golden_model.errors import IntvitError
from intvit.golden_model.qvit import QuantSpec
from intvit.golden_model.quantfile import load_quant, save_quant
from intvit.golden_model.select import (CandidateScore, QuantizationResult, assign, score_layers)
from intvit.golden_model.vit import nonlinear_layers


def score(op, sqnr_out, sqnr_diff, omega):
    return CandidateScore(op, 0.0, sqnr_out, sqnr_diff, 0.0, 1.0, omega)


SCORES = {"blocks.0.attn.softmax": {
    "softmax/iptq": score("softmax/iptq", 30, -1, 0.9),
    "softmax/ibert": score("softmax/ibert", 25, -3, 0.95),
    "softmax/ivit": score("softmax/ivit", 28, -2, 0.5),
    "softmax/fqvit": score("softmax/fqvit", 12, -9, 0.2)}}


def test_rules_pick_as_defined():
    assert assign(SCORES, "unified", None) == {"blocks.0.attn.softmax": "softmax/ibert"}
    assert assign(SCORES, "sqnr-diff", None) == {"blocks.0.attn.softmax": "softmax/fqvit"}
    # iptq is not one of Mixed-NLQ's candidates, so sqnr-output takes I-ViT's 28 dB
    assert assign(SCORES, "sqnr-output", None) == {"blocks.0.attn.softmax": "softmax/ivit"}
    with pytest.raises(IntvitError, match="rule"):
        assign(SCORES, "random", None)


@pytest.fixture(scope="module")
def scored():
    model, config, _ = load_bundled()
    images = load_splits()["calibration"].images[:16]
    return config, score_layers(model, images, QuantSpec(), load_cost_table())


def test_every_layer_scores_every_candidate_of_its_kind(scored):
    config, scores = scored
    layers = nonlinear_layers(config)
    assert list(scores) == list(layers)
    expected = {"softmax": 4, "gelu": 3, "layernorm": 3}
    for layer, kind in layers.items():
        assert len(scores[layer]) == expected[kind]
        omegas = [s.omega for s in scores[layer].values()]
        assert 0 < min(omegas) and max(omegas) <= 1 + 1e-9
        for s in scores[layer].values():
            assert s.sqnr_diff == pytest.approx(s.sqnr_out - s.sqnr_in)
            assert s.perturbation >= 0 and s.cost > 0


def test_baselines_put_every_layer_on_one_method(scored):
    config, scores = scored
    chosen = assign(scores, "all-ivit", config)
    assert {op.split("/")[1] for op in chosen.values()} == {"ivit"}
    fq = assign(scores, "all-fqvit", config)
    assert {op for op in fq.values() if op.startswith("gelu")} == {"gelu/ibert"}


def test_quant_file_round_trips(scored, tmp_path):
    config, scores = scored
    assignment = assign(scores, "unified", config)
    result = QuantizationResult(QuantSpec(weight_bits=4), "unified", assignment, scores,
                                {"float": 0.9, "stage2": 0.8, "stage3": 0.85})
    path = save_quant(tmp_path / "quant.json", result)
    loaded = load_quant(path)
    assert loaded["assignment"] == assignment and loaded["spec"] == QuantSpec(weight_bits=4)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"spec": {"weight_bits": 4}}))
    with pytest.raises(IntvitError, match="quant.json") as error:
        load_quant(bad)
    assert "\n" not in str(error.value)


def test_the_cost_table_decides_a_tie_on_accuracy():
    """Two candidates equal in sensitivity and perturbation: the unified rule takes the one the
    cost table prices lower, and swapping the table's prices swaps the choice."""
    from intvit.golden_model.costs import CostTable
    from intvit.golden_model.metrics import omega

    def choose(prices):
        table = CostTable({op: {"lut_equivalent": lut, "elements_per_cycle": 1.0}
                           for op, lut in prices.items()}, "test table", True)
        terms = {op: (25.0, 1e-4, table.layer_cost(op, 17 * 17 * 4)) for op in prices}
        omegas = omega(terms)
        layer = {op: CandidateScore(op, 30.0, 25.0, -5.0, 1e-4, terms[op][2], omegas[op])
                 for op in prices}
        return assign({"blocks.0.attn.softmax": layer}, "unified", None)["blocks.0.attn.softmax"]

    assert choose({"softmax/iptq": 400, "softmax/ibert": 900}) == "softmax/iptq"
    assert choose({"softmax/iptq": 900, "softmax/ibert": 400}) == "softmax/ibert"
