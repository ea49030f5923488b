"""Log quantizer unit (``log2quant``) and the shift-log dequantize-multiply unit.

:class:`Log2QuantUnit` evaluates ``intvit.golden_model.ops.log2quant.log2_quantize`` bit for bit:

1. input register;
2. ``x = q + offset`` and ``x >= 1`` (one adder, the sign of ``x - 1``);
3. leading-one detection: ``l = floor(log2 x)`` (a priority encoder over ``W`` bits);
4. normalization: ``m = x << (W - 1 - l)`` (a barrel shifter), ``m`` in ``[2**(W-1), 2**W)``;
5. rounding and clamping: ``c = n ref_shift - (n l + #{j : m >= t_j})`` (``n`` comparators
   against the ``round_thresholds``) saturated to ``[0, 2**k - 1]``, the top (zero) code when
   ``x < 1``.

:class:`Log2MultiplyUnit` is the shift-log dequantize-multiply path of the next linear layer
(``intvit.golden_model.ops.log2quant.log2_multiply``): the product of a code and a weight is
``((w * M[c mod n]) << frac_bits) >> (ceil(c/n) + R)``, a barrel shift (and for base sqrt(2) a
choice between two constant multiples of ``w``) instead of a multiplier, 0 for the zero code; the
GEMM's adder tree sums the products and the constant ``(min(X) - eps) * sum(w)`` sits in the
bias. Its input word packs ``w * 2**code_bits + c`` (weight high, code low). Stages: input
register, shift.

Both are :class:`~hw.pipeline.ElementwisePipeline` units: ``lanes`` copies, one beat per cycle.
"""
from amaranth import Cat, Const, Mux, signed, unsigned

from intvit.golden_model.ops.log2quant import Log2MultiplyConfig, Log2QuantConfig

from .fields import Fields
from .pipeline import ElementwisePipeline


class Log2QuantUnit(ElementwisePipeline):
    """The ``log2quant`` operator in hardware (module docstring); latency 5 cycles.

    Parameters
    ----------
    config : Log2QuantConfig
    lanes : int
        Elements per beat.
    """

    def __init__(self, config: Log2QuantConfig, *, lanes: int = 1):
        if not isinstance(config, Log2QuantConfig):
            raise TypeError(f"config must be a Log2QuantConfig, not {config!r}")
        self.config = config
        in_shape = signed(config.in_bits) if config.in_signed else unsigned(config.in_bits)
        super().__init__(in_shape, unsigned(config.out_bits), lanes)

    def lane_stages(self):
        cfg = self.config
        width = cfg.mantissa_bits
        lead_bits = max(width - 1, 1).bit_length()
        shifted = Fields(x=unsigned(width), positive=unsigned(1))
        located = Fields(x=unsigned(width), lead=unsigned(lead_bits), positive=unsigned(1))
        normalized = Fields(mantissa=unsigned(width), lead=unsigned(lead_bits),
                            positive=unsigned(1))

        def shift(q):
            x = q + Const(cfg.offset, signed(cfg.in_bits + 2))
            return shifted.view(x=x[:width], positive=x >= 1)

        def leading_one(b):
            lead = Const(0, lead_bits)
            for bit in range(width):  # the highest set bit wins
                lead = Mux(b.x[bit], bit, lead)
            return located.view(x=b.x, lead=lead, positive=b.positive)

        def normalize(b):
            amount = (Const(width - 1, lead_bits) - b.lead)[:lead_bits]  # lead <= width - 1
            mantissa = (b.x << amount)[:width]
            return normalized.view(mantissa=mantissa, lead=b.lead, positive=b.positive)

        def round_and_clamp(b):
            rounded = b.lead * cfg.steps
            for threshold in cfg.round_thresholds:
                rounded = rounded + (b.mantissa >= Const(threshold, width + 1))
            code = Const(cfg.steps * cfg.ref_shift) - rounded  # unsigned - unsigned is signed
            top = Const(cfg.top_code, unsigned(cfg.out_bits))
            clamped = Mux(code < 0, 0, Mux(code > cfg.top_code, top, code[:cfg.out_bits]))
            return Mux(b.positive, clamped, top)

        return [shift, leading_one, normalize, round_and_clamp]


class Log2MultiplyUnit(ElementwisePipeline):
    """``((w * M[c mod n]) << frac_bits) >> (ceil(c/n) + R)`` on packed ``(w, c)`` words, 0 for
    the zero code (module docstring); latency 2.

    Parameters
    ----------
    config : Log2MultiplyConfig
    lanes : int
        Products per beat.
    """

    def __init__(self, config: Log2MultiplyConfig, *, lanes: int = 1):
        if not isinstance(config, Log2MultiplyConfig):
            raise TypeError(f"config must be a Log2MultiplyConfig, not {config!r}")
        self.config = config
        super().__init__(signed(config.in_bits), signed(config.out_bits), lanes)

    def lane_stages(self):
        cfg = self.config

        def shift(word):
            code = word[:cfg.code_bits]
            weight = word[cfg.code_bits:].as_signed()
            if cfg.steps == 1:
                scaled, amount = weight, code
            else:  # even codes: w * 2**R; odd codes: w * round(sqrt(2) * 2**R)
                even, odd = cfg.multipliers
                scaled = Mux(code[0], weight * odd, weight * even)
                amount = (code + 1)[1:] + cfg.mult_shift  # ceil(c / 2) + R
            widened = Cat(Const(0, cfg.frac_bits), scaled).as_signed() if cfg.frac_bits else scaled
            product = widened >> amount  # arithmetic: floor, sign fill past the width
            return Mux(code == cfg.zero_code, 0, product)

        return [shift]


UNIT = Log2QuantUnit
"""The unit of the ``log2quant`` operator (the registry's lookup: ``intvit.hw.log2quant``)."""
