"""The bad-input contract, row by row (issue 14): every bad input gives one line on stderr,
``intvit COMMAND: what was wrong; what to do``, exit status 2, no traceback, and nothing written
(no output file, no output directory, the working directory unchanged).

Every test runs the real command line in-process (``intvit.cli.main``), except the read-only
directory test, which runs it in a subprocess as an unprivileged user when the tests run as root
(root may write in a mode 0o500 directory, so only another user can show the refusal).
"""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import torch

from intvit.cli import main
from intvit.golden_model.checkpoint import BUNDLED_WEIGHTS
from intvit.golden_model.vectors import make_vectors, save_vectors

UNWRITABLE = "/proc/intvit-test"
"""No process may create anything under /proc, root included."""


def tree(directory):
    """Every path under ``directory`` with its size and modification time."""
    return {(str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in directory.rglob("*")}


def expect_refusal(argv, words, directory, capsys):
    """``intvit argv`` exits 2 with one stderr line holding ``words`` and writes nothing in
    ``directory`` (the test's working directory)."""
    before = tree(directory)
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"intvit {argv[0]}: ") and "Traceback" not in err
    assert words in err, err
    assert tree(directory) == before
    return err


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """The test's working directory, holding a regular file ``afile`` to misuse as a directory
    and a minimal ``quant.json``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a regular file\n")
    (tmp_path / "quant.json").write_text(json.dumps({"spec": {}, "rule": "unified",
                                                     "assignment": {}}))
    return tmp_path


FILE_WRITERS = {
    "verilog": ["verilog", "requant", "-o"],
    "vectors": ["vectors", "requant", "-o"],
    "cost": ["cost", "requant", "--target", "xilinx", "-o"],
    "cost --all": ["cost", "--all", "-o"],
}
DIRECTORY_WRITERS = {
    "vectors --quant": ["vectors", "--quant", "quant.json", "-o"],
    "sim": ["sim", "requant", "--work-dir"],
    "quantize": ["quantize", "--rule", "all-ibert", "-o"],
    "quantize adfq": ["quantize", "--method", "adfq", "-o"],
    "demo": ["demo", "--out"],
    "report": ["report"],
}


@pytest.mark.parametrize("path, words", [(f"{UNWRITABLE}/out.x", "cannot write"),
                                         (".", "is a directory"),
                                         ("afile/x.v", "afile is not a directory")])
@pytest.mark.parametrize("command", FILE_WRITERS)
def test_unwritable_output_file_is_refused_before_work(command, path, words, workdir, capsys):
    """Row 1 (files): an output under /proc, ``-o .`` and ``-o file/x.v``."""
    start = time.monotonic()
    expect_refusal(FILE_WRITERS[command] + [path], words, workdir, capsys)
    assert time.monotonic() - start < 10  # no synthesis, no sweep ran first
    assert not os.path.exists(path) or os.path.isdir(path)


@pytest.mark.parametrize("path, words", [(UNWRITABLE, "cannot write"),
                                         ("afile", "not a directory"),
                                         ("afile/sub", "not a directory")])
@pytest.mark.parametrize("command", DIRECTORY_WRITERS)
def test_unwritable_output_directory_is_refused_before_work(command, path, words, workdir,
                                                           capsys):
    """Row 1 (directories): ``quantize`` refused at once, not after its 20 s of scoring."""
    start = time.monotonic()
    err = expect_refusal(DIRECTORY_WRITERS[command] + [path], "", workdir, capsys)
    assert words in err or (command == "report" and "not a directory" in err), err
    assert time.monotonic() - start < 10
    assert not os.path.exists(UNWRITABLE)


def run_without_privileges(argv):
    """The command line as root with every capability dropped (``setpriv``), so that file
    permissions bind it as they bind any user, while it can still read the project it runs
    from; a skip when ``setpriv`` is missing."""
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: root cannot be made to obey permissions")
    return subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable,
                           "-m", "intvit.cli", *argv], capture_output=True, text=True)


@pytest.mark.parametrize("argv, target", [(["verilog", "requant", "-o"], "x.v"),
                                          (["quantize", "--rule", "foo", "-o"], "run"),
                                          (["sim", "requant", "--work-dir"], "w")])
def test_read_only_directory_is_refused(argv, target):
    """Row 1 (read-only directory, mode 0o500). Root may write in such a directory (the check
    tries a real file, so it rightly lets root through); run as root, the command therefore runs
    without capabilities; run as another user, that user is the owner. Either way the refusal
    comes from the real check: creating a file there fails."""
    directory = tempfile.mkdtemp(prefix="intvit-ro-")
    try:
        os.chmod(directory, 0o500)
        if os.geteuid() == 0:
            result = run_without_privileges(argv + [f"{directory}/{target}"])
        else:
            result = subprocess.run([sys.executable, "-m", "intvit.cli", *argv,
                                     f"{directory}/{target}"], capture_output=True, text=True)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "cannot write" in result.stderr
        assert os.listdir(directory) == []
    finally:
        os.chmod(directory, 0o700)
        shutil.rmtree(directory)


def small_vector_file(path):
    from intvit.golden_model import registry

    operator = registry.get("requant")
    config = operator.example_config()
    x = np.arange(-128, 128)
    return save_vectors(path, make_vectors("requant", config, x, operator.run(config, x)))


@pytest.mark.parametrize("damage", ["truncated", "corrupted", "empty"])
def test_damaged_vector_file(damage, workdir, capsys):
    """Row 2: a truncated (or otherwise damaged) .npz is one line, not a BadZipFile traceback."""
    path = small_vector_file(workdir / "v.npz")
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "corrupted":
        path.write_bytes(data[:60] + bytes(b ^ 0x5A for b in data[60:-30]) + data[-30:])
    else:
        path.write_bytes(b"")
    expect_refusal(["sim", "requant", "--vectors", path, "--work-dir", "w"], "v.npz", workdir,
                   capsys)


@pytest.mark.parametrize("suffix", [".npz", ".pth"])
def test_calibration_archive_instead_of_npy(suffix, workdir, capsys):
    """Row 3: ``--calibration`` given an .npz or a torch file."""
    images = np.zeros((2, 1, 8, 8), np.float32)
    path = workdir / f"cal{suffix}"
    if suffix == ".npz":
        np.savez(path, images=images)
    else:
        torch.save(torch.from_numpy(images), path)
    expect_refusal(["quantize", "--model", BUNDLED_WEIGHTS, "--calibration", path, "-o", "run"],
                   "zip archive", workdir, capsys)


def write_table(path, entries):
    path.write_text(json.dumps({"target": "ecp5", "entries": entries}))
    return path


GOOD_ENTRY = {"resources": {"LUT": 100, "CARRY": 10, "FF": 50, "DSP": 1, "BRAM": 0},
              "elements_per_cycle": 1.0}


@pytest.mark.parametrize("entry, words", [
    ({"elements_per_cycle": 1.0}, "'resources'"),
    ({**GOOD_ENTRY, "elements_per_cycle": 0}, "'elements_per_cycle' must be a finite number > 0"),
    ({**GOOD_ENTRY, "elements_per_cycle": -2}, "'elements_per_cycle'"),
    ({"resources": {"LUT": 10}}, "'elements_per_cycle'"),
    ({**GOOD_ENTRY, "resources": {"LUT": "many"}}, "resources.LUT"),
    ({**GOOD_ENTRY, "resources": {"FF": 10}}, "resources name none of"),
    ("ten LUTs", "is not an object"),
])
def test_malformed_cost_table(entry, words, workdir, capsys):
    """Row 4: a cost table entry without ``resources``, ``elements_per_cycle: 0`` and the like
    are one line naming the file, the entry and the field."""
    table = write_table(workdir / "t.json", {"softmax/iptq": GOOD_ENTRY, "gelu/ivit": entry})
    err = expect_refusal(["quantize", "--cost-table", table, "-o", "run"], words, workdir,
                         capsys)
    assert "t.json" in err and "'gelu/ivit'" in err


@pytest.mark.parametrize("text", ["{", json.dumps({"entries": {}}), json.dumps([1])])
def test_cost_table_that_is_not_a_table(text, workdir, capsys):
    (workdir / "t.json").write_text(text)
    expect_refusal(["quantize", "--cost-table", "t.json", "-o", "run"], "t.json", workdir, capsys)


@pytest.mark.parametrize("images, words", [("0", ">= 1"), ("-3", ">= 1"), ("401", "1..400")])
def test_vector_images_out_of_range(images, words, workdir, capsys):
    """Row 5: ``vectors --images 0`` / ``-3`` (and more than the test split holds)."""
    expect_refusal(["vectors", "--quant", "quant.json", "--images", images, "-o", "v"], words,
                   workdir, capsys)


@pytest.mark.parametrize("stall", ["1.0", "1.5", "-0.5", "nan", "often"])
def test_stall_outside_zero_to_one(stall, workdir, capsys):
    """Row 6: ``sim --stall`` must be 0 <= p < 1 (1.0 used to hang, -0.5 was accepted)."""
    expect_refusal(["sim", "requant", f"--stall={stall}", "--work-dir", "w"], "0 <= p < 1",
                   workdir, capsys)


def test_unknown_rule_is_refused_before_scoring(workdir, capsys):
    """Row 7: ``quantize --rule foo`` at once, not after 24 s of scoring."""
    start = time.monotonic()
    expect_refusal(["quantize", "--rule", "foo", "-o", "run"], "--rule 'foo'", workdir, capsys)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("bits", ["w2a8", "w8a4", "w6a6", "w4a4"])
def test_bits_the_gemm_array_cannot_run(bits, workdir, capsys):
    """Row 8: the integer pipeline takes w8a8 and w4a8 only (the array's 8- and 4-bit
    weights)."""
    expect_refusal(["quantize", "--bits", bits, "-o", "run"], "w8a8 or w4a8", workdir, capsys)


@pytest.mark.parametrize("bits", ["w8a8", "w4a8"])
def test_adfq_bits_are_honoured_or_refused(bits, workdir, capsys):
    """Row 9: ``--bits w8a8 --method adfq`` used to become w4a4 silently."""
    expect_refusal(["quantize", "--method", "adfq", "--bits", bits, "-o", "run"],
                   "not supported by --method adfq; use w4a4 or w6a6", workdir, capsys)


@pytest.mark.parametrize("argv, words", [
    (["sim", "requant", "--seed", "-1"], "--seed"),
    (["sim", "requant", "--max-row", "0"], "--max-row"),
    (["sim", "gemm", "--vectors", "v.npz"], "gemm takes no --vectors"),
    (["sim", "requant", "--vectors", "missing.npz"], "does not exist"),
    (["sim", "requant", "--vectors", "afile", "--set", "bits=4"], "no --set"),
    (["verilog", "gemm", "--rows", "0", "-o", "g.v"], "--rows"),
    (["verilog", "gemm", "--set", "bits=4", "-o", "g.v"], "gemm takes no --set"),
    (["vectors", "requant", "--images", "3", "-o", "v.npz"], "--images applies with --quant"),
    (["vectors", "requant", "--quant", "quant.json", "-o", "v"], "no operator"),
    (["vectors", "--quant", "missing.json", "-o", "v"], "does not exist"),
    (["vectors", "-o", "v.npz"], "give an operator"),
    (["cost", "-o", "c.json"], "name an operator"),
    (["cost", "requant", "--target", "vivado"], "--target"),
    (["quantize", "--weights", "1,nan,1", "-o", "run"], "finite"),
    (["quantize", "--calibrator", "median", "-o", "run"], "calibrator"),
    (["quantize", "--gelu-output", "unsigned", "-o", "run"], "--gelu-output"),
    (["quantize", "--score-snap", "pow2", "-o", "run"], "--score-snap"),
    (["quantize", "--method", "adfq", "--score-snap", "grid", "-o", "run"], "does not apply"),
    (["quantize", "--method", "adfq", "--rule", "unified", "-o", "run"], "--rule does not apply"),
    (["quantize", "--components", "poq", "-o", "run"], "--components does not apply"),
    (["quantize", "--method", "adfq", "--components", "poq,gptq", "-o", "run"], "gptq"),
    (["quantize", "--method", "adfq", "--iterations", "0", "-o", "run"], "--iterations"),
    (["quantize", "--model", "missing.pth", "--calibration", "c.npy", "-o", "run"],
     "no such checkpoint"),
    (["quantize", "--arch", "vit_base_patch16_224", "-o", "run"], "--model PATH"),
    (["quantize", "--model", BUNDLED_WEIGHTS, "--calibration", "missing.npy", "-o", "run"],
     "do not exist"),
    (["demo", "--only", "everything"], "--only"),
    (["demo", "--out", "d", "--only", "sim"], "needs stage quantize first"),
    (["report", "missing"], "not a directory"),
    (["report", "."], "lacks"),
])
def test_every_argument_is_checked_before_work(argv, words, workdir, capsys):
    """Beyond the table: each command's numbers, files and names are checked first."""
    expect_refusal(argv, words, workdir, capsys)


def test_demo_interrupted_during_force_leaves_no_stale_marker(workdir, monkeypatch, capsys):
    """Row 10: Ctrl-C during ``demo --force`` while quant.json is being rewritten. Every marker
    of the earlier run is gone before the stage writes, so the resume redoes the stage and every
    stage after it instead of reusing a stale mix."""
    import intvit.demo as demo
    from intvit.golden_model.files import write_text_atomic

    out = workdir / "run"
    out.mkdir()
    for stage in demo.STAGES:
        (out / f"{stage}.done").write_text(json.dumps({"old": True}))
    (out / "quant.json").write_text("the earlier run's mix\n")
    ran = []

    def interrupted_stage(directory, stage, records):
        write_text_atomic(directory / "quant.json", "half of the new mix\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run_stage", interrupted_stage)
    assert main(["demo", "--out", str(out), "--force"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert sorted(out.glob("*.done")) == []

    def stage_writing_its_files(directory, stage, records):
        ran.append(stage)
        if stage == "quantize":
            write_text_atomic(directory / "quant.json", "the new mix\n")
        return demo._finish(directory, stage, {"stage": stage})

    monkeypatch.setattr(demo, "run_stage", stage_writing_its_files)
    monkeypatch.setattr(demo, "summary", lambda records: 0)
    assert main(["demo", "--out", str(out)]) == 0
    assert ran == list(demo.STAGES)
    assert (out / "quant.json").read_text() == "the new mix\n"


def test_rerunning_a_stage_clears_the_later_markers_first(workdir, monkeypatch, capsys):
    """A stage that runs (``--only``, or a resume that finds its marker missing) removes its own
    marker and every later one before it writes; the earlier ones stay."""
    import intvit.demo as demo

    out = workdir / "run"
    out.mkdir()
    for stage in demo.STAGES:
        (out / f"{stage}.done").write_text(json.dumps({"units": {}}))
    seen = {}

    def record_markers(directory, stage, records):
        seen[stage] = sorted(p.stem for p in directory.glob("*.done"))
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run_stage", record_markers)
    assert main(["demo", "--out", str(out), "--only", "verilog"]) == 130
    assert seen["verilog"] == ["quantize", "vectors"]
    (out / "vectors.done").unlink()
    (out / "verilog.done").write_text("{}")  # a stale later marker beside a missing vectors
    assert main(["demo", "--out", str(out)]) == 130
    assert seen["vectors"] == ["quantize"]


def test_vector_config_out_of_range_is_an_input_error(workdir, capsys):
    """A vector file whose stored config is invalid is refused before any RTL."""
    path = small_vector_file(workdir / "v.npz")
    from intvit.golden_model.vectors import load_vectors

    vectors = load_vectors(path)
    save_vectors(path, dataclasses.replace(vectors, config={**vectors.config, "out_bits": 1}))
    expect_refusal(["sim", "requant", "--vectors", path, "--work-dir", "w"], "config is invalid",
                   workdir, capsys)
