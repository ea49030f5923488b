"""Layer-wise error metrics and IPTQ-ViT's unified metric.

- ASQNR (Mixed Non-linear Quantization, arXiv 2407.18437, eq. 10), in the form of the authors'
  code: ``20 log10( mean_i ||x_i|| / ||x_i - q_i|| )`` over the samples ``i`` of a batch.
- SQNR diff (eq. 11): ``ASQNR(X_out, Q_out) - ASQNR(X_in, Q_in)``: how much a layer's operator
  adds to the error it was given.
- Perturbation: mean KL divergence ``KL(softmax(z_float) || softmax(z))`` of the model's output,
  with its standard error over the images (:func:`kl_mean_and_se`).
- The unified metric Omega (IPTQ-ViT; the paper's formula could not be read, so this is
  *intvit's definition*, docs/method.md section 1, revised 2026-11-27). Per layer and candidate
  ``f`` the terms are ``Q_f`` (output ASQNR, dB), ``P_f`` (mean KL) with its standard error
  ``s_f``, and ``C_f`` (the candidate's cost at the layer's shape,
  :meth:`intvit.golden_model.costs.CostTable.layer_cost`). ``Q`` enters as its noise power
  ratio ``n_f = 10^(-Q_f / 10)``, so that 3 dB is a factor of 2 like the other two terms. Each
  term is normalized within the layer's candidates to ``(0, 1]`` with 1 best::

      q_f = min n / n_f,   p_f = min P / P_f,   c_f = min C / C_f
      Omega_f = (w_Q + w_P + w_C) / (w_Q / q_f + w_P / p_f + w_C / c_f)

  (a weighted harmonic mean; weights default ``1, 1, 0.5``).
- Ties (:func:`choose`): ``P`` is a mean over a few hundred images, so its standard error
  carries noise into Omega. To first order, with ``m`` the candidate of least ``P`` and
  ``K_f = w_P Omega_f^2 / (w_Q + w_P + w_C)``, ``dOmega_f / dP_f = -K_f / P_m`` and
  ``dOmega_f / dP_m = K_f P_f / P_m^2`` for ``f != m`` (``Omega_m`` does not move: its ``p``
  is 1). The noise of a difference is ``sigma(f, g) = sqrt(sum_h (dOmega_f/dP_h -
  dOmega_g/dP_h)^2 s_h^2)``, the candidates' ``P`` taken as independent (they share the images,
  so this overstates the noise of a difference when their KLs move together). The candidate of
  highest Omega is the *top*; every candidate ``f`` with ``Omega_top - Omega_f <= sigma(top,
  f)`` is tied with it (the top included; with no noise only exact equals tie), and the tie goes
  to the cheaper candidate (least ``C``), then to the first name in alphabetical order, so the
  choice never depends on dict order.
"""
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .errors import IntvitError

TINY = 1e-12


def signal_to_noise(x, q) -> np.ndarray:
    """``||x_i|| / ||x_i - q_i||`` per sample ``i`` (first axis): the terms ASQNR averages, so
    that it can be gathered batch by batch."""
    x = np.asarray(x, np.float64)
    q = np.asarray(q, np.float64)
    x = x.reshape(len(x), -1)
    q = q.reshape(len(q), -1)
    return np.linalg.norm(x, axis=1) / np.maximum(np.linalg.norm(x - q, axis=1), TINY)


def asqnr_of(ratios) -> float:
    """ASQNR in dB from the per-sample ratios of :func:`signal_to_noise`."""
    return float(20 * np.log10(np.mean(ratios) + TINY))


def asqnr(x, q) -> float:
    """ASQNR in dB of ``q`` against ``x`` (first axis = samples)."""
    return asqnr_of(signal_to_noise(x, q))


def sqnr_diff(x_in, q_in, x_out, q_out) -> float:
    """Mixed-NLQ eq. 11."""
    return asqnr(x_out, q_out) - asqnr(x_in, q_in)


def softmax_rows(z) -> np.ndarray:
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def kl_per_image(z_float, z) -> np.ndarray:
    """``KL(softmax(z_float_i) || softmax(z_i))`` in nats, one per image ``i``."""
    p = softmax_rows(z_float)
    q = softmax_rows(z)
    return np.sum(p * (np.log(p + TINY) - np.log(q + TINY)), axis=-1)


def mean_kl(z_float, z) -> float:
    """``mean_i KL(softmax(z_float_i) || softmax(z_i))`` in nats."""
    return float(np.mean(kl_per_image(z_float, z)))


def kl_mean_and_se(z_float, z) -> tuple[float, float]:
    """The mean KL and its standard error over the images, ``std(ddof=1) / sqrt(n)`` (0 for a
    single image)."""
    return mean_and_se(kl_per_image(z_float, z))


def mean_and_se(kl) -> tuple[float, float]:
    """Mean of per-image values and its standard error ``std(ddof=1) / sqrt(n)``."""
    kl = np.asarray(kl, np.float64)
    se = float(np.std(kl, ddof=1) / math.sqrt(len(kl))) if len(kl) > 1 else 0.0
    return float(np.mean(kl)), se


def _weight(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise IntvitError(f"Omega weight {name} must be a number (got {value!r})")
    if not math.isfinite(value) or value < 0:
        raise IntvitError(f"Omega weight {name} must be finite and >= 0 (got {value})")
    return float(value)


@dataclass(frozen=True)
class OmegaWeights:
    """Weights of the unified metric's terms (default ``1, 1, 0.5``: docs/method.md sec. 1):
    three finite numbers >= 0, not all zero (a one-line :class:`IntvitError` otherwise)."""
    sensitivity: float = 1.0
    perturbation: float = 1.0
    cost: float = 0.5

    def __post_init__(self):
        for name in ("sensitivity", "perturbation", "cost"):
            object.__setattr__(self, name, _weight(getattr(self, name), name))
        if self.sensitivity + self.perturbation + self.cost <= 0:
            raise IntvitError("Omega weights are all zero; give at least one a positive weight")

    @property
    def total(self) -> float:
        return self.sensitivity + self.perturbation + self.cost


class Terms(NamedTuple):
    """One candidate's measured terms at one layer: output ASQNR (dB), mean KL, cost at the
    layer's shape, and the KL's standard error over the images."""
    sqnr_db: float
    perturbation: float
    cost: float
    perturbation_se: float = 0.0


def noise_ratio(sqnr_db: float) -> float:
    """``10^(-Q/10)``: the noise power over the signal power of an ASQNR of ``Q`` dB."""
    return max(10.0 ** (-sqnr_db / 10.0), 1e-300)


def normalized(terms: dict) -> dict:
    """``{name: (q, p, c)}``, each in ``(0, 1]`` with 1 the best of the layer's candidates."""
    terms = {n: Terms(*t) for n, t in terms.items()}
    noise = {n: noise_ratio(t.sqnr_db) for n, t in terms.items()}
    best_n = min(noise.values())
    best_p = min(max(t.perturbation, TINY) for t in terms.values())
    best_c = min(max(t.cost, TINY) for t in terms.values())
    return {n: (best_n / noise[n], best_p / max(t.perturbation, TINY), best_c / max(t.cost, TINY))
            for n, t in terms.items()}


def omega(terms: dict, weights: OmegaWeights = OmegaWeights()) -> dict:
    """Omega of each candidate of one layer from ``{name: (Q_dB, P, C[, P_se])}``."""
    return {name: weights.total / (weights.sensitivity / q + weights.perturbation / p
                                   + weights.cost / c)
            for name, (q, p, c) in normalized(terms).items()}


def omega_gradients(terms: dict, weights: OmegaWeights = OmegaWeights()) -> dict:
    """``{f: {h: dOmega_f / dP_h}}`` (module docstring), only the non-zero ones."""
    terms = {n: Terms(*t) for n, t in terms.items()}
    omegas = omega(terms, weights)
    best = min(terms, key=lambda n: (max(terms[n].perturbation, TINY), n))
    p_m = max(terms[best].perturbation, TINY)
    gradients = {}
    for name, t in terms.items():
        if name == best:
            gradients[name] = {}
            continue
        k = weights.perturbation * omegas[name] ** 2 / weights.total
        gradients[name] = {name: -k / p_m, best: k * max(t.perturbation, TINY) / p_m ** 2}
    return gradients


def omega_difference_noise(terms: dict, a: str, b: str,
                           weights: OmegaWeights = OmegaWeights()) -> float:
    """The standard error that the ``P`` standard errors carry into ``Omega_a - Omega_b``."""
    terms = {n: Terms(*t) for n, t in terms.items()}
    grads = omega_gradients(terms, weights)
    total = 0.0
    for h, t in terms.items():
        slope = grads[a].get(h, 0.0) - grads[b].get(h, 0.0)
        total += (slope * t.perturbation_se) ** 2
    return math.sqrt(total)


@dataclass(frozen=True)
class Choice:
    """The unified rule's pick at one layer: ``name``, the candidate of highest Omega ``top``,
    and the candidates ``tied`` with it (module docstring), the top included."""
    name: str
    top: str
    tied: tuple


def choose(terms: dict, weights: OmegaWeights = OmegaWeights()) -> Choice:
    """The highest-Omega candidate, or among those tied with it within the noise of ``P`` the
    cheapest, then the first by name (module docstring)."""
    terms = {n: Terms(*t) for n, t in terms.items()}
    if not terms:
        raise IntvitError("no candidates to choose from")
    omegas = omega(terms, weights)
    top = min(terms, key=lambda n: (-omegas[n], terms[n].cost, n))
    tied = tuple(sorted(n for n in terms
                        if omegas[top] - omegas[n] <= omega_difference_noise(terms, top, n,
                                                                             weights)))
    name = min(tied, key=lambda n: (terms[n].cost, n))
    return Choice(name, top, tied)
