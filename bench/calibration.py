"""Calibration options of the integer model, each on and off: fidelity to the float model.

For a bundled model at W8A8 and W4A8, every option of :class:`~intvit.golden_model.qvit.QuantSpec`
that issue 16 item 5 adds is switched on alone against a baseline (percentile clips, symmetric
GELU output, calibrated score scale): the activation calibrator (``mse``, ``per-layer``), GELU's
asymmetric output, and the snapped score scale for each shift-based softmax candidate (the
model on ``iptq`` everywhere, and with its softmax layers on ``ivit``). Each integer model is
compared with the float model on the test split: the mean KL divergence between their output
distributions with its standard error, the paired difference of that KL to the baseline's (same
images) with its standard error, top-1 agreement, logit SQNR and top-1 accuracy with its
binomial standard error. An option "helps" where its paired KL difference is negative by more
than two standard errors.

Usage: python bench/calibration.py [--model digits] [--model mnist] [--no-write]
"""
import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import markdown_table, write_section  # noqa: E402
from intvit.golden_model.calibration import per_layer_choice  # noqa: E402
from intvit.golden_model.checkpoint import load_bundled  # noqa: E402
from intvit.golden_model.dataset import dataset, load_splits  # noqa: E402
from intvit.golden_model.metrics import kl_per_image  # noqa: E402
from intvit.golden_model.qvit import (QuantSpec, build_integer_vit,  # noqa: E402
                                      default_assignment, float_taps, quantize_images)
from intvit.golden_model.vit import nonlinear_layers  # noqa: E402

BITS = {"w8a8": 8, "w4a8": 4}
BASELINE = dict(calibrator="percentile", gelu_output="symmetric", score_snap="off")
"""The settings before issue 16: every option below changes one of them."""
OPTIONS = [
    ("clip: mse", "iptq", dict(calibrator="mse")),
    ("clip: per-layer", "iptq", dict(calibrator="per-layer")),
    ("GELU output: asymmetric", "iptq", dict(gelu_output="asymmetric")),
    ("score scale: grid (softmax/iptq)", "iptq", dict(score_snap="grid")),
    ("score scale: log2e (softmax/iptq)", "iptq", dict(score_snap="log2e")),
    ("score scale: grid (softmax/ivit)", "ivit", dict(score_snap="grid")),
    ("score scale: log2e (softmax/ivit)", "ivit", dict(score_snap="log2e")),
]
"""``(label, softmax method, changes)``: every layer on ``iptq`` except the softmax layers,
which take ``softmax method``; ``changes`` are applied to the baseline spec."""
HELPS_SE = 2.0
"""An option helps where its paired KL difference is below ``-HELPS_SE`` standard errors."""


def mean_and_se(values: np.ndarray) -> tuple[float, float]:
    """Mean and its standard error ``std(ddof=1) / sqrt(n)``."""
    return float(np.mean(values)), float(np.std(values, ddof=1) / math.sqrt(len(values)))


def fidelity(z_float: np.ndarray, z: np.ndarray, labels: np.ndarray) -> dict:
    """The measures of one integer model's dequantized logits ``z`` against the float ones."""
    kl = kl_per_image(z_float, z)
    top1 = float(np.mean(z.argmax(-1) == labels))
    noise = float(np.sum((z - z_float) ** 2))
    return {"kl": kl, "kl_mean": mean_and_se(kl),
            "agreement": float(np.mean(z.argmax(-1) == z_float.argmax(-1))),
            "sqnr": 10 * math.log10(float(np.sum(z_float ** 2)) / noise) if noise else math.inf,
            "top1": (top1, math.sqrt(top1 * (1 - top1) / len(labels)))}


def assignment_for(config, softmax_method: str) -> dict:
    """Every layer on ``iptq``, the softmax layers on ``softmax_method``."""
    assignment = default_assignment(config, "iptq")
    for layer, kind in nonlinear_layers(config).items():
        if kind == "softmax":
            assignment[layer] = f"softmax/{softmax_method}"
    return assignment


def clip_choices(ftaps: dict, config) -> dict:
    """``{tensor group: {clip: count}}`` of the per-layer calibrator over the activation
    tensors it calibrates (the non-linear layers' inputs, q, k, v and the projection input)."""
    groups: dict = {}
    tensors = dict(nonlinear_layers(config))
    for i in range(config.depth):
        tensors.update({f"blocks.{i}.attn.{t}": "q, k, v" for t in "qkv"})
        tensors[f"blocks.{i}.attn.proj"] = "attention context"
    for name, group in tensors.items():
        choice, _ = per_layer_choice(ftaps[name], 8)
        counts = groups.setdefault(group, {})
        counts[choice] = counts.get(choice, 0) + 1
    return groups


def measure(name: str) -> dict:
    """Every option on and off, at every bit width, on bundled model ``name``."""
    model, config, meta = load_bundled(name)
    splits = load_splits(meta["split_seed"], name)
    calibration, test = splits["calibration"], splits["test"]
    image_scale = dataset(name).image_scale
    ftaps = float_taps(model, calibration.images)
    with torch.no_grad():
        z_float = model(test.images).double().numpy()
    labels = test.labels.numpy()
    images_q = quantize_images(test.images.numpy(), image_scale)

    def run(spec: QuantSpec, softmax_method: str) -> dict:
        qmodel = build_integer_vit(model, None, assignment_for(config, softmax_method), spec,
                                   ftaps)
        z = qmodel.forward(images_q) * qmodel.scales["logits"]
        return fidelity(z_float, z, labels)

    results = {"float_top1": float(np.mean(z_float.argmax(-1) == labels)),
               "images": len(labels), "clips": clip_choices(ftaps, config), "rows": {}}
    for bits, weight_bits in BITS.items():
        base_spec = QuantSpec(weight_bits=weight_bits, image_scale=image_scale, **BASELINE)
        baselines = {method: run(base_spec, method) for method in ("iptq", "ivit")}
        rows = [("baseline", "iptq", baselines["iptq"], None),
                ("baseline (softmax/ivit)", "ivit", baselines["ivit"], None)]
        for label, method, changes in OPTIONS:
            got = run(replace(base_spec, **changes), method)
            rows.append((label, method, got, mean_and_se(got["kl"] - baselines[method]["kl"])))
            print(f"{name} {bits} {label}: KL {got['kl_mean'][0]:.3e}", flush=True)
        defaults = QuantSpec(weight_bits=weight_bits, image_scale=image_scale)
        got = run(defaults, "iptq")
        rows.append(("defaults (QuantSpec())", "iptq", got,
                     mean_and_se(got["kl"] - baselines["iptq"]["kl"])))
        results["rows"][bits] = rows
    return results


def helps(delta) -> bool:
    return delta is not None and delta[0] < -HELPS_SE * delta[1]


def table(rows) -> str:
    body = []
    for label, _, got, delta in rows:
        kl, kl_se = got["kl_mean"]
        top1, top1_se = got["top1"]
        change = "-" if delta is None else (f"{delta[0]:+.2e} ± {delta[1]:.1e}"
                                            + (" (helps)" if helps(delta) else ""))
        body.append([label, f"{kl:.3e} ± {kl_se:.1e}", change,
                     f"{100 * got['agreement']:.1f}%", f"{got['sqnr']:.1f}",
                     f"{100 * top1:.2f}% ± {100 * top1_se:.2f}"])
    return markdown_table(["option", "logit KL (nats)", "KL change vs baseline (paired)",
                           "top-1 agreement", "logit SQNR (dB)", "top-1"], body)


def summary(results: dict) -> str:
    """Which options help at which bits, by how much (relative to the baseline's KL)."""
    lines = []
    for label, _, _ in OPTIONS + [("defaults (QuantSpec())", None, None)]:
        parts = []
        for bits, rows in results["rows"].items():
            row = next(r for r in rows if r[0] == label)
            base = next(r for r in rows if r[1] == row[1] and r[3] is None)[2]["kl_mean"][0]
            delta = row[3]
            verdict = "helps" if helps(delta) else ("hurts" if delta[0] > HELPS_SE * delta[1]
                                                    else "no measurable change")
            parts.append(f"{bits.upper()} {verdict} (KL {100 * delta[0] / base:+.0f}%)")
        lines.append(f"- {label}: " + "; ".join(parts))
    return "\n".join(lines)


def report(name: str, results: dict) -> str:
    clips = "; ".join(f"{group}: " + ", ".join(f"{count} {clip}" for clip, count in
                                              sorted(counts.items()))
                      for group, counts in results["clips"].items())
    text = [f"Model `{name}`, {results['images']} test images, float top-1 "
            f"{100 * results['float_top1']:.2f}%. Every layer on `iptq` (the rows marked "
            "softmax/ivit: its softmax layers on `ivit`); the baseline is percentile clips, "
            "symmetric GELU output and the calibrated score scale. KL is the mean over the "
            "test images with its standard error; the paired change is the mean per-image "
            f"difference to the baseline with its standard error (\"helps\": below "
            f"-{HELPS_SE:g} standard errors). The last row is `QuantSpec()`'s defaults.",
            "", f"The per-layer clip (8-bit, float calibration taps) chose: {clips}."]
    for bits, rows in results["rows"].items():
        text += ["", f"### {bits.upper()}", "", table(rows)]
    text += ["", "Per option, against its baseline (percent change of the mean KL):", "",
             summary(results)]
    return "\n".join(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", default=None,
                        help="bundled model (digits, mnist); repeat for several (default digits)")
    parser.add_argument("--no-write", action="store_true", help="print, do not write docs")
    args = parser.parse_args(argv)
    for name in args.model or ["digits"]:
        text = report(name, measure(name))
        print(text)
        if not args.no_write:
            write_section(f"calibration-{name}", f"Calibration options ({name})",
                          f"python bench/calibration.py --model {name}", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
