"""GEMM array benchmark: cycles, utilization and latency on ViT layer shapes.

The bundled model's products are simulated under Verilator (random W8A8 operands, every output
checked bit-exactly against the golden model; cycles measured), DeiT-Tiny's are predicted by the
dataflow model ``intvit.golden_model.gemm.predicted_cycles``, which equals the simulated count on every
simulated shape (``sim/test_gemm.py``). Utilization is ``M*K*N / (R*C*cycles)``; latency is
``cycles / Fmax``.

    python bench/gemm.py [--fmax MHz] [--rows 8 --cols 8] [--no-sim]
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import ROOT, write_section  # noqa: E402
from intvit.golden_model.gemm import (BUNDLED_SHAPES, DEIT_TINY_SHAPES, GemmConfig,  # noqa: E402
                               example_requant, predicted_cycles, utilization)

HEADER = ("| model | layer | M x K x N | MACs | cycles | from | utilization | latency (us) |\n"
          "| --- | --- | --- | ---: | ---: | --- | ---: | ---: |")


def row(model: str, layer: str, shape, cycles: int, source: str, config: GemmConfig,
        fmax_mhz: float) -> str:
    m, k, n = shape
    return (f"| {model} | {layer} | {m} x {k} x {n} | {m * k * n:,} | {cycles:,} | {source} | "
            f"{utilization(m, k, n, config, cycles):.1%} | {cycles / fmax_mhz:,.2f} |")


def simulated_rows(config: GemmConfig, fmax_mhz: float, work_dir: Path) -> tuple[list[str], int]:
    """Rows for the bundled model's shapes, simulated; and the total number of mismatches."""
    from intvit.sim.gemm_bench import verify_gemm

    runs = verify_gemm(config, example_requant(), BUNDLED_SHAPES, work_dir=work_dir)
    rows, mismatches = [], 0
    for run in runs:
        print(run.summary(), file=sys.stderr)
        mismatches += run.result.mismatches
        source = ("simulated" if run.result.cycles == run.predicted
                  else f"simulated (model {run.predicted:,})")
        rows.append(row("bundled", run.name, run.shape, run.result.cycles, source, config,
                        fmax_mhz))
    return rows, mismatches


def predicted_rows(model: str, shapes: dict, config: GemmConfig, fmax_mhz: float) -> list[str]:
    return [row(model, name, shape, predicted_cycles(*shape, config), "predicted", config,
                fmax_mhz) for name, shape in shapes.items()]


def measured_fmax(rows: int, cols: int) -> tuple[float, str]:
    """The array's Fmax from the ECP5 cost table, or 100 MHz when it has none."""
    path = ROOT / "fpga" / "tables" / "ecp5.json"
    entry = json.loads(path.read_text())["entries"].get(f"gemm/{rows}x{cols}", {}) \
        if path.exists() else {}
    if entry.get("fmax_mhz"):
        return float(entry["fmax_mhz"]), "measured ECP5 Fmax of this array, fpga/tables/ecp5.json"
    return 100.0, "no measured Fmax for this array: assumed"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fmax", type=float, default=None,
                        help="clock in MHz for the latency column (default: the array's "
                             "measured ECP5 Fmax from fpga/tables/ecp5.json, else 100)")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--cols", type=int, default=8)
    parser.add_argument("--no-sim", action="store_true",
                        help="predict the bundled model's shapes too instead of simulating")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench/gemm"))
    args = parser.parse_args(argv)
    fmax_source = "given"
    if args.fmax is None:
        args.fmax, fmax_source = measured_fmax(args.rows, args.cols)
    if not args.fmax > 0:
        parser.error(f"--fmax must be a positive clock in MHz (got {args.fmax})")
    config = GemmConfig(rows=args.rows, cols=args.cols)

    mismatches = 0
    if args.no_sim:
        bundled = predicted_rows("bundled", BUNDLED_SHAPES, config, args.fmax)
    else:
        bundled, mismatches = simulated_rows(config, args.fmax, args.work_dir)
    deit = predicted_rows("DeiT-Tiny", DEIT_TINY_SHAPES, config, args.fmax)
    command = "python bench/gemm.py"
    text = "\n".join([
        "Cycles from the first input beat to the last output row; "
        f"utilization = M*K*N / ({config.rows}*{config.cols}*cycles); latency at "
        f"{args.fmax:g} MHz ({fmax_source}). Simulated rows: random W8A8 operands under Verilator, "
        f"{mismatches} mismatches; predicted rows: `intvit.golden_model.gemm.predicted_cycles` "
        "(= K + (T-1)*max(K, R+1) + R + 4 for T output tiles), which equals the simulated "
        "count on every simulated shape. W4A8 takes the same cycles. Per-head attention "
        "products are one head's.", "", HEADER, *bundled, *deit, ""])
    write_section("gemm", f"Integer GEMM array ({config.rows} x {config.cols}, "
                  "output-stationary)", command, text)
    print(text)
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
