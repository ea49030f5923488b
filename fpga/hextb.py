"""Vectors for any simulator: a unit's Verilog, ``$readmemh`` beat files and a self-checking
plain-Verilog testbench (``intvit vectors OP --hex DIR``).

FPGA engineers verify in their own simulators (Vivado xsim, Questa, Icarus, Verilator), without
Python at simulation time. The testbench is Verilog-2005 plus ``$fatal`` (SystemVerilog's:
plain Verilog has no way to set the exit status; Icarus and Verilator accept it in Verilog
files, xsim and Questa may want the file compiled as SystemVerilog). It reads everything from
the unit's own interface: its port names and widths, its beat layout
(``intvit.hw.stream.row_beat`` or ``intvit.hw.rowpipe.keyed_beat``), and its stated ``latency``
(element-wise) or ``row_latency`` (row units) for the timeout.

The bench drives every input beat honouring ``i_ready`` and takes every output beat, both sides
stalled at random by an LFSR (about one cycle in four; plusarg ``+nostall`` streams at full
rate), so a run also proves the handshake. It compares every real element (padding lanes of a
partial final beat are not compared; nor, in a masked row, are the masked lanes of its final
beat, which its ``keep`` cannot tell from padding), ``last`` and, for row units, ``keep``; at
the end every
extra status output (a row unit's sticky ``overflow``) must be low. It prints
``N passed, M failed``: ``N`` counts matching elements, so a clean run passes exactly the number
of vectors; ``M`` counts mismatching elements, beats with wrong flags and raised status outputs.
The first mismatch is printed with its beat index, the expected and the actual word. Success
ends in ``$finish`` (exit status 0); a failure or the timeout in ``$fatal`` (non-zero).
"""
import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from amaranth.lib.wiring import In

from intvit.golden_model.errors import IntvitError
from intvit.golden_model.vectors import HexBeats, Vectors, check_row_capacity, export_hex
from intvit.hw.export import export_verilog, module_name, port_name
from intvit.hw.units import build_unit

CLOCK_HALF_PERIOD = 5
"""In the simulator's default time unit: the testbench sets no ``timescale`` (the unit's file has
none, and Verilator refuses a mix)."""

STALL_FACTOR = 4
"""The timeout allows this many times the cycles the unit needs at full rate: random stalls on
both sides (each about one cycle in four) slow a run by less than 2x."""

TIMEOUT_SLACK = 1000
"""Cycles added to every timeout (reset, pipeline start-up)."""

STREAM_PORTS = ("i_payload", "i_valid", "i_ready", "o_payload", "o_valid", "o_ready")


@dataclass(frozen=True)
class HexBench:
    """A written testbench directory."""
    directory: Path
    module: str
    files: list[str]
    beats: HexBeats
    max_cycles: int

    def summary(self) -> str:
        return (f"wrote {self.directory}: {', '.join(self.files)} ({self.beats.elements:,} "
                f"vectors in {self.beats.beats:,} beats; timeout {self.max_cycles:,} cycles)")


def write_hex_bench(directory, op: str, config, vectors: Vectors, *, lanes: int = 1,
                    max_row: int | None = None) -> HexBench:
    """Write ``<module>.v`` (the unit, as ``intvit verilog OP`` writes it), ``<module>_in.hex``,
    ``<module>_out.hex`` and ``tb_<module>.v`` into ``directory``.

    Everything is written into a temporary directory beside ``directory`` first, then moved in
    file by file, so a failure leaves no partial file behind."""
    directory = Path(directory)
    unit = build_unit(op, config, lanes=lanes, max_row=max_row)
    check_row_capacity(vectors, getattr(unit, "max_row", None), f"for {op}")
    module = module_name(op)
    layout = beat_layout(unit, vectors)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.",
                                    suffix=".part"))
    try:
        beats = export_hex(vectors, staging, module, lanes=lanes, keyed=layout.keyed)
        bound = cycle_bound(unit, beats)
        (staging / f"{module}.v").write_text(export_verilog(unit, module))
        (staging / f"tb_{module}.v").write_text(testbench(module, unit, layout, beats, bound))
        files = sorted(path.name for path in staging.iterdir())
        _move_into(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    moved = dataclasses.replace(beats, inputs=directory / beats.inputs.name,
                                expected=directory / beats.expected.name)
    return HexBench(directory=directory, module=module, files=files, beats=moved,
                    max_cycles=bound)


def _move_into(staging: Path, directory: Path) -> None:
    """The staged files into ``directory``: a rename of the whole directory when it does not
    exist yet, else each file renamed over its old version (other files are left alone)."""
    if not directory.exists():
        os.rename(staging, directory)
        return
    for path in staging.iterdir():
        os.replace(path, directory / path.name)


@dataclass(frozen=True)
class BeatLayout:
    """The unit's beats as the testbench sees them."""
    lanes: int
    in_bits: int
    out_bits: int
    out_signed: bool
    keyed: bool

    @property
    def in_width(self) -> int:
        return self.lanes * self.in_bits + (self.lanes if self.keyed else 0) + 1

    @property
    def out_width(self) -> int:
        return self.lanes * self.out_bits + (self.lanes if self.keyed else 0) + 1


def beat_layout(unit, vectors: Vectors) -> BeatLayout:
    """The beat layout of ``unit``'s ports, which must carry the vectors' element widths."""
    layout_in = unit.i.payload.shape()
    layout_out = unit.o.payload.shape()
    lanes = layout_in["data"].shape.length
    in_bits = layout_in["data"].shape.elem_shape.width
    out_bits = layout_out["data"].shape.elem_shape.width
    if (in_bits, out_bits) != (vectors.in_bits, vectors.out_bits):
        raise IntvitError(f"{vectors.op}: the unit's ports carry {in_bits}-bit inputs and "
                          f"{out_bits}-bit outputs, the vectors {vectors.in_bits} and "
                          f"{vectors.out_bits}; regenerate the vectors for this config")
    keyed = any(name == "keep" for name, _ in layout_out)
    if not keyed and vectors.lengths is not None:
        raise IntvitError(f"{vectors.op}: an element-wise unit's vectors have rows of one length "
                          "(its beats carry no keep to mark shorter ones)")
    return BeatLayout(lanes=lanes, in_bits=in_bits, out_bits=out_bits,
                      out_signed=vectors.out_signed, keyed=keyed)


def cycle_bound(unit, beats: HexBeats) -> int:
    """The testbench's timeout in cycles, from the unit's own cycle model: an element-wise unit
    takes a beat per cycle after its ``latency``; a row unit ends each row at most its
    ``row_latency`` after the previous row's end (``intvit.hw.rowpipe``), so ``rows`` rows take
    at most ``rows * row_latency(longest row)`` (``longest_row`` counts beats)."""
    if hasattr(unit, "row_latency"):
        full_rate = beats.rows * unit.row_latency(beats.longest_row * unit.lanes)
    else:
        full_rate = beats.beats + unit.latency
    return STALL_FACTOR * full_rate + TIMEOUT_SLACK


def status_outputs(unit) -> list[tuple[str, int]]:
    """``(name, width)`` of the unit's ports beside its two streams (a row unit's ``overflow``):
    outputs the testbench checks are low at the end. An extra input has no meaning the bench
    could give it, so it is refused."""
    found = []
    for path, member, value in unit.signature.flatten(unit):
        name = port_name(path)
        if name in STREAM_PORTS:
            continue
        if member.flow == In:
            raise IntvitError(f"{type(unit).__name__} has an input port {name} that the hex "
                              "testbench cannot drive")
        found.append((name, len(value)))
    return found


def testbench(module: str, unit, layout: BeatLayout, beats: HexBeats, max_cycles: int) -> str:
    """The Verilog text of ``tb_<module>``: declarations, the unit, the clock and reset, the
    stream process and the checks."""
    status = status_outputs(unit)
    return "\n".join([
        _header(module, layout, beats, max_cycles),
        _instance(module, status),
        _checks(layout, beats, status),
        _process(module),
        "endmodule",
        "",
    ])


def _header(module: str, layout: BeatLayout, beats: HexBeats, max_cycles: int) -> str:
    w = layout.out_bits
    keep = f"keep at [{layout.lanes * w + layout.lanes - 1}:{layout.lanes * w}], " \
        if layout.keyed else ""
    return f"""\
// Self-checking testbench for {module}, written by `intvit vectors --hex`.
// Run it in this directory (it reads {module}_in.hex and {module}_out.hex), e.g.
//   iverilog -g2005 -o tb tb_{module}.v {module}.v && vvp -n tb
// Output beat: lane k at [{w}k+{w - 1}:{w}k], {keep}last at bit {layout.out_width - 1}.
// Prints "N passed, M failed"; exits with $finish on success, $fatal(1) on a mismatch or timeout.
// Plusarg +nostall streams at full rate (default: random stalls on both sides).
module tb_{module};
    localparam LANES = {layout.lanes};
    localparam IN_WIDTH = {layout.in_width};
    localparam OUT_BITS = {w};
    localparam OUT_WIDTH = {layout.out_width};
    localparam FLAGS_LSB = LANES * OUT_BITS;  // keep (row units) and last
    localparam BEATS = {beats.beats};
    localparam MAX_CYCLES = {max_cycles};

    reg [IN_WIDTH-1:0] inputs [0:BEATS-1];
    reg [OUT_WIDTH-1:0] expected [0:BEATS-1];

    reg clk = 1'b0;
    reg rst = 1'b1;
    reg [IN_WIDTH-1:0] i_payload = {{IN_WIDTH{{1'b0}}}};
    reg i_valid = 1'b0;
    wire i_ready;
    wire [OUT_WIDTH-1:0] o_payload;
    wire o_valid;
    reg o_ready = 1'b0;
"""


def _last_lanes(layout: BeatLayout, beats: HexBeats) -> int:
    """Real lanes of a row's final beat for element-wise units (their vectors are a
    rectangular array: every row has the same length)."""
    row = beats.elements // beats.rows
    return row - (-(-row // layout.lanes) - 1) * layout.lanes


def _instance(module: str, status: list[tuple[str, int]]) -> str:
    wires = "".join(f"    wire [{width - 1}:0] {name};\n" for name, width in status)
    ports = ["clk", "rst", *STREAM_PORTS, *(name for name, _ in status)]
    connections = ",\n".join(f"        .{name}({name})" for name in ports)
    return f"""{wires}
    {module} dut (
{connections}
    );

    always #{CLOCK_HALF_PERIOD} clk = ~clk;
"""


def _checks(layout: BeatLayout, beats: HexBeats, status: list[tuple[str, int]]) -> str:
    """The per-beat comparison and the final verdict. A lane is real when its beat is not its
    row's last or its ``keep`` bit is set (row units), or when it is not padding of a row's
    final beat (element-wise)."""
    if layout.keyed:
        used = "!want[OUT_WIDTH-1] || want[FLAGS_LSB + lane]"
    else:
        used = f"!want[OUT_WIDTH-1] || lane < {_last_lanes(layout, beats)}"
    sign = "$signed" if layout.out_signed else ""
    flags = "".join(f"""\
            if ({name} !== {{{width}{{1'b0}}}}) begin
                failed = failed + 1;
                $display("FAIL: {name} is %b at the end (rows within the maximum length)", {name});
            end
""" for name, width in status)
    return f"""
    localparam RESET_EDGES = 2;  // rising edges with rst high before the first beat
    integer reset_edges, sent, received, passed, failed, cycle, first_bad;
    reg stall;
    reg [15:0] source_lfsr, sink_lfsr;

    // Is lane `lane` of beat `want` a real element (not padding)?
    function lane_used(input [OUT_WIDTH-1:0] want, input integer lane);
        lane_used = {used};
    endfunction

    // x^16 + x^14 + x^13 + x^11 + 1: a stall when the low two bits are zero (1 cycle in 4).
    function [15:0] lfsr_next(input [15:0] state);
        lfsr_next = {{state[14:0], state[15] ^ state[13] ^ state[12] ^ state[10]}};
    endfunction

    task check_beat(input integer beat);
        integer lane, bad_lane;
        reg [OUT_WIDTH-1:0] want;
        reg flags_bad;
        begin
            want = expected[beat];
            bad_lane = -1;
            for (lane = 0; lane < LANES; lane = lane + 1)
                if (lane_used(want, lane)) begin
                    if (o_payload[lane*OUT_BITS +: OUT_BITS] === want[lane*OUT_BITS +: OUT_BITS])
                        passed = passed + 1;
                    else begin
                        failed = failed + 1;
                        if (bad_lane < 0) bad_lane = lane;
                    end
                end
            flags_bad = o_payload[OUT_WIDTH-1:FLAGS_LSB] !== want[OUT_WIDTH-1:FLAGS_LSB];
            if (flags_bad)
                failed = failed + 1;
            if (first_bad < 0 && (bad_lane >= 0 || flags_bad)) begin
                first_bad = beat;
                $display("MISMATCH at beat %0d: expected %h, got %h", beat, want, o_payload);
                if (bad_lane >= 0)
                    $display("  lane %0d: expected %0d, got %0d", bad_lane,
                             {sign}(want[bad_lane*OUT_BITS +: OUT_BITS]),
                             {sign}(o_payload[bad_lane*OUT_BITS +: OUT_BITS]));
                else
                    $display("  flags (keep, last): expected %b, got %b",
                             want[OUT_WIDTH-1:FLAGS_LSB], o_payload[OUT_WIDTH-1:FLAGS_LSB]);
            end
        end
    endtask

    task finish_run;
        begin
{flags}            $display("%0d passed, %0d failed", passed, failed);
            if (failed == 0) begin
                $display("PASS: %0d beats in %0d cycles", BEATS, cycle);
                $finish;
            end else if (first_bad >= 0)
                $fatal(1, "FAIL: first mismatch at beat %0d", first_bad);
            else
                $fatal(1, "FAIL: a status output is high");
        end
    endtask
"""


def _process(module: str) -> str:
    """One process on the rising edge: ``rst`` high for ``RESET_EDGES`` edges, then offer the
    next input beat (holding it until ``i_ready``), take and check output beats, stop when all
    arrived or at the timeout. The unit's registers and this process sample the same edge and
    the unit's outputs change only after it, so the handshakes seen here are the ones the unit
    saw. ``rst`` is driven from this process too (not from an ``initial`` block), so the unit
    and the bench agree on the edge it falls."""
    return f"""
    initial begin
        sent = 0; received = 0; passed = 0; failed = 0; cycle = 0; first_bad = -1;
        reset_edges = 0;
        source_lfsr = 16'hace1;
        sink_lfsr = 16'h1d0f;
        stall = !$test$plusargs("nostall");
        $readmemh("{module}_in.hex", inputs);
        $readmemh("{module}_out.hex", expected);
    end

    always @(posedge clk) begin
        if (rst) begin
            reset_edges = reset_edges + 1;
            if (reset_edges == RESET_EDGES)
                rst <= 1'b0;
        end else begin
            cycle = cycle + 1;
            source_lfsr <= lfsr_next(source_lfsr);
            sink_lfsr <= lfsr_next(sink_lfsr);
            if (i_valid && i_ready)
                sent = sent + 1;
            if (!i_valid || i_ready) begin
                i_valid <= sent < BEATS && !(stall && source_lfsr[1:0] == 2'b00);
                if (sent < BEATS)
                    i_payload <= inputs[sent];
            end
            if (o_valid && o_ready) begin
                check_beat(received);
                received = received + 1;
            end
            o_ready <= !(stall && sink_lfsr[1:0] == 2'b00);
            if (received == BEATS)
                finish_run;
            else if (cycle >= MAX_CYCLES) begin
                $display("%0d passed, %0d failed", passed, failed + BEATS - received);
                $fatal(1, "TIMEOUT after %0d cycles: %0d of %0d input beats sent, %0d received",
                       cycle, sent, BEATS, received);
            end
        end
    end
"""
