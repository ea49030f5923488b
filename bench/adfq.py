"""ADFQ-ViT ablation on the bundled model: plain uniform PTQ, each component alone, all together.

At W4A4 and W6A6 (``golden_model.adfq``, simulated quantization): test accuracy, agreement with
the float model's predictions and the SQNR of the logits against the float logits (the test set
has 400 images, so one image is 0.25 points of accuracy; the SQNR separates settings that
accuracy cannot), the outlier ratio per per-patch-quantized layer, the reconstruction time, and
each quantizer's own input SQNR against the plain uniform one.

Usage: python bench/adfq.py [--iterations N]
"""
import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import markdown_table, write_section  # noqa: E402
from golden_model import adfq as A  # noqa: E402
from golden_model.adfq import BITS, DEFAULT_ITERATIONS, quantize_adfq  # noqa: E402
from golden_model.checkpoint import load_bundled  # noqa: E402
from golden_model.dataset import load_splits  # noqa: E402

LOW_ALPHA = 2.0
"""A threshold the bundled model's post-LayerNorm values do cross (they stay below 5), to show
the outlier path at work."""
ROWS = [("plain uniform PTQ", "none", {}),
        ("POQ", "poq", {}),
        ("SLQ", "slq", {}),
        ("log2 softmax", "log2", {}),
        ("AMO", "amo", {}),
        ("all (ADFQ-ViT)", "all", {}),
        ("all, outliers int16", "all", {"outliers": "int16"}),
        ("POQ + AMO", "poq,amo", {}),
        (f"POQ, alpha {LOW_ALPHA:g}/{LOW_ALPHA:g}", "poq",
         {"alpha_qkv": LOW_ALPHA, "alpha_fc1": LOW_ALPHA})]


def run(model, splits, iterations: int) -> tuple[list, float]:
    results = []
    for bits in BITS:
        for label, components, options in ROWS:
            start = time.perf_counter()
            result = quantize_adfq(model, splits, bits, components, iterations, **options)
            result["label"], result["seconds"] = label, time.perf_counter() - start
            results.append(result)
            print(f"{bits} {label:28s} acc {result['accuracy']['quantized']:.4f} "
                  f"SQNR {result['fidelity']['logit_sqnr_db']:.2f} dB "
                  f"({result['seconds']:.0f} s)", flush=True)
    return results, results[0]["accuracy"]["float"]


def ablation_table(results) -> str:
    rows = [[r["bits"].upper(), r["label"], f"{100 * r['accuracy']['quantized']:.2f}",
             f"{100 * r['fidelity']['agreement']:.2f}", f"{r['fidelity']['logit_sqnr_db']:.2f}",
             f"{r['reconstruction_seconds']:.1f}" if r["iterations"] else "-"]
            for r in results]
    return markdown_table(["bits", "setting", "top-1 %", "agrees with float %",
                           "logit SQNR dB", "reconstruction s"], rows)


def outlier_table(results) -> str:
    chosen = [r for r in results if r["outlier_ratio"] and r["bits"] == "w4a4"
              and r["label"] in ("all (ADFQ-ViT)", ROWS[-1][0])]
    layers = list(chosen[0]["outlier_ratio"])
    headers = ["layer"] + [f"{r['label']} (alpha {r['alpha']['qkv']:g}/{r['alpha']['fc1']:g})"
                           for r in chosen]
    rows = [[layer] + [f"{100 * r['outlier_ratio'][layer]:.3f} %" for r in chosen]
            for layer in layers]
    return markdown_table(headers, rows)


QUANTIZER_PAIRS = [("attn.qkv", "uniform", "POQ"), ("mlp.fc1", "uniform", "POQ"),
                   ("mlp.fc2", "uniform", "SLQ"), ("attn.probs", "uniform", "log2")]
ALPHAS = {"attn.qkv": A.ALPHA_QKV, "mlp.fc1": A.ALPHA_FC1}


def make_quantizer(kind: str, bits: int, tap: str):
    return {"uniform": lambda: A.UniformQuantizer(bits),
            "POQ": lambda: A.PatchOutlierQuantizer(bits, ALPHAS.get(tap, A.ALPHA_QKV)),
            "SLQ": lambda: A.Log2Quantizer(bits, shifted=True),
            "log2": lambda: A.Log2Quantizer(bits)}[kind]()


def quantizer_table(model, images) -> str:
    """Input SQNR of each quantizer alone on the float model's tensors (calibration images),
    averaged over the four blocks: which distributions each quantizer suits."""
    taps: dict = {}
    with torch.no_grad():
        model(images, taps)
    rows = []
    for tap, plain, adfq in QUANTIZER_PAIRS:
        row = [tap]
        for bits in (4, 6):
            for kind in (plain, adfq):
                values = []
                for index in range(model.config.depth):
                    x = taps[f"blocks.{index}.{tap}"]
                    with torch.no_grad():
                        noise = float(((make_quantizer(kind, bits, tap)(x) - x) ** 2).sum())
                    values.append(10 * math.log10(float((x ** 2).sum()) / noise))
                row.append(f"{kind} {sum(values) / len(values):.1f}")
        rows.append(row)
    return markdown_table(["input of", "4-bit plain", "4-bit ADFQ", "6-bit plain", "6-bit ADFQ"],
                          rows)


def verdict(results) -> str:
    """The full method against plain uniform PTQ at W4A4, from the measured rows."""
    w4 = {r["label"]: r for r in results if r["bits"] == "w4a4"}
    full, plain = w4["all (ADFQ-ViT)"], w4["plain uniform PTQ"]
    beats = full["fidelity"]["logit_sqnr_db"] > plain["fidelity"]["logit_sqnr_db"]
    return (f"At W4A4 the full method {'beats' if beats else 'does not beat'} plain uniform PTQ "
            f"in logit SQNR ({full['fidelity']['logit_sqnr_db']:.2f} vs "
            f"{plain['fidelity']['logit_sqnr_db']:.2f} dB; top-1 "
            f"{100 * full['accuracy']['quantized']:.2f} vs "
            f"{100 * plain['accuracy']['quantized']:.2f} %).")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                        help=f"reconstruction iterations per module (default {DEFAULT_ITERATIONS})")
    args = parser.parse_args(argv)
    model, _, _ = load_bundled()
    splits = load_splits()
    results, float_accuracy = run(model, splits, args.iterations)
    command = "python bench/adfq.py" + ("" if args.iterations == DEFAULT_ITERATIONS
                                        else f" --iterations {args.iterations}")
    amo = [r["reconstruction_seconds"] for r in results if r["iterations"]]
    body = (f"Bundled digits ViT (float top-1 {100 * float_accuracy:.2f} % on 400 test images; "
            f"one image = 0.25 points), simulated quantization (`golden_model/adfq.py`), "
            f"calibration and reconstruction on the 100 calibration images, "
            f"{args.iterations} reconstruction iterations per module (8 modules).\n\n"
            f"{ablation_table(results)}\n\n{verdict(results)}\n\n"
            "Each quantizer alone on the float model's tensors (input SQNR in dB, calibration "
            "images, mean over the 4 blocks). A log2 grid's levels are a factor 2 apart, so its "
            "SQNR barely moves with the bit width; here it is below the uniform quantizer's at "
            "4 bits already (17-token attention rows are not peaked, GELU outputs have short "
            "tails), which is why SLQ and log2 lower the whole model's SQNR:\n\n"
            f"{quantizer_table(model, splits['calibration'].images)}\n\n"
            "Outlier ratio (share of input elements at or above alpha, test images, W4A4):\n\n"
            f"{outlier_table(results)}\n\n"
            f"Reconstruction time: {min(amo):.1f} to {max(amo):.1f} s per run on one thread "
            "(wall clock on a shared two-core machine; calibration and evaluation excluded).")
    path = write_section("adfq", "ADFQ-ViT ablation (W4A4, W6A6)", command, body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
