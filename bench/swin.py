"""IPTQ-ViT's selection on the bundled Swin (``mnist-swin``, issue 19): float top-1, integer W8A8
top-1 of every selection rule's mix (stage 2 and stage 3) and the stage-3 mix's fidelity to the
float model (logit KL, top-1 agreement, logit ASQNR; ``intvit.golden_model.select.fidelity``),
with the cost of each mix, on the mnist test split.

Stage 1 scores on the first 100 calibration images (the ``intvit quantize`` default), the
activation scales are calibrated on all 200.

Usage: python bench/swin.py
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import markdown_table, write_section  # noqa: E402
from intvit.golden_model.checkpoint import load_bundled  # noqa: E402
from intvit.golden_model.costs import load_cost_table  # noqa: E402
from intvit.golden_model.dataset import Split, dataset, load_splits  # noqa: E402
from intvit.golden_model.qvit import QuantSpec  # noqa: E402
from intvit.golden_model.select import RULES, quantize_model, score_layers  # noqa: E402
from intvit.report import accuracy, count, noise_note  # noqa: E402

MODEL = "mnist-swin"
BITS = "w8a8"
SCORE_IMAGES = 100


def main():
    model, config, meta = load_bundled(MODEL)
    splits = load_splits(meta["split_seed"], MODEL)
    calibration = splits["calibration"].images
    splits["score"] = Split(calibration[:SCORE_IMAGES], None)
    table = load_cost_table()
    spec = QuantSpec.parse(BITS, image_scale=dataset(MODEL).image_scale)
    start = time.monotonic()
    scores = score_layers(model, calibration, spec, table, score_images=splits["score"].images,
                          progress=lambda i, n, l: print(f"  [{i}/{n}] {l}", flush=True))
    scoring = time.monotonic() - start
    images, rows = len(splits["test"]), []
    for rule in RULES:
        result = quantize_model(model, splits, spec, rule, cost_table=table, scores=scores)
        acc, fid = result.accuracy, result.fidelity
        units = ", ".join(sorted({op for op in result.assignment.values()}))
        rows.append([rule, accuracy(acc["float"], images), accuracy(acc["stage2"], images),
                     accuracy(acc["stage3"], images), f"{fid['kl']:.2e} ± {fid['kl_se']:.1e}",
                     f"{100 * fid['agreement']:.1f}%", f"{fid['logit_sqnr_db']:.1f}",
                     count(result.cost.area), count(result.cost.cycles), units])
        print(rows[-1], flush=True)
    stages = ", ".join(f"{w} blocks of width {config.dim(s)} ({h} heads, "
                       f"{config.resolution(s)}x{config.resolution(s)} tokens, windows of "
                       f"{config.window(s)})" for s, (w, h) in
                       enumerate(zip(config.depths, config.num_heads)))
    body = (f"The bundled Swin (`golden_model/data/mnist_swin.pt`, trained by "
            f"`{meta['training']['command']}`): {config.patch_size}x{config.patch_size} patches, "
            f"stages of {stages}; the shifted block of stage 0 masks its windows' rows. "
            f"{BITS.upper()}, every non-linear layer on the candidate its rule assigns. Test "
            f"split: {images:,} mnist images; calibration: {len(calibration)} (stage 1 scores "
            f"on the first {SCORE_IMAGES}). *stage 2* = the rule's mix calibrated on float "
            "activations; *stage 3* = recalibrated on its own integer activations; the fidelity "
            "columns compare the stage-3 logits with the float model's over the test split "
            "(KL of the output distributions ± its standard error, top-1 agreement, logit "
            f"ASQNR). {noise_note(images)} Cost as in the ViT section (area of each distinct "
            f"unit once, cycles per image over the {len(scores)} non-linear layers), from "
            f"`{Path(table.source).name}`. Stage-1 scoring took {scoring:.0f} s.\n\n"
            + markdown_table(["rule", "float acc", "stage-2 acc", "stage-3 acc", "logit KL",
                              "agreement", "logit SQNR (dB)", "area (LUT-eq)",
                              "cycles / image", "units"], rows))
    path = write_section("swin", "IPTQ-ViT selection on the bundled Swin (mnist, W8A8)",
                         "python bench/swin.py", body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
