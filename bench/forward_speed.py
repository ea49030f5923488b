"""Forward speed of the integer model against the float model (issue 15).

For each DeiT preset (random timm-style init, calibrated on a few random images): seconds per
image of the float torch forward and of the integer forward (:meth:`IntegerViT.forward`'s fast
path: GEMMs by the exact float-BLAS matmul of ``golden_model/exact.py``, their requantizers in
float64 on the GEMM output, ``exact.FloatRequant``, and the codes kept as float codes into the
next GEMM or the non-linear operators' exact ``fast_run``), and of the integer forward with the
int64 requantizers (``exact.int64_requantizers``: float GEMMs, int64 requantization, int64
codes and the operators' validating ``run``, the forward before the float requantizers),
measured in the same run, alternating the three after a warm-up batch of each;
the median over ``--repeats`` batches. Unless ``--no-reference``, one batch also runs with every GEMM as
numpy's int64 product (``exact.int64_products``, the GEMMs before issue 15) and the logits are
checked equal bit for bit.

Usage: python bench/forward_speed.py [--batch 16] [--repeats 3] [--models deit_tiny_patch16_224 ...]
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import markdown_table, write_section  # noqa: E402
from intvit.golden_model.exact import int64_products, int64_requantizers  # noqa: E402
from intvit.golden_model.qvit import (QuantSpec, build_integer_vit,  # noqa: E402
                                      default_assignment, image_scale_for, quantize_images)
from intvit.golden_model.vit import PRESETS, VisionTransformer  # noqa: E402

MODELS = ("deit_tiny_patch16_224", "deit_small_patch16_224")


def seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def measure(name: str, batch: int, repeats: int, calibration: int, reference: bool) -> dict:
    torch.manual_seed(0)
    model = VisionTransformer(PRESETS[name]).eval()
    images = torch.randn(calibration, 3, 224, 224)
    spec = QuantSpec(image_scale=image_scale_for(images))
    qmodel = build_integer_vit(model, images, default_assignment(model.config, "iptq"), spec)
    x = torch.randn(batch, 3, 224, 224)
    x_q = quantize_images(x.numpy(), spec.image_scale)
    with torch.no_grad():
        model(x)
        logits = qmodel.forward(x_q)
        with int64_requantizers():
            requant_logits = qmodel.forward(x_q)
        float_times, int_times, requant_times = [], [], []
        for _ in range(repeats):
            float_times.append(seconds(lambda: model(x)) / batch)
            int_times.append(seconds(lambda: qmodel.forward(x_q)) / batch)
            with int64_requantizers():
                requant_times.append(seconds(lambda: qmodel.forward(x_q)) / batch)
    row = {"model": name, "float": statistics.median(float_times),
           "integer": statistics.median(int_times),
           "int64 requant": statistics.median(requant_times), "int64": None,
           "exact": bool(np.array_equal(logits, requant_logits))}
    if reference:
        with int64_products():
            start = time.perf_counter()
            reference_logits = qmodel.forward(x_q)
            row["int64"] = (time.perf_counter() - start) / batch
        row["exact"] = row["exact"] and bool(np.array_equal(logits, reference_logits))
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calibration", type=int, default=4, help="random calibration images")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=sorted(PRESETS))
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip the int64-GEMM reference batch (slow)")
    parser.add_argument("--no-write", dest="write", action="store_false",
                        help="print only; leave docs/results.md alone")
    args = parser.parse_args()
    rows = []
    for name in args.models:
        print(f"measuring {name} (batch {args.batch}) ...", flush=True)
        row = measure(name, args.batch, args.repeats, args.calibration, args.reference)
        print(row, flush=True)
        rows.append([row["model"], f"{row['float'] * 1e3:.0f}", f"{row['integer'] * 1e3:.0f}",
                     f"{row['integer'] / row['float']:.2f}",
                     f"{row['int64 requant'] * 1e3:.0f}",
                     f"{row['int64 requant'] / row['float']:.2f}",
                     "-" if row["int64"] is None else f"{row['int64'] * 1e3:.0f}",
                     "yes" if row["exact"] else "NO"])
    table = markdown_table(["model", "float ms/image", "integer ms/image", "integer / float",
                            "int64-requant integer ms/image", "int64-requant / float",
                            "int64-GEMM integer ms/image", "logits bit-exact"], rows)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    body = (table + f"\n\nBatch {args.batch}, median of {args.repeats} batches after a warm-up "
            f"batch, float and integer batches alternating; {os.cpu_count()} CPUs, torch "
            f"{torch.__version__} with {torch.get_num_threads()} threads, load average {load} "
            "when written. On a shared machine both times depend on the load, the multithreaded "
            "float forward's most: unloaded, DeiT-Tiny's float forward took 15-27 ms/image and "
            "the integer one with int64 requantizers 130-155 ms/image (6-9x). Random timm-style "
            "weights, calibrated on random normal images, every non-linear layer on its IPTQ "
            "candidate (W8A8). *integer*: the fast forward: float GEMMs and float64 requantizers "
            "on their output and on the residual codes that feed each LayerNorm "
            "(`exact.FloatRequant`, torch in-place ops), the codes kept as float32/float64 "
            "arrays from a requantizer into the next GEMM or the next operator's `fast_run` "
            "(LayerNorm, softmax and GELU in float64 torch and table look-ups, no input range "
            "check since a saturating requantizer feeds them), each step exact under stated "
            "bounds, else int64; *int64-requant*: float GEMMs, int64 requantizers, int64 codes "
            "and the operators' validating `run`; *int64-GEMM*: every GEMM as numpy's int64 "
            "product and int64 requantizers (the GEMMs before issue 15; the other operators "
            "already the faster ones), one batch; *bit-exact*: the logits of all three agree.")
    print(table)
    if args.write:
        command = "python bench/forward_speed.py"
        if os.environ.get("OMP_NUM_THREADS"):  # the thread count is part of the measurement
            command = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} {command}"
        if args.batch != 16:
            command += f" --batch {args.batch}"
        if args.repeats != 3:
            command += f" --repeats {args.repeats}"
        if list(args.models) != list(MODELS):
            command += " --models " + " ".join(args.models)
        if not args.reference:
            command += " --no-reference"
        path = write_section("forward_speed", "Forward speed: integer against float", command,
                             body)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
