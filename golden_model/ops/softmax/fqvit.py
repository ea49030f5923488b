"""``softmax/fqvit``: FQ-ViT Log-Int-Softmax (Lin et al., IJCAI 2022, Sec. 3.3; reference
``QIntSoftmax``; docs/method.md sec. 4.3, Log-Int-Softmax) on I-BERT's i-exp. The float
reference is :func:`~.common.softmax_reference`."""
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .common import GUARD_BITS, check_common, masked, row_offsets, row_sum, softmax_operator
from .ibert import IBERT_N, IExpConfig, check_i_exp, derived_exp_shift, i_exp, i_exp_constants

FQVIT_OUT_BITS = 4
"""FQ-ViT's 4-bit log2 attention probabilities (paper Sec. 4.2; the Mixed-NLQ code uses 6)."""
FQVIT_MAX_EXP_BITS = 40
"""Derived ``exp_bits`` cap: the row sum stays below 2**57 at ``max_row = 2**16``."""


@dataclass(frozen=True)
class LogIntSoftmaxConfig(IExpConfig):
    """FQ-ViT Log-Int-Softmax (Lin et al., IJCAI 2022, Sec. 3.3; reference ``QIntSoftmax``).

    1. i-exp exactly as ``softmax/ibert`` (:func:`~.ibert.i_exp`, same constants, same choice of
       ``polynomial``), ``sum = sum_row(e)``.
    2. ``t = round(sum / e)`` as ``(2*sum + e) // (2*e)`` (round half up; the reference's
       ``torch.round`` is half-even: they differ only on exact ties).
    3. ``l = floor(log2 t)`` (leading one), plus 1 when the bit below the leading one is set
       (``t - 2**l >= 2**(l-1)``, the reference's ``log_round``).
    4. ``code = min(l, 2**out_bits - 1)``; ``e = 0`` gives the top code. The top code means
       probability 0 (:meth:`dequantize_output`), else ``2**-code``. The reference dequantizes
       ``l >= 2**out_bits`` to 0 but ``l = 2**out_bits - 1`` to ``2**-(2**out_bits - 1)``; a
       single code cannot carry both, so ours differs there by at most ``2**-(2**out_bits-1)``.

    ``from_scale`` derives ``exp_bits = min(max(2**out_bits - 2, 8) + 4, 40)`` (the smallest
    nonzero code is ``2**out_bits - 2``; 4 guard bits resolve ``e`` there), ``exp_shift`` and
    ``k_max = exp_bits + 1`` as ``softmax/ibert`` (paper polynomial by default). ``published``
    is the released code: ``k_max = exp_shift = 30``, its polynomial by default (FQ-ViT's
    ``int_polynomial`` has I-BERT's code constants), no requantization (its worst case overflows
    int64 for fine scales, FQ-ViT issue 21: refused). Worst cases: row sum ``max_row * exp_max``
    (``sum_bits``); the rounding division's dividend ``2*sum + e`` needs ``sum_bits + 1`` bits;
    ``t <= sum``.
    """

    OP_NAME: ClassVar[str] = "softmax/fqvit"

    def __post_init__(self):
        owner = type(self).__name__
        check_common(owner, self.in_bits, self.out_bits, self.max_row, self.in_scale, out_max=8)
        check_i_exp(self)

    @classmethod
    def from_scale(cls, in_scale: float, in_bits: int = 8, out_bits: int = FQVIT_OUT_BITS,
                   max_row: int = 1024, polynomial: str = "paper") -> "LogIntSoftmaxConfig":
        """Derived widths (class docstring)."""
        scale = check_common(cls.__name__, in_bits, out_bits, max_row, in_scale, out_max=8)
        consts = i_exp_constants(cls.__name__, scale, polynomial)
        exp_bits = min(max((1 << out_bits) - 2, 8) + GUARD_BITS, FQVIT_MAX_EXP_BITS)
        return cls(in_bits=in_bits, out_bits=out_bits, max_row=max_row, k_max=exp_bits + 1,
                   exp_shift=derived_exp_shift(consts, exp_bits), in_scale=scale, **consts)

    @classmethod
    def published(cls, in_scale: float, in_bits: int = 8, out_bits: int = FQVIT_OUT_BITS,
                  max_row: int = 1024, polynomial: str = "code") -> "LogIntSoftmaxConfig":
        """The released code: ``n = 30`` as both the octave clamp and the precision shift, and
        its polynomial (``polynomial="paper"`` swaps in the I-BERT paper's)."""
        scale = check_common(cls.__name__, in_bits, out_bits, max_row, in_scale, out_max=8)
        consts = i_exp_constants(cls.__name__, scale, polynomial)
        return cls(in_bits=in_bits, out_bits=out_bits, max_row=max_row, k_max=IBERT_N,
                   exp_shift=IBERT_N, in_scale=scale, **consts)

    @property
    def top_code(self) -> int:
        return (1 << self.out_bits) - 1

    def dequantize_output(self, y) -> np.ndarray:
        """``2**-y``, and 0 for the top code."""
        y = np.asarray(y)
        return np.where(y == self.top_code, 0.0, np.exp2(-y.astype(np.float64)))


def floor_log2(x: np.ndarray) -> np.ndarray:
    """Leading-one position of ``x >= 1`` (``< 2**63``) by a 6-step binary search."""
    position = x - x
    for step in (32, 16, 8, 4, 2, 1):
        above = (x >> step) > 0
        x = x >> (above * step)
        position = position + above * step
    return position


def log_int_softmax(cfg: LogIntSoftmaxConfig, q, keep=None) -> np.ndarray:
    """``softmax/fqvit`` on signed codes ``q``: log2 codes of the probabilities; elements where
    ``keep`` is false are excluded (:func:`~.common.masked`: the top code, probability 0)."""
    e = masked(i_exp(cfg, row_offsets(cfg, q, keep)), keep)
    total = row_sum(e)
    ratio = (2 * total + e) // (2 * np.maximum(e, 1))
    log = floor_log2(ratio)
    below = (ratio >> np.maximum(log - 1, 0)) & 1
    log = log + below * (log >= 1)
    return np.maximum(np.minimum(log, cfg.top_code), (e == 0) * cfg.top_code)


OPERATOR = softmax_operator(
    LogIntSoftmaxConfig, log_int_softmax,
    description="FQ-ViT Log-Int-Softmax: i-exp, then log2-rounded sum/e codes (4-bit)",
    source="FQ-ViT (Lin et al., IJCAI 2022) Sec. 3.3, reference QIntSoftmax",
    out_bits=FQVIT_OUT_BITS)
