"""The cost table of a target: every registered unit at its example config, plus the GEMM array.

``intvit cost --all --target T`` writes ``fpga/tables/<T>.json``::

    {"target", "device", "tools", "command", "entries": {name: entry}}

Operator entries are :func:`intvit.fpga.cost.measure` at the operator's 8-bit example config, one lane,
row units at ``intvit.hw.units.default_max_row`` (LayerNorm: its channels, else 256). GEMM entries
(``gemm/4x4``, ``gemm/8x8``: W8A8, ``k_max`` 4096; ``gemm/8x8/per-channel`` at W8A8 and, as
``gemm/8x8/per-channel/w4``, at W4A8) count one multiply-accumulate as an element:
the array does ``R * C`` per cycle at steady state (``intvit.golden_model.gemm.tile_period``: tiles
whose ``K`` covers the time-shared drain keep every cell busy). Tool results come from the same
cache as ``measure``.
"""
import json
import time
from pathlib import Path

from intvit.golden_model.errors import IntvitError
from intvit.golden_model.files import write_text_atomic
from intvit.hw.units import unit_names, build_gemm

from .cost import TARGETS, cached_flow, config_fields, measure
from intvit.hw.export import export_verilog
from .synth import ECP5_DEVICE, XILINX_FAMILY, tool_versions

TABLES_DIR = Path(__file__).resolve().parent / "tables"
GEMM_SIZES = ((4, 4), (8, 8))
"""Array sizes in the table: a small and the default array."""
PER_CHANNEL_SIZES = ((8, 8),)
"""Sizes also measured with per-channel requantization (the demo's array)."""
DEVICES = {"ecp5": f"LFE5U-85F, nextpnr-ecp5 {' '.join(ECP5_DEVICE)} --out-of-context",
           "xilinx": f"Xilinx 7-series (yosys synth_xilinx -family {XILINX_FAMILY}), "
                     "synthesis only"}


def table_path(target: str) -> Path:
    return TABLES_DIR / f"{target}.json"


PER_CHANNEL_WEIGHT_BITS = (8, 4)
"""Weight widths of the per-channel arrays in the table: W8A8 and W4A8 (two MACs per DSP)."""


def gemm_name(rows: int, cols: int, per_channel: bool = False, weight_bits: int = 8) -> str:
    return (f"gemm/{rows}x{cols}" + ("/per-channel" if per_channel else "")
            + ("" if weight_bits == 8 else f"/w{weight_bits}"))


def measure_gemm(rows: int, cols: int, *, target: str = "ecp5", per_channel: bool = False,
                 weight_bits: int = 8) -> dict:
    """The cost entry of the W8A8 (or ``weight_bits`` 4: W4A8) GEMM array of ``rows x cols``
    cells (``k_max`` 4096), with a built-in or (``per_channel``) a streamed per-channel
    requantizer."""
    if target not in TARGETS:
        raise IntvitError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    unit = build_gemm(rows=rows, cols=cols, per_channel=per_channel, weight_bits=weight_bits)
    top = f"intvit_gemm_{rows}x{cols}"
    verilog = export_verilog(unit, top)
    result, cached, versions = cached_flow(verilog, top, target)
    return {"op": "gemm", "config": config_fields(unit.config), "lanes": cols, "target": target,
            **result, "cycles_per_beat": 1, "elements_per_cycle": rows * cols,
            "element": "multiply-accumulate", "row_overhead": None, "row_passes": None,
            "latency": unit.latency,
            "tools": versions,
            "command": f"intvit cost gemm --rows {rows} --cols {cols} --target {target}"
                       + (" --per-channel" if per_channel else "")
                       + ("" if weight_bits == 8 else f" --weight-bits {weight_bits}"),
            "cached": cached}


def jobs() -> list[tuple[str, object]]:
    """(entry name, function returning the entry given a target) for every table entry."""
    units = [(name, lambda target, name=name: measure(name, target=target))
             for name in unit_names()]
    arrays = [(gemm_name(r, c), lambda target, r=r, c=c: measure_gemm(r, c, target=target))
              for r, c in GEMM_SIZES]
    arrays += [(gemm_name(r, c, True, bits),
                lambda target, r=r, c=c, bits=bits: measure_gemm(r, c, target=target,
                                                                 per_channel=True,
                                                                 weight_bits=bits))
               for r, c in PER_CHANNEL_SIZES for bits in PER_CHANNEL_WEIGHT_BITS]
    return units + arrays


def build_table(target: str, progress=print) -> tuple[dict, dict[str, str]]:
    """Measure every entry; return (table, failures). A unit that fails is reported and left out
    of the table, so one broken unit does not stop the others."""
    if target not in TARGETS:
        raise IntvitError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    todo = jobs()
    entries, failures = {}, {}
    for done, (name, run) in enumerate(todo, start=1):
        start = time.monotonic()
        try:
            entry = run(target)
        except Exception as error:  # noqa: BLE001 - any unit's failure is reported, not fatal
            failures[name] = one_line(error)
            progress(f"[{done}/{len(todo)}] {name}: FAILED ({failures[name]})")
            continue
        entries[name] = {k: v for k, v in entry.items() if k != "cached"}
        seconds = time.monotonic() - start
        progress(f"[{done}/{len(todo)}] {name}: {summary(entry)} "
                 f"({'cached' if entry['cached'] else f'{seconds:.0f} s'})")
    table = {"target": target, "device": DEVICES[target], "tools": tool_versions(target),
             "command": f"intvit cost --all --target {target}", "entries": entries}
    return table, failures


def one_line(error: Exception) -> str:
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def summary(entry: dict) -> str:
    res = entry["resources"]
    fmax = entry.get("fmax_mhz")
    return (f"LUT {res['LUT']}, FF {res['FF']}, DSP {res['DSP']}, BRAM {res['BRAM']}"
            + (f", Fmax {fmax:.0f} MHz" if fmax else ""))


def write_table(table: dict, path=None) -> Path:
    """Write ``table`` as JSON, atomically, to ``path`` (default ``fpga/tables/<target>.json``)."""
    text = json.dumps(table, indent=1) + "\n"
    return write_text_atomic(path or table_path(table["target"]), text)


def load_table(target: str) -> dict:
    """The checked-in table of ``target``, as written by :func:`write_table`."""
    path = table_path(target)
    if not path.is_file():
        raise IntvitError(f"no cost table {path}; generate it with "
                          f"`intvit cost --all --target {target}`")
    return json.loads(path.read_text())
