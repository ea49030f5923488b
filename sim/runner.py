"""Build a unit once under Verilator (cached by a hash of its Verilog) and run a cocotb bench.

The cocotb test writes its verdict (vectors checked, mismatches, cycles, first mismatch) to a
JSON file; a failing run is repeated with waveform tracing so that ``dump.fst`` is kept.
"""
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cocotb

from intvit.golden_model.files import cache_root
from intvit.hw.export import export_verilog

from .toolchain import use_verilator_env, verilator_version

TOPLEVEL = "top"


@dataclass(frozen=True)
class SimResult:
    checked: int
    mismatches: int
    cycles: int
    first_mismatch: str | None
    waveform: Path | None
    build_cached: bool
    max_row_interval: int | None = None
    """Row units: the largest gap in cycles between the final beats of consecutive rows."""
    latency: int | None = None
    """Cycles from the first input beat accepted to the first output beat."""

    @property
    def passed(self) -> bool:
        return self.mismatches == 0 and self.checked > 0

    def failure_detail(self) -> str:
        """The lines a summary adds for a failed run: the first mismatch and the waveform."""
        if not self.first_mismatch:
            return ""
        return f"\n  first mismatch: {self.first_mismatch}\n  waveform: {self.waveform}"


FAST_BUILD_FLAGS = "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0 CFG_CXXFLAGS_PCH_I=-include"
"""Make variables for the Verilated model's build: no C++ optimization (builds take about half
the time, and a cocotb bench's speed is bound by its Python side, not by the model); and the
precompiled-header include flag, which the PyPI wheel's ``verilated.mk`` leaves empty (models
split into several C++ files then fail to link without it)."""


def build_unit(component, progress: Callable[[str], None] | None = None,
               optimize: bool = False) -> tuple[Path, bool]:
    """Verilate ``component`` with FST tracing compiled in; return (build dir, was cached).

    ``optimize`` compiles the model with the C++ optimizer (a whole accelerator, whose speed is
    the model's own, not the bench's). Builds are cached by a hash of the Verilog, the tool
    versions and ``optimize``, and a lock file serializes
    processes that need the same build (parallel test workers). ``progress`` hears whether the
    build was cached, or that it starts and how long it took."""
    say = progress or (lambda line: None)
    use_verilator_env()
    verilog = export_verilog(component, TOPLEVEL)
    key = hashlib.sha256("\n".join([verilog, repr(verilator_version()), cocotb.__version__]
                                   + (["optimize"] if optimize else [])).encode()).hexdigest()[:20]
    build_dir = cache_root() / "sim" / key
    stamp = build_dir / "build.complete"
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(build_dir.parent / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            say(f"Verilator build cached ({build_dir})")
            return build_dir, True
        say("building the Verilator model (a minute or so the first time) ...")
        start = time.monotonic()
        _verilate(verilog, build_dir, optimize)
        stamp.write_text(key)
    say(f"built in {time.monotonic() - start:.0f} s")
    return build_dir, False


OPTIMIZED_BUILD_FLAGS = "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O1 CFG_CXXFLAGS_PCH_I=-include"
"""``optimize``: the model's hot code at ``-O1``."""


def _verilate(verilog: str, build_dir: Path, optimize: bool = False) -> None:
    from cocotb_tools.runner import get_runner

    shutil.rmtree(build_dir, ignore_errors=True)
    build_dir.mkdir(parents=True)
    source = build_dir / f"{TOPLEVEL}.v"
    source.write_text(verilog)
    runner = get_runner("verilator")
    saved = os.environ.get("MAKEFLAGS")
    flags = OPTIMIZED_BUILD_FLAGS if optimize else FAST_BUILD_FLAGS
    os.environ["MAKEFLAGS"] = f"{saved or ''} {flags}".strip()
    try:
        runner.build(sources=[source], hdl_toplevel=TOPLEVEL, build_dir=build_dir, waves=True,
                     build_args=trace_args(build_dir), log_file=build_dir / "build.log")
    finally:
        if saved is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved


def trace_args(build_dir: Path) -> list[str]:
    """FST tracing when the system's liblz4 runtime exists (Verilator's FST writer links
    ``-llz4``; the header is ours, in ``sim/csrc``, and a ``liblz4.so`` link in the build dir
    stands in for the development package), else VCD tracing (``dump.vcd``)."""
    library = find_shared_library("lz4")
    if library is None:
        return ["--trace"]
    link_dir = build_dir / "lib"
    link_dir.mkdir(exist_ok=True)
    (link_dir / "liblz4.so").symlink_to(library)
    csrc = Path(__file__).parent / "csrc"
    return ["--trace-fst", "-CFLAGS", f"-I{csrc}", "-LDFLAGS", f"-L{link_dir}"]


def find_shared_library(name: str) -> Path | None:
    """Full path of the system's ``lib<name>.so*`` from the dynamic linker cache, or None."""
    ldconfig = shutil.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if Path(p).exists()), None)
    if ldconfig is None:
        return None
    listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        entry = line.strip()
        if entry.startswith(f"lib{name}.so") and "=>" in entry:
            path = Path(entry.split("=>")[-1].strip())
            if path.exists():
                return path
    return None


def run_bench(component, test_module: str, vectors: Path, env: dict[str, str] | None = None,
              work_dir: Path | None = None,
              progress: Callable[[str], None] | None = None, optimize: bool = False,
              waves_on_failure: bool = True) -> SimResult:
    """Run cocotb ``test_module`` against ``component`` fed with the ``vectors`` file;
    ``progress`` receives one line per step (build, simulation, waveform rerun)."""
    from cocotb_tools.runner import get_runner

    say = progress or (lambda line: None)
    build_dir, cached = build_unit(component, progress, optimize)
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="intvit-sim-")).resolve()
    verdict_path = work_dir / "verdict.json"

    def attempt(waves: bool) -> dict:
        verdict_path.unlink(missing_ok=True)
        runner = get_runner("verilator")
        try:
            runner.test(test_module=test_module, hdl_toplevel=TOPLEVEL,
                        hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=work_dir,
                        waves=waves, results_xml=str(work_dir / "results.xml"),
                        log_file=work_dir / "sim.log",
                        extra_env={"INTVIT_VECTORS": str(Path(vectors).resolve()),
                                   "INTVIT_VERDICT": str(verdict_path), **(env or {})})
        except SystemExit:  # cocotb's runner exits when a test fails; the verdict says why
            pass
        if not verdict_path.exists():
            raise RuntimeError(f"the testbench {test_module} wrote no verdict; see "
                               f"{work_dir / 'sim.log'}")
        return json.loads(verdict_path.read_text())

    say(f"simulating ({test_module}; log {work_dir / 'sim.log'}) ...")
    start = time.monotonic()
    verdict = attempt(waves=False)
    say(f"simulated {verdict['checked']:,} outputs in {time.monotonic() - start:.0f} s")
    waveform = None
    if waves_on_failure and (verdict["mismatches"] or verdict["checked"] == 0):
        say("mismatches: simulating again with waveform tracing ...")
        attempt(waves=True)
        waveform = next(work_dir.glob("dump.*"), None)
    return SimResult(checked=verdict["checked"], mismatches=verdict["mismatches"],
                     cycles=verdict["cycles"], first_mismatch=verdict.get("first_mismatch"),
                     waveform=waveform, build_cached=cached,
                     max_row_interval=verdict.get("max_row_interval"),
                     latency=verdict.get("latency"))
