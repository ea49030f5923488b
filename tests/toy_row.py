"""A toy three-pass row operator for testing the row-unit framework and the row bench.

``y = x - max(x)``; ``s = sum(y + 256)``; ``r = floor(2**20 / s)``; ``out = (y * r) >> 8``:
a max and a sum reduction, a sequential row step, in-place buffering.
"""
from dataclasses import dataclass

import numpy as np
from amaranth import signed, unsigned

from intvit.hw.rowpipe import Reduction, RowPass, RowUnit
from intvit.hw.seqmath import RestoringDivider


@dataclass(frozen=True)
class ToyConfig:
    """Port formats for the vector file."""
    in_bits: int = 8
    in_signed: bool = True
    out_bits: int = 16
    out_signed: bool = True


def toy_run(config, rows):
    return np.array([toy_golden(r) for r in np.atleast_2d(rows)], np.int64)


def toy_golden(row):
    y = np.asarray(row, np.int64) - max(row)
    s = int(np.sum(y + 256))
    return list((y * ((1 << 20) // s)) >> 8)


class ToyRowUnit(RowUnit):
    def __init__(self, *, lanes, max_row):
        super().__init__(signed(8), signed(16), lanes=lanes, max_row=max_row)

    def passes(self):
        return [
            RowPass(signed(8), reductions={"max": Reduction("max", signed(8))}),
            RowPass(signed(9), stages=[lambda v, ctx: v - ctx.scalars["max"]],
                    reductions={"sum": Reduction("sum", unsigned(20),
                                                 lambda v, ctx: v + 256)}),
            RowPass(signed(16), stages=[lambda v, ctx: v * ctx.scalars["recip"],
                                        lambda v, ctx: v >> 8]),
        ]

    def row_step(self, m, gap, start, values):
        if gap != 1:
            return start, {}
        divider = RestoringDivider(21, 20)
        m.submodules.divider = divider
        m.d.comb += [divider.start.eq(start), divider.numerator.eq(1 << 20),
                     divider.denominator.eq(values["sum"])]
        return divider.done, {"recip": divider.quotient}

    def row_step_cycles(self, gap):
        """The divider's 21 quotient bits, ``done`` one cycle after the last."""
        return RestoringDivider(21, 20).cycles + 1 if gap == 1 else 0
