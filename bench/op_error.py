"""Error of every integer candidate against its float function, at 8-bit input.

(a) a uniform sweep of the input range with each candidate's example config: every code for the
element-wise GELU, rows of uniformly random codes for softmax and LayerNorm;
(b) real activations of the bundled model (the inputs of its softmax, GELU and LayerNorm layers on
the calibration images), each layer calibrated on them as the quantized model does.
Errors are in real units (probabilities, GELU and LayerNorm outputs), SQNR in dB. Plots of the
approximation curves and their errors go to docs/img/.

Usage: python bench/op_error.py
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import IMAGES, markdown_table, write_section  # noqa: E402
from intvit.golden_model import registry  # noqa: E402
from intvit.golden_model.calibration import activation_scale  # noqa: E402
from intvit.golden_model.checkpoint import load_bundled  # noqa: E402
from intvit.golden_model.dataset import load_splits  # noqa: E402
from intvit.golden_model.qvit import float_taps  # noqa: E402
from intvit.golden_model.calibration import input_scale, quantize_input  # noqa: E402
from intvit.golden_model.vit import nonlinear_layers  # noqa: E402
from intvit.plots import gelu_curves, layernorm_errors, softmax_curves  # noqa: E402

KINDS = ("softmax", "gelu", "layernorm")
SWEEP_ROWS = 2000


def errors(reference, approx):
    err = np.abs(approx - reference)
    sqnr = 10 * np.log10(np.sum(reference ** 2) / max(np.sum((approx - reference) ** 2), 1e-30))
    return float(err.max()), float(err.mean()), float(sqnr)


def sweep_inputs(operator, cfg, rng):
    if not operator.row_wise:
        lo, hi = -(1 << (cfg.in_bits - 1)), (1 << (cfg.in_bits - 1)) - 1
        return np.arange(lo, hi + 1)
    length = getattr(cfg, "channels", None) or 64
    lo, hi = -(1 << (cfg.in_bits - 1)), (1 << (cfg.in_bits - 1)) - 1
    return rng.integers(lo, hi, (SWEEP_ROWS, length), endpoint=True)


def uniform_sweep(operator):
    cfg = operator.example_config()
    q = sweep_inputs(operator, cfg, np.random.default_rng(0))
    x = q * input_scale(cfg)
    return errors(operator.reference(cfg, x), cfg.dequantize_output(operator.run(cfg, q)))


def real_activations(operator, model, taps):
    """Every layer of the operator's kind, calibrated on its own inputs; errors pooled."""
    refs, approxs = [], []
    for layer, kind in nonlinear_layers(model.config).items():
        if kind != operator.kind:
            continue
        x = taps[layer]
        params = {}
        if kind == "layernorm":
            state = model.state_dict()
            params = {"gamma": state[f"{layer}.weight"].double().numpy(),
                      "beta": state[f"{layer}.bias"].double().numpy()}
        in_scale = activation_scale(layer, x, 8, "percentile")
        cfg = operator.calibrate(in_scale, x, in_bits=8, **params)
        q = quantize_input(cfg, x)
        refs.append(operator.reference(cfg, x).reshape(-1))
        approxs.append(cfg.dequantize_output(operator.run(cfg, q)).reshape(-1))
    return errors(np.concatenate(refs), np.concatenate(approxs))


def layernorm_plot(model, taps, path):
    """Output error of each LayerNorm candidate against float, on real rows of blocks.0.norm1."""
    layer = "blocks.0.norm1"
    state = model.state_dict()
    x = taps[layer].reshape(-1, taps[layer].shape[-1])
    params = {"gamma": state[f"{layer}.weight"].double().numpy(),
              "beta": state[f"{layer}.bias"].double().numpy()}
    errors = {}
    for operator in registry.by_kind("layernorm"):
        cfg = operator.calibrate(activation_scale(layer, x, 8, "percentile"), x, in_bits=8,
                                 **params)
        errors[operator.name] = (cfg.dequantize_output(operator.run(cfg, quantize_input(cfg, x)))
                                 - operator.reference(cfg, x))
    return layernorm_errors(errors, layer, path)


def main():
    model, _, _ = load_bundled()
    taps = float_taps(model, load_splits()["calibration"].images)
    rows = []
    for kind in KINDS:
        for operator in registry.by_kind(kind):
            print(f"measuring {operator.name} ...", flush=True)
            sweep = uniform_sweep(operator)
            real = real_activations(operator, model, taps)
            rows.append([operator.name, *(f"{v:.4g}" for v in sweep), *(f"{v:.4g}" for v in real)])
    table = markdown_table(["candidate", "sweep max abs", "sweep mean abs", "sweep SQNR dB",
                            "real max abs", "real mean abs", "real SQNR dB"], rows)
    plots = [gelu_curves(IMAGES / "gelu_candidates.png"),
             softmax_curves(IMAGES / "softmax_candidates.png"),
             layernorm_plot(model, taps, IMAGES / "layernorm_error.png")]
    plots = [f"img/{Path(p).name}" for p in plots]
    body = (table + "\n\n(a) *sweep*: each candidate's example config (8-bit input), every code "
            "(GELU) or 2,000 rows of uniformly random codes (softmax: 64 per row; LayerNorm: "
            "its channels). (b) *real*: the inputs of every layer of that kind in the bundled "
            "model on the 100 calibration images, each layer calibrated on them (percentile "
            "calibrator). Errors in output units (probability, GELU value, LayerNorm output).\n\n"
            + "\n".join(f"![{p}]({p})" for p in plots))
    path = write_section("op_error", "Integer candidates against their float functions",
                         "python bench/op_error.py", body)
    print(table)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
