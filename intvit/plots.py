"""Pictures for the report and the benchmarks: approximation curves of the candidates, the
LayerNorm error on real rows, the unified metric per layer, accuracies with their noise, and
SQNR against output width.

Drawing only: callers pass the values and their standard errors."""
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


SOFTMAX_FLOOR = 1e-6
"""Lowest probability the softmax plot shows: its axis is logarithmic and an integer softmax
outputs exact zeros, so values below are drawn at this floor (and the plot says so)."""


def softmax_figure():
    """The figure of :func:`softmax_curves`, not yet saved."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for operator in registry.by_kind("softmax"):
        cfg = operator.example_config()
        q = np.arange(-(1 << (cfg.in_bits - 1)), 1 << (cfg.in_bits - 1))[None, :]
        x = q[0] * cfg.in_scale
        p = cfg.dequantize_output(operator.run(cfg, q))[0]
        ref = operator.reference(cfg, q * cfg.in_scale)[0]
        top.semilogy(x, np.maximum(p, SOFTMAX_FLOOR), label=operator.name, lw=1)
        bottom.plot(x, p - ref, label=operator.name, lw=1)
    top.semilogy(x, np.maximum(ref, SOFTMAX_FLOOR), "k--", lw=0.8, label="softmax (float)")
    top.axhline(SOFTMAX_FLOOR, color="grey", lw=0.6, ls=":",
                label=f"floor {SOFTMAX_FLOOR:g}: smaller values (and 0) are clipped to it")
    top.set_ylabel(f"probability (log, clipped at {SOFTMAX_FLOOR:g})")
    bottom.set_ylabel("integer - float")
    bottom.set_xlabel("score x (one row holding every input code)")
    top.legend(fontsize=8)
    top.set_title("Softmax candidates at 8-bit input (example configs)")
    return fig


def softmax_curves(path) -> Path:
    """Each softmax candidate on one row holding every 8-bit input code, and its error."""
    return _save(softmax_figure(), path)


def accuracy_figure(accuracies: dict, errors: dict, images: int):
    """Stage-2 and stage-3 accuracy per rule (``{rule: {"float", "stage2", "stage3"}}``, as
    fractions) with ± one standard error (``errors``, same shape) as error bars; the float
    accuracy of the first rule as a band of ± its standard error."""
    rules = list(accuracies)
    fig, ax = plt.subplots(figsize=(8, 3.8))
    positions = np.arange(len(rules))
    for offset, stage in ((-0.15, "stage2"), (0.15, "stage3")):
        ax.errorbar(positions + offset, [100 * accuracies[r][stage] for r in rules],
                    yerr=[100 * errors[r][stage] for r in rules], fmt="o", capsize=3,
                    label=f"{stage.replace('stage', 'stage ')} ± 1 s.e.")
    first = rules[0]
    level, noise = 100 * accuracies[first]["float"], 100 * errors[first]["float"]
    ax.axhspan(level - noise, level + noise, color="grey", alpha=0.2,
               label=f"float {level:.2f}% ± {noise:.2f}")
    ax.set_xticks(positions)
    ax.set_xticklabels(rules, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"test accuracy (%), {images:,} images")
    ax.legend(fontsize=8)
    ax.set_title(f"Accuracy per selection rule; one image = {100 / images:.2f} points")
    return fig


def accuracy_per_rule(accuracies: dict, errors: dict, images: int, path) -> Path:
    """:func:`accuracy_figure`, saved to ``path``."""
    return _save(accuracy_figure(accuracies, errors, images), path)


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


def sqnr_per_width(panels: dict, path) -> Path:
    """SQNR (dB) against output width, one panel per data set: ``{panel title: {series label:
    (widths, sqnr_db)}}``; series of one label share a colour across panels."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), sharey=True)
    labels = sorted({label for series in panels.values() for label in series})
    colours = {label: f"C{i}" for i, label in enumerate(labels)}
    for ax, (title, series) in zip(np.atleast_1d(axes), panels.items()):
        for label, (widths, sqnr) in series.items():
            ax.plot(widths, sqnr, "o-", color=colours[label], label=label, lw=1, ms=4)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("output bits")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("SQNR (dB)")
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    return _save(fig, path)
