"""Every hardware unit at its example (8-bit) config, simulated under Verilator: vectors checked,
cycles per element, first-output latency, and for row units the initiation interval of
back-to-back full rows; resources and Fmax from the ECP5 cost table when it has the unit.

Usage: python bench/hw_units.py [--lanes 1 4] [--max-row 64] [--units softmax/ivit ...]

Row units also stream rows of ``SHORT_LENGTHS`` elements (17, 50) back to back (LayerNorm:
its channels, its only row length), against the unit's stated ``row_interval``.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import ROOT, markdown_table, write_section  # noqa: E402
from intvit.golden_model import registry  # noqa: E402
from intvit.golden_model.integer import signed_range  # noqa: E402
from intvit.golden_model.vectors import make_row_vectors, save_vectors  # noqa: E402
from intvit.hw.units import unit_names, build_unit  # noqa: E402
from intvit.sim.verify import verify  # noqa: E402

FULL_ROWS = 30
SWEEP_ROWS = 300
SHORT_LENGTHS = (17, 50)
"""Row lengths of the short-row interval runs (softmax units; LayerNorm rows are its channels)."""


def interval_run(name, config, lanes, max_row, work, length=None):
    """Back-to-back rows of ``length`` elements (default the unit's full length): the bench
    result (its ``max_row_interval`` is the largest gap between row ends) and the length."""
    operator = registry.get(name)
    length = length or getattr(config, "channels", None) or max_row
    lo, hi = signed_range(config.in_bits)
    rows = list(np.random.default_rng(1).integers(lo, hi, (FULL_ROWS, length), endpoint=True))
    path = save_vectors(work / f"rows{length}.npz",
                        make_row_vectors(name, config, rows, operator.run))
    result = verify(name, config, lanes=lanes, max_row=max_row, work_dir=work / f"rows{length}",
                    vectors_path=path).result
    return result, length


def interval_cell(name, config, lanes, max_row, work, length=None) -> str:
    """``gap (bound B; elements/cycle)`` of back-to-back rows, with their mismatches if any."""
    result, length = interval_run(name, config, lanes, max_row, work, length)
    bound = build_unit(name, config, lanes=lanes, max_row=max_row).row_interval(length)
    gap = result.max_row_interval
    text = f"{gap} (bound {bound}; {length / gap:.2f} el/cycle)"
    return text if not result.mismatches else f"{text}, {result.mismatches} MISMATCHES"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--max-row", type=int, default=64)
    parser.add_argument("--units", nargs="+", default=None,
                        help="only these units (the results section is then not written)")
    args = parser.parse_args()
    table_path = ROOT / "fpga" / "tables" / "ecp5.json"
    costs = json.loads(table_path.read_text())["entries"] if table_path.exists() else {}
    rows = []
    for name in args.units or unit_names():
        operator = registry.get(name)
        config = operator.example_config()
        for lanes in args.lanes:
            print(f"{name} lanes {lanes} ...", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                max_row = None
                if operator.row_wise:
                    max_row = getattr(config, "channels", None) or args.max_row
                outcome = verify(name, config, lanes=lanes, max_row=max_row, work_dir=work,
                                 row_count=SWEEP_ROWS)
                r = outcome.result
                interval, short = "-", ["-"] * len(SHORT_LENGTHS)
                if operator.row_wise:
                    interval = interval_cell(name, config, lanes, max_row, work)
                    if not hasattr(config, "channels"):
                        short = [interval_cell(name, config, lanes, max_row, work, n)
                                 for n in SHORT_LENGTHS]
            entry = costs.get(name, {}) if lanes == 1 else {}
            res = entry.get("resources", {})
            rows.append([name, lanes, f"{r.checked:,}", r.mismatches,
                         f"{r.cycles / max(r.checked, 1):.3f}", r.latency, interval, *short,
                         res.get("LUT", ""), res.get("DSP", ""),
                         f"{entry['fmax_mhz']:.1f}" if entry.get("fmax_mhz") else ""])
            print(rows[-1], flush=True)
    if args.units:
        return
    body = (markdown_table(["unit", "lanes", "vectors checked", "mismatches", "cycles/element",
                            "latency (cycles)", "full-row interval, back to back",
                            *[f"{n}-element rows" for n in SHORT_LENGTHS], "LUT",
                            "DSP", "Fmax MHz"], rows)
            + f"\n\nExample config of each unit (8-bit). Element-wise units: every input code; "
            f"row units: corner rows, the operator's sweep rows, {SWEEP_ROWS} random rows of "
            f"random length up to {args.max_row} (LayerNorm: its channels) and real bundled-"
            "model rows. Cycles per element include the row overhead of short random rows. The "
            f"interval columns stream {FULL_ROWS} rows back to back (full rows; rows of "
            f"{' and '.join(map(str, SHORT_LENGTHS))} elements for the softmax units, whose "
            "rows vary): the largest gap in cycles between the final beats of consecutive rows, "
            "against the unit's stated bound (`row_interval`), and elements per cycle. Latency: first input beat accepted to first output beat. "
            "LUT/DSP/Fmax: ECP5 cost table, one lane.")
    path = write_section("hw_units", "Hardware units in simulation",
                         "python bench/hw_units.py", body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
