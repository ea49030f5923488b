"""GELU units, one module per candidate, each defining ``UNIT``:

- ``iptq.py``: :class:`PolyGeluUnit` (``gelu/iptq``, IPTQ-ViT Poly-GELU);
- ``ivit.py``: :class:`ShiftGeluUnit` (``gelu/ivit``, I-ViT ShiftGELU);
- ``ibert.py``: :class:`IBertGeluUnit` (``gelu/ibert``, I-BERT i-GELU);
- ``common.py``: stage registers, the nested requantizer's stages, a pipelined restoring
  divider, the base unit and the erf-polynomial datapath of i-GELU and Poly-GELU.

Golden models: ``golden_model/ops/gelu/<method>.py``; testbenches: ``sim/test_gelu_<method>.py``.
"""
