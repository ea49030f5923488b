"""Beat layouts shared by every unit: ``lanes`` elements per beat plus a ``last`` flag.

Amaranth 0.5 streams carry payload, valid and ready only, so lanes and ``last`` live inside a
``StructLayout`` payload. In the generated Verilog the payload is one flat vector: lane ``k``
occupies bits ``[k*w, (k+1)*w)`` and ``last`` is the top bit.
"""
from amaranth.hdl import Shape
from amaranth.lib import data


def row_beat(shape, lanes: int) -> data.StructLayout:
    """``{"data": shape[lanes], "last": 1}``: one beat of a row (element-wise units pass ``last``)."""
    if not isinstance(lanes, int) or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
    return data.StructLayout({"data": data.ArrayLayout(Shape.cast(shape), lanes), "last": 1})
