"""``layernorm/ibert``: the I-BERT integer LayerNorm unit (Kim et al., ICML 2021, Sec. 3.5),
bit-exact to ``intvit.golden_model.ops.layernorm.ibert``."""
from intvit.golden_model.ops.layernorm.ibert import IBertLayerNormConfig

from .common import CentredLayerNormUnit


class IBertLayerNormUnit(CentredLayerNormUnit):
    """I-BERT integer LayerNorm (``layernorm/ibert``), ``lanes`` elements per beat: the three
    passes of :class:`.common.CentredLayerNormUnit` (``sum q``, then the rounded mean by a
    divider; ``y = q - mu`` and ``v = sum ((y >> var_shift)**2)``, then the root and
    ``f = 2**31 // (max(root, 1) << var_shift)`` by a divider; ``z = (y f) >> 1``, the fold,
    saturation), every constant read from the config.

    The root is a bit-serial root over ``sumsq_bits`` (``ceil(sumsq_bits/2)`` cycles); the
    golden model's Newton root with ``sqrt_iterations`` steps is exact, so both give the same
    floor root (checked in ``sim/test_layernorm_ibert.py``). Latency and interval as stated on
    :class:`.common.CentredLayerNormUnit`.
    """

    config_type = IBertLayerNormConfig

    @property
    def sqrt_bits(self) -> int:
        return self.config.sumsq_bits


UNIT = IBertLayerNormUnit
