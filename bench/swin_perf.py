"""The accelerator's performance model for Swin Transformers (issue 19): ``intvit perf``'s
figures for timm's Swin-T/S/B shapes and, with ``--quant``, a quantized mnist-swin run, written
to the ``swin_perf`` section of docs/results.md.

Usage: python bench/swin_perf.py [--quant DIR] [--mhz 100]

``DIR`` is a run of ``intvit quantize --model mnist-swin -o DIR``.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import markdown_table, write_section  # noqa: E402
from intvit.golden_model.program_swin import cycle_program  # noqa: E402
from intvit.golden_model.quantfile import load_run  # noqa: E402
from intvit.golden_model.swin import PRESETS  # noqa: E402
from intvit.hw.accelerator_timing import (DEFAULT_BANDWIDTH_GBS, cycle_shares,  # noqa: E402
                                          perf_report, shape_program)


def row(name: str, program, mhz: float) -> list:
    report = perf_report(program, mhz=mhz)
    memory = sum(report["memory_bits"].values()) / 8 / 2 ** 20
    weights = report["weights"] if not report["weight_traffic_bytes"] else \
        f"streamed, {report['weight_traffic_bytes'] / 1e6:,.0f} MB per image"
    return [name, f"{report['cycles']:,}", f"{report['cycles'] / report['gemm_cycles']:.2f}",
            f"{report['utilization']:.1%}", f"{report['ms_per_image']:.2f}",
            f"{report['images_per_s']:.2f}", cycle_shares(report),
            f"{report['memory_bits']['activations'] / 8 / 1024:,.0f}", f"{memory:,.1f}",
            weights]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quant", type=Path, help="a run of intvit quantize --model mnist-swin")
    parser.add_argument("--mhz", type=float, default=100.0, help="clock (default 100 MHz)")
    args = parser.parse_args(argv)
    rows = [row(arch, shape_program(arch), args.mhz) for arch in PRESETS]
    if args.quant:
        quant, qmodel, _ = load_run(args.quant / "quant.json")
        rows.append(row(f"{quant['model']} ({quant['rule']} mix)",
                        cycle_program(qmodel), args.mhz))
    body = "\n".join([
        f"`intvit perf` on an 8 x 8 array (4 requantizer lanes) at {args.mhz:g} MHz, "
        f"weights streamed at {DEFAULT_BANDWIDTH_GBS:g} GB/s when the memories exceed an LFE5U-85F: "
        "timm's Swin shapes with all-I-ViT units (`--arch`), and the bundled 28 x 28 MNIST "
        "Swin quantized by `intvit quantize --model mnist-swin` with its own mix (`--quant`). "
        "The Swin runs as the ViT's steps (`golden_model/program_swin.py`): per block "
        "LayerNorm rows, the QKV GEMM, per window and head `q @ k^T`, the softmax rows and "
        "`probs @ v`, the projection and the MLP; a merging LayerNorm and reduction GEMM per "
        "stage; the mean pooling as a GEMM `ones(1 x T) @ h`. Costed at no cycles, by choice: "
        "window partition, cyclic shift and the 2 x 2 merge (address patterns of the steps' "
        "reads), the relative position bias (added in the scores' write-back, like the ViT's "
        "class/position add), the shifted windows' masks (a keep bit per element: rows as "
        "long) and the embedding LayerNorm's output requantizer (a few cycles per image). "
        "x GEMM = cycles over the array's busy cycles; utilization = useful MACs over 64 per "
        "cycle; memory: activations (16-bit lanes) and all memories together.", "",
        markdown_table(["model", "cycles per image", "x GEMM", "utilization", "ms per image",
                        "images/s", "cycle shares", "activation KiB", "all memories MiB",
                        "weights"], rows)])
    command = "python bench/swin_perf.py" + (f" --quant {args.quant}" if args.quant else "") \
        + (f" --mhz {args.mhz:g}" if args.mhz != 100.0 else "")
    write_section("swin_perf", "The accelerator's performance model for Swin", command, body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
