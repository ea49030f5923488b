"""Pieces shared by the GELU units (``iptq.py``, ``ivit.py``, ``ibert.py``).

Each unit is an :class:`~intvit.hw.pipeline.ElementwisePipeline` evaluating its golden model
(``golden_model/ops/gelu/<method>.py``) bit for bit: ``lanes`` copies of one feed-forward
datapath, every stage registered, one beat per cycle, then the nested RequantConfig's
requantizer stages (``hw/requant.py``'s arithmetic). Values that travel together between stages
are packed into one struct register (:func:`bundle`). Every constant is read from the golden
config; the units add only the pipeline structure and ``lanes``.

Exact rewrites of the golden formulas (integer identities, no rounding changed):
- ``-(min(|q|, -b_int) + b_int) = max(-b_int - |q|, 0)``: the clipped distance is handled as an
  unsigned magnitude, and ``diff * diff`` as its square;
- ``-(q * s) = (-q) * s``; for ``q = 0`` the sign of ``L`` is irrelevant (the product is 0), so
  ``sign(q) * poly`` becomes ``q < 0 ? -poly : poly``.
"""
from amaranth import Cat, Mux, Value, signed
from amaranth.lib import data

from intvit.golden_model.errors import IntvitError
from intvit.golden_model.ops.requant import ACC_BITS

from ..dsp import DSP_OPERAND_BITS, DSP_SLICE
from ..fields import fit
from ..pipeline import ElementwisePipeline
from ..requant import Requantizer



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
    """The nested requantizer's stages (``h * m``, then round half up, shift, saturate). Its
    input is a signed ``ACC_BITS`` accumulator, so its first stage reads ``h`` (``acc_bits <=
    ACC_BITS``) sign-extended to that width (wiring)."""
    requantizer = Requantizer(requant, lanes=1)
    requantizer._MustUse__silence = True  # built for its stage functions only, never elaborated
    first, *rest = requantizer.lane_stages()
    return [lambda h: first(fit(h, signed(ACC_BITS))), *rest]


def split_low(value) -> tuple[Value, Value]:
    """``value = high * 2**DSP_SLICE + low``: ``(low, high)``, ``low`` unsigned and ``high``
    signed (one MULT18X18D operand each while ``value`` has at most ``2 * DSP_SLICE + 1``
    bits)."""
    value = Value.cast(value)
    return value[:DSP_SLICE], value[DSP_SLICE:].as_signed()


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


class GeluUnit(ElementwisePipeline):
    """Base of the GELU units: ``config`` (of the subclass's ``config_type``) in, signed
    ``in_bits`` codes in and signed ``out_bits`` codes out, ``lanes`` elements per beat.

    Parameters
    ----------
    config : the subclass's ``config_type``
    lanes : int
        Elements per beat.
    """

    config_type = None

    def __init__(self, config, *, lanes: int = 1):
        if not isinstance(config, self.config_type):
            raise IntvitError(f"{type(self).__name__} needs a {self.config_type.__name__}, "
                              f"not {type(config).__name__}; build it with the operator's "
                              "example_config or calibrate")
        self.config = config
        super().__init__(signed(config.in_bits), signed(config.out_bits), lanes)


class ErfPolynomialUnit(GeluUnit):
    """Shared datapath of i-GELU and Poly-GELU (I-BERT's erf polynomial tail, squared or raised
    to the fourth power); subclasses give the power stages and the shift of ``L``.

    ``h = (-q) * s`` is one stage while ``s`` fits a MULT18X18D operand (``widths['sum'] <=
    DSP_OPERAND_BITS``; ``-q`` has at most 17 bits). A wider ``s`` would make Yosys add the
    partial products of two DSPs in the same cycle (115 MHz for Poly-GELU on ECP5), so it takes
    two stages: the partial products of ``s``'s :func:`split_low` pieces, each multiply alone,
    then their sum.
    """

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

        def partial_products(b):
            low, high = split_low(b.s)
            return bundle(low=b.neg_q * low, high=b.neg_q * high)

        def gelu_sum(b):
            return signed_bits(b.low + (b.high << DSP_SLICE), cfg.acc_bits)

        wide = cfg.widths["sum"] > DSP_OPERAND_BITS
        return [clip, *self.power_stages(), add_constant, erf_sign,
                *([partial_products, gelu_sum] if wide else [gelu_value]),
                *requant_stages(cfg.requant)]
