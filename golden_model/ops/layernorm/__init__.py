"""LayerNorm candidates over the last axis, one module each: :mod:`.ibert` (I-BERT),
:mod:`.ivit` (I-ViT, shift-based) and :mod:`.fqvit` (FQ-ViT, power-of-two factor); their
shared steps, float reference and inputs are in :mod:`.common`. The hardware units are
``intvit.hw.layernorm.<candidate>``, the testbenches ``sim/test_layernorm_<candidate>.py``."""
from . import fqvit, ibert, ivit
from .common import (EPS, bit_length, bitserial_isqrt, bitserial_steps, centred_sumsq_bound,
                     corner_rows, example_affine, example_samples, newton_isqrt,
                     newton_iterations, reference, shifted_sumsq_bound, signed_bits,
                     sweep_inputs)
from .fqvit import PTFLayerNormConfig, example_fqvit, run_fqvit
from .ibert import IBertLayerNormConfig, example_ibert, ibert_var_shift, run_ibert
from .ivit import ShiftLayerNormConfig, example_ivit, run_ivit

__all__ = ["EPS", "IBertLayerNormConfig", "OPERATORS", "PTFLayerNormConfig",
           "ShiftLayerNormConfig", "bit_length", "bitserial_isqrt", "bitserial_steps",
           "centred_sumsq_bound", "corner_rows", "example_affine", "example_fqvit",
           "example_ibert", "example_ivit", "example_samples", "ibert_var_shift", "newton_isqrt",
           "newton_iterations", "reference", "run_fqvit", "run_ibert", "run_ivit",
           "shifted_sumsq_bound", "signed_bits", "sweep_inputs"]

OPERATORS = [ibert.OPERATOR, ivit.OPERATOR, fqvit.OPERATOR]
