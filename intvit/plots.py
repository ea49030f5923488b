"""Pictures for the report and the benchmarks: approximation curves of the candidates, the
LayerNorm error on real rows, and the unified metric per layer."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from intvit.golden_model import registry  # noqa: E402


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def gelu_curves(path) -> Path:
    """Each GELU candidate's output (example config, every 8-bit input) and its error."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for operator in registry.by_kind("gelu"):
        cfg = operator.example_config()
        q = np.arange(-(1 << (cfg.in_bits - 1)), 1 << (cfg.in_bits - 1))
        x = q * cfg.in_scale
        y = cfg.dequantize_output(operator.run(cfg, q))
        top.plot(x, y, label=operator.name, lw=1)
        bottom.plot(x, y - operator.reference(cfg, x), label=operator.name, lw=1)
    dense = np.linspace(x.min(), x.max(), 500)
    top.plot(dense, operator.reference(cfg, dense), "k--", lw=0.8, label="GELU (float)")
    top.set_ylabel("GELU(x)")
    bottom.set_ylabel("integer - float")
    bottom.set_xlabel("x")
    top.legend(fontsize=8)
    top.set_title("GELU candidates at 8-bit input (example configs)")
    return _save(fig, path)


def softmax_curves(path) -> Path:
    """Each softmax candidate on one row holding every 8-bit input code, and its error."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for operator in registry.by_kind("softmax"):
        cfg = operator.example_config()
        q = np.arange(-(1 << (cfg.in_bits - 1)), 1 << (cfg.in_bits - 1))[None, :]
        x = q[0] * cfg.in_scale
        p = cfg.dequantize_output(operator.run(cfg, q))[0]
        ref = operator.reference(cfg, q * cfg.in_scale)[0]
        top.semilogy(x, np.maximum(p, 1e-6), label=operator.name, lw=1)
        bottom.plot(x, p - ref, label=operator.name, lw=1)
    top.semilogy(x, np.maximum(ref, 1e-6), "k--", lw=0.8, label="softmax (float)")
    top.set_ylabel("probability")
    bottom.set_ylabel("integer - float")
    bottom.set_xlabel("score x (one row holding every input code)")
    top.legend(fontsize=8)
    top.set_title("Softmax candidates at 8-bit input (example configs)")
    return _save(fig, path)


def layernorm_errors(errors: dict, layer: str, path) -> Path:
    """Histogram of ``{op: integer - float output}`` on real rows of ``layer``."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, err in errors.items():
        ax.hist(np.asarray(err).reshape(-1), bins=80, histtype="step", label=name)
    ax.set_xlabel(f"integer - float output ({layer}, real rows)")
    ax.set_ylabel("elements")
    ax.legend(fontsize=8)
    return _save(fig, path)


def omega_per_layer(omegas: dict, assignment: dict, path) -> Path:
    """Bars of Omega per layer (``{layer: {op: omega}}``), the chosen candidate marked."""
    layers = list(omegas)
    methods = sorted({op.split("/")[1] for c in omegas.values() for op in c})
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(methods)
    for j, method in enumerate(methods):
        values = [next((v for op, v in omegas[l].items() if op.endswith("/" + method)), np.nan)
                  for l in layers]
        ax.bar(np.arange(len(layers)) + j * width, values, width, label=method)
    for i, layer in enumerate(layers):
        chosen = methods.index(assignment[layer].split("/")[1])
        ax.plot(i + chosen * width, 1.03, "kv", ms=5)
    ax.set_xticks(np.arange(len(layers)) + 0.4)
    ax.set_xticklabels(layers, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("Omega (1 = best in every term)")
    ax.set_ylim(0, 1.3)  # room above the bars for the markers and the legend
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.legend(fontsize=8, ncol=4, loc="upper left")
    ax.set_title("Unified metric per layer and candidate; v = chosen")
    return _save(fig, path)
