"""``intvit verilog|sim|cost accelerator`` and ``intvit perf``: the whole model's commands, and
their one-line errors (exit status 2, nothing written)."""
import json
from dataclasses import asdict

import pytest

from intvit.cli import main
from intvit.golden_model.errors import IntvitError
from intvit.golden_model.qvit import QuantSpec, default_assignment
from intvit.golden_model.vit import PRESETS
from intvit.hw.accelerator_timing import check_fits, shape_program

DEIT_TINY_MACS = 1.26e9
"""Multiply-accumulates of one DeiT-Tiny image (DeiT, Touvron et al. 2021, Table 1: 1.3
GFLOPs, counted as multiply-accumulates)."""


@pytest.fixture
def quant(tmp_path):
    """A bundled model's quant.json (the model is rebuilt from it: all-I-ViT, W8A8)."""
    path = tmp_path / "run" / "quant.json"
    path.parent.mkdir()
    path.write_text(json.dumps({
        "model": "digits", "spec": asdict(QuantSpec()), "rule": "all-ivit",
        "assignment": default_assignment(PRESETS["bundled"], "ivit")}))
    return path


def one_line_error(capsys, words: str):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err


def test_perf_of_deit_tiny_is_above_the_array_bound(capsys):
    """At most 64 multiply-accumulates per cycle on an 8 x 8 array: DeiT-Tiny takes at least
    its MACs / 64 cycles; the model's figure lies above that and within 1.5x of it."""
    assert main(["perf", "--arch", "deit_tiny_patch16_224", "--mhz", "100"]) == 0
    out = capsys.readouterr().out
    cycles = int(out.split(" cycles per image")[0].split(": ")[-1].replace(",", ""))
    assert DEIT_TINY_MACS / 64 <= cycles <= 1.5 * DEIT_TINY_MACS / 64
    assert "weights: streamed" in out and "images/s" in out


def test_verilog_accelerator_writes_module_and_program(quant, tmp_path, capsys):
    output = tmp_path / "accel.v"
    assert main(["verilog", "accelerator", "--quant", str(quant), "-o", str(output)]) == 0
    assert "module intvit_accelerator" in output.read_text()
    program = json.loads((tmp_path / "accel.program.json").read_text())
    assert program["steps"][0]["kind"] == "input" and program["lanes"] == 8


@pytest.mark.parametrize("argv, words", [
    (["verilog", "accelerator", "--rows", "8", "--cols", "4"], "square"),
    (["verilog", "accelerator", "--rows", "32", "--cols", "32"], "multiples of 32"),
    (["perf", "--arch", "deit_huge"], "unknown architecture"),
])
def test_bad_accelerator_input_is_one_line(argv, words, quant, tmp_path, capsys):
    output = tmp_path / "out.v"
    assert main([*argv, "--quant", str(quant), "-o", str(output)] if argv[0] != "perf"
                else argv) == 2
    one_line_error(capsys, words)
    assert not output.exists()


def test_without_a_run_the_accelerator_asks_for_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sim", "accelerator"]) == 2
    one_line_error(capsys, "intvit demo")
    assert list(tmp_path.iterdir()) == []


def test_a_model_too_large_for_the_chip_is_refused():
    with pytest.raises(IntvitError, match="LFE5U-85F"):
        check_fits(shape_program("deit_tiny_patch16_224"), "ecp5")
