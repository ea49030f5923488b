"""The demo's report: ``report.md`` and a self-contained-looking ``report.html`` (pictures beside
it in ``img/``), built from the files the stages wrote."""
import html
import json
import re
from pathlib import Path

from intvit.golden_model.files import write_text_atomic

SECTIONS = ("Accuracy", "Per-layer choices", "Unified metric per layer",
            "Approximation curves", "Hardware cost", "Simulation verdicts")


def _table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def _read(out: Path, name: str) -> dict:
    return json.loads((out / name).read_text())


def build_markdown(out: Path) -> str:
    from intvit.plots import gelu_curves, omega_per_layer, softmax_curves

    rules = _read(out, "rules.json")
    quant = _read(out, "quant.json")
    quantize = _read(out, "quantize.done")
    verdicts = _read(out, "sim.done")["verdicts"]
    costs = _read(out, "cost.done")["entries"]
    acc = quant["accuracy"]
    parts = [f"# intvit demo report: the bundled ViT, integer-only\n\nFloat test accuracy "
             f"**{acc['float']:.2%}**; integer-only (W8A8, unified rule) **{acc['stage3']:.2%}**. "
             f"Units verified bit-exactly under Verilator: "
             f"**{sum(v['passed'] for v in verdicts.values())}/{len(verdicts)}**."]

    rows = [[rule, f"{r['accuracy']['stage2']:.2%}", f"{r['accuracy']['stage3']:.2%}",
             f"{r['cost']:.3g}"] for rule, r in rules.items()]
    parts.append("## Accuracy\n\nTest split (400 images) at W8A8. *Stage 2*: the rule's mix "
                 "calibrated on float activations; *stage 3*: recalibrated on its own integer "
                 "activations. Cost: LUT-equivalents x cycles over the 17 non-linear layers "
                 f"(cost table `{Path(quantize['cost_table']).name}`"
                 f"{'' if quantize['measured'] else ', a stand-in of operation counts'}).\n\n"
                 + _table(["rule", "stage 2", "stage 3", "cost of the mix"], rows))

    scores = quant["scores"]
    rows = []
    for layer, op in quant["assignment"].items():
        s = scores[layer][op]
        others = ", ".join(f"{o.split('/')[1]} {c['omega']:.2f}" for o, c in scores[layer].items()
                           if o != op)
        rows.append([layer, f"**{op}**", f"{s['sqnr_out']:.1f}", f"{s['perturbation']:.2e}",
                     f"{s['cost']:.3g}", f"{s['omega']:.2f}", others])
    parts.append("## Per-layer choices\n\nThe unified rule's candidate per layer with its terms: "
                 "Q = output ASQNR (dB), P = KL of the model output, C = cost, and the other "
                 "candidates' Omega.\n\n"
                 + _table(["layer", "chosen", "Q dB", "P", "C", "Omega", "others (Omega)"], rows))

    img = out / "img"
    omega_plot = omega_per_layer({l: {o: c["omega"] for o, c in cs.items()}
                                  for l, cs in scores.items()}, quant["assignment"],
                                 img / "omega.png")
    parts.append(f"## Unified metric per layer\n\n![Omega per layer](img/{omega_plot.name})")
    gelu = gelu_curves(img / "gelu.png")
    softmax = softmax_curves(img / "softmax.png")
    parts.append("## Approximation curves\n\n"
                 f"![GELU candidates](img/{gelu.name})\n\n![Softmax candidates](img/{softmax.name})")

    rows = []
    for op, e in costs.items():
        r = e["resources"]
        rows.append([op, r.get("LUT", 0), r.get("FF", 0), r.get("DSP", 0), r.get("BRAM", 0),
                     f"{e.get('fmax_mhz') or 0:.1f}", e.get("elements_per_cycle", ""),
                     e["source"]])
    parts.append("## Hardware cost\n\nECP5 (LFE5U-85F, CABGA381, speed 6), Yosys `synth_ecp5` "
                 "and nextpnr-ecp5 out of context, one lane, each unit at its example 8-bit "
                 "config.\n\n" + _table(["unit", "LUT", "FF", "DSP", "BRAM", "Fmax MHz",
                                         "elements/cycle", "source"], rows))

    rows = [[op, f"{v['checked']:,}", v["mismatches"], f"{v['cycles']:,}",
             "PASS" if v["passed"] else f"FAIL: {v['first_mismatch']} (wave {v['waveform']})"]
            for op, v in verdicts.items()]
    parts.append("## Simulation verdicts\n\nEach chosen unit, built from its first layer's "
                 "config, fed with that layer's real integer inputs on test images, compared "
                 "bit for bit with the golden model (cocotb under Verilator); the GEMM array "
                 "(per-channel requantization) on block 0's real QKV layer, whose output equals "
                 "the integer model's.\n\n"
                 + _table(["unit", "outputs checked", "mismatches", "cycles", "verdict"], rows))
    return "\n\n".join(parts) + "\n"


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
