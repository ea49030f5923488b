"""Integer softmax candidates over the last axis, one module each: ``iptq`` (Bit-exp, intvit's
definition for IPTQ-ViT), ``ivit`` (I-ViT Shiftmax), ``ibert`` (I-BERT i-exp softmax) and
``fqvit`` (FQ-ViT Log-Int-Softmax); ``common`` holds the shared row interface (its docstring
states it), checks, reciprocal normalization, float reference and input sweep, and the snapped
score scale of the shift-based candidates (:data:`SCALE_SNAPS`)."""
from . import fqvit, ibert, iptq, ivit
from .common import softmax_reference, sweep_inputs
from .fqvit import LogIntSoftmaxConfig, log_int_softmax
from .ibert import I_EXP_POLYNOMIALS, IBertSoftmaxConfig, ibert_softmax
from .iptq import BitExpSoftmaxConfig, bit_exp_softmax
from .ivit import ShiftmaxConfig, shiftmax

__all__ = ["BitExpSoftmaxConfig", "I_EXP_POLYNOMIALS", "IBertSoftmaxConfig",
           "LINEAR_PROBABILITIES", "LogIntSoftmaxConfig", "OPERATORS", "SCALE_SNAPS", "ShiftmaxConfig", "bit_exp_softmax",
           "ibert_softmax", "log_int_softmax", "shiftmax", "softmax_reference", "sweep_inputs"]

OPERATORS = [iptq.OPERATOR, ivit.OPERATOR, ibert.OPERATOR, fqvit.OPERATOR]
"""The registry's softmax candidates, in this order."""
SCALE_SNAPS = {iptq.OPERATOR.name: iptq.snap_scale, ivit.OPERATOR.name: ivit.snap_scale}
"""``snap_scale(scale, fold_log2e) -> ScoreScale`` of the shift-based candidates: the score
scale that suits their constants (intvit's definition, issue 16)."""
LINEAR_PROBABILITIES = (iptq.OPERATOR.name, ivit.OPERATOR.name, ibert.OPERATOR.name)
"""Candidates whose output codes are linear probabilities ``y / 2**out_bits`` (up to 16 bits,
the integer ViT's ``QuantSpec.softmax_bits``); FQ-ViT's log2 codes keep their own width."""
