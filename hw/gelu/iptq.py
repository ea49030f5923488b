"""The IPTQ-ViT Poly-GELU unit (``gelu/iptq``); golden model ``golden_model/ops/gelu/iptq.py``."""
from intvit.golden_model.ops.gelu.iptq import PolyGeluConfig

from .common import ErfPolynomialUnit, bundle


class PolyGeluUnit(ErfPolynomialUnit):
    """IPTQ-ViT Poly-GELU (``gelu/iptq``), bit-exact with
    ``intvit.golden_model.ops.gelu.iptq.run_poly``.

    The quartic is evaluated as two squarings (``(t + b)**4`` needs no Horner chain: its only
    non-zero coefficient sits on the fourth power of the clipped distance). Stages per lane:
    1. clip: ``mag = max(-b_int - |q|, 0)``;
    2. ``p = (mag * mag) >> square_shift`` (multiplier; the shift is wiring);
    3. ``p * p`` (second multiplier, at most 31 bits out by the config's ``square_shift``);
    4. ``poly = p*p + c_int``;
    5. ``s = ((q < 0 ? -poly : poly) >> poly_shift) + one``;
    6. partial products of ``h = (-q) * s``: ``s`` (25 bits at the example config) is wider
       than a MULT18X18D operand, so each of its two pieces is multiplied alone
       (:class:`~.common.ErfPolynomialUnit`; one stage ``(-q) * s`` when ``s`` fits);
    7. ``h``, their sum, ``acc_bits`` (<= 32) wide;
    then the nested requantizer's stages (:func:`~.common.requant_stages`): ``h * m``, round
    half up, shift, saturate.
    No divider. Latency: the input register, these stages and the requantizer's (``latency``);
    one beat per cycle.
    """

    config_type = PolyGeluConfig

    @property
    def poly_shift(self) -> int:
        return self.config.poly_shift

    def power_stages(self):
        cfg = self.config

        def square(b):
            return bundle(q=b.q, reduced=(b.mag * b.mag) >> cfg.square_shift)

        def fourth(b):
            return bundle(q=b.q, power=b.reduced * b.reduced)
        return [square, fourth]


UNIT = PolyGeluUnit
"""The unit of ``gelu/iptq`` (the registry's lookup: module ``intvit.hw.gelu.iptq``)."""
