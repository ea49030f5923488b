"""``layernorm/ivit``: the I-ViT shift LayerNorm unit (Li & Gu, ICCV 2023, Sec. 3.4),
bit-exact to ``intvit.golden_model.ops.layernorm.ivit``."""
from intvit.golden_model.ops.layernorm.ivit import ShiftLayerNormConfig

from .common import CentredLayerNormUnit


class ShiftLayerNormUnit(CentredLayerNormUnit):
    """I-ViT shift LayerNorm (``layernorm/ivit``), ``lanes`` elements per beat: the three
    passes of :class:`.common.CentredLayerNormUnit` without an overflow shift (``sum q``, then
    the rounded mean by a divider; ``y = q - mu`` and ``v = sum y**2``, then the root and
    ``f = (2**31 - 1) // max(root, 1)`` by a divider; ``z = (y f) >> 1``, the fold,
    saturation), every constant read from the config.

    The root is the golden model's own bit-serial root (``sqrt_steps`` cycles over a
    ``2 sqrt_steps``-bit radicand). Latency and interval as stated on
    :class:`.common.CentredLayerNormUnit`.
    """

    config_type = ShiftLayerNormConfig

    @property
    def sqrt_bits(self) -> int:
        return 2 * self.config.sqrt_steps


UNIT = ShiftLayerNormUnit
