"""Softmax output width (issue 15): what 8, 12 and 16-bit probability codes buy, and cost.

Each linear-probability candidate (``iptq``, ``ivit``, ``ibert``) at ``out_bits`` 8, 12, 16,
FQ-ViT's log2 codes at 4 and 8 bits for reference, built as the integer ViT builds them
(``operator.calibrate`` at the calibrated score scale, snapped to the candidate's grid where it
has one: ``QuantSpec.score_snap = "grid"``, the default). Two figures, each the pooled SQNR
``10 log10(sum ref**2 / sum (approx - ref)**2)`` in dB:

- *probabilities*: the dequantized integer output against the float softmax of the unquantized
  scores;
- *probs @ v*: the dequantized integer probabilities times int8 ``v`` (as the integer GEMM
  computes it, then times its scales) against float probabilities times float ``v``.

Data: (a) random attention matrices of 50 and 197 tokens, scores ~ N(0, sigma) with sigma 1 and
3, ``v`` ~ N(0, 1) of 32 channels, each quantized at its percentile-calibrated 8-bit scale;
(b) the bundled mnist model's real attention (50 tokens, every layer and head) on test images,
scores and ``v`` quantized at the scales calibrated on its calibration split. Reference rows:
the float softmax rounded to ``b`` bits (output rounding alone), and float probabilities
times int8 ``v`` (the ceiling that ``v``'s quantization sets). Then the FPGA cost of each
width (``intvit cost softmax/<m> --set out_bits=<b>``, cached Yosys/nextpnr runs; the first run
synthesizes, a few minutes). Writes the ``softmax_bits`` section of docs/results.md and
docs/img/softmax_bits.png.

Usage: python bench/softmax_bits.py [--images N]
"""
import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import IMAGES, markdown_table, write_section  # noqa: E402
from intvit.fpga.cost import measure  # noqa: E402
from intvit.golden_model import registry  # noqa: E402
from intvit.golden_model.calibration import activation_scale, quantize  # noqa: E402
from intvit.golden_model.checkpoint import load_bundled  # noqa: E402
from intvit.golden_model.dataset import dataset, load_splits  # noqa: E402
from intvit.golden_model.integer import clamp, signed_range  # noqa: E402
from intvit.golden_model.ops.softmax import (LINEAR_PROBABILITIES, SCALE_SNAPS,  # noqa: E402
                                             softmax_reference)
from intvit.golden_model.ops.softmax.fqvit import FQVIT_OUT_BITS  # noqa: E402
from intvit.golden_model.qvit import float_taps  # noqa: E402
from intvit.golden_model.vit import nonlinear_layers  # noqa: E402
from intvit.plots import sqnr_per_width  # noqa: E402

LINEAR_WIDTHS = (8, 12, 16)
"""``out_bits`` of the linear-probability candidates (``QuantSpec.softmax_bits``: 8..16)."""
FQVIT_WIDTHS = (FQVIT_OUT_BITS, 8)
"""FQ-ViT's log2 codes: its default and its widest (the config accepts at most 8)."""
WIDTHS = {**{name: LINEAR_WIDTHS for name in LINEAR_PROBABILITIES},
          "softmax/fqvit": FQVIT_WIDTHS}
ACT_BITS = 8
"""Scores and ``v`` are int8, as in the integer ViT at W8A8 and W4A8."""
CALIBRATOR = "percentile"
"""The integer ViT's default activation calibrator (``QuantSpec.calibrator``)."""
ROW_LENGTHS = (50, 197)
"""Tokens per row: the mnist model's 7x7 patches + CLS, and a ViT-224's 14x14 + CLS."""
SIGMAS = (1.0, 3.0)
"""Spreads of the random scores in real units (a trained ViT's attention scores mostly)."""
MATRICES = 16
"""Random attention matrices (rows x rows scores, rows x ``HEAD_DIM`` values) per data set."""
HEAD_DIM = 32
"""Channels of ``v`` per head, as the mnist model's (96 / 3 heads)."""
MODEL = "mnist"
TEST_IMAGES = 64
TARGETS = ("ecp5", "xilinx")
FLOAT_V = "float probs, int8 v"
"""The reference row whose only error is ``v``'s quantization."""
INT8_SCORES = "float softmax of int8 scores"
"""The reference row whose only error is the scores' quantization."""


@dataclass(frozen=True)
class Attention:
    """One attention tensor: scores ``x`` ``(..., n, n)`` and values ``v`` ``(..., n, d)`` in
    real units, with the calibrated int8 scales of both."""
    x: np.ndarray
    v: np.ndarray
    score_scale: float
    v_scale: float


@dataclass(frozen=True)
class DataSet:
    """A named list of attention tensors whose errors are pooled (real data: one per layer,
    each with its own scales)."""
    title: str
    parts: list


def sqnr_db(reference, approx) -> float:
    """``10 log10(sum ref**2 / sum (approx - ref)**2)`` over every element (pooled SQNR;
    infinite when they are equal)."""
    reference, approx = np.asarray(reference), np.asarray(approx)
    noise = np.sum((approx - reference) ** 2)
    return float(10 * np.log10(np.sum(reference ** 2) / noise)) if noise else float("inf")


def calibrated(x, v, owner: str) -> Attention:
    """``x`` and ``v`` with their int8 scales from :data:`CALIBRATOR` on themselves."""
    return Attention(x, v, activation_scale(f"{owner} scores", x, ACT_BITS, CALIBRATOR),
                     activation_scale(f"{owner} v", v, ACT_BITS, CALIBRATOR))


def random_set(length: int, sigma: float, rng: np.random.Generator) -> DataSet:
    """:data:`MATRICES` attention matrices of ``length`` tokens: scores ~ N(0, sigma), v ~
    N(0, 1) with :data:`HEAD_DIM` channels."""
    x = rng.normal(0.0, sigma, (MATRICES, length, length))
    v = rng.normal(0.0, 1.0, (MATRICES, length, HEAD_DIM))
    return DataSet(f"random N={length} σ={sigma:g}", [calibrated(x, v, "random")])


def real_set(images: int) -> DataSet:
    """The bundled :data:`MODEL`'s scores and ``v`` of every attention layer on ``images`` test
    images, quantized at scales calibrated on its calibration split (as the integer ViT)."""
    model, config, meta = load_bundled(MODEL)
    splits = load_splits(meta["split_seed"], MODEL)
    calibration = float_taps(model, splits["calibration"].images)
    test = float_taps(model, splits["test"].images[:images])
    parts = []
    for layer, kind in nonlinear_layers(config).items():
        if kind != "softmax":
            continue
        v_tap = f"{layer.rsplit('.', 1)[0]}.v"
        parts.append(Attention(test[layer], test[v_tap],
                               activation_scale(layer, calibration[layer], ACT_BITS, CALIBRATOR),
                               activation_scale(v_tap, calibration[v_tap], ACT_BITS, CALIBRATOR)))
    tokens = parts[0].x.shape[-1]
    return DataSet(f"{MODEL} real N={tokens} ({images} test images)", parts)


def layer_config(name: str, bits: int, score_scale: float):
    """``(config, code scale)`` as the integer ViT builds them: the score scale snapped to the
    candidate's grid where it has one (``SCALE_SNAPS``, ``score_snap = "grid"``), the config
    from ``operator.calibrate`` at the snapped config scale with ``out_bits = bits``."""
    snap = SCALE_SNAPS.get(name)
    codes, config_scale = ((score_scale, score_scale) if snap is None
                           else snap(score_scale, fold_log2e=False))
    config = registry.get(name).calibrate(config_scale, None, in_bits=ACT_BITS, out_bits=bits)
    return config, codes


def integer_probabilities(name: str, bits: int, part: Attention) -> np.ndarray:
    """The candidate's dequantized output on ``part``'s scores quantized at the code scale
    (``clamp(round(x / codes))`` over the signed input range, the score requantizer's grid)."""
    config, codes = layer_config(name, bits, part.score_scale)
    lo, hi = signed_range(config.in_bits)
    q = clamp(np.round(part.x / codes).astype(np.int64), lo, hi)
    return config.dequantize_output(registry.get(name).run(config, q))


def rounded_probabilities(bits: int, part: Attention) -> np.ndarray:
    """The float softmax rounded to ``bits``-bit codes, ``round(p * 2**bits) / 2**bits``
    saturated at ``2**bits - 1``: output rounding alone."""
    top = (1 << bits) - 1
    codes = np.minimum(np.round(softmax_reference(None, part.x) * (1 << bits)), top)
    return codes / (1 << bits)


def int8_score_probabilities(part: Attention) -> np.ndarray:
    """The float softmax of the int8 scores, ``softmax(quantize(x, s, 8) * s)`` at the
    calibrated scale ``s``: score quantization alone."""
    return softmax_reference(None, quantize(part.x, part.score_scale, ACT_BITS) * part.score_scale)


def int8_v(part: Attention) -> np.ndarray:
    """``v`` as the integer GEMM sees it, dequantized: ``quantize(v, s_v, 8) * s_v``."""
    return quantize(part.v, part.v_scale, ACT_BITS) * part.v_scale


def pooled_sqnr(data: DataSet, probabilities) -> tuple[float, float]:
    """``(probabilities SQNR, probs @ v SQNR)`` of ``probabilities(part)`` over ``data``; the
    product ``(y / 2**b) @ (q_v * s_v)`` is the integer GEMM ``y @ q_v`` times its scale
    ``s_v / 2**b`` up to float64 rounding (relative ~1e-16, far below every figure here)."""
    refs, approxs, ctx_refs, ctx_approxs = [], [], [], []
    for part in data.parts:
        ref = softmax_reference(None, part.x)
        approx = probabilities(part)
        refs.append(ref.reshape(-1))
        approxs.append(approx.reshape(-1))
        ctx_refs.append((ref @ part.v).reshape(-1))
        ctx_approxs.append((approx @ int8_v(part)).reshape(-1))
    return (sqnr_db(np.concatenate(refs), np.concatenate(approxs)),
            sqnr_db(np.concatenate(ctx_refs), np.concatenate(ctx_approxs)))


def context_ceiling(data: DataSet) -> float:
    """probs @ v SQNR of float probabilities times int8 ``v``: what ``v``'s quantization alone
    allows."""
    refs = [(softmax_reference(None, p.x) @ p.v).reshape(-1) for p in data.parts]
    approxs = [(softmax_reference(None, p.x) @ int8_v(p)).reshape(-1) for p in data.parts]
    return sqnr_db(np.concatenate(refs), np.concatenate(approxs))


def error_rows(datasets: list) -> dict:
    """``{row label: [(probs SQNR, probs @ v SQNR) per data set]}``: every candidate at every
    width, then the rounded float softmax at each linear width and the float softmax of the
    int8 scores."""
    rows = {}
    for name, widths in WIDTHS.items():
        for bits in widths:
            print(f"{name} at {bits} bits ...", flush=True)
            rows[f"`{name}` {bits}-bit"] = [
                pooled_sqnr(d, lambda part: integer_probabilities(name, bits, part))
                for d in datasets]
    for bits in LINEAR_WIDTHS:
        rows[f"float softmax rounded to {bits} bits"] = [
            pooled_sqnr(d, lambda part: rounded_probabilities(bits, part)) for d in datasets]
    rows[INT8_SCORES] = [pooled_sqnr(d, int8_score_probabilities) for d in datasets]
    return rows


def cost_entries() -> dict:
    """``{(name, bits, target): cost entry}`` of every candidate at every width: the unit at
    the example config with ``out_bits = bits`` (one lane, a 256-element row buffer), as
    ``intvit cost NAME --target T --set out_bits=B`` measures it."""
    entries = {}
    for name, widths in WIDTHS.items():
        for bits in widths:
            for target in TARGETS:
                print(f"cost {name} {bits}-bit {target} ...", flush=True)
                entries[name, bits, target] = measure(name, target=target,
                                                      config_options={"out_bits": bits})
    return entries


def cost_table(entries: dict) -> str:
    rows = []
    for name, widths in WIDTHS.items():
        for bits in widths:
            ecp5, xilinx = entries[name, bits, "ecp5"], entries[name, bits, "xilinx"]
            res, xres = ecp5["resources"], xilinx["resources"]
            rows.append([f"`{name}`", bits, res["LUT"], res["CARRY"], res["FF"], res["DSP"],
                         res["BRAM"], f"{ecp5['fmax_mhz']:.1f}", xres["LUT"], xres["FF"],
                         xres["DSP"], ecp5["row_step_interval"], f"{ecp5['elements_per_cycle']:.3f}"])
    return markdown_table(["candidate", "out bits", "ECP5 LUT4", "CCU2C", "FF", "DSP", "BRAM",
                           "Fmax (MHz)", "7-series LUT6", "7-series FF", "DSP48", "row step interval",
                           "elements / cycle"], rows)


def sqnr_tables(rows: dict, ceiling: list, datasets: list) -> tuple[str, str]:
    """Markdown tables of the probabilities' and the products' SQNR (dB)."""
    headers = ["output"] + [d.title for d in datasets]
    probs = [[label] + [f"{p:.1f}" for p, _ in values] for label, values in rows.items()]
    products = [[label] + [f"{c:.1f}" for _, c in values] for label, values in rows.items()]
    products.append([FLOAT_V] + [f"{c:.1f}" for c in ceiling])
    return markdown_table(headers, probs), markdown_table(headers, products)


def plot(rows: dict, datasets: list, path: Path) -> Path:
    """Probabilities' SQNR against width, one panel per data set, one line per candidate and
    per reference row (the int8-score one flat: it has no output width)."""
    panels = {}
    for index, data in enumerate(datasets):
        panels[data.title] = {name: (list(widths), [rows[f"`{name}` {b}-bit"][index][0]
                                                    for b in widths])
                              for name, widths in WIDTHS.items()}
        panels[data.title]["float, rounded"] = (list(LINEAR_WIDTHS), [
            rows[f"float softmax rounded to {b} bits"][index][0] for b in LINEAR_WIDTHS])
        panels[data.title]["float, int8 scores"] = (
            list(LINEAR_WIDTHS), [rows[INT8_SCORES][index][0]] * len(LINEAR_WIDTHS))
    return sqnr_per_width(panels, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=TEST_IMAGES,
                        help=f"{MODEL} test images for the real rows (default {TEST_IMAGES})")
    args = parser.parse_args(argv)
    tests = dataset(MODEL).split_sizes["test"]
    if not 1 <= args.images <= tests:
        parser.error(f"--images must be 1..{tests}, the {MODEL} test split (got {args.images})")
    rng = np.random.default_rng(0)
    datasets = [random_set(n, s, rng) for n in ROW_LENGTHS for s in SIGMAS]
    datasets.append(real_set(args.images))
    rows = error_rows(datasets)
    ceiling = [context_ceiling(d) for d in datasets]
    probs, products = sqnr_tables(rows, ceiling, datasets)
    costs = cost_table(cost_entries())
    image = plot(rows, datasets, IMAGES / "softmax_bits.png")
    command = "python bench/softmax_bits.py" + (
        f" --images {args.images}" if args.images != TEST_IMAGES else "")
    body = "\n".join([
        "SQNR (dB) of the probabilities against the float softmax:", "", probs, "",
        "SQNR (dB) of probs @ v (int8 v) against float probabilities times float v:", "",
        products, "",
        f"Configs as the integer ViT builds them: `operator.calibrate` at the {CALIBRATOR}-"
        "calibrated int8 score scale, snapped to the grid of `iptq` and `ivit` (score_snap "
        "`grid`, the default), `max_row` 1024. Random sets: "
        f"{MATRICES} attention matrices each, scores ~ N(0, σ), v ~ N(0, 1) with {HEAD_DIM} "
        "channels, both quantized at scales calibrated on themselves. Real set: every layer "
        f"and head of the bundled {MODEL} model, scales calibrated on its calibration split. "
        "*float softmax rounded*: the exact softmax of the unquantized scores rounded to b-bit "
        f"codes (output rounding alone); *{INT8_SCORES}*: the exact softmax of the int8 scores "
        f"at the calibrated scale (score quantization alone); *{FLOAT_V}*: float "
        "probabilities times int8 v (v's quantization alone). SQNR pooled over every element "
        "of a set.", "",
        f"![SQNR against output width](img/{image.name})", "",
        "FPGA cost of each width (`intvit cost softmax/<m> --target <t> --set out_bits=<b>`: "
        "the example config, scale 0.05, `max_row` 1024, one lane, a 256-element row buffer; "
        "ECP5 Fmax from nextpnr at one seed, 7-series from Yosys synthesis only). These "
        "figures are this section only; the cost tables `fpga/tables/*.json` keep one 8-bit "
        "entry per candidate:", "",
        costs])
    path = write_section("softmax_bits", "Softmax output width (issue 15)", command, body)
    print(probs, products, costs, sep="\n\n")
    print(f"wrote {path} and {image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
