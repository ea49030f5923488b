"""``softmax/fqvit``: the FQ-ViT Log-Int-Softmax row unit, bit-exact to
:func:`intvit.golden_model.ops.softmax.fqvit.log_int_softmax`."""
from amaranth import Cat, Const, Mux, unsigned

from intvit.golden_model.ops.softmax.fqvit import LogIntSoftmaxConfig

from ..fields import Fields
from ..rowpipe import RowPass
from .common import SoftmaxRowUnit
from .ibert import i_exp_stages


class LogIntSoftmaxUnit(SoftmaxRowUnit):
    """``softmax/fqvit`` (FQ-ViT Log-Int-Softmax, :class:`LogIntSoftmaxConfig`).

    Passes 0 and 1 as ``softmax/ibert`` (row maximum; :func:`~.ibert.i_exp_stages` and the row
    sum, handed straight to pass 2, no row step). Pass 2, per element, the golden ``t = (2*sum +
    e) // (2*e)`` computed as the equal ``t = q + [2*rem >= e]`` with ``q, rem = divmod(sum, e)``
    (``(2*rem + e) / (2*e)`` lies in ``[1/2, 3/2)``), by a pipelined restoring divider, ``lanes``
    copies:

    - only ``Q = min(top_code, sum width)`` quotient bits are computed: the first stage flags
      ``sat = (sum >> Q) >= e`` (then ``t >= 2**Q`` and the code is ``top_code`` either way; this
      also catches ``e = 0``, whose golden code is ``top_code``) and starts the remainder at
      ``sum >> Q`` (``< e`` otherwise);
    - ``Q`` stages of one quotient bit each: ``trial = 2*rem + sum[bit]``, subtract ``e`` if it
      fits (``exp_max``-bit subtractor per stage and lane);
    - one stage: ``t = q + [2*rem >= e]``; one stage: leading one ``l`` of ``t``, plus the bit
      below it (``log_round``), ``min(., top_code)``, ``top_code`` when ``sat``.

    Pass 2 has ``Q + 3`` stages. Throughput: ``lanes`` elements per cycle in every pass, rows
    overlapped (:meth:`~intvit.hw.rowpipe.RowUnit.row_interval`; no divider, so rows of 17
    elements and more stream at one beat per cycle). Latency, first element in to first out:
    about ``2*ceil(n/lanes)`` plus the stages of passes 1 and 2 and the row pipeline's fixed
    hand-overs (:meth:`~intvit.hw.rowpipe.RowUnit.row_latency`). Measured at
    ``max_row = 64``, full rows: example config (``Q = 15``) 85 cycles per row at lanes 1 and 37
    at lanes 4; ``out_bits = 5`` (``Q = 31``) 101 at lanes 1.
    """

    config_type = LogIntSoftmaxConfig

    def __init__(self, config: LogIntSoftmaxConfig, *, lanes: int = 1, max_row: int = 256):
        super().__init__(config, lanes=lanes, max_row=max_row)
        self.quotient_bits = min(config.top_code, self.sum_shape.width)

    def exp_stages(self):
        return i_exp_stages(self.config, self.exp_shape)

    def output_pass(self) -> RowPass:
        top, e_bits, q_bits = self.config.top_code, self.exp_shape.width, self.quotient_bits
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
        return RowPass(unsigned(self.config.out_bits), stages=stages)


UNIT = LogIntSoftmaxUnit
