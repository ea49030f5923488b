"""The I-BERT i-GELU unit (``gelu/ibert``); golden model ``golden_model/ops/gelu/ibert.py``."""
from intvit.golden_model.ops.gelu.ibert import IBertGeluConfig

from .common import ErfPolynomialUnit, bundle


class IBertGeluUnit(ErfPolynomialUnit):
    """I-BERT i-GELU (``gelu/ibert``), bit-exact with
    ``intvit.golden_model.ops.gelu.ibert.run_ibert``.

    Stages per lane (each registered; the input is registered first):
    1. clip: ``mag = max(-b_int - |q|, 0)`` (negate, subtract, select);
    2. square: ``mag * mag`` (unsigned multiplier, ``bitlen(-b_int)`` bits square);
    3. ``poly = mag**2 + c_int``;
    4. ``s = ((q < 0 ? -poly : poly) >> shift) + one`` (the shift is wiring);
    5. ``h = (-q) * s``, ``acc_bits`` wide (an ``in_bits+1`` by ``widths['sum']`` multiplier,
       one MULT18X18D at the example config; a wider ``s`` takes two stages, see
       :class:`~.common.ErfPolynomialUnit`);
    then the nested requantizer's stages (:func:`~.common.requant_stages`): ``h * m``, round
    half up, shift, saturate.
    No divider. Latency: the input register, these stages and the requantizer's (``latency``);
    one beat (``lanes`` elements) per cycle.
    """

    config_type = IBertGeluConfig

    @property
    def poly_shift(self) -> int:
        return self.config.shift

    def power_stages(self):
        def square(b):
            return bundle(q=b.q, power=b.mag * b.mag)
        return [square]


UNIT = IBertGeluUnit
"""The unit of ``gelu/ibert`` (the registry's lookup: module ``intvit.hw.gelu.ibert``)."""
