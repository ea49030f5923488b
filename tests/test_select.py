"""The three IPTQ stages: scoring on real layers, the selection rules, quant.json round trip,
the cost of a mix, and a cost table that lacks an entry."""
import json

import pytest

from intvit.cli import main
from intvit.golden_model.checkpoint import load_bundled
from intvit.golden_model.costs import CostTable, LayerShape, load_cost_table, mix_cost
from intvit.golden_model.dataset import load_splits
from intvit.golden_model.errors import IntvitError
from intvit.golden_model.qvit import QuantSpec
from intvit.golden_model.quantfile import load_quant, save_quant
from intvit.golden_model.select import (CandidateScore, QuantizationResult, assign,
                                        layer_shapes, score_layers)
from intvit.golden_model.vit import nonlinear_layers


def score(op, sqnr_out, sqnr_diff, perturbation, cost):
    return CandidateScore(op, 0.0, sqnr_out, sqnr_diff, perturbation, cost)


SCORES = {"blocks.0.attn.softmax": {
    "softmax/iptq": score("softmax/iptq", 30, -1, 4e-3, 100.0),
    "softmax/ibert": score("softmax/ibert", 25, -3, 1e-3, 100.0),
    "softmax/ivit": score("softmax/ivit", 28, -2, 2e-3, 100.0),
    "softmax/fqvit": score("softmax/fqvit", 12, -9, 1e-1, 100.0)}}


def test_rules_pick_as_defined():
    # equal cost (c = 1); q = 10^-3 / n: iptq 1, ivit 10^-0.2 = 0.631, ibert 0.316; p = 1e-3 / P:
    # iptq 0.25, ivit 0.5, ibert 1. Omega = 2.5 / (1/q + 1/p + 0.5): iptq 2.5 / 5.5 = 0.455,
    # ivit 2.5 / 4.085 = 0.612, ibert 2.5 / 4.662 = 0.536 -> ivit (no noise: no ties)
    assert assign(SCORES, "unified", None) == {"blocks.0.attn.softmax": "softmax/ivit"}
    # P only: ibert; Q only: iptq
    from intvit.golden_model.metrics import OmegaWeights
    assert assign(SCORES, "unified", None, OmegaWeights(0, 1, 0)) == {
        "blocks.0.attn.softmax": "softmax/ibert"}
    assert assign(SCORES, "unified", None, OmegaWeights(1, 0, 0)) == {
        "blocks.0.attn.softmax": "softmax/iptq"}
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
            assert s.perturbation >= 0 and s.cost > 0 and s.perturbation_se >= 0
            assert s.cycles > 0 and s.area > 0


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


def small_table(prices, source="test table"):
    """Row units of one lane, overhead 3, 3 passes, Fmax 100 MHz; ``prices`` in
    LUT-equivalents."""
    return CostTable({op: {"lut_equivalent": lut, "elements_per_cycle": 1.0, "lanes": 1,
                           "row_overhead": 3, "row_passes": 3, "latency": None,
                           "fmax_mhz": 100.0}
                      for op, lut in prices.items()}, source, True)


def test_the_cost_table_decides_a_tie_on_accuracy():
    """Two candidates equal in sensitivity and perturbation: the unified rule takes the one the
    cost table prices lower, and swapping the table's prices swaps the choice."""
    from intvit.golden_model.metrics import omega

    shape = LayerShape(17, 68)

    def choose(prices):
        table = small_table(prices)
        terms = {op: (25.0, 1e-4, table.layer_cost(op, shape)) for op in prices}
        omegas = omega(terms)
        layer = {op: CandidateScore(op, 30.0, 25.0, -5.0, 1e-4, terms[op][2], omegas[op])
                 for op in prices}
        return assign({"blocks.0.attn.softmax": layer}, "unified", None)["blocks.0.attn.softmax"]

    assert choose({"softmax/iptq": 400, "softmax/ibert": 900}) == "softmax/iptq"
    assert choose({"softmax/iptq": 900, "softmax/ibert": 400}) == "softmax/ibert"


def test_cost_at_the_layer_shape_by_hand():
    # 68 rows of 17, one lane, overhead 3, 3 passes: (68 + 2) * (17 + 3) = 1400 cycles; at
    # 100 MHz 14 us; 400 LUT-equivalents -> C = 400 * 14 = 5600
    table = small_table({"softmax/iptq": 400})
    assert table.cycles("softmax/iptq", LayerShape(17, 68)) == 1400
    assert table.layer_cost("softmax/iptq", LayerShape(17, 68)) == pytest.approx(5600.0)


def test_the_cost_of_a_mix_counts_each_unit_once_and_every_layer_s_cycles():
    table = CostTable({
        "softmax/a": {"lut_equivalent": 500.0, "lanes": 1, "row_overhead": 3, "row_passes": 2,
                      "latency": None, "fmax_mhz": 50.0},
        "gelu/b": {"lut_equivalent": 200.0, "lanes": 2, "row_overhead": None, "row_passes": None,
                   "latency": 9, "fmax_mhz": 80.0}}, "test table", True)
    shapes = {"s0": LayerShape(17, 68), "s1": LayerShape(17, 68), "g0": LayerShape(128, 17)}
    cost = mix_cost(table, {"s0": "softmax/a", "s1": "softmax/a", "g0": "gelu/b"}, shapes)
    # area: 500 + 200 once each = 700; cycles: two softmax layers of (68 + 1) * (17 + 3) = 1380
    # each, and ceil(17 * 128 / 2) + 9 = 1097: 2760 + 1097 = 3857; the slower clock 50 MHz ->
    # 77.14 us
    assert (cost.area, cost.cycles, cost.fmax_mhz) == (700.0, 3857, 50.0)
    assert cost.time_us == pytest.approx(77.14)
    assert cost.units == ("gelu/b", "softmax/a")
    with pytest.raises(IntvitError, match="no entry for softmax/c"):
        mix_cost(table, {"s0": "softmax/c"}, shapes)


def test_layer_shapes_are_the_taps_shapes():
    from intvit.golden_model.qvit import float_taps

    model, config, _ = load_bundled()
    taps = float_taps(model, load_splits()["calibration"].images[:2])
    for layer, shape in layer_shapes(config).items():
        assert shape == LayerShape.of(taps[layer].shape[1:]), layer
    assert layer_shapes(config)["blocks.0.attn.softmax"] == LayerShape(17, 68)


def test_a_cost_table_without_an_entry_the_mix_needs(tmp_path, monkeypatch, capsys):
    """One line, exit 2, nothing written: the table is checked before the scoring starts."""
    monkeypatch.chdir(tmp_path)
    table = json.loads(open(load_cost_table().source).read())
    del table["entries"]["softmax/fqvit"]
    (tmp_path / "t.json").write_text(json.dumps(table))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["quantize", "--cost-table", "t.json", "-o", "run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no entry for softmax/fqvit" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("weights, words", [
    ("1,1", "give three numbers"), ("1,1,0.5,1", "give three numbers"),
    ("a,b,c", "give three numbers"),
    ("1,nan,1", "finite"), ("1,1,inf", "finite"), ("-1,1,1", "negative"),
    ("0,0,0", "all zero"), ("0,-0,0.0", "all zero"), ("", "give three numbers"),
])
def test_bad_weights_on_the_command_line(weights, words, tmp_path, monkeypatch, capsys):
    """One line, exit 2, nothing written, before the model is loaded."""
    monkeypatch.chdir(tmp_path)
    assert main(["quantize", f"--weights={weights}", "-o", "run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []
