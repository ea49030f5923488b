"""The I-ViT ShiftGELU unit (``gelu/ivit``); golden model ``golden_model/ops/gelu/ivit.py``.

An exact rewrite of the golden division (an integer identity): ``k = v // x0``, ``r = v - k*x0``
for ``v <= 0``, ``x0 < 0`` is ``k = w // d``, ``r = -(w mod d)`` with ``w = -v``, ``d = -x0``
(unsigned restoring division).
"""
from amaranth import Mux

from intvit.golden_model.ops.gelu.ivit import ShiftGeluConfig

from .common import (GeluUnit, bundle, carry, requant_stages, restoring_stages, signed_bits,
                     unsigned_max)


class ShiftGeluUnit(GeluUnit):
    """I-ViT ShiftGELU (``gelu/ivit``), bit-exact with
    ``intvit.golden_model.ops.gelu.ivit.run_shift``.

    Stages per lane (each registered; the input is registered first), ``d = -x0``:
    1. slope ``z = config.slope(q)`` (shift-add tree);
    2. ``v = -|z|`` and the sign of ``z``;
    3. ``config.log2e(v)`` (shift-add);
    4. clamp at ``exp_clamp = max_k * x0`` and negate: ``w = min(-log2e(v), max_k * d)``
       (unsigned; the clamp is left out when no input reaches it);
    5. constant divider ``k = w // d``, ``rem = w mod d``: ``K = bitlen(max k)`` (the config's
       ``ranges['k']``; at most ``bitlen(max_k)``, 4 at the example config) restoring stages,
       each a subtraction of the constant ``d << j`` whose borrow is the quotient bit;
    6. ``(r - 2*x0) = 2d - rem`` and ``k + 1``;
    7. ``E = ((2d - rem) << exp_shift) >> (k + 1)`` (barrel shifter);
    8. ``sum = min(E + E(0), div_limit)``; numerator ``z < 0 ? E : E(0)``;
    9. variable divider ``f = div_limit // sum``: ``Q = bitlen(max f)`` (``ranges['factor']``,
       ``div_limit // min(E(0), div_limit)``) restoring stages, one quotient bit each (the
       quotient is below ``2**Q`` since ``sum >= E(0)``), stage ``j`` a ``bitlen(max sum) + j +
       1``-bit subtractor whose borrow is the quotient bit; ``sum``, the numerator and ``q``
       travel along. Q = 17 at the example config (``E(0) = 20480``): 17 subtractors of 17 to
       33 bits and about 1,200 flip-flops per lane; 5 stages for the ``published`` constants at
       in_scale 0.1;
    10. ``sigma = (numerator * f) >> sigmoid_shift``;
    11. ``h = q * sigma``, ``acc_bits`` wide;
    then the nested requantizer's stages (:func:`~.common.requant_stages`): ``h * m``, round
    half up, shift, saturate.
    Latency ``10 + K + Q`` cycles plus the requantizer's stages (``latency``), one beat
    (``lanes`` elements) per cycle: every divider stage holds a different element. A 256-entry
    table would be exact and far cheaper for 8-bit inputs, but would no longer measure ShiftGELU.
    """

    config_type = ShiftGeluConfig

    @property
    def w_max(self) -> int:
        """The largest ``w = -max(log2e(v), exp_clamp)`` (``ranges['log2e']`` is unclamped)."""
        return -max(self.config.ranges["log2e"][0], self.config.exp_clamp)

    @property
    def exponent_bits(self) -> int:
        """Quotient bits of ``k = w // d``."""
        return max(self.config.ranges["k"][1].bit_length(), 1)

    @property
    def reciprocal_bits(self) -> int:
        """Quotient bits of ``f = div_limit // sum``."""
        return max(self.config.ranges["factor"][1].bit_length(), 1)

    def lane_stages(self):
        cfg = self.config
        d = -cfg.x0
        limit, exp_one, clamp_at = cfg.div_limit, cfg.exp_one, cfg.exp_clamp
        sum_top = cfg.ranges["sum"][1]  # 2 E(0), before the saturation
        sum_max = min(sum_top, limit)
        clamp_reached = cfg.ranges["log2e"][0] < clamp_at

        def slope(q):
            return bundle(q=q, z=cfg.slope(q))

        def magnitude(b):
            return bundle(q=b.q, negative=b.z < 0, v=Mux(b.z < 0, b.z, -b.z))

        def log2e(b):
            return carry(b, v=cfg.log2e(b.v))

        def clamp(b):
            w = Mux(b.v < clamp_at, -clamp_at, -b.v) if clamp_reached else -b.v
            return carry(b, v=None, w=unsigned_max(w, self.w_max))

        exponent_division = restoring_stages(self.exponent_bits, "w", lambda b: d, d)

        def exp_operand(b):
            return bundle(q=b.q, negative=b.negative, operand=unsigned_max(2 * d - b.rem, 2 * d),
                          shift=b.quot + 1)

        def exp_shift(b):
            exp = (b.operand << cfg.exp_shift) >> b.shift  # <= (2d << exp_shift) >> 1 = E(0)
            return bundle(q=b.q, negative=b.negative, exp=unsigned_max(exp, exp_one))

        def sigmoid_sum(b):
            total = b.exp + exp_one
            saturated = total if sum_top <= limit else Mux(total > limit, limit, total)
            return bundle(q=b.q, numerator=Mux(b.negative, b.exp, exp_one),
                          sum=unsigned_max(saturated, sum_max))

        reciprocal_division = restoring_stages(self.reciprocal_bits, limit,
                                               lambda b: b.sum, sum_max)

        def sigmoid(b):
            return bundle(q=b.q, sigma=(b.numerator * b.quot) >> cfg.sigmoid_shift)

        def gelu_value(b):
            return signed_bits(b.q * b.sigma, cfg.acc_bits)

        return [slope, magnitude, log2e, clamp, *exponent_division, exp_operand, exp_shift,
                sigmoid_sum, *reciprocal_division, sigmoid, gelu_value,
                *requant_stages(cfg.requant)]


UNIT = ShiftGeluUnit
"""The unit of ``gelu/ivit`` (the registry's lookup: module ``intvit.hw.gelu.ivit``)."""
