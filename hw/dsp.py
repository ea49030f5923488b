"""Products wider than one DSP, split so each ECP5 ``MULT18X18D`` (18 x 18 signed) sits alone
between registers: the partial products in one stage, their shifted sum in the next."""
from amaranth import Const, Shape, signed, unsigned

from .fields import fit


DSP_OPERAND_BITS = 18
"""ECP5's ``MULT18X18D`` multiplies two 18-bit signed operands."""
DSP_SLICE = DSP_OPERAND_BITS - 1
"""Bits of an unsigned operand slice (:func:`dsp_slices`, the GELU units' ``split_low``): a
17-bit slice, zero-extended to 18 signed bits, and an 18-bit signed slice fit one
``MULT18X18D``."""


def dsp_slices(shape) -> list[tuple[int, int, bool]]:
    """``(offset, width, signed)`` of the slices of a value of ``shape``: :data:`DSP_SLICE`-bit
    unsigned slices from the bottom, and a top slice of the rest that keeps the value's sign
    (up to ``DSP_SLICE + 1`` bits when signed)."""
    shape = Shape.cast(shape)
    top = DSP_SLICE + 1 if shape.signed else DSP_SLICE
    cuts, offset = [], 0
    while shape.width - offset > top:
        cuts.append((offset, DSP_SLICE, False))
        offset += DSP_SLICE
    return cuts + [(offset, shape.width - offset, shape.signed)]


def _slice(value, offset: int, width: int, is_signed: bool):
    piece = value[offset:offset + width]
    return piece.as_signed() if is_signed else piece


class SplitProduct:
    """``a * b`` over two registered stages, for operands wider than one DSP: the partial
    products of the :func:`dsp_slices` of ``a`` and ``b`` (each one ``MULT18X18D``, alone in its
    stage, so the multiplier path is register to register), then their shifted sum ``sum p_ij
    << (offset_i + offset_j)`` in the next stage (one adder per extra partial product, no DSP
    cascade). As many DSPs as the one wide multiply; :attr:`fields` are the partial products'
    register fields (carry them with a :class:`~intvit.hw.fields.Fields`)."""

    def __init__(self, a_shape, b_shape):
        a_shape, b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        self.shape = (Const(0, a_shape) * Const(0, b_shape)).shape()
        self.pairs = [(a_cut, b_cut) for a_cut in dsp_slices(a_shape)
                      for b_cut in dsp_slices(b_shape)]
        self.fields = {}
        for i, ((_, aw, asg), (_, bw, bsg)) in enumerate(self.pairs):
            self.fields[f"p{i}"] = (Const(0, signed(aw) if asg else unsigned(aw))
                                    * Const(0, signed(bw) if bsg else unsigned(bw))).shape()

    def partials(self, a, b) -> dict:
        """Stage one: ``{"p<i>": slice_a * slice_b}``."""
        return {f"p{i}": _slice(a, *a_cut) * _slice(b, *b_cut)
                for i, (a_cut, b_cut) in enumerate(self.pairs)}

    def total(self, view):
        """Stage two: ``a * b`` from the registered partial products of ``view``."""
        return fit(sum(view[f"p{i}"] << (a_cut[0] + b_cut[0])
                       for i, (a_cut, b_cut) in enumerate(self.pairs)), self.shape)
