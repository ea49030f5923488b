"""IPTQ-ViT on the bundled model: accuracy of every selection rule at W8A8 and W4A8, the per-layer
choices, the per-layer metric, and an ablation of the unified metric's terms.

Usage: python bench/accuracy.py
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import IMAGES, markdown_table, write_section  # noqa: E402
from intvit.golden_model.checkpoint import load_bundled  # noqa: E402
from intvit.golden_model.costs import load_cost_table  # noqa: E402
from intvit.golden_model.dataset import load_splits  # noqa: E402
from intvit.golden_model.metrics import OmegaWeights, omega  # noqa: E402
from intvit.golden_model.qvit import QuantSpec, float_taps  # noqa: E402
from intvit.golden_model.select import RULES, quantize_model, score_layers  # noqa: E402
from intvit.plots import omega_per_layer  # noqa: E402
from intvit.report import accuracy, count, noise_note, standard_error  # noqa: E402

ABLATION = {"Q only": OmegaWeights(1, 0, 0), "P only": OmegaWeights(0, 1, 0),
            "C only": OmegaWeights(0, 0, 1), "Q + P": OmegaWeights(1, 1, 0),
            "Q + P + C (default 1, 1, 0.5)": OmegaWeights()}


def reweighted(scores, weights):
    """The same stage-1 measurements with Omega recomputed under other weights."""
    out = {}
    for layer, candidates in scores.items():
        terms = {op: (s.sqnr_out, s.perturbation, s.cost) for op, s in candidates.items()}
        values = omega(terms, weights)
        out[layer] = {op: type(s)(**{**s.__dict__, "omega": values[op]})
                      for op, s in candidates.items()}
    return out


def mix_cost(scores, assignment):
    return sum(scores[layer][op].cost for layer, op in assignment.items())


def conclusion(results: list[dict], images: int) -> str:
    """The closing sentences, derived from ``results`` (``{"bits", "rule", "accuracy": {"float",
    "stage2", "stage3"}, "cost"}`` per bits and rule) measured on ``images`` test images: how far
    each stage-3 accuracy is from the float one, in images and points, against the noise of one
    accuracy (its binomial standard error); and how far apart the costs of the mixes are."""
    gaps = [(round((r["accuracy"]["stage3"] - r["accuracy"]["float"]) * images), r)
            for r in results]
    worst_gap, worst = max(gaps, key=lambda gap: abs(gap[0]))
    reference = worst["accuracy"]["float"]
    noise = standard_error(reference, images)
    widest = abs(worst_gap) / images
    stage3 = [r["accuracy"]["stage3"] for r in results]
    spread = round((max(stage3) - min(stage3)) * images)
    cheapest = min(results, key=lambda r: r["cost"])
    dearest = max(results, key=lambda r: r["cost"])
    text = (f"Stage-3 accuracy against the float accuracy {100 * reference:.2f}%: the largest "
            f"gap is {worst_gap:+d} test image{'' if abs(worst_gap) == 1 else 's'} "
            f"({100 * widest:.2f} points; {worst['rule']} at {worst['bits'].upper()}), and the "
            f"rules' stage-3 accuracies span {spread} images. One image is {100 / images:.2f} "
            f"points and one accuracy's binomial standard error at this level is "
            f"{100 * noise:.2f} points, ")
    if widest <= 2 * noise:
        text += ("so every rule is within two standard errors of the float model: this test "
                 "set does not resolve their differences.")
    else:
        text += (f"so the largest gap is more than two standard errors "
                 f"({200 * noise:.2f} points): it is measured, not noise.")
    factor = dearest["cost"] / cheapest["cost"]
    text += (f" The cost of the mix ranges from {count(cheapest['cost'])} ({cheapest['rule']}, "
             f"{cheapest['bits'].upper()}) to {count(dearest['cost'])} ({dearest['rule']}, "
             f"{dearest['bits'].upper()}), a factor of {factor:.2f}")
    if spread / images <= 2 * noise and factor >= 1.1:
        text += ", so on this model the rules differ in the hardware cost of their mix more "
        text += "than in any accuracy difference this test set can resolve."
    else:
        text += "."
    return text


def main():
    model, _, _ = load_bundled()
    splits = load_splits()
    table = load_cost_table()
    print(f"cost table: {table.source}{'' if table.measured else ' (stand-in)'}", flush=True)
    rows, choices, ablation, results = [], None, [], []
    images = len(splits["test"])
    plot = None
    for bits in ("w8a8", "w4a8"):
        spec = QuantSpec.parse(bits)
        start = time.monotonic()
        scores = score_layers(model, splits["calibration"].images, spec, table,
                              progress=lambda i, n, l: print(f"  {bits} [{i}/{n}] {l}",
                                                             flush=True))
        scoring = time.monotonic() - start
        start = time.monotonic()
        float_taps(model, splits["calibration"].images)
        float_pass = time.monotonic() - start
        for rule in RULES:
            result = quantize_model(model, splits, spec, rule, scores=scores)
            acc, cost = result.accuracy, mix_cost(scores, result.assignment)
            results.append({"bits": bits, "rule": rule, "accuracy": acc, "cost": cost})
            rows.append([bits.upper(), rule, accuracy(acc["float"], images),
                         accuracy(acc["stage2"], images), accuracy(acc["stage3"], images),
                         count(cost)])
            print(rows[-1], flush=True)
            if bits == "w8a8" and rule == "unified":
                choices = result.assignment
                omegas = {l: {o: c.omega for o, c in cs.items()} for l, cs in scores.items()}
                plot = omega_per_layer(omegas, choices, IMAGES / "omega_per_layer.png")
                plot = f"img/{plot.name}"
        if bits == "w8a8":
            for label, weights in ABLATION.items():
                result = quantize_model(model, splits, spec, "unified",
                                        scores=reweighted(scores, weights))
                picked = sorted({op.split("/")[1] for op in result.assignment.values()})
                ablation.append([label, accuracy(result.accuracy["stage3"], images),
                                 count(mix_cost(scores, result.assignment)),
                                 ", ".join(picked)])
        rows.append([bits.upper(), "(time: stage-1 scoring / one float pass over the "
                     "calibration set)", "", "", "",
                     f"{scoring:.0f} s / {float_pass:.2f} s = {scoring / float_pass:.0f}x"])
    body = (f"Cost term from `{Path(table.source).name}`"
            f"{'' if table.measured else ' (**stand-in**: operation counts)'}. Test split: "
            f"{images:,} images; calibration: {len(splits['calibration']):,}. *stage 2* = the "
            "rule's mix calibrated on float activations; *stage 3* = the same mix recalibrated "
            f"on its own integer activations. {noise_note(images)} Cost = sum over the "
            f"{len(choices)} non-linear layers of LUT-equivalents x cycles.\n\n"
            + markdown_table(["bits", "rule", "float acc", "stage-2 acc", "stage-3 acc",
                              "cost of the mix"], rows)
            + "\n\n### Per-layer choice of the unified rule (W8A8)\n\n"
            + markdown_table(["layer", "candidate"], [[l, o] for l, o in choices.items()])
            + f"\n\n![{plot}]({plot})\n\n### Ablation of the unified metric's terms (W8A8)\n\n"
            + markdown_table(["weights", "stage-3 acc", "cost of the mix", "methods chosen"],
                             ablation)
            + "\n\n" + conclusion(results, images))
    path = write_section("selection", "IPTQ-ViT selection on the bundled model",
                         "python bench/accuracy.py", body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
