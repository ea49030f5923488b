"""Dyadic requantizer unit: ``y = clamp(((acc * m + 2**(e-1)) >> e) + z)`` per lane."""
from amaranth import Const, Mux, signed, unsigned

from golden_model.ops.requant import ACC_BITS, RequantConfig

from .pipeline import ElementwisePipeline


class Requantizer(ElementwisePipeline):
    """Requantize ``lanes`` int32 accumulators per beat, exactly as ``golden_model.requantize``.

    ``m``, ``e`` and ``z`` are constants of the config, so the multiplier is a constant multiply
    and the shift is wiring. Stages: input register, product ``acc * m`` (63-bit signed),
    round/shift/offset/saturate. Latency 3 cycles, one beat per cycle.

    Parameters
    ----------
    config : RequantConfig
    lanes : int
        Accumulators per beat.
    """

    def __init__(self, config: RequantConfig, *, lanes: int = 1):
        if not isinstance(config, RequantConfig):
            raise TypeError(f"config must be a RequantConfig, not {config!r}")
        self.config = config
        out_shape = signed(config.out_bits) if config.out_signed else unsigned(config.out_bits)
        super().__init__(signed(ACC_BITS), out_shape, lanes)

    def lane_stages(self):
        cfg = self.config
        lo, hi = cfg.out_range

        def product(acc):
            return acc * cfg.multiplier

        def round_and_saturate(prod):
            rounding = Const((1 << cfg.shift) >> 1, prod.shape())
            shifted = (prod + rounding) >> cfg.shift  # arithmetic shift: prod is signed
            offset = shifted + Const(cfg.zero_point, shifted.shape())
            lo_c, hi_c = Const(lo, offset.shape()), Const(hi, offset.shape())
            return Mux(offset < lo_c, lo_c, Mux(offset > hi_c, hi_c, offset))

        return [product, round_and_saturate]
