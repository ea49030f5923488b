"""The demo report: every section rendered to Markdown and HTML from a run's files, its numbers
formatted by kind, its accuracies with their noise, its plots labelled."""
import json
import re
from html.parser import HTMLParser

import matplotlib.pyplot as plt
import pytest

from intvit.plots import SOFTMAX_FLOOR, accuracy_figure, softmax_figure
from intvit.report import (SECTIONS, accuracy, count, markdown_to_html, ratio,
                           standard_error, write_report)

LAYERS = {"blocks.0.norm1": ("layernorm", ["ibert", "ivit", "fqvit"]),
          "blocks.0.attn.softmax": ("softmax", ["iptq", "ivit", "ibert", "fqvit"]),
          "blocks.0.mlp.gelu": ("gelu", ["iptq", "ivit", "ibert"])}


def fake_run(directory, model=None):
    scores = {layer: {f"{kind}/{m}": {"op": f"{kind}/{m}", "sqnr_in": 30.0, "sqnr_out": 25.0 + i,
                                      "sqnr_diff": -5.0 + i, "perturbation": 1e-4 / (i + 1),
                                      "cost": 1e5 * (i + 1), "omega": 0.5 + 0.1 * i}
                      | {"cost": 123456.789 * (i + 1), "perturbation": 1 / 3 * 1e-4}
                      for i, m in enumerate(methods)}
              for layer, (kind, methods) in LAYERS.items()}
    assignment = {layer: f"{kind}/{methods[-1]}" for layer, (kind, methods) in LAYERS.items()}
    accuracy = {"float": 0.9775, "stage2": 0.98, "stage3": 0.5517241379310345}
    files = {
        "quant.json": {"spec": {}, "rule": "unified", "assignment": assignment,
                       "accuracy": accuracy, "scores": scores},
        "rules.json": {"unified": {"accuracy": accuracy, "assignment": assignment, "cost": 3e5},
                       "all-ivit": {"accuracy": accuracy, "assignment": assignment, "cost": 4e5}},
        "quantize.done": {"cost_table": "fpga/tables/ecp5.json", "measured": True,
                          "accuracy": accuracy},
        "sim.done": {"verdicts": {"softmax/fqvit": {"checked": 17408, "mismatches": 0,
                                                    "cycles": 2000, "passed": True,
                                                    "first_mismatch": None, "waveform": None},
                                  "gelu/ibert": {"checked": 256, "mismatches": 1, "cycles": 300,
                                                 "passed": False, "first_mismatch": "beat 3",
                                                 "waveform": "dump.fst"}}},
        "vectors.done": {"units": {"softmax/fqvit": {"layer": "blocks.0.attn.softmax",
                                                     "masked_rows": 0},
                                   "gelu/ibert": {"layer": "blocks.0.mlp.gelu"}}},
        "accelerator.done": {"images": 16, "mismatches": 0, "image_cycles": [81805] * 16,
                             "model_cycles": 81805, "gemm_cycles": 55659,
                             "by_kind": {"GEMM": 56334, "layernorm": 10712},
                             "steps": 84, "units": ["layernorm/ibert", "softmax/iptq"],
                             "first_mismatch": None, "first_step": None,
                             "program": "accelerator/program.json"},
        "cost.done": {"entries": {"softmax/fqvit": {"resources": {"LUT": 1900, "FF": 800,
                                                                  "DSP": 2, "BRAM": 1},
                                                    "fmax_mhz": 88.5,
                                                    "elements_per_cycle": 0.5517241379310345,
                                                    "source": "checked-in table"}}},
    }
    if model is not None:
        files["quant.json"]["model"] = model
    for name, data in files.items():
        (directory / name).write_text(json.dumps(data))


class Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.headings, self.images, self.cells, self._tag = [], [], [], None

    def handle_starttag(self, tag, attrs):
        self._tag = tag
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        if self._tag in ("h1", "h2") and data.strip():
            self.headings.append(data.strip())
        if self._tag == "td" and data.strip():
            self.cells.append(data.strip())


def test_report_has_every_section_in_markdown_and_html(tmp_path):
    fake_run(tmp_path)
    files = write_report(tmp_path)
    text = (tmp_path / "report.md").read_text()
    for section in SECTIONS:
        assert f"## {section}" in text
    page = Collector()
    page.feed((tmp_path / "report.html").read_text())
    assert page.headings[1:] == list(SECTIONS)
    for src in page.images:
        assert (tmp_path / src).stat().st_size > 10_000, src  # the plots were drawn
    assert "FAIL: beat 3 (wave dump.fst)" in page.cells  # a failing unit says why
    assert "88.5" in page.cells and files["html"].endswith("report.html")


def test_markdown_subset_is_escaped_and_converted():
    page = markdown_to_html("# T\n\n| a | b |\n|---|---|\n| **x** | <y> |\n\nsome `code`", "t")
    assert "<th>a</th>" in page and "<strong>x</strong>" in page and "&lt;y&gt;" in page
    assert re.search(r"<p>some <code>code</code></p>", page)


def report_tables(text):
    return [line for line in text.splitlines() if line.startswith("|")]


def test_numbers_are_formatted_by_kind(tmp_path):
    fake_run(tmp_path)
    write_report(tmp_path)
    rows = report_tables((tmp_path / "report.md").read_text())
    raw = [row for row in rows if re.search(r"\d\.\d{4,}", row)]
    assert raw == []  # no 0.5517241379310345 in any table
    table = "\n".join(rows)
    assert "| 0.552 |" in table  # elements per cycle
    assert "| 1,900 |" in table and "| 17,408 |" in table  # counts with separators
    assert "| 370,370 |" in table and "| 27.0 |" in table  # a cost product (3 x 123456.789), dB
    assert count(2.0) == "2" and ratio(1.0) == "1" and ratio(0.5) == "0.5"


def test_every_accuracy_carries_its_noise(tmp_path):
    fake_run(tmp_path)
    write_report(tmp_path)
    text = (tmp_path / "report.md").read_text()
    percents = re.findall(r"\d+\.\d+%( ± \d+\.\d\d)?", text)
    assert percents and all(percents)  # every accuracy has a ±
    assert "98.00% ± 0.70" in text  # sqrt(0.98 * 0.02 / 400) = 0.70 points
    assert "one image is 0.25 points" in text
    assert accuracy(0.98, 400) == "98.00% ± 0.70"
    assert standard_error(1.0, 400) == 0.0


def test_accuracy_plot_has_error_bars():
    accuracies = {"unified": {"float": 0.9775, "stage2": 0.98, "stage3": 0.9825},
                  "all-ivit": {"float": 0.9775, "stage2": 0.97, "stage3": 0.9775}}
    errors = {rule: {stage: standard_error(p, 400) for stage, p in a.items()}
              for rule, a in accuracies.items()}
    fig = accuracy_figure(accuracies, errors, 400)
    ax = fig.axes[0]
    assert len(ax.containers) == 2  # stage 2 and stage 3, each an errorbar container
    for container in ax.containers:
        segments = container.lines[2][0].get_segments()
        heights = sorted(round(abs(s[1][1] - s[0][1]) / 2, 4) for s in segments)
        expected = sorted(round(100 * standard_error(p, 400), 4)
                          for a in accuracies.values() for stage, p in a.items()
                          if container.get_label().startswith(stage.replace("stage", "stage ")))
        assert heights == expected
    assert any("s.e." in t.get_text() for t in ax.get_legend().get_texts())
    plt.close(fig)


def test_softmax_log_plot_labels_its_floor():
    fig = softmax_figure()
    top = fig.axes[0]
    legend = [t.get_text() for t in top.get_legend().get_texts()]
    assert any(f"{SOFTMAX_FLOOR:g}" in text and "clipped" in text for text in legend)
    assert "clipped" in top.get_ylabel()
    assert top.get_ylim()[0] <= SOFTMAX_FLOOR
    plt.close(fig)


@pytest.mark.parametrize("model, images", [(None, 400), ("digits", 400), ("mnist", 1000)])
def test_accuracies_carry_the_noise_of_the_runs_own_test_split(tmp_path, model, images):
    """The digits test split has 400 images, MNIST's 1,000 (dataset split sizes); the noise
    note and every ± follow the model that quant.json names."""
    fake_run(tmp_path, model)
    write_report(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert f"n = {images:,} test images" in text
    assert f"({images:,} images)" in text
    se = 100 * (0.98 * 0.02 / images) ** 0.5
    assert f"98.00% ± {se:.2f}" in text


def test_a_swin_run_reports_its_masked_rows_and_the_skipped_accelerator(tmp_path):
    """A Swin's demo: the softmax vectors' masked window rows are counted in the verdicts, and
    the accelerator section says why it was not simulated and gives the cycle model's figures."""
    fake_run(tmp_path, model="mnist-swin")
    vectors = json.loads((tmp_path / "vectors.done").read_text())
    vectors["units"]["softmax/fqvit"].update(layer="layers.0.blocks.1.attn.softmax",
                                            masked_rows=142)
    (tmp_path / "vectors.done").write_text(json.dumps(vectors))
    (tmp_path / "accelerator.done").write_text(json.dumps(
        {"skipped": "ViT/DeiT only", "model_cycles": 337035, "gemm_cycles": 158979,
         "by_kind": {"GEMM": 158979, "softmax": 178056}}))
    write_report(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "| softmax/fqvit | layers.0.blocks.1.attn.softmax | 142 | 17,408 |" in text
    assert ("## The whole model on the accelerator\n\nNot simulated: ViT/DeiT only. The cycle "
            "model: 337,035 cycles per image, the GEMM array busy 158,979 of them (2.12x).") \
        in text
    assert "| softmax | 178,056 | 0.528 |" in text
