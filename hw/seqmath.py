"""Sequential per-row arithmetic for the row units: an integer divider and a square root.

Both take their operands on ``start`` (registered inside), work one result bit per cycle and
pulse ``done`` for one cycle with the result, which then holds until the next ``start``.
"""
from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class RestoringDivider(wiring.Component):
    """``quotient = floor(numerator / denominator)`` for unsigned operands, restoring division.

    One quotient bit per cycle. With ``quotient_bits = q`` (default ``num_bits``) the caller
    promises ``quotient < 2**q``; the first ``num_bits - q`` quotient bits are then zero, so the
    division starts at bit ``q - 1`` with the partial remainder ``numerator >> q`` (below the
    denominator, by the promise) and takes ``q`` cycles from ``start`` to ``done``. A zero
    denominator gives the all-ones ``q``-bit quotient (the saturated value; callers guarantee a
    non-zero divisor).

    Members
    -------
    start : In(1)
    numerator : In(num_bits)
    denominator : In(den_bits)
    done : Out(1)
    quotient : Out(num_bits)
    """

    def __init__(self, num_bits: int, den_bits: int, quotient_bits: int | None = None):
        quotient_bits = num_bits if quotient_bits is None else quotient_bits
        if not 1 <= quotient_bits <= num_bits:
            raise ValueError(f"quotient_bits must be 1..{num_bits}, not {quotient_bits}")
        self.num_bits, self.den_bits, self.quotient_bits = num_bits, den_bits, quotient_bits
        super().__init__({"start": In(1), "numerator": In(unsigned(num_bits)),
                          "denominator": In(unsigned(den_bits)), "done": Out(1),
                          "quotient": Out(unsigned(num_bits))})

    @property
    def cycles(self) -> int:
        return self.quotient_bits

    def elaborate(self, platform):
        m = Module()
        n, d, q = self.num_bits, self.den_bits, self.quotient_bits
        remainder = Signal(d + 1)
        dividend = Signal(q)  # the numerator's low q bits, consumed from the top
        divisor = Signal(d)
        count = Signal(range(q + 1))
        m.d.sync += self.done.eq(0)
        with m.If(self.start):
            m.d.sync += [dividend.eq(self.numerator[:q]), divisor.eq(self.denominator),
                         remainder.eq(self.numerator[q:] if q < n else 0), self.quotient.eq(0),
                         count.eq(q)]
        with m.Elif(count != 0):
            trial = Signal(d + 1)
            m.d.comb += trial.eq((remainder << 1) | dividend[q - 1])
            fits = trial >= divisor
            m.d.sync += [dividend.eq(dividend << 1), count.eq(count - 1),
                         self.quotient.eq((self.quotient << 1) | fits),
                         remainder.eq(Mux(fits, trial - divisor, trial))]
            with m.If(count == 1):
                m.d.sync += self.done.eq(1)
        return m


class BitSerialSqrt(wiring.Component):
    """``root = floor(sqrt(value))`` by the digit-by-digit (bit-serial) method.

    For an ``value_bits``-bit operand the root has ``ceil(value_bits / 2)`` bits, one decided per
    cycle, so ``done`` comes ``ceil(value_bits / 2)`` cycles after ``start``. Exact for every
    operand (no iteration count to trust, unlike a fixed number of Newton steps).

    Members
    -------
    start : In(1)
    value : In(value_bits)
    done : Out(1)
    root : Out(ceil(value_bits / 2))
    """

    def __init__(self, value_bits: int):
        self.value_bits = value_bits
        self.root_bits = (value_bits + 1) // 2
        super().__init__({"start": In(1), "value": In(unsigned(value_bits)), "done": Out(1),
                          "root": Out(unsigned(self.root_bits))})

    @property
    def cycles(self) -> int:
        return self.root_bits

    def elaborate(self, platform):
        m = Module()
        r = self.root_bits
        radicand = Signal(2 * r)  # consumed two bits per cycle from the top
        remainder = Signal(r + 2)
        count = Signal(range(r + 1))
        m.d.sync += self.done.eq(0)
        with m.If(self.start):
            m.d.sync += [radicand.eq(self.value), remainder.eq(0), self.root.eq(0),
                         count.eq(r)]
        with m.Elif(count != 0):
            # remainder' = 4*remainder + next two bits; try subtracting 4*root + 1
            shifted = Signal(r + 2)
            trial = Signal(r + 3)
            m.d.comb += [shifted.eq((remainder << 2) | radicand[2 * r - 2:]),
                         trial.eq(shifted - ((self.root << 2) | 1))]
            fits = ~trial[r + 2]
            m.d.sync += [radicand.eq(radicand << 2), count.eq(count - 1),
                         self.root.eq((self.root << 1) | fits),
                         remainder.eq(Mux(fits, trial, shifted))]
            with m.If(count == 1):
                m.d.sync += self.done.eq(1)
        return m
