"""Softmax row units, one module per candidate (``iptq``, ``ivit``, ``ibert``, ``fqvit``), each
with ``UNIT``, its unit class; ``common`` holds the shared passes, row step and helpers."""
