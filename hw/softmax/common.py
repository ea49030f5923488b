"""What the softmax row units share: the row maximum and exponential-sum passes, the reciprocal
row step and the normalizing pass, a saturating narrowing and an exact constant divider.

A :class:`SoftmaxRowUnit` is a three-pass :class:`intvit.hw.rowpipe.RowUnit`; a
:class:`ReciprocalSoftmaxUnit` (``iptq``, ``ivit``, ``ibert``) normalizes as the golden
``normalize`` (:mod:`intvit.golden_model.ops.softmax.common`):

- pass 0 loads the row into the buffer and reduces its maximum (``signed(in_bits)``) over the
  elements kept;
- pass 1 turns each element into its exponential ``e`` (the candidate's ``exp_stages``, written
  back in place; 0 for an element not kept, as the golden ``masked``: a shifted window's masked
  positions get probability 0, FQ-ViT's top code) and sums them;
- row step 1: one :class:`intvit.hw.seqmath.RestoringDivider` gives the row's reciprocal
  ``f = floor(recip_numerator / min(sum, sum_limit))``, one quotient bit per cycle, only the
  config's ``quotient_bits`` of them (the row maximum's own ``e`` bounds the sum from below);
- pass 2 multiplies ``e * f`` (partial products, then their sum; :class:`~intvit.hw.dsp.SplitProduct`), shifts
  by ``output_shift`` (rounded half up when the config's ``round_output`` says so, else
  floored), saturates and streams the probabilities out.

Every constant and width comes from the golden config. The row sum is sized for the unit's own
``max_row`` (``max_row * exp_max``), so a unit may hold rows longer or shorter than the config's
``max_row`` (the golden arithmetic, without the golden model's length check).

Initiation interval: every pass streams one beat per cycle, but the row step holds one row at a
time, so the interval is ``max(about ceil(n / lanes) + overhead / 3, divider cycles + 4)``:
short rows are divider-bound. Measured intervals and latencies: ``python bench/hw_units.py``
(``docs/results.md``).
"""
from amaranth import Mux, signed, unsigned

from intvit.golden_model.ops.softmax.common import shift_product

from ..dsp import SplitProduct
from ..fields import Fields, fit
from ..rowpipe import Reduction, RowPass, RowUnit
from ..seqmath import RestoringDivider


def saturate(value, top: int, shape, bound: int | None = None):
    """``min(value, top)`` for ``value >= 0``, as ``shape``; no comparator when the value's
    proven ``bound`` or its width keeps it within ``top``."""
    if (bound is not None and bound <= top) or (1 << len(value)) - 1 <= top:
        return fit(value, shape)
    return fit(Mux(value > top, top, value), shape)


def exact_reciprocal(divisor: int, n_max: int) -> tuple[int, int]:
    """``(mult, shift)`` with ``(n * mult) >> shift == n // divisor`` for every ``0 <= n <=
    n_max``: the smallest ``shift`` whose ``mult = ceil(2**shift / divisor)`` has error ``err =
    mult*divisor - 2**shift`` with ``n_max * err < 2**shift``. Proof of exactness: with ``n =
    k*divisor + rem``, ``n*mult / 2**shift = k + (rem + n*err/2**shift) / divisor`` and ``rem +
    n*err/2**shift < (divisor - 1) + 1``, so the floor is ``k`` (the round-up multiplier of
    Granlund & Montgomery, "Division by invariant integers using multiplication", PLDI 1994)."""
    if divisor < 1 or n_max < 0:
        raise ValueError(f"need divisor >= 1 and n_max >= 0 (got {divisor}, {n_max})")
    shift = 0
    while True:
        mult = -(-(1 << shift) // divisor)
        if n_max * (mult * divisor - (1 << shift)) < 1 << shift:
            return mult, shift
        shift += 1


class SoftmaxRowUnit(RowUnit):
    """Base of the softmax units: ``config`` (an instance of the subclass's ``config_type``),
    ``lanes`` elements per beat, rows of up to ``max_row`` elements. Pass 0 is the row maximum,
    pass 1 the subclass's ``exp_stages()`` (``q`` to ``e`` in ``0..exp_max``) and the row sum,
    pass 2 the subclass's ``output_pass()``."""

    config_type = None

    def __init__(self, config, *, lanes: int = 1, max_row: int = 256):
        if not isinstance(config, self.config_type):
            raise TypeError(f"config must be a {self.config_type.__name__}, not {config!r}")
        self.config = config
        self.exp_shape = unsigned(config.exp_max.bit_length())
        self.sum_shape = unsigned((max_row * config.exp_max).bit_length())
        super().__init__(signed(config.in_bits), unsigned(config.out_bits), lanes=lanes,
                         max_row=max_row)

    def exp_stages(self) -> list:
        raise NotImplementedError

    def output_pass(self) -> RowPass:
        raise NotImplementedError

    def passes(self) -> list[RowPass]:
        in_shape = signed(self.config.in_bits)
        *stages, power = self.exp_stages()

        def kept_power(value, ctx):
            """``e``, and 0 for an element the row does not keep (the golden ``masked``)."""
            return Mux(ctx.keep, power(value, ctx), 0)

        return [RowPass(in_shape, reductions={"max": Reduction("max", in_shape)}),
                RowPass(self.exp_shape, stages=[*stages, kept_power],
                        reductions={"sum": Reduction("sum", self.sum_shape)}),
                self.output_pass()]


class ReciprocalSoftmaxUnit(SoftmaxRowUnit):
    """A :class:`SoftmaxRowUnit` normalized by one reciprocal per row (the golden
    ``normalize``): the divider row step and the multiply-shift output pass."""

    @property
    def divisor_shape(self):
        """The divider's operand: the sum, or ``sum_limit`` wide when the config clamps it."""
        limit = self.config.sum_limit
        return unsigned(limit.bit_length()) if limit is not None else self.sum_shape

    def row_step(self, m, gap, start, values):
        if gap != 1:
            return start, {}
        cfg = self.config
        divider = RestoringDivider(cfg.recip_numerator.bit_length(), self.divisor_shape.width,
                                   quotient_bits=cfg.quotient_bits)
        m.submodules.reciprocal = divider
        total = values["sum"]
        if cfg.sum_limit is not None:
            total = saturate(total, cfg.sum_limit, self.divisor_shape,
                             self.max_row * cfg.exp_max)
        m.d.comb += [divider.start.eq(start), divider.numerator.eq(cfg.recip_numerator),
                     divider.denominator.eq(total)]
        return divider.done, {"recip": fit(divider.quotient, unsigned(cfg.quotient_bits))}

    def row_step_cycles(self, gap):
        """``start`` to ``done``: one quotient bit per cycle, ``done`` one cycle after the last
        (:class:`~intvit.hw.seqmath.RestoringDivider`)."""
        return self.config.quotient_bits + 1 if gap == 1 else 0

    def output_pass(self) -> RowPass:
        """Three stages: the partial products of ``e * f`` (:class:`~intvit.hw.dsp.SplitProduct`, the DSPs
        alone); their sum ``e * f``; then ``min(shift_product(e*f), 2**out_bits - 1)`` (the
        golden shift, rounded or floored as the config states)."""
        cfg = self.config
        product = SplitProduct(self.exp_shape, unsigned(cfg.quotient_bits))
        partial = Fields(**product.fields)

        def partials(e, ctx):
            return partial.pack(**product.partials(e, ctx.scalars["recip"]))

        def total(word, ctx):
            return product.total(partial.unpack(word))

        def shifted(prod, ctx):
            return saturate(shift_product(cfg, prod), (1 << cfg.out_bits) - 1,
                            unsigned(cfg.out_bits))

        return RowPass(unsigned(cfg.out_bits), stages=[partials, total, shifted])
