"""A fully pipelined element-wise unit: one beat per cycle, stall-all valid/ready handshake."""
from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .stream import row_beat


class ElementwisePipeline(wiring.Component):
    """Base of the element-wise units: ``lanes`` copies of one feed-forward datapath.

    A subclass lists its datapath as ``lane_stages()``: functions ``value -> expression``, each
    followed by a register. The input is registered too, so latency is ``1 + len(stages)`` cycles
    and the throughput one beat (``lanes`` elements) per cycle. The whole pipeline advances when
    the output register is empty or being read (``advance = ~o.valid | o.ready``), so ``i.ready``
    depends combinationally on ``o.ready``. ``last`` travels with its beat.

    Members
    -------
    i : In(stream.Signature(row_beat(in_shape, lanes)))
    o : Out(stream.Signature(row_beat(out_shape, lanes)))
    """

    def __init__(self, in_shape, out_shape, lanes: int):
        self.lanes = lanes
        super().__init__({"i": In(stream.Signature(row_beat(in_shape, lanes))),
                          "o": Out(stream.Signature(row_beat(out_shape, lanes)))})

    def lane_stages(self):
        raise NotImplementedError

    @property
    def latency(self) -> int:
        """Cycles from an accepted input beat to its output beat, with no stalls."""
        return 1 + len(self.lane_stages())

    def elaborate(self, platform):
        m = Module()
        stages = self.lane_stages()
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]

        valid = self.i.valid
        last = self.i.payload.last
        lanes = [self.i.payload.data[k] for k in range(self.lanes)]
        for depth, stage in enumerate([lambda value: value, *stages]):
            valid_reg = Signal(name=f"valid_{depth}")
            last_reg = Signal(name=f"last_{depth}")
            next_lanes = []
            for k, value in enumerate(lanes):
                expr = stage(value)
                reg = Signal(expr.shape(), name=f"lane{k}_stage{depth}")
                with m.If(advance):
                    m.d.sync += reg.eq(expr)
                next_lanes.append(reg)
            with m.If(advance):
                m.d.sync += [valid_reg.eq(valid), last_reg.eq(last)]
            valid, last, lanes = valid_reg, last_reg, next_lanes

        m.d.comb += [self.o.valid.eq(valid), self.o.payload.last.eq(last)]
        for k, value in enumerate(lanes):
            m.d.comb += self.o.payload.data[k].eq(value)
        return m
