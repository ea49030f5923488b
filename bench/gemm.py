"""GEMM array benchmark: cycles, utilization and latency on ViT layer shapes.

The bundled model's products are simulated under Verilator (random W8A8 operands, every output
checked bit-exactly against the golden model; cycles measured), DeiT-Tiny's are predicted by the
dataflow model ``golden_model.gemm.predicted_cycles``, which equals the simulated count on every
simulated shape (``sim/test_gemm.py``). Utilization is ``M*K*N / (R*C*cycles)``; latency is
``cycles / Fmax``.

    python bench/gemm.py [--fmax 100] [--rows 8 --cols 8] [--no-sim] [-o docs/results_gemm.md]
"""
import argparse
import sys
from pathlib import Path

from golden_model.files import write_text_atomic
from golden_model.gemm import (BUNDLED_SHAPES, DEIT_TINY_SHAPES, GemmConfig, example_requant,
                               predicted_cycles, utilization)

HEADER = ("| model | layer | M x K x N | MACs | cycles | from | utilization | latency (us) |\n"
          "| --- | --- | --- | ---: | ---: | --- | ---: | ---: |")


def row(model: str, layer: str, shape, cycles: int, source: str, config: GemmConfig,
        fmax_mhz: float) -> str:
    m, k, n = shape
    return (f"| {model} | {layer} | {m} x {k} x {n} | {m * k * n:,} | {cycles:,} | {source} | "
            f"{utilization(m, k, n, config, cycles):.1%} | {cycles / fmax_mhz:,.2f} |")


def simulated_rows(config: GemmConfig, fmax_mhz: float, work_dir: Path) -> tuple[list[str], int]:
    """Rows for the bundled model's shapes, simulated; and the total number of mismatches."""
    from sim.gemm_bench import verify_gemm

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fmax", type=float, default=100.0,
                        help="clock in MHz for the latency column (default 100; use the FPGA "
                             "flow's measured Fmax)")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--cols", type=int, default=8)
    parser.add_argument("--no-sim", action="store_true",
                        help="predict the bundled model's shapes too instead of simulating")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench/gemm"))
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/results_gemm.md"))
    args = parser.parse_args(argv)
    if not args.fmax > 0:
        parser.error(f"--fmax must be a positive clock in MHz (got {args.fmax})")
    config = GemmConfig(rows=args.rows, cols=args.cols)

    mismatches = 0
    if args.no_sim:
        bundled = predicted_rows("bundled", BUNDLED_SHAPES, config, args.fmax)
    else:
        bundled, mismatches = simulated_rows(config, args.fmax, args.work_dir)
    deit = predicted_rows("DeiT-Tiny", DEIT_TINY_SHAPES, config, args.fmax)
    command = "python bench/gemm.py" + (f" --fmax {args.fmax:g}" if args.fmax != 100 else "")
    text = "\n".join([
        f"## Integer GEMM array ({config.rows} x {config.cols}, output-stationary)", "",
        f"Produced by `{command}`. Cycles from the first input beat to the last output row; "
        f"utilization = M*K*N / ({config.rows}*{config.cols}*cycles); latency at "
        f"{args.fmax:g} MHz. Simulated rows: random W8A8 operands under Verilator, "
        f"{mismatches} mismatches; predicted rows: `golden_model.gemm.predicted_cycles` "
        "(= K + (T-1)*max(K, R+1) + R + 4 for T output tiles), which equals the simulated "
        "count on every simulated shape. W4A8 takes the same cycles. Per-head attention "
        "products are one head's.", "", HEADER, *bundled, *deit, ""])
    write_text_atomic(args.output, text)
    print(text)
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
