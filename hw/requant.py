"""Dyadic requantizer units: ``y = clamp(((acc * m + 2**(e-1)) >> e) + z)`` per lane, with ``m``,
``e``, ``z`` built in (:class:`Requantizer`) or arriving with each accumulator
(:class:`ChannelRequantizer`, per output channel).

Both are pipelined for a >= 100 MHz ECP5 clock (the ``requant`` unit and the GEMM arrays):

- **Product** ``acc * m`` (32 x 31 bits, 63 signed) as four 16-bit partial products, one
  MULT18X18D each, registered alone (:func:`partial_products`). Their sum takes two registered
  adds, because ``ll + hh * 2**32`` is a concatenation (``0 <= ll < 2**32``) and only the middle
  terms are added: ``acc * m = cat(ll, hh) + (lh + hl) * 2**16`` (:func:`join_halves`,
  :func:`add_middle`).
- **Rounding** by one shift of ``2 * prod``: with ``q = (2 * prod) >> e``, ``(prod + 2**(e-1))
  >> e = (q + 1) >> 1 = (q >> 1) + q[0]``, since ``floor((x + a) / 2a) = floor((floor(x / a) +
  1) / 2)`` for ``a = 2**(e-1)``; at ``e = 0`` it gives ``(2 prod + 1) >> 1 = prod``, no
  rounding, as in the golden model. The wide rounding add becomes a carry-in on the output's
  few bits (:func:`saturate_rounded`).
"""
from amaranth import Cat, Const, Mux, signed, unsigned
from amaranth.lib import data

from intvit.golden_model.integer import signed_range
from intvit.golden_model.ops.requant import ACC_BITS, MULTIPLIER_BITS, SHIFT_BITS, RequantConfig

from .fields import Fields
from .pipeline import ElementwisePipeline

PRODUCT_BITS = ACC_BITS + MULTIPLIER_BITS
"""``acc * m``: 63 bits signed."""
HALF = 16
"""Operands split at bit 16: every partial product is at most 17 x 17 bits signed, one
MULT18X18D (ECP5 sysDSP, 18 x 18)."""
PARTIALS = dict(ll=unsigned(2 * HALF), lh=unsigned(MULTIPLIER_BITS),
                hl=signed(2 * HALF), hh=signed(PRODUCT_BITS - 2 * HALF))
"""``acc = hi * 2**16 + lo`` (``hi`` signed, ``lo`` unsigned), ``m`` likewise (unsigned):
``ll = lo*m_lo < 2**32``, ``lh = lo*m_hi < 2**31``, ``hl = hi*m_lo`` in ``[-2**31, 2**31)``,
``hh = hi*m_hi`` in ``[-2**30, 2**30)``."""
HALVES = dict(low=signed(PRODUCT_BITS), middle=signed(2 * HALF + 2))
"""``low = cat(ll, hh)`` and ``middle = lh + hl`` in ``[-2**31, 2**32)``."""


def partial_products(acc, multiplier) -> dict:
    """The four 16-bit partial products of ``acc * multiplier`` (``multiplier``: a 31-bit
    unsigned value, or an int constant)."""
    lo, hi = acc[:HALF], acc[HALF:].as_signed()
    if isinstance(multiplier, int):
        m_lo, m_hi = multiplier & ((1 << HALF) - 1), multiplier >> HALF
    else:
        m_lo, m_hi = multiplier[:HALF], multiplier[HALF:]
    return dict(ll=lo * m_lo, lh=lo * m_hi, hl=hi * m_lo, hh=hi * m_hi)


def join_halves(parts) -> dict:
    """``cat(ll, hh)`` (exact: ``0 <= ll < 2**32``) and ``lh + hl``."""
    return dict(low=Cat(parts.ll, parts.hh).as_signed(), middle=parts.lh + parts.hl)


def add_middle(halves):
    """``acc * m = low + middle * 2**16`` (63 bits signed)."""
    return halves.low + (halves.middle << HALF)


def saturate_rounded(q, lo: int, hi: int, offset=0):
    """``clamp((q >> 1) + q[0] + offset, lo, hi)`` for ``lo <= offset <= hi``, without a wide
    add: ``h = q >> 1`` outside ``width = bit_length(max(|lo|, |hi|)) + 2`` signed bits is beyond
    either end even after the offset (``2**(width-1) > hi + |offset| + 1``), so its sign picks the
    end; otherwise ``h + q[0] + offset`` is summed on ``width`` bits and clamped."""
    h = q[1:].as_signed()
    width = max(lo.bit_length(), hi.bit_length()) + 2
    top = h[width - 1:]
    fits = top.all() | ~top.any()
    small = h[:width].as_signed() + q[0] + offset
    return Mux(fits, Mux(small < lo, lo, Mux(small > hi, hi, small)), Mux(h[-1], lo, hi))


def product_stages(multiplier, carried: dict):
    """Stage functions ``lane -> partial products -> halves -> product``: ``multiplier(view)``
    gives the lane's ``m``, and the ``carried`` fields (name: shape) travel beside the product,
    read from the lane view at the first stage."""
    parts = Fields(**PARTIALS, **carried)
    halves = Fields(**HALVES, **carried)
    product = Fields(prod=signed(PRODUCT_BITS), **carried)

    def keep(view):
        return {name: getattr(view, name) for name in carried}

    def multiply(lane):
        return parts.pack(**partial_products(lane.acc, multiplier(lane)), **keep(lane))

    def join(word):
        view = parts.unpack(word)
        return halves.pack(**join_halves(view), **keep(view))

    def add(word):
        view = halves.unpack(word)
        return product.pack(prod=add_middle(view), **keep(view))

    return [multiply, join, add], product


class Requantizer(ElementwisePipeline):
    """Requantize ``lanes`` int32 accumulators per beat, exactly as ``intvit.golden_model.requantize``.

    ``m``, ``e`` and ``z`` are constants of the config: the partial products are constant
    multiplies and the shift is wiring. Stages: input register, partial products, halves,
    product, then ``q = (2 prod) >> e`` rounded, offset by ``z`` and saturated (module
    docstring). Latency 5 cycles (``intvit.golden_model.gemm.REQUANT_LATENCY``), one beat per
    cycle.

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
        operand = Fields(acc=signed(ACC_BITS))
        stages, product = product_stages(lambda lane: cfg.multiplier, {})

        def round_offset_saturate(word):
            q = Cat(Const(0, 1), product.unpack(word).prod).as_signed() >> cfg.shift
            return saturate_rounded(q, lo, hi, cfg.zero_point)

        return [lambda acc: stages[0](operand.unpack(acc)), *stages[1:], round_offset_saturate]


def channel_operand(bias_bits: int | None = None) -> data.StructLayout:
    """A lane of a per-channel requantizer's input, ``{acc, multiplier, shift}``; with
    ``bias_bits``, the GEMM's per-channel ``b`` lane ``{bias, multiplier, shift}`` instead."""
    first = ("acc", signed(ACC_BITS)) if bias_bits is None else ("bias", signed(bias_bits))
    return data.StructLayout(dict([first, ("multiplier", unsigned(MULTIPLIER_BITS)),
                                   ("shift", unsigned(SHIFT_BITS))]))


COARSE_SHIFT = 3
"""The variable shift by ``e`` in two registered steps: ``e`` rounded down to a multiple of
``2**3``, then the low 3 bits (each a 3-level multiplexer)."""


class ChannelRequantizer(ElementwisePipeline):
    """``lanes`` accumulators per beat, each with its own ``m`` and ``e``, exactly as
    ``intvit.golden_model.ops.requant.ChannelRequant``: ``clamp((acc * m + 2**(e-1)) >> e)`` to signed
    ``out_bits`` (round half up, no zero point).

    Input lanes are :func:`channel_operand` structs. Stages: input register; the four partial
    products, halves and product of ``acc * m`` (module docstring) carried with ``e``; ``2 prod``
    shifted right by ``e`` in two steps (:data:`COARSE_SHIFT`); rounding and saturation. Latency 7
    cycles (``intvit.golden_model.gemm.CHANNEL_REQUANT_LATENCY``), one beat per cycle.
    """

    def __init__(self, out_bits: int, *, lanes: int = 1):
        self.out_bits = out_bits
        super().__init__(channel_operand(), signed(out_bits), lanes)

    def lane_stages(self):
        lo, hi = signed_range(self.out_bits)
        operand = Fields(**{name: field.shape for name, field in channel_operand()})
        stages, product = product_stages(lambda lane: lane.multiplier,
                                         {"shift": unsigned(SHIFT_BITS)})
        fine = (1 << COARSE_SHIFT) - 1
        coarse = Fields(q=signed(PRODUCT_BITS + 1), fine=unsigned(COARSE_SHIFT))

        def shift_coarse(word):
            b = product.unpack(word)
            doubled = Cat(Const(0, 1), b.prod).as_signed()
            coarse_shift = (b.shift & ~fine)[:SHIFT_BITS]
            return coarse.pack(q=doubled >> coarse_shift, fine=b.shift[:COARSE_SHIFT])

        def shift_fine(word):
            b = coarse.unpack(word)
            return b.q >> b.fine

        return [lambda lane: stages[0](operand.unpack(lane)), *stages[1:], shift_coarse,
                shift_fine, lambda q: saturate_rounded(q, lo, hi)]


UNIT = Requantizer
"""The unit of the ``requant`` operator (the registry's lookup: module ``intvit.hw.requant``)."""
