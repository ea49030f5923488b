"""Dyadic requantizer units: ``y = clamp(((acc * m + 2**(e-1)) >> e) + z)`` per lane, with ``m``,
``e``, ``z`` built in (:class:`Requantizer`) or arriving with each accumulator
(:class:`ChannelRequantizer`, per output channel)."""
from amaranth import Const, Mux, signed, unsigned
from amaranth.lib import data

from intvit.golden_model.integer import signed_range
from intvit.golden_model.ops.requant import ACC_BITS, MULTIPLIER_BITS, SHIFT_BITS, RequantConfig

from .fields import Fields
from .pipeline import ElementwisePipeline


class Requantizer(ElementwisePipeline):
    """Requantize ``lanes`` int32 accumulators per beat, exactly as ``intvit.golden_model.requantize``.

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
            rounding = Const(cfg.rounding, prod.shape())
            shifted = (prod + rounding) >> cfg.shift  # arithmetic shift: prod is signed
            offset = shifted + Const(cfg.zero_point, shifted.shape())
            lo_c, hi_c = Const(lo, offset.shape()), Const(hi, offset.shape())
            return Mux(offset < lo_c, lo_c, Mux(offset > hi_c, hi_c, offset))

        return [product, round_and_saturate]


def channel_operand(bias_bits: int | None = None) -> data.StructLayout:
    """A lane of a per-channel requantizer's input, ``{acc, multiplier, shift}``; with
    ``bias_bits``, the GEMM's per-channel ``b`` lane ``{bias, multiplier, shift}`` instead."""
    first = ("acc", signed(ACC_BITS)) if bias_bits is None else ("bias", signed(bias_bits))
    return data.StructLayout(dict([first, ("multiplier", unsigned(MULTIPLIER_BITS)),
                                   ("shift", unsigned(SHIFT_BITS))]))


class ChannelRequantizer(ElementwisePipeline):
    """``lanes`` accumulators per beat, each with its own ``m`` and ``e``, exactly as
    ``intvit.golden_model.ops.requant.ChannelRequant``: ``clamp((acc * m + 2**(e-1)) >> e)`` to signed
    ``out_bits`` (round half up, no zero point).

    Input lanes are :func:`channel_operand` structs. Stages: input register; the product
    ``acc * m`` (a 32 x 31-bit multiplier, 63 bits signed) carried with ``e``; plus the rounding
    constant ``(1 << e) >> 1``; a barrel shift right by ``e`` (arithmetic) and saturation.
    Latency 4 cycles (``intvit.golden_model.gemm.CHANNEL_REQUANT_LATENCY``), one beat per cycle: with
    the add and the shift in one stage the unit ran at 45 MHz on ECP5, split at 75 MHz.
    """

    def __init__(self, out_bits: int, *, lanes: int = 1):
        self.out_bits = out_bits
        super().__init__(channel_operand(), signed(out_bits), lanes)

    def lane_stages(self):
        product_bits = ACC_BITS + MULTIPLIER_BITS
        lo, hi = signed_range(self.out_bits)
        operand = Fields(**{name: field.shape for name, field in channel_operand()})
        product = Fields(prod=signed(product_bits), shift=unsigned(SHIFT_BITS))
        rounded = Fields(total=signed(product_bits + 1), shift=unsigned(SHIFT_BITS))

        def multiply(lane):
            lane = operand.unpack(lane)  # the input register holds the struct's bits
            return product.view(prod=lane.acc * lane.multiplier, shift=lane.shift)

        def add_rounding(b):
            half = (Const(1, product_bits) << (b.shift - 1)[:SHIFT_BITS])[:product_bits]
            rounding = Mux(b.shift == 0, 0, half)  # (1 << e) >> 1; e <= 62 keeps it in 63 bits
            return rounded.view(total=b.prod + rounding, shift=b.shift)

        def shift_and_saturate(b):
            shifted = b.total >> b.shift  # arithmetic shift: the sum is signed
            return Mux(shifted < lo, lo, Mux(shifted > hi, hi, shifted))

        return [multiply, add_rounding, shift_and_saturate]


UNIT = Requantizer
"""The unit of the ``requant`` operator (the registry's lookup: module ``intvit.hw.requant``)."""
