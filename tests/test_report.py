"""The demo report: every section rendered to Markdown and HTML from a run's files."""
import json
import re
from html.parser import HTMLParser

from intvit.report import SECTIONS, markdown_to_html, write_report

LAYERS = {"blocks.0.norm1": ("layernorm", ["ibert", "ivit", "fqvit"]),
          "blocks.0.attn.softmax": ("softmax", ["iptq", "ivit", "ibert", "fqvit"]),
          "blocks.0.mlp.gelu": ("gelu", ["iptq", "ivit", "ibert"])}


def fake_run(directory):
    scores = {layer: {f"{kind}/{m}": {"op": f"{kind}/{m}", "sqnr_in": 30.0, "sqnr_out": 25.0 + i,
                                      "sqnr_diff": -5.0 + i, "perturbation": 1e-4 / (i + 1),
                                      "cost": 1e5 * (i + 1), "omega": 0.5 + 0.1 * i}
                      for i, m in enumerate(methods)}
              for layer, (kind, methods) in LAYERS.items()}
    assignment = {layer: f"{kind}/{methods[-1]}" for layer, (kind, methods) in LAYERS.items()}
    accuracy = {"float": 0.9775, "stage2": 0.98, "stage3": 0.9825}
    files = {
        "quant.json": {"spec": {}, "rule": "unified", "assignment": assignment,
                       "accuracy": accuracy, "scores": scores},
        "rules.json": {"unified": {"accuracy": accuracy, "assignment": assignment, "cost": 3e5},
                       "all-ivit": {"accuracy": accuracy, "assignment": assignment, "cost": 4e5}},
        "quantize.done": {"cost_table": "fpga/tables/ecp5.json", "measured": True,
                          "accuracy": accuracy},
        "sim.done": {"verdicts": {"softmax/fqvit": {"checked": 1000, "mismatches": 0,
                                                    "cycles": 2000, "passed": True,
                                                    "first_mismatch": None, "waveform": None},
                                  "gelu/ibert": {"checked": 256, "mismatches": 1, "cycles": 300,
                                                 "passed": False, "first_mismatch": "beat 3",
                                                 "waveform": "dump.fst"}}},
        "cost.done": {"entries": {"softmax/fqvit": {"resources": {"LUT": 900, "FF": 800,
                                                                  "DSP": 2, "BRAM": 1},
                                                    "fmax_mhz": 88.5, "elements_per_cycle": 1.0,
                                                    "source": "checked-in table"}}},
    }
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
