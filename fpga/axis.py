"""AXI4-Stream top around any unit: the ports a vendor block design expects.

Ports (``intvit verilog OP --axis``; ``docs/fpga.md`` has the user's view):

- ``aclk``, ``aresetn``: the clock, and a synchronous active-low reset (AXI: sampled on the
  rising edge of ``aclk``). The unit's registers reset on the first edge with ``aresetn`` low,
  so ``m_axis_tvalid`` is low during reset from then on.
- one slave port per input stream of the unit (``s_axis_*``; ``s_axis_<name>_*`` when the unit
  has several, as the GEMM's ``a``, ``w``, ``b``) and one master port for the output
  (``m_axis_*``), each with ``tdata``, ``tvalid``, ``tready``, and ``tlast`` when the unit's
  beats carry ``last``.
- other unit ports (a row unit's sticky ``overflow``) under their own names.

``tdata`` layout: every lane is padded to whole bytes, so lane ``k`` of ``w``-bit elements sits
in bytes ``[k*B, (k+1)*B)`` with ``B = ceil(w / 8)``, value in the low ``w`` bits; the whole
``tdata`` is then padded to a power-of-two number of bytes (the widths DMA engines take). Inputs
ignore the padding bits; outputs fill a lane's padding with its sign (signed elements) or zeros
and the bytes above the lanes with zeros, so software reads an int8/int16/int32 array directly.
Int4 GEMM weights also take one byte each here.

``tkeep`` (one bit per ``tdata`` byte) exists when the unit has several lanes and either carries
a keep mask (row units) or maps beats one to one (element-wise units). Lane ``k`` is valid when
the lowest byte of its group, ``tkeep[k*B]``, is set; keep a lane's bytes all set or all clear
(AXI: no partial lanes). Row units: only the row's final beat may be partial, valid lanes lowest.
Element-wise units compute every lane and pass each beat's ``tkeep`` to its output beat (a FIFO
of ``latency + 1`` keep masks beside the pipeline). Output ``tkeep`` repeats a lane's bit over its
bytes. Without a ``tkeep`` port every lane of every beat is valid (the AXI default).

The wrapper adds no register on the data path: latency and throughput are the unit's. Output
``tdata``/``tvalid``/``tlast``/``tkeep`` depend on registers only; ``s_axis_tready`` may depend on
``m_axis_tready`` through logic (allowed by AXI4-Stream, which forbids only ``tvalid`` waiting on
``tready``).
"""
from dataclasses import dataclass

from amaranth import Cat, ClockDomain, Module, Shape
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from intvit.golden_model.errors import IntvitError
from intvit.hw.pipeline import ElementwisePipeline

from intvit.hw.export import module_name


@dataclass(frozen=True)
class AxisPort:
    """One AXI4-Stream port made from the unit's stream member ``member``."""
    member: str
    prefix: str
    inbound: bool
    elem: Shape
    lanes: int
    has_last: bool
    unit_keep: bool
    """The unit's beats carry a per-lane ``keep`` field."""
    keep_fifo: bool
    """An element-wise unit: keep masks travel beside it in a FIFO."""

    @property
    def lane_bytes(self) -> int:
        return -(-self.elem.width // 8)

    @property
    def tdata_bytes(self) -> int:
        """The lanes' bytes rounded up to a power of two: AXI DMA engines and interconnects take
        8, 16, 32, ... 1024-bit streams only (three int8 lanes travel in 32 bits)."""
        return 1 << (self.lanes * self.lane_bytes - 1).bit_length()

    @property
    def tdata_bits(self) -> int:
        return self.tdata_bytes * 8

    @property
    def has_tkeep(self) -> bool:
        return self.lanes > 1 and (self.unit_keep or self.keep_fifo)

    def signature_members(self) -> dict:
        forward, backward = (In, Out) if self.inbound else (Out, In)
        members = {f"{self.prefix}_tdata": forward(self.tdata_bits),
                   f"{self.prefix}_tvalid": forward(1), f"{self.prefix}_tready": backward(1)}
        if self.has_last:
            members[f"{self.prefix}_tlast"] = forward(1)
        if self.has_tkeep:
            members[f"{self.prefix}_tkeep"] = forward(self.tdata_bytes)
        return members

    def describe(self) -> str:
        """One line for the user: widths, lane placement, element type, flags."""
        kind = f"{'int' if self.elem.signed else 'uint'}{self.elem.width}"
        step = self.lane_bytes * 8
        flags = "".join([", tlast" if self.has_last else "",
                         f", tkeep[{self.tdata_bytes - 1}:0]" if self.has_tkeep
                         else ""])
        return (f"{self.prefix}: tdata[{self.tdata_bits - 1}:0], {self.lanes} lane(s) of {kind}, "
                f"lane k at bits [{step}k+{self.elem.width - 1}:{step}k]{self.padding()}{flags}")

    def padding(self) -> str:
        """``, bytes [a:b] padding`` when the power-of-two width leaves bytes above the lanes."""
        used = self.lanes * self.lane_bytes
        return "" if used == self.tdata_bytes else f", bytes [{self.tdata_bytes - 1}:{used}] padding"


def beat_fields(layout) -> tuple[data.ArrayLayout, bool, bool]:
    """(lane array, has last, has keep) of a unit's beat layout: a ``{data, last[, keep]}``
    struct, or a bare lane array (the GEMM's weights and bias)."""
    if isinstance(layout, data.ArrayLayout):
        return layout, False, False
    if isinstance(layout, data.StructLayout) and "data" in layout.members:
        lanes = layout.members["data"]
        if isinstance(lanes, data.ArrayLayout):
            return lanes, "last" in layout.members, "keep" in layout.members
    raise IntvitError(f"cannot map a beat of layout {layout!r} onto AXI4-Stream; a unit's "
                      "streams must carry lane arrays (intvit.hw.stream.row_beat, intvit.hw.rowpipe.keyed_beat)")


def axis_ports(unit) -> list[AxisPort]:
    """The AXI4-Stream ports of ``unit``'s stream members, inputs first."""
    streams = [(name, member) for name, member in unit.signature.members.items()
               if member.is_signature]
    inputs = [name for name, member in streams if member.flow == In]
    outputs = [name for name, member in streams if member.flow == Out]
    ports = []
    for names, inbound, base in ((inputs, True, "s_axis"), (outputs, False, "m_axis")):
        for name in names:
            lanes, has_last, has_keep = beat_fields(getattr(unit, name).payload.shape())
            ports.append(AxisPort(
                member=name, prefix=base if len(names) == 1 else f"{base}_{name}",
                inbound=inbound, elem=Shape.cast(lanes.elem_shape), lanes=lanes.length,
                has_last=has_last, unit_keep=has_keep,
                keep_fifo=isinstance(unit, ElementwisePipeline)))
    return ports


class AxisTop(wiring.Component):
    """``unit`` behind AXI4-Stream ports (module docstring), clocked by ``aclk``.

    Parameters
    ----------
    unit : wiring.Component
        Any unit of ``intvit.hw.units.build_unit`` or ``intvit.hw.units.build_gemm``.
    """

    def __init__(self, unit):
        self.unit = unit
        self.ports = axis_ports(unit)
        self.latency = getattr(unit, "latency", None)
        members = {"aclk": In(1), "aresetn": In(1)}
        for port in self.ports:
            members.update(port.signature_members())
        for name, member in unit.signature.members.items():
            if member.is_port:
                members[name] = member
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = domain = ClockDomain("sync")
        m.d.comb += [domain.clk.eq(self.aclk), domain.rst.eq(~self.aresetn)]
        m.submodules.unit = unit = self.unit
        fifo = None
        if any(port.has_tkeep and port.keep_fifo for port in self.ports):
            m.submodules.keep_fifo = fifo = SyncFIFO(width=unit.lanes, depth=unit.latency + 1)
        for port in self.ports:
            if port.inbound:
                self.connect_input(m, port, getattr(unit, port.member), fifo)
            else:
                self.connect_output(m, port, getattr(unit, port.member), fifo)
        for name, member in unit.signature.members.items():
            if member.is_port:
                inner, outer = getattr(unit, name), getattr(self, name)
                m.d.comb += outer.eq(inner) if member.flow == Out else inner.eq(outer)
        return m

    def axis(self, port: AxisPort, field: str):
        return getattr(self, f"{port.prefix}_{field}")

    def connect_input(self, m: Module, port: AxisPort, beats, fifo) -> None:
        tdata, step = self.axis(port, "tdata"), port.lane_bytes * 8
        payload = beats.payload
        lanes = lane_values(payload)
        for k in range(port.lanes):
            m.d.comb += lanes[k].eq(tdata[k * step:k * step + port.elem.width])
        if port.has_last:
            m.d.comb += payload.last.eq(self.axis(port, "tlast"))
        keep = (Cat(self.axis(port, "tkeep")[k * port.lane_bytes] for k in range(port.lanes))
                if port.has_tkeep else Cat([1] * port.lanes))
        if port.unit_keep:
            m.d.comb += payload.keep.eq(keep)
        tvalid, tready = self.axis(port, "tvalid"), self.axis(port, "tready")
        if port.has_tkeep and port.keep_fifo:
            m.d.comb += [beats.valid.eq(tvalid & fifo.w_rdy), tready.eq(beats.ready & fifo.w_rdy),
                         fifo.w_en.eq(beats.valid & beats.ready), fifo.w_data.eq(keep)]
        else:
            m.d.comb += [beats.valid.eq(tvalid), tready.eq(beats.ready)]

    def connect_output(self, m: Module, port: AxisPort, beats, fifo) -> None:
        tdata, step = self.axis(port, "tdata"), port.lane_bytes * 8
        payload = beats.payload
        lanes = lane_values(payload)
        for k in range(port.lanes):  # a signed lane sign-extends into its padding
            m.d.comb += tdata[k * step:(k + 1) * step].eq(lanes[k])
        if port.has_last:
            m.d.comb += self.axis(port, "tlast").eq(payload.last)
        tvalid, tready = self.axis(port, "tvalid"), self.axis(port, "tready")
        m.d.comb += [tvalid.eq(beats.valid), beats.ready.eq(tready)]
        if not port.has_tkeep:
            return
        if port.keep_fifo:
            keep = fifo.r_data
            m.d.comb += fifo.r_en.eq(beats.valid & beats.ready)
        else:
            keep = payload.keep
        m.d.comb += self.axis(port, "tkeep").eq(
            Cat(keep[k].replicate(port.lane_bytes) for k in range(port.lanes)))


def lane_values(payload):
    """The lane array of a beat: its ``data`` field, or the beat itself when it is a bare array."""
    return payload.data if isinstance(payload.shape(), data.StructLayout) else payload


def axis_module_name(op_name: str) -> str:
    """``softmax/iptq`` -> ``intvit_softmax_iptq_axis``."""
    return module_name(op_name) + "_axis"
