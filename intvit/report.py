"""The demo's report: ``report.md`` and a self-contained-looking ``report.html`` (pictures beside
it in ``img/``), built from the files the stages wrote.

Every number is formatted by the kind of its column (:func:`percent`, :func:`accuracy`,
:func:`decibels`, :func:`count`, :func:`ratio`), never printed as a raw float; every accuracy
carries its noise: the binomial standard error over the test images it was measured on."""
import html
import json
import math
import re
from pathlib import Path

from intvit.golden_model.checkpoint import BUNDLED_NAMES
from intvit.golden_model.dataset import dataset
from intvit.golden_model.files import write_text_atomic
from intvit.plots import accuracy_per_rule, gelu_curves, omega_per_layer, softmax_curves

SECTIONS = ("Accuracy", "Per-layer choices", "Unified metric per layer",
            "Approximation curves", "Hardware cost", "Simulation verdicts",
            "The whole model on the accelerator")


def standard_error(p: float, images: int) -> float:
    """Binomial standard error ``sqrt(p (1 - p) / n)`` of an accuracy ``p`` over ``n`` images
    (a fraction, like ``p``)."""
    return math.sqrt(max(p * (1 - p), 0.0) / images)


def percent(p: float, decimals: int = 2) -> str:
    """A fraction as percent: ``0.98 -> '98.00%'``."""
    return f"{100 * p:.{decimals}f}%"


def accuracy(p: float, images: int) -> str:
    """An accuracy with its noise: ``'98.25% ± 0.66'`` (± one binomial standard error, in
    percentage points)."""
    return f"{percent(p)} ± {100 * standard_error(p, images):.2f}"


def noise_note(images: int) -> str:
    """The sentence that explains the ± of :func:`accuracy`."""
    return (f"± is one binomial standard error, sqrt(p(1 - p)/n) over the n = {images:,} test "
            f"images, in percentage points; one image is {100 / images:.2f} points.")


def decibels(value: float) -> str:
    return f"{value:.1f}"


def count(value) -> str:
    """An integer quantity (resources, cycles, cost products) with thousands separators."""
    return f"{round(value):,}"


def ratio(value: float) -> str:
    """A rate such as elements per cycle: three significant decimals, no trailing zeros."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def _read(out: Path, name: str) -> dict:
    return json.loads((out / name).read_text())


def _mix_cost_cells(cost) -> list[str]:
    """Area (LUT-equivalents) and cycles per image of a mix's cost as ``QuantizationResult``
    writes it (``intvit.golden_model.costs.MixCost``); an older run's single number is shown
    as it is, marked, in the area column."""
    if isinstance(cost, dict):
        return [count(cost["area"]), count(cost["cycles"])]
    return [f"{count(cost)} (old sum of C)", "-"]


def _accuracy_section(rules: dict, layers: int, quantize: dict, img: Path, images: int) -> str:
    rows = [[rule, accuracy(r["accuracy"]["stage2"], images),
             accuracy(r["accuracy"]["stage3"], images),
             *_mix_cost_cells(r["cost"])] for rule, r in rules.items()]
    accuracies = {rule: r["accuracy"] for rule, r in rules.items()}
    errors = {rule: {stage: standard_error(p, images) for stage, p in a.items()}
              for rule, a in accuracies.items()}
    plot = accuracy_per_rule(accuracies, errors, images, img / "accuracy.png")
    return ("## Accuracy\n\n"
            f"Evaluation split ({images:,} images) at W8A8. *Stage 2*: the rule's mix calibrated "
            "on float activations; *stage 3*: recalibrated on its own integer activations. "
            f"{noise_note(images)} Cost of the mix: the area of its distinct non-linear units, each "
            f"counted once, and their cycles per image over the {layers} non-linear layers "
            f"(cost table `{Path(quantize['cost_table']).name}`"
            f"{'' if quantize['measured'] else ', a stand-in of operation counts'}).\n\n"
            + _table(["rule", "stage 2", "stage 3", "mix area (LUT-eq)", "mix cycles / image"],
                     rows)
            + f"\n\n![Accuracy per rule](img/{plot.name})")


def _choices_section(quant: dict) -> str:
    scores = quant["scores"]
    rows = []
    for layer, op in quant["assignment"].items():
        s = scores[layer][op]
        others = ", ".join(f"{o.split('/')[1]} {c['omega']:.2f}" for o, c in scores[layer].items()
                           if o != op)
        rows.append([layer, f"**{op}**", decibels(s["sqnr_out"]), f"{s['perturbation']:.2e}",
                     count(s["cost"]), f"{s['omega']:.2f}", others])
    return ("## Per-layer choices\n\nThe unified rule's candidate per layer with its terms: "
            "Q = output ASQNR (dB), P = KL of the model output, C = cost at the layer's shape "
            "(LUT-equivalents x the unit's time for one image's rows of the layer), and the "
            "other candidates' Omega.\n\n"
            + _table(["layer", "chosen", "Q dB", "P", "C", "Omega", "others (Omega)"], rows))


def _cost_section(costs: dict) -> str:
    rows = []
    for op, e in costs.items():
        r = e["resources"]
        per_cycle = e.get("elements_per_cycle")
        rows.append([op, count(r.get("LUT", 0)), count(r.get("FF", 0)), count(r.get("DSP", 0)),
                     count(r.get("BRAM", 0)), f"{e.get('fmax_mhz') or 0:.1f}",
                     "-" if per_cycle is None else ratio(per_cycle), e["source"]])
    return ("## Hardware cost\n\nECP5 (LFE5U-85F, CABGA381, speed 6), Yosys `synth_ecp5` "
            "and nextpnr-ecp5 out of context, one lane, each unit at its example 8-bit "
            "config.\n\n" + _table(["unit", "LUT", "FF", "DSP", "BRAM", "Fmax MHz",
                                     "elements/cycle", "source"], rows))


def _verdict_section(verdicts: dict, units: dict) -> str:
    """Each unit's verdict on its layer's real inputs; ``units`` (the vectors stage's record)
    names the layer and counts its masked rows."""
    rows = [[op, units[op]["layer"] if op in units else "block 0's QKV",
             count(units.get(op, {}).get("masked_rows", 0)), count(v["checked"]),
             count(v["mismatches"]), count(v["cycles"]),
             "PASS" if v["passed"] else f"FAIL: {v['first_mismatch']} (wave {v['waveform']})"]
            for op, v in verdicts.items()]
    return ("## Simulation verdicts\n\nEach chosen unit, built from its first layer's "
            "config (a Swin's softmax: its first shifted block's, whose window rows are "
            "masked), fed with that layer's real integer inputs on test images, compared "
            "bit for bit with the golden model (cocotb under Verilator); the GEMM array "
            "(per-channel requantization) on block 0's real QKV layer, whose output equals "
            "the integer model's.\n\n"
            + _table(["unit", "layer", "masked rows", "outputs checked", "mismatches",
                      "cycles", "verdict"], rows))


def _fidelity_sentence(fidelity: dict | None) -> str:
    """The unified mix's logits against the float model's (absent from older runs)."""
    if not fidelity:
        return ""
    return (f" Against the float model on the {fidelity['images']:,} evaluation images: logit "
            f"ASQNR {decibels(fidelity['logit_sqnr_db'])} dB, KL {fidelity['kl']:.2e} ± "
            f"{fidelity['kl_se']:.1e} (one standard error), top-1 agreement "
            f"{percent(fidelity['agreement'])}.")


def build_markdown(out: Path) -> str:
    rules = _read(out, "rules.json")
    quant = _read(out, "quant.json")
    verdicts = _read(out, "sim.done")["verdicts"]
    acc = quant["accuracy"]
    img = out / "img"
    model = quant.get("model", "digits")
    counts = quant.get("images") or {"test": dataset(model).split_sizes["test"]}
    images = counts["test"]
    bundled = model in BUNDLED_NAMES
    what = f"the bundled {model} model" if bundled else f"`{model}`"
    measure = "accuracy" if bundled or (quant.get("fidelity") or {}).get("accuracy") is not \
        None else "top-1 agreement with the float model"
    parts = [f"# intvit demo report: {what}, integer-only\n\nFloat test "
             f"{measure} **{accuracy(acc['float'], images)}**; integer-only (W8A8, unified "
             f"rule) **{accuracy(acc['stage3'], images)}**. Units verified bit-exactly under "
             f"Verilator: **{sum(v['passed'] for v in verdicts.values())}/{len(verdicts)}**."
             + _fidelity_sentence(quant.get("fidelity")),
             _accuracy_section(rules, len(quant["assignment"]), _read(out, "quantize.done"),
                               img, images),
             _choices_section(quant)]

    omega_plot = omega_per_layer({l: {o: c["omega"] for o, c in cs.items()}
                                  for l, cs in quant["scores"].items()}, quant["assignment"],
                                 img / "omega.png")
    parts.append(f"## Unified metric per layer\n\n![Omega per layer](img/{omega_plot.name})")
    gelu = gelu_curves(img / "gelu.png")
    softmax = softmax_curves(img / "softmax.png")
    parts.append(f"## Approximation curves\n\n![GELU candidates](img/{gelu.name})\n\n"
                 f"![Softmax candidates](img/{softmax.name})")
    parts.append(_cost_section(_read(out, "cost.done")["entries"]))
    parts.append(_verdict_section(verdicts, _read(out, "vectors.done")["units"]))
    parts.append(_accelerator_section(_read(out, "accelerator.done")))
    return "\n\n".join(parts) + "\n"


def _accelerator_section(record: dict) -> str:
    """The whole model on the generated accelerator: bit-exactness, cycles and their shares
    (or why the stage skipped the model)."""
    total = sum(record["by_kind"].values())
    shares = _table(["step kind", "cycles per image (steps)", "fraction of the steps' cycles"],
                    [[kind, count(c), f"{c / total:.3f}"] for kind, c in record["by_kind"].items()])
    if "skipped" in record:
        return (f"## The whole model on the accelerator\n\nNot simulated: {record['skipped']}. "
                f"The cycle model: {count(record['model_cycles'])} cycles per image, the GEMM "
                f"array busy {count(record['gemm_cycles'])} of them "
                f"({record['model_cycles'] / record['gemm_cycles']:.2f}x).\n\n" + shares)
    cycles = record["image_cycles"]
    measured = sum(cycles) / len(cycles) if cycles else 0
    verdict = ("every image's logits equal the integer model's" if not record["mismatches"]
               else f"FAIL: {record['first_mismatch']}; first differing step: "
                    f"{record['first_step']}")
    return (f"## The whole model on the accelerator\n\n{record['images']} test images through "
            f"the generated accelerator ({record['steps']} program steps, units "
            f"{', '.join(f'`{u}`' for u in record['units'])}) under Verilator: {verdict}. "
            f"Cycles per image: {count(round(measured))} measured, "
            f"{count(record['model_cycles'])} by the cycle model; the GEMM array is busy "
            f"{count(record['gemm_cycles'])} of them "
            f"({record['model_cycles'] / record['gemm_cycles']:.2f}x). Program: "
            f"`{record['program']}`.\n\n" + shares)


def markdown_to_html(text: str, title: str) -> str:
    """The small Markdown subset the report uses: headings, paragraphs, bold, code, images and
    pipe tables."""
    def inline(s: str) -> str:
        s = html.escape(s)
        s = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", r'<img alt="\1" src="\2">', s)
        s = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)
        s = re.sub(r"\*([^*]+)\*", r"<em>\1</em>", s)
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", s)

    body = []
    for block in text.strip().split("\n\n"):
        lines = block.strip().splitlines()
        if lines[0].startswith("#"):
            level = len(lines[0]) - len(lines[0].lstrip("#"))
            body.append(f"<h{level}>{inline(lines[0][level:].strip())}</h{level}>")
        elif lines[0].startswith("|"):
            cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
            head = "".join(f"<th>{inline(c)}</th>" for c in cells[0])
            rows = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>"
                           for row in cells[2:])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            body.append(f"<p>{inline(' '.join(lines))}</p>")
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
             "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}"
             "th{background:#f0f0f0}img{max-width:100%}code{background:#f4f4f4}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>\n" + "\n".join(body)
            + "\n</body></html>\n")


def write_report(out: Path) -> dict:
    """Write ``report.md`` and ``report.html`` in ``out``; return their paths."""
    out = Path(out)
    text = build_markdown(out)
    md = write_text_atomic(out / "report.md", text)
    page = write_text_atomic(out / "report.html",
                             markdown_to_html(text, "intvit demo report"))
    return {"markdown": str(md), "html": str(page)}
