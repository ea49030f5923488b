"""Softmax row units with I-BERT's i-exp polynomial exponent: ``softmax/ibert`` (reciprocal and
multiply) and ``softmax/fqvit`` (Log-Int-Softmax: per-element rounded ``sum / e``, log2 code).

Both share the first two passes (:class:`_IExpRowUnit`): pass 0 loads the row and finds its
maximum; pass 1 computes i-exp (:func:`intvit.golden_model.ops.softmax.i_exp`) per element, stores ``e``
in place and sums the row. Every constant is read from the golden config.
"""
from amaranth import Cat, Const, Mux, Shape, signed, unsigned

from intvit.golden_model.ops.softmax import IBertSoftmaxConfig, LogIntSoftmaxConfig

from .fields import Fields, fit
from .rowpipe import Reduction, RowPass, RowUnit
from .seqmath import RestoringDivider


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


class _IExpRowUnit(RowUnit):
    """Passes 0 and 1 of both units: row maximum, then i-exp and the row sum.

    Pass 1, per element (one register after each step; ``D = -x0_int``):

    1. ``n = min(max - q, k_max*D)``: ``-d`` after golden's clamp ``d >= k_max*x0_int``.
    2. ``k = (n * M) >> s = floor(n / D)``: the constant divider by ``D`` as a constant multiply,
       ``(M, s)`` from :func:`exact_reciprocal`, exact for every ``n`` of the input range.
    3. ``p = b_int - (n - D*k) = r + b_int`` (``r = d - x0_int*k`` in ``(x0_int, 0]``).
    4. ``z = p*p + c_int`` (one multiplier per lane).
    5. ``e = (z << max(exp_shift, 0)) >> (k + max(-exp_shift, 0)) = floor(z * 2**(exp_shift-k))``,
       one barrel shift.

    ``e`` (``exp_max`` bits) is stored in place and summed (``sum`` is ``max_row * exp_max``
    bits wide, the unit's ``max_row``).
    """

    config_type = None

    def __init__(self, config, out_shape, *, lanes: int, max_row: int):
        if not isinstance(config, self.config_type):
            raise TypeError(f"config must be a {self.config_type.__name__}, not {config!r}")
        cfg = self.config = config
        divisor = -cfg.x0_int
        self.n_max = min((1 << cfg.in_bits) - 1, cfg.k_max * divisor)
        self.octave_mult, self.octave_shift = exact_reciprocal(divisor, self.n_max)
        self.e_shape = unsigned(cfg.exp_max.bit_length())
        self.sum_shape = unsigned((max_row * cfg.exp_max).bit_length())
        super().__init__(signed(cfg.in_bits), out_shape, lanes=lanes, max_row=max_row)

    def exp_passes(self) -> list[RowPass]:
        cfg = self.config
        divisor = -cfg.x0_int
        n_shape = unsigned(self.n_max.bit_length())
        k_shape = unsigned((self.n_max // divisor).bit_length())
        p_shape = Shape.cast(range(cfg.b_int - divisor + 1, cfg.b_int + 1))
        z_max = max(cfg.b_int ** 2, (cfg.b_int - divisor + 1) ** 2) + cfg.c_int
        k_p = Fields(k=k_shape, p=p_shape)
        k_z = Fields(k=k_shape, z=unsigned(z_max.bit_length()))
        n_k = Fields(n=n_shape, k=k_shape)
        left, right = max(cfg.exp_shift, 0), max(-cfg.exp_shift, 0)

        def offset(q, ctx):
            n = (ctx.scalars["max"] - q).as_unsigned()[:cfg.in_bits]
            if self.n_max < (1 << cfg.in_bits) - 1:  # else the clamp cannot act
                n = fit(Mux(n > self.n_max, self.n_max, n), n_shape)
            return n

        def octave(n, ctx):
            return n_k.view(n=n, k=(n * self.octave_mult) >> self.octave_shift)

        def residual(v, ctx):
            return k_p.view(k=v.k, p=cfg.b_int - (v.n - divisor * v.k))

        def polynomial(v, ctx):
            return k_z.view(k=v.k, z=v.p * v.p + cfg.c_int)

        def scale(v, ctx):
            return ((v.z << left) >> (v.k + right))[:self.e_shape.width]

        return [RowPass(signed(cfg.in_bits),
                        reductions={"max": Reduction("max", signed(cfg.in_bits))}),
                RowPass(self.e_shape, stages=[offset, octave, residual, polynomial, scale],
                        reductions={"sum": Reduction("sum", self.sum_shape)})]


class IExpSoftmaxUnit(_IExpRowUnit):
    """``softmax/ibert`` (I-BERT Algorithm 2), bit-exact to
    :func:`intvit.golden_model.ops.softmax.ibert_softmax`.

    Passes: 0 loads the row and its maximum; 1 is i-exp and the row sum (:class:`_IExpRowUnit`,
    5 stages); row step: ``f = floor(2**recip_bits / sum)`` by a
    :class:`~hw.seqmath.RestoringDivider` of ``recip_bits + 1`` numerator bits over the
    ``sum``-wide denominator, started at the config's ``quotient_bits`` (the row maximum's
    ``e`` bounds the sum from below) and so taking ``quotient_bits`` cycles, one quotient bit per
    cycle; 2 is ``y = min((e * f) >> (recip_bits - out_bits), 2**out_bits - 1)`` (2 stages, one
    multiplier per lane).

    Throughput: ``lanes`` elements per cycle in every pass; rows overlap (3 buffer slots, at
    most 3 rows in flight), so back-to-back rows of ``n`` elements come every ``ceil(n/lanes) +
    row_overhead`` cycles at most; the divider alone needs ``quotient_bits + 4`` cycles per row.
    Measured intervals and latencies: ``python bench/hw_units.py`` (``docs/results.md``).
    """

    config_type = IBertSoftmaxConfig

    def __init__(self, config: IBertSoftmaxConfig, *, lanes: int = 1, max_row: int = 256):
        super().__init__(config, unsigned(config.out_bits), lanes=lanes, max_row=max_row)
        self.divider = RestoringDivider(config.recip_bits + 1, self.sum_shape.width,
                                        quotient_bits=config.quotient_bits)

    def passes(self) -> list[RowPass]:
        cfg = self.config
        top = (1 << cfg.out_bits) - 1
        shift = cfg.recip_bits - cfg.out_bits

        def product(e, ctx):
            return e * ctx.scalars["recip"]

        def saturate(p, ctx):
            y = p >> shift
            return Mux(y > top, top, y) if len(y) > cfg.out_bits else y

        return self.exp_passes() + [RowPass(unsigned(cfg.out_bits), stages=[product, saturate])]

    def row_step(self, m, gap, start, values):
        if gap != 1:
            return start, {}
        divider = m.submodules.reciprocal = self.divider
        m.d.comb += [divider.start.eq(start),
                     divider.numerator.eq(1 << self.config.recip_bits),
                     divider.denominator.eq(values["sum"])]
        return divider.done, {"recip": divider.quotient[:self.config.quotient_bits]}

    def row_step_cycles(self, gap):
        return self.divider.cycles if gap == 1 else 0


class LogIntSoftmaxUnit(_IExpRowUnit):
    """``softmax/fqvit`` (FQ-ViT Log-Int-Softmax), bit-exact to
    :func:`intvit.golden_model.ops.softmax.log_int_softmax`.

    Passes 0 and 1 as :class:`_IExpRowUnit` (the row sum is handed straight to pass 2, no row
    step). Pass 2, per element, the golden ``t = (2*sum + e) // (2*e)`` computed as the equal
    ``t = q + [2*rem >= e]`` with ``q, rem = divmod(sum, e)`` (``(2*rem + e) / (2*e)`` lies in
    ``[1/2, 3/2)``), by a pipelined restoring divider, ``lanes`` copies:

    - only ``Q = min(top_code, sum width)`` quotient bits are computed: the first stage flags
      ``sat = (sum >> Q) >= e`` (then ``t >= 2**Q`` and the code is ``top_code`` either way; this
      also catches ``e = 0``, whose golden code is ``top_code``) and starts the remainder at
      ``sum >> Q`` (``< e`` otherwise);
    - ``Q`` stages of one quotient bit each: ``trial = 2*rem + sum[bit]``, subtract ``e`` if it
      fits (``exp_max``-bit subtractor per stage and lane);
    - one stage: ``t = q + [2*rem >= e]``; one stage: leading one ``l`` of ``t``, plus the bit
      below it (``log_round``), ``min(., top_code)``, ``top_code`` when ``sat``.

    Pass 2 has ``Q + 3`` stages. Throughput: ``lanes`` elements per cycle; back-to-back rows
    every ``ceil(n/lanes) + Q + 6 = ceil(n/lanes) + row_overhead`` cycles (pass 2 drains its
    pipeline between rows). Latency, first element in to first out: about ``2*ceil(n/lanes) +
    Q + 20`` cycles. Measured at ``max_row = 64``, full rows: example config (``Q = 15``) 85
    cycles per row at lanes 1 and 37 at lanes 4; ``out_bits = 5`` (``Q = 31``) 101 at lanes 1.
    """

    config_type = LogIntSoftmaxConfig

    def __init__(self, config: LogIntSoftmaxConfig, *, lanes: int = 1, max_row: int = 256):
        super().__init__(config, unsigned(config.out_bits), lanes=lanes, max_row=max_row)
        self.quotient_bits = min(config.top_code, self.sum_shape.width)

    def passes(self) -> list[RowPass]:
        top, e_bits, q_bits = self.config.top_code, self.e_shape.width, self.quotient_bits
        sum_bits = self.sum_shape.width
        state = Fields(e=unsigned(e_bits), rem=unsigned(e_bits), q=unsigned(q_bits),
                       sat=unsigned(1))
        rounded = Fields(t=unsigned(q_bits + 1), sat=unsigned(1))

        def begin(e, ctx):
            high = ctx.scalars["sum"][q_bits:] if q_bits < sum_bits else Const(0, 1)
            sat = high >= e
            return state.view(e=e, rem=Mux(sat, 0, high), q=0, sat=sat)

        def quotient_bit(position):
            def stage(v, ctx):
                trial = Cat(ctx.scalars["sum"][position], v.rem)
                fits = trial >= v.e
                return state.view(e=v.e, rem=Mux(fits, trial - v.e, trial),
                             q=Cat(fits, v.q), sat=v.sat)
            return stage

        def round_half_up(v, ctx):
            return rounded.view(t=v.q + (Cat(Const(0, 1), v.rem) >= v.e), sat=v.sat)

        def log_code(v, ctx):
            code = Const(0, range(q_bits + 2))
            for i in range(1, q_bits + 1):
                code = Mux(v.t[i], i + v.t[i - 1], code)
            too_big = code > top if q_bits + 1 > top else Const(0, 1)
            return Mux(v.sat | too_big, top, code)

        stages = ([begin] + [quotient_bit(b) for b in reversed(range(q_bits))]
                  + [round_half_up, log_code])
        return self.exp_passes() + [RowPass(unsigned(self.config.out_bits), stages=stages)]
