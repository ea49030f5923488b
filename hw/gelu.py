"""GELU units: Poly-GELU (``gelu/iptq``), ShiftGELU (``gelu/ivit``) and i-GELU (``gelu/ibert``).

Each is an :class:`~hw.pipeline.ElementwisePipeline` evaluating its golden model
(``golden_model/ops/gelu.py``) bit for bit: ``lanes`` copies of one feed-forward datapath, every
stage registered, one beat per cycle, then the nested RequantConfig's two requantizer stages
(``hw/requant.py``'s arithmetic). Values that travel together between stages are packed into one
struct register (:func:`bundle`). Every constant is read from the golden config.

Exact rewrites of the golden formulas (integer identities, no rounding changed):
- ``-(min(|q|, -b_int) + b_int) = max(-b_int - |q|, 0)``: the clipped distance is handled as an
  unsigned magnitude, and ``diff * diff`` as its square;
- ``-(q * s) = (-q) * s``; for ``q = 0`` the sign of ``L`` is irrelevant (the product is 0), so
  ``sign(q) * poly`` becomes ``q < 0 ? -poly : poly``;
- ShiftGELU's ``k = v // x0``, ``r = v - k*x0`` for ``v <= 0``, ``x0 < 0`` is ``k = w // d``,
  ``r = -(w mod d)`` with ``w = -v``, ``d = -x0`` (unsigned restoring division).
"""
from amaranth import Cat, Mux, Value, signed
from amaranth.lib import data

from intvit.golden_model.errors import IntvitError
from intvit.golden_model.ops.gelu import IBertGeluConfig, PolyGeluConfig, ShiftGeluConfig

from .pipeline import ElementwisePipeline
from .requant import Requantizer


def bundle(**fields) -> data.View:
    """Values registered together: a struct view with one field per value at its own shape
    (signed stays signed), so a stage reads ``b.name``."""
    values = {name: Value.cast(value) for name, value in fields.items()}
    layout = data.StructLayout({name: value.shape() for name, value in values.items()})
    return layout(Cat(*values.values()))


def carry(b: data.View, **changes) -> data.View:
    """``b``'s fields passed on with ``changes`` applied (a new value, or ``None`` to drop)."""
    fields = {name: b[name] for name, _ in b.shape()}
    fields.update(changes)
    return bundle(**{name: value for name, value in fields.items() if value is not None})


def unsigned_max(value, maximum: int) -> Value:
    """``value`` (known to lie in ``0..maximum``) as an unsigned value of ``maximum``'s width."""
    return Value.cast(value)[:max(maximum.bit_length(), 1)]


def signed_bits(value, bits: int) -> Value:
    """``value`` (known to fit ``bits``-bit two's complement) narrowed to ``bits`` bits."""
    value = Value.cast(value)
    return value[:bits].as_signed() if value.shape().width > bits else value


def requant_stages(requant):
    """The nested requantizer's stages: ``h * m``, then round half up, shift, saturate."""
    requantizer = Requantizer(requant, lanes=1)
    requantizer._MustUse__silence = True  # built for its stage functions only, never elaborated
    return requantizer.lane_stages()


def restoring_stages(quotient_bits: int, numerator, divisor, divisor_max: int):
    """A pipelined restoring divider: one stage per quotient bit, most significant first.

    The first stage divides ``numerator`` (a constant, or the name of a field, which it
    consumes), which must be ``< divisor << quotient_bits``; ``divisor(b)`` (a constant or a
    field, at most ``divisor_max``) is read at every stage, so a field divisor travels along.
    Stage ``j`` subtracts ``divisor << j`` from the remainder and keeps the difference when it
    does not borrow (one subtractor, no separate comparator); the remainder is then
    ``< divisor << j`` and is narrowed to that width (a triangular array: stage ``j`` has a
    ``bitlen(divisor_max) + j + 1``-bit subtractor). Adds fields ``quot`` (the quotient) and
    ``rem`` (the remainder).
    """
    field = numerator if isinstance(numerator, str) else None

    def stage_for(j):
        first = j == quotient_bits - 1

        def stage(b):
            rem = b.rem if not first else numerator if field is None else b[field]
            difference = rem - (divisor(b) << j)  # signed, one bit wider: the top bit borrows
            fits = ~difference[-1]
            narrowed = unsigned_max(Mux(fits, difference, rem), (divisor_max << j) - 1)
            consumed = {field: None} if first and field else {}
            return carry(b, **consumed, rem=narrowed, quot=fits if first else Cat(fits, b.quot))
        return stage

    return [stage_for(j) for j in reversed(range(quotient_bits))]


# --------------------------------------------------------------------------------------------
# i-GELU and Poly-GELU: I-BERT's erf polynomial, squared or raised to the fourth power


class _ErfPolynomialUnit(ElementwisePipeline):
    """Shared datapath of i-GELU and Poly-GELU; subclasses give the power stages and shift."""

    config_type = None

    def __init__(self, config, *, lanes: int = 1):
        if not isinstance(config, self.config_type):
            raise IntvitError(f"{type(self).__name__} needs a {self.config_type.__name__}, "
                              f"not {type(config).__name__}; build it with the operator's "
                              "example_config or calibrate")
        self.config = config
        super().__init__(signed(config.in_bits), signed(config.out_bits), lanes)

    def power_stages(self):
        """Stages from ``bundle(q, mag)`` to ``bundle(q, power)``, ``power + c_int = poly``."""
        raise NotImplementedError

    @property
    def poly_shift(self) -> int:
        raise NotImplementedError

    def lane_stages(self):
        cfg = self.config
        reach = -cfg.b_int

        def clip(q):
            gap = reach - Mux(q < 0, -q, q)
            return bundle(q=q, mag=unsigned_max(Mux(gap < 0, 0, gap), reach))

        def add_constant(b):
            return bundle(q=b.q, poly=b.power + cfg.c_int)

        def erf_sign(b):
            signed_poly = Mux(b.q < 0, -b.poly, b.poly)
            s = (signed_poly >> self.poly_shift) + cfg.one
            return bundle(neg_q=-b.q, s=signed_bits(s, cfg.widths["sum"]))  # the config's bound

        def gelu_value(b):
            return signed_bits(b.neg_q * b.s, cfg.acc_bits)

        return [clip, *self.power_stages(), add_constant, erf_sign, gelu_value,
                *requant_stages(cfg.requant)]


class IBertGeluUnit(_ErfPolynomialUnit):
    """I-BERT i-GELU (``gelu/ibert``), bit-exact with ``intvit.golden_model.ops.gelu.run_ibert``.

    Stages per lane (each registered; the input is registered first):
    1. clip: ``mag = max(-b_int - |q|, 0)`` (negate, subtract, select);
    2. square: ``mag * mag`` (unsigned multiplier, ``bitlen(-b_int)`` bits square);
    3. ``poly = mag**2 + c_int``;
    4. ``s = ((q < 0 ? -poly : poly) >> shift) + one`` (the shift is wiring);
    5. ``h = (-q) * s``, ``acc_bits`` wide (an ``in_bits+1`` by ``widths['sum']`` multiplier);
    6-7. requantizer: ``h * m``, then round half up, shift, saturate.
    No divider. Latency 8 cycles, one beat (``lanes`` elements) per cycle.
    """

    config_type = IBertGeluConfig

    @property
    def poly_shift(self) -> int:
        return self.config.shift

    def power_stages(self):
        def square(b):
            return bundle(q=b.q, power=b.mag * b.mag)
        return [square]


class PolyGeluUnit(_ErfPolynomialUnit):
    """IPTQ-ViT Poly-GELU (``gelu/iptq``), bit-exact with ``intvit.golden_model.ops.gelu.run_poly``.

    The quartic is evaluated as two squarings (``(t + b)**4`` needs no Horner chain: its only
    non-zero coefficient sits on the fourth power of the clipped distance). Stages per lane:
    1. clip: ``mag = max(-b_int - |q|, 0)``;
    2. ``p = (mag * mag) >> square_shift`` (multiplier; the shift is wiring);
    3. ``p * p`` (second multiplier, at most 31 bits out by the config's ``square_shift``);
    4. ``poly = p*p + c_int``;
    5. ``s = ((q < 0 ? -poly : poly) >> poly_shift) + one``;
    6. ``h = (-q) * s``, ``acc_bits`` (<= 32) wide;
    7-8. requantizer: ``h * m``, then round half up, shift, saturate.
    No divider. Latency 9 cycles, one beat per cycle.
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


# --------------------------------------------------------------------------------------------
# I-ViT ShiftGELU


class ShiftGeluUnit(ElementwisePipeline):
    """I-ViT ShiftGELU (``gelu/ivit``), bit-exact with ``intvit.golden_model.ops.gelu.run_shift``.

    Stages per lane (each registered; the input is registered first), ``d = -x0``:
    1. slope ``z = config.slope(q)`` (shift-add tree);
    2. ``v = -|z|`` and the sign of ``z``;
    3. ``config.log2e(v)`` (shift-add);
    4. clamp at ``max_k * x0`` and negate: ``w = min(-log2e(v), max_k * d)`` (unsigned; the
       clamp is left out when no input reaches it);
    5. constant divider ``k = w // d``, ``rem = w mod d``: ``K = bitlen(max w // d)`` (at most
       ``bitlen(max_k)``; 4 at the example config) restoring stages, each a subtraction of the
       constant ``d << j`` whose borrow is the quotient bit;
    6. ``(r - 2*x0) = 2d - rem`` and ``k + 1``;
    7. ``E = ((2d - rem) << exp_shift) >> (k + 1)`` (barrel shifter);
    8. ``sum = min(E + E(0), 2**div_bits - 1)``; numerator ``z < 0 ? E : E(0)``;
    9. variable divider ``f = (2**div_bits - 1) // sum``: ``Q = bitlen((2**div_bits - 1) //
       min(E(0), 2**div_bits - 1))`` restoring stages, one quotient bit each (the quotient is
       below ``2**Q`` since ``sum >= E(0)``), stage ``j`` a ``bitlen(max sum) + j + 1``-bit
       subtractor whose borrow is the quotient bit; ``sum``, the numerator and ``q`` travel
       along. Q = 17 at the example config (``E(0) = 20480``): 17 subtractors of 17 to 33 bits
       and about 1,200 flip-flops per lane; 5 stages for the ``published`` constants at
       in_scale 0.1;
    10. ``sigma = (numerator * f) >> (div_bits + 1 - sigmoid_bits)``;
    11. ``h = q * sigma``, ``acc_bits`` wide;
    12-13. requantizer: ``h * m``, then round half up, shift, saturate.
    Latency ``12 + K + Q`` cycles (33 at the example config), one beat (``lanes``
    elements) per cycle: every divider stage holds a different element. A 256-entry table
    would be exact and far cheaper for 8-bit inputs, but would no longer measure ShiftGELU.
    """

    def __init__(self, config: ShiftGeluConfig, *, lanes: int = 1):
        if not isinstance(config, ShiftGeluConfig):
            raise IntvitError(f"ShiftGeluUnit needs a ShiftGeluConfig, not "
                              f"{type(config).__name__}; build it with the operator's "
                              "example_config or calibrate")
        self.config = config
        super().__init__(signed(config.in_bits), signed(config.out_bits), lanes)

    @property
    def limit(self) -> int:
        """The reciprocal's numerator ``2**div_bits - 1``."""
        return (1 << self.config.div_bits) - 1

    @property
    def log2e_min(self) -> int:
        """The least ``log2e(-|z|)`` over the input codes (slope and log2e are monotone)."""
        cfg = self.config
        lo, hi = cfg.in_range
        return cfg.log2e(-max(-cfg.slope(lo), cfg.slope(hi)))

    @property
    def w_max(self) -> int:
        """The largest ``w = -max(log2e(v), max_k * x0)``."""
        return -max(self.log2e_min, self.config.max_k * self.config.x0)

    @property
    def exponent_bits(self) -> int:
        """Quotient bits of ``k = w // d`` (at most those of ``max_k``)."""
        return max((self.w_max // -self.config.x0).bit_length(), 1)

    @property
    def reciprocal_bits(self) -> int:
        """Quotient bits of ``(2**div_bits - 1) // sum`` for ``sum >= min(E(0), limit)``."""
        return max((self.limit // min(self.config.exp_one, self.limit)).bit_length(), 1)

    def lane_stages(self):
        cfg = self.config
        d = -cfg.x0
        limit, exp_one = self.limit, cfg.exp_one
        sum_max = min(2 * exp_one, limit)
        clamp_at = cfg.max_k * cfg.x0

        def slope(q):
            return bundle(q=q, z=cfg.slope(q))

        def magnitude(b):
            return bundle(q=b.q, negative=b.z < 0, v=Mux(b.z < 0, b.z, -b.z))

        def log2e(b):
            return carry(b, v=cfg.log2e(b.v))

        def clamp(b):
            w = -b.v if self.log2e_min >= clamp_at else Mux(b.v < clamp_at, -clamp_at, -b.v)
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
            saturated = total if 2 * exp_one <= limit else Mux(total > limit, limit, total)
            return bundle(q=b.q, numerator=Mux(b.negative, b.exp, exp_one),
                          sum=unsigned_max(saturated, sum_max))

        reciprocal_division = restoring_stages(self.reciprocal_bits, limit,
                                               lambda b: b.sum, sum_max)

        def sigmoid(b):
            shift = cfg.div_bits + 1 - cfg.sigmoid_bits
            return bundle(q=b.q, sigma=(b.numerator * b.quot) >> shift)

        def gelu_value(b):
            return signed_bits(b.q * b.sigma, cfg.acc_bits)

        return [slope, magnitude, log2e, clamp, *exponent_division, exp_operand, exp_shift,
                sigmoid_sum, *reciprocal_division, sigmoid, gelu_value,
                *requant_stages(cfg.requant)]
