"""GELU candidates, one module each (config, integer function, float reference, operator):

- ``iptq.py``: IPTQ-ViT data-aware Poly-GELU (``gelu/iptq``);
- ``ivit.py``: I-ViT ShiftGELU (``gelu/ivit``);
- ``ibert.py``: I-BERT i-GELU (``gelu/ibert``);
- ``common.py``: what they share (exact GELU, the config protocol and checks, the asymmetric
  output, I-BERT's erf polynomial tail, range arithmetic, the exhaustive input sweep).

Their hardware units are ``intvit.hw.gelu.<method>``, their testbenches
``sim/test_gelu_<method>.py``.
"""
from . import ibert, iptq, ivit
from .common import (EXAMPLE_IN_SCALE, asymmetric_output, check_samples, gelu, reference,
                     sweep_inputs)
from .ibert import (IBERT_A, IBERT_B, IBERT_C, IBERT_PUBLISHED_SHIFT, IBERT_SQRT2,
                    IBertGeluConfig, calibrate_ibert, example_ibert, ibert_integer_gelu, run_ibert)
from .iptq import (POLY_WIDE_A, POLY_WIDE_B, PolyGeluConfig, calibrate_poly, example_poly,
                   fit_poly_gelu, poly_integer_gelu, run_poly)
from .ivit import (IVIT_LOG2E_SHIFTS, IVIT_SLOPE_SHIFTS, ShiftGeluConfig, calibrate_shift,
                   example_shift, run_shift, shift_exp, shift_integer_gelu)

__all__ = [
    "EXAMPLE_IN_SCALE", "IBERT_A", "IBERT_B", "IBERT_C", "IBERT_PUBLISHED_SHIFT", "IBERT_SQRT2",
    "IVIT_LOG2E_SHIFTS", "IVIT_SLOPE_SHIFTS", "OPERATORS", "POLY_WIDE_A", "POLY_WIDE_B",
    "IBertGeluConfig", "PolyGeluConfig", "ShiftGeluConfig", "asymmetric_output",
    "calibrate_ibert", "calibrate_poly", "calibrate_shift", "check_samples", "example_ibert",
    "example_poly", "example_shift", "fit_poly_gelu", "gelu", "ibert_integer_gelu",
    "poly_integer_gelu", "reference", "run_ibert", "run_poly", "run_shift", "shift_exp",
    "shift_integer_gelu", "sweep_inputs"]

OPERATORS = [iptq.OPERATOR, ivit.OPERATOR, ibert.OPERATOR]
"""The registry's GELU entries (``golden_model/registry.py`` reads this list)."""
