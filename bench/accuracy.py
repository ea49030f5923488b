"""IPTQ-ViT on the bundled model: accuracy and cost of every selection rule's mix at W8A8 and
W4A8, the per-layer choices with their terms, and an ablation of the unified metric's terms.

The cost of a mix is what the hardware pays (``intvit.golden_model.costs.MixCost``): each
distinct non-linear unit's area once, and the cycles per image of the assigned units over the
model's non-linear layers. The ablation recomputes the unified rule under other weights from the
same stage-1 measurements and counts, per term, the layers whose choice changes when that term
is dropped from the default weights.

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
from intvit.golden_model.metrics import OmegaWeights, choose  # noqa: E402
from intvit.golden_model.qvit import QuantSpec, float_taps  # noqa: E402
from intvit.golden_model.select import (RULES, assign, quantize_model,  # noqa: E402
                                        score_layers)
from intvit.plots import omega_per_layer  # noqa: E402
from intvit.report import accuracy, count, noise_note, standard_error  # noqa: E402

DEFAULT = OmegaWeights()
ABLATION = {"Q only": OmegaWeights(1, 0, 0), "P only": OmegaWeights(0, 1, 0),
            "C only": OmegaWeights(0, 0, 1), "Q + P": OmegaWeights(1, 1, 0),
            "Q + C": OmegaWeights(1, 0, 0.5), "P + C": OmegaWeights(0, 1, 0.5),
            "Q + P + C (default 1, 1, 0.5)": DEFAULT}
DROPPED = {"Q": "P + C", "P": "Q + C", "C": "Q + P"}
"""Each term and the ablation row that leaves it out of the default weights."""


def changed(a: dict, b: dict) -> list[str]:
    return [layer for layer in a if a[layer] != b[layer]]


def cost_cells(cost, has_fmax: bool) -> list[str]:
    """Area, cycles per image and time per image of a :class:`MixCost`."""
    time_cell = f"{cost.time_us:.1f}" if has_fmax else "-"
    return [count(cost.area), count(cost.cycles), time_cell]


def term_effects(choices: dict[str, dict]) -> list[str]:
    """One sentence per bits: the layers each term changes (dropping it from the defaults)."""
    sentences = []
    for bits, by_label in choices.items():
        default = by_label["Q + P + C (default 1, 1, 0.5)"]
        parts = []
        for term, label in DROPPED.items():
            layers = changed(default, by_label[label])
            parts.append(f"{term} changes {len(layers)} choice{'' if len(layers) == 1 else 's'}"
                         + (f" ({', '.join(layers)})" if layers else ""))
        sentences.append(f"{bits.upper()}: dropping each term from the default weights, "
                         + "; ".join(parts) + ".")
    return sentences


def conclusion(results: list[dict], images: int) -> str:
    """The closing sentences, derived from ``results`` (``{"bits", "rule", "accuracy": {"float",
    "stage2", "stage3"}, "cost": MixCost}`` per bits and rule) measured on ``images`` test
    images: how far each stage-3 accuracy is from the float one, in images and points, against
    the noise of one accuracy (its binomial standard error); and how far apart the mixes' areas
    and cycles are."""
    gaps = [(round((r["accuracy"]["stage3"] - r["accuracy"]["float"]) * images), r)
            for r in results]
    worst_gap, worst = max(gaps, key=lambda gap: abs(gap[0]))
    reference = worst["accuracy"]["float"]
    noise = standard_error(reference, images)
    widest = abs(worst_gap) / images
    stage3 = [r["accuracy"]["stage3"] for r in results]
    spread = round((max(stage3) - min(stage3)) * images)
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
    areas = sorted(results, key=lambda r: r["cost"].area)
    cycles = sorted(results, key=lambda r: r["cost"].cycles)
    text += (f" The area of the mix ranges from {count(areas[0]['cost'].area)} LUT-equivalents "
             f"({areas[0]['rule']}) to {count(areas[-1]['cost'].area)} ({areas[-1]['rule']}), "
             f"a factor of {areas[-1]['cost'].area / areas[0]['cost'].area:.2f}; its cycles per "
             f"image from {count(cycles[0]['cost'].cycles)} ({cycles[0]['rule']}) to "
             f"{count(cycles[-1]['cost'].cycles)} ({cycles[-1]['rule']}), a factor of "
             f"{cycles[-1]['cost'].cycles / cycles[0]['cost'].cycles:.2f}.")
    return text + dominance(results)


def dominance(results: list[dict]) -> str:
    """Per bits, the rules whose mix dominates the unified rule's: no larger area, no more
    cycles per image, stage-3 accuracy no lower, and better in at least one (accuracy on this
    test set is within noise, so this is a statement about cost at equal measured accuracy)."""
    text, dominated = "", False
    for bits in dict.fromkeys(r["bits"] for r in results):
        rows = [r for r in results if r["bits"] == bits]
        unified = next(r for r in rows if r["rule"] == "unified")
        u_cost, u_acc = unified["cost"], unified["accuracy"]["stage3"]
        better = [r for r in rows if r is not unified
                  and r["cost"].area <= u_cost.area and r["cost"].cycles <= u_cost.cycles
                  and r["accuracy"]["stage3"] >= u_acc
                  and (r["cost"].area, r["cost"].cycles, r["accuracy"]["stage3"])
                  != (u_cost.area, u_cost.cycles, u_acc)]
        if not better:
            text += (f" At {bits.upper()} no other rule's mix is both cheaper (area and cycles) "
                     "and as accurate as the unified rule's.")
            continue
        names = ", ".join(f"{r['rule']} ({len(r['cost'].units)} units, area "
                          f"{count(r['cost'].area)})" for r in better)
        text += (f" At {bits.upper()} the unified mix ({len(u_cost.units)} distinct units, area "
                 f"{count(u_cost.area)}) is dominated by {names}: no larger area, no more cycles "
                 "and no lower stage-3 accuracy.")
        dominated = True
    if dominated:
        text += (" The metric's C prices each layer's unit on its own, so it cannot see that a "
                 "second softmax, GELU or LayerNorm unit adds its whole area to the mix, and it "
                 "takes each layer's time at its own unit's Fmax, while one design runs at its "
                 "slowest unit's clock.")
    return text


def main():
    model, config, _ = load_bundled()
    splits = load_splits()
    table = load_cost_table()
    print(f"cost table: {table.source}{'' if table.measured else ' (stand-in)'}", flush=True)
    rows, per_layer, ablation, results = [], [], [], []
    ablation_choices = {}
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
            result = quantize_model(model, splits, spec, rule, DEFAULT, table, scores=scores)
            acc = result.accuracy
            results.append({"bits": bits, "rule": rule, "accuracy": acc, "cost": result.cost})
            rows.append([bits.upper(), rule, accuracy(acc["float"], images),
                         accuracy(acc["stage2"], images), accuracy(acc["stage3"], images),
                         *cost_cells(result.cost, table.has_fmax)])
            print(rows[-1], flush=True)
            if bits == "w8a8" and rule == "unified":
                omegas = {l: {o: c.omega for o, c in cs.items()} for l, cs in scores.items()}
                plot = omega_per_layer(omegas, result.assignment, IMAGES / "omega_per_layer.png")
                plot = f"img/{plot.name}"
                per_layer = layer_rows(scores)
        ablation_choices[bits] = {label: assign(scores, "unified", config, weights)
                                  for label, weights in ABLATION.items()}
        if bits == "w8a8":
            for label, weights in ABLATION.items():
                result = quantize_model(model, splits, spec, "unified", weights, table,
                                        scores=scores)
                picked = sorted({op.split("/")[1] for op in result.assignment.values()})
                moved = changed(ablation_choices[bits]["Q + P + C (default 1, 1, 0.5)"],
                                result.assignment)
                ablation.append([label, accuracy(result.accuracy["stage3"], images),
                                 *cost_cells(result.cost, table.has_fmax), len(moved),
                                 ", ".join(picked)])
                print(ablation[-1], flush=True)
        rows.append([bits.upper(), "(time: stage-1 scoring / one float pass over the "
                     "calibration set)", "", "", "", "", "",
                     f"{scoring:.0f} s / {float_pass:.2f} s = {scoring / float_pass:.0f}x"])
    time_unit = "µs / image" if table.has_fmax else "(no Fmax)"
    mix_headers = ["area (LUT-eq)", "cycles / image", time_unit]
    choice_rows = [[layer] + [ablation_choices["w8a8"][label][layer].split("/")[1]
                              for label in ABLATION] for layer in ablation_choices["w8a8"]["Q only"]]
    body = (f"Cost term from `{Path(table.source).name}`"
            f"{'' if table.measured else ' (**stand-in**: operation counts)'}. Test split: "
            f"{images:,} images; calibration: {len(splits['calibration']):,}. *stage 2* = the "
            "rule's mix calibrated on float activations; *stage 3* = the same mix recalibrated "
            f"on its own integer activations. {noise_note(images)} Cost of the mix "
            "(`intvit.golden_model.costs.MixCost`, the stand-in for the accelerator model of "
            "issue #18): area = the LUT-equivalents of each distinct non-linear unit once (the "
            "GEMM array and requantizers, common to all mixes, left out); cycles per image = "
            f"the assigned units' cycles for the rows of the {len(per_layer)} non-linear layers "
            "of one image, one layer after the other; time at the slowest unit's Fmax.\n\n"
            + markdown_table(["bits", "rule", "float acc", "stage-2 acc", "stage-3 acc",
                              *mix_headers], rows)
            + "\n\n### Per-layer choice of the unified rule (W8A8)\n\n"
            "Q = output ASQNR (dB), P = mean KL ± its standard error over the calibration "
            "images, C = LUT-equivalents x the unit's time for one image's rows of the layer "
            f"({'LUT-eq·µs' if table.has_fmax else 'LUT-eq·cycles'}). *top* is the highest "
            "Omega; *tied* lists the candidates within the noise that P's standard error "
            "carries into Omega, of which the cheapest is chosen.\n\n"
            + markdown_table(["layer", "chosen", "Q dB", "P", "C", "Omega", "top", "tied"],
                             per_layer)
            + f"\n\n![{plot}]({plot})\n\n### Ablation of the unified metric's terms (W8A8)\n\n"
            + markdown_table(["weights", "stage-3 acc", *mix_headers,
                              "choices changed vs default", "methods chosen"], ablation)
            + "\n\nChoice per layer under each weighting (W8A8):\n\n"
            + markdown_table(["layer", *ABLATION], choice_rows)
            + "\n\n" + " ".join(term_effects(ablation_choices))
            + "\n\n" + conclusion(results, images))
    path = write_section("selection", "IPTQ-ViT selection on the bundled model",
                         "python bench/accuracy.py", body)
    print(f"wrote {path}")


def layer_rows(scores: dict) -> list[list]:
    """The unified rule's choice per layer under the default weights, with its terms."""
    out = []
    for layer, candidates in scores.items():
        picked = choose({op: s.terms for op, s in candidates.items()}, DEFAULT)
        s = candidates[picked.name]
        tied = ", ".join(op.split("/")[1] for op in picked.tied) if len(picked.tied) > 1 else "-"
        out.append([layer, picked.name, f"{s.sqnr_out:.1f}",
                    f"{s.perturbation:.2e} ± {s.perturbation_se:.1e}", f"{s.cost:,.0f}",
                    f"{s.omega:.3f}", picked.top.split("/")[1], tied])
    return out


if __name__ == "__main__":
    main()
