"""FPGA cost of every candidate at 8-bit, side by side: ECP5 and Xilinx 7-series.

Regenerates both cost tables (``intvit cost --all`` for ecp5 and xilinx: Yosys and nextpnr-ecp5,
cached by Verilog hash and tool versions, so an unchanged unit is not synthesized again), writes
``fpga/tables/<target>.json`` and the ``cost`` section of docs/results.md. A full run from an
empty cache takes several minutes; ``--from-tables`` only reads the checked-in tables.

Usage: python bench/cost.py [--from-tables]
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import markdown_table, write_section  # noqa: E402
from intvit.fpga.table import build_table, load_table, write_table  # noqa: E402

TARGETS = ("ecp5", "xilinx")
HEADERS = ["candidate", "ECP5 LUT4", "CCU2C", "FF", "DSP", "BRAM", "Fmax (MHz)", "7-series LUT6",
           "DSP48", "elements / cycle", "LUT·cycles / element"]
BEST = {"ECP5 LUT4": min, "CCU2C": min, "FF": min, "DSP": min, "BRAM": min, "Fmax (MHz)": max,
        "7-series LUT6": min, "DSP48": min, "elements / cycle": max, "LUT·cycles / element": min}
"""Which way is better in each column."""


def lut_cycles_per_element(entry: dict) -> float:
    """ECP5 logic per element of throughput: ``(LUT4 + 2 * CCU2C) / elements per cycle`` (a
    CCU2C carry cell spans two LUT4s)."""
    res = entry["resources"]
    return (res["LUT"] + 2 * res["CARRY"]) / entry["elements_per_cycle"]


def row_values(ecp5: dict, xilinx: dict | None) -> dict:
    res = ecp5["resources"]
    return {"ECP5 LUT4": res["LUT"], "CCU2C": res["CARRY"], "FF": res["FF"], "DSP": res["DSP"],
            "BRAM": res["BRAM"], "Fmax (MHz)": ecp5["fmax_mhz"],
            "7-series LUT6": xilinx["resources"]["LUT"] if xilinx else None,
            "DSP48": xilinx["resources"]["DSP"] if xilinx else None,
            "elements / cycle": ecp5["elements_per_cycle"],
            "LUT·cycles / element": lut_cycles_per_element(ecp5)}


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}" if value >= 10 else f"{value:.3f}"
    return f"{int(value):,}"


def kind_of(name: str) -> str:
    return name.split("/")[0]


def comparison_table(tables: dict) -> str:
    """One markdown table; in each kind with several candidates, the best value of each column
    in bold (every one of a tie)."""
    ecp5, xilinx = tables["ecp5"]["entries"], tables["xilinx"]["entries"]
    names = sorted(ecp5, key=lambda n: (n.startswith("gemm"), kind_of(n), n))
    values = {name: row_values(ecp5[name], xilinx.get(name)) for name in names}
    rows = []
    for name in names:
        peers = [n for n in names if kind_of(n) == kind_of(name)]
        cells = [f"`{name}`"]
        for column in HEADERS[1:]:
            value = values[name][column]
            text = fmt(value)
            column_values = [values[p][column] for p in peers if values[p][column] is not None]
            if (len(peers) > 1 and value is not None
                    and value == BEST[column](column_values)):
                text = f"**{text}**"
            cells.append(text)
        rows.append(cells)
    return markdown_table(HEADERS, rows)


BASELINE = Path(__file__).resolve().parent / "data" / "ecp5_before_issue17.json"
"""The ECP5 table before the units were pipelined (issue #17), kept to show what changed."""
FMAX_GOAL_MHZ = 100.0
"""Issue #17's clock target for every unit and the array on ECP5-85F speed 6."""


def before_after_table(ecp5: dict, baseline: dict) -> str:
    """Per entry: LUT4, DSP and Fmax before (``baseline``) and now, and whether Fmax reaches
    :data:`FMAX_GOAL_MHZ`. Entries new since the baseline show ``-`` before."""
    headers = ["unit", "LUT4 before", "LUT4 now", "DSP before", "DSP now", "Fmax before (MHz)",
               "Fmax now (MHz)", f">= {FMAX_GOAL_MHZ:g} MHz"]
    names = sorted(ecp5, key=lambda n: (n.startswith("gemm"), kind_of(n), n))
    rows = []
    for name in names:
        now, old = ecp5[name], baseline.get(name)
        res = now["resources"]
        rows.append([f"`{name}`", fmt(old and old["LUT"]), fmt(res["LUT"]),
                     fmt(old and old["DSP"]), fmt(res["DSP"]), fmt(old and old["fmax_mhz"]),
                     fmt(now["fmax_mhz"]), "yes" if now["fmax_mhz"] >= FMAX_GOAL_MHZ else "**no**"])
    return markdown_table(headers, rows)


def body(tables: dict, seconds: dict, cached: dict) -> str:
    e, x = tables["ecp5"], tables["xilinx"]
    tools = ", ".join(f"{k} {v}" for k, v in e["tools"].items())
    baseline = json.loads(BASELINE.read_text())
    return "\n".join([
        comparison_table(tables), "",
        f"ECP5: {e['device']}, Fmax from place and route at one seed with registered unit "
        f"inputs and outputs; 7-series: {x['device']}. Tools: {tools}. "
        "Each candidate at its 8-bit example config, one lane; row units (softmax, LayerNorm) "
        "hold a 256-element row (LayerNorm: its channels) and their elements per cycle is the "
        "full-row initiation interval (the unit's `row_interval` of a full row). The GEMM "
        "arrays (K up to 4096) count one multiply-accumulate as an element. LUT·cycles / "
        "element = "
        "(LUT4 + 2·CCU2C) / elements per cycle. Bold: the best of its kind in that column.",
        "",
        "### Before and after pipelining (issue #17), ECP5",
        "",
        before_after_table(e["entries"], baseline["entries"]), "",
        f"Before: {baseline['source']}. Now: the table above.",
        "",
        run_sentence(tables, seconds, cached),
    ])


def run_sentence(tables: dict, seconds: dict, cached: dict) -> str:
    """What this run did and how long it took, per target, as measured (nothing typed in):
    ``cached[t]`` entries of target ``t`` came from the cost cache, the others were synthesized;
    a target absent from ``cached`` was read from its checked-in table."""
    parts = []
    for target, spent in seconds.items():
        entries = len(tables[target]["entries"])
        if target not in cached:
            parts.append(f"{target} read from `fpga/tables/{target}.json` in {spent:.1f} s "
                         "(no synthesis run)")
        elif cached[target] == 0:
            parts.append(f"{target} {duration(spent)}, all {entries} entries synthesized "
                         "(none from the cost cache)")
        else:
            parts.append(f"{target} {duration(spent)}, {entries - cached[target]} of {entries} "
                         f"entries synthesized, {cached[target]} from the cost cache")
    return "This run: " + "; ".join(parts) + "."


def duration(seconds: float) -> str:
    """``754.2 -> '12 min 34 s'``, ``41.0 -> '41 s'``."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-tables", action="store_true",
                        help="read fpga/tables/*.json instead of regenerating them")
    args = parser.parse_args(argv)
    tables, seconds, failed, cached = {}, {}, {}, {}
    for target in TARGETS:
        start = time.monotonic()
        if args.from_tables:
            tables[target] = load_table(target)
        else:
            lines = []

            def progress(line, target=target, lines=lines):
                lines.append(line)
                print(f"{target} {line}", file=sys.stderr, flush=True)

            tables[target], failed[target] = build_table(target, progress=progress)
            write_table(tables[target])
            cached[target] = sum(line.endswith("(cached)") for line in lines)
        seconds[target] = time.monotonic() - start
    command = "python bench/cost.py" + (" --from-tables" if args.from_tables else "")
    path = write_section("cost", "FPGA cost of every candidate (8-bit)", command,
                         body(tables, seconds, cached))
    print(run_sentence(tables, seconds, cached))
    print(f"wrote {path}")
    for target, names in failed.items():
        if names:
            print(f"{target}: failed and left out: {', '.join(names)}", file=sys.stderr)
    return 1 if any(failed.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
