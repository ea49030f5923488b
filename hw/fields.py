"""Several values in one pipeline stage register: exact-width packing and views by field name.

A stage function returns one expression, which the pipeline registers; when a stage carries
more than one value to the next, :class:`Fields` packs them into one word (each :func:`fit` to
its field) and views the registered word by field name again.
"""
from amaranth import Cat, Const, Shape, Value
from amaranth.lib import data


def fit(value, shape):
    """``value`` cut or extended to exactly ``shape``; the caller proves the value fits."""
    value, shape = Value.cast(value), Shape.cast(shape)
    width = value.shape().width
    if width >= shape.width:
        bits = value[:shape.width]
    else:
        pad = value[-1] if value.shape().signed else Const(0, 1)
        bits = Cat(value, pad.replicate(shape.width - width))
    return bits.as_signed() if shape.signed else bits


class Fields:
    """The fields of one stage register: :meth:`pack` concatenates values (each :func:`fit` to
    its field), :meth:`unpack` views a word by field name, :meth:`view` is both at once."""

    def __init__(self, **shapes):
        self.layout = data.StructLayout(shapes)

    def pack(self, **values):
        return Cat(*(fit(values[name], field.shape) for name, field in self.layout))

    def unpack(self, word):
        return data.View(self.layout, Value.cast(word))

    def view(self, **values):
        return self.unpack(self.pack(**values))
