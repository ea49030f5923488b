"""Layer-wise error metrics and IPTQ-ViT's unified metric.

- ASQNR (Mixed Non-linear Quantization, arXiv 2407.18437, eq. 10), in the form of the authors'
  code: ``20 log10( mean_i ||x_i|| / ||x_i - q_i|| )`` over the samples ``i`` of a batch.
- SQNR diff (eq. 11): ``ASQNR(X_out, Q_out) - ASQNR(X_in, Q_in)``: how much a layer's operator
  adds to the error it was given.
- Perturbation: mean KL divergence ``KL(softmax(z_float) || softmax(z))`` of the model's output.
- The unified metric Omega (IPTQ-ViT; the paper's formula could not be read, so this is
  *intvit's definition*, docs/method.md section 1): per layer, each term is normalized within the
  layer's candidates to ``(0, 1]`` with 1 best (``Q / max Q``, ``min P / P``, ``min C / C``) and
  ``Omega = (w_Q + w_P + w_C) / (w_Q / q + w_P / p + w_C / c)``, a weighted harmonic mean.
"""
from dataclasses import dataclass

import numpy as np

from .errors import IntvitError

TINY = 1e-12
MIN_SQNR_DB = 0.1
"""ASQNR below this is held at it, so that ``Q / max Q`` stays positive."""


def asqnr(x, q) -> float:
    """ASQNR in dB of ``q`` against ``x`` (first axis = samples)."""
    x = np.asarray(x, np.float64)
    q = np.asarray(q, np.float64)
    x = x.reshape(len(x), -1)
    q = q.reshape(len(q), -1)
    signal = np.linalg.norm(x, axis=1)
    noise = np.linalg.norm(x - q, axis=1)
    return float(20 * np.log10(np.mean(signal / np.maximum(noise, TINY)) + TINY))


def sqnr_diff(x_in, q_in, x_out, q_out) -> float:
    """Mixed-NLQ eq. 11."""
    return asqnr(x_out, q_out) - asqnr(x_in, q_in)


def softmax_rows(z) -> np.ndarray:
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def mean_kl(z_float, z) -> float:
    """``mean_i KL(softmax(z_float_i) || softmax(z_i))`` in nats."""
    p = softmax_rows(z_float)
    q = softmax_rows(z)
    return float(np.mean(np.sum(p * (np.log(p + TINY) - np.log(q + TINY)), axis=-1)))


@dataclass(frozen=True)
class OmegaWeights:
    """Weights of the unified metric's terms (default ``1, 1, 0.5``: docs/method.md sec. 1)."""
    sensitivity: float = 1.0
    perturbation: float = 1.0
    cost: float = 0.5

    def __post_init__(self):
        for name in ("sensitivity", "perturbation", "cost"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise IntvitError(f"Omega weight {name} must be finite and >= 0 (got {value})")
        if self.sensitivity + self.perturbation + self.cost <= 0:
            raise IntvitError("Omega weights are all zero; give at least one a positive weight")


def omega(terms: dict, weights: OmegaWeights = OmegaWeights()) -> dict:
    """Omega of each candidate of one layer from ``{name: (Q_dB, P, C)}``."""
    q_values = {n: max(t[0], MIN_SQNR_DB) for n, t in terms.items()}
    best_q = max(q_values.values())
    best_p = min(max(t[1], TINY) for t in terms.values())
    best_c = min(max(t[2], TINY) for t in terms.values())
    total = weights.sensitivity + weights.perturbation + weights.cost
    scores = {}
    for name, (_, p, c) in terms.items():
        q_norm = q_values[name] / best_q
        p_norm = best_p / max(p, TINY)
        c_norm = best_c / max(c, TINY)
        scores[name] = total / (weights.sensitivity / q_norm + weights.perturbation / p_norm
                                + weights.cost / c_norm)
    return scores
