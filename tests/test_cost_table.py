"""The checked-in cost tables (fpga/tables/<target>.json) against fresh measurements and the
metric's reader, and the table builder's handling of progress and failures.

The requant entry is compared with a fresh ``measure`` (a cache hit when the unit's Verilog and
the tool versions are unchanged, else one small Yosys + nextpnr run). Structural bound of the
GEMM arrays: each of the ``R * C`` cells holds an accumulator and a drain-buffer word of
``acc_bits`` each (hw/gemm.py), so at least ``2 * R * C * acc_bits`` flip-flops on ECP5, and an
8 x 8-bit multiplier, so at least ``R * C`` DSP blocks.
"""
import json

import pytest

from intvit.fpga.cost import measure
from intvit.fpga.synth import tool_versions
from intvit.fpga.table import GEMM_SIZES, build_table, gemm_name, table_path
from intvit.golden_model.costs import load_cost_table
from intvit.golden_model.gemm import example_config
from intvit.golden_model.registry import get
from intvit.hw.units import build_unit, default_max_row, unit_names
from intvit.cli import main

TARGETS = ("ecp5", "xilinx")


@pytest.fixture(scope="module", params=TARGETS)
def table(request):
    path = table_path(request.param)
    assert path.is_file(), f"run `intvit cost --all --target {request.param}`"
    return json.loads(path.read_text())


def test_table_names_its_target_tools_and_command(table):
    target = table["target"]
    assert table["tools"] == tool_versions(target)
    assert table["command"] == f"intvit cost --all --target {target}"
    assert table["device"]


def test_every_unit_and_both_arrays_have_an_entry(table):
    expected = set(unit_names()) | {gemm_name(r, c) for r, c in GEMM_SIZES}
    assert expected <= set(table["entries"])
    for name, entry in table["entries"].items():
        assert entry["target"] == table["target"]
        assert entry["elements_per_cycle"] > 0 and entry["resources"]["LUT"] > 0, name


def test_row_units_hold_the_stated_row(table):
    for name in unit_names():
        operator = get(name)
        if operator.row_wise:
            entry = table["entries"][name]
            assert entry["max_row"] == default_max_row(operator.example_config())
            # overlapped rows: a full row per row_interval, at most one beat per cycle
            unit = build_unit(name, operator.example_config())
            assert entry["elements_per_cycle"] == unit.max_row / unit.row_interval(unit.max_row)
            assert entry["elements_per_cycle"] <= 1


def test_requant_entry_matches_a_fresh_measurement(table):
    fresh = measure("requant", target=table["target"])
    assert {k: v for k, v in fresh.items() if k != "cached"} == table["entries"]["requant"]


def test_gemm_flip_flops_cover_accumulators_and_drain_buffer(table):
    for rows, cols in GEMM_SIZES:
        entry = table["entries"][gemm_name(rows, cols)]
        acc_bits = example_config(rows, cols).acc_bits
        if table["target"] == "ecp5":  # a DSP48's P register could hold an accumulator
            assert entry["resources"]["FF"] >= 2 * rows * cols * acc_bits
        assert entry["resources"]["DSP"] >= rows * cols  # one multiplier per cell at least
        assert entry["elements_per_cycle"] == rows * cols
    small, large = (table["entries"][gemm_name(r, c)] for r, c in GEMM_SIZES)
    assert large["resources"]["LUT"] > small["resources"]["LUT"]


def test_metric_reads_the_table_as_measured(table):
    loaded = load_cost_table(table_path(table["target"]))
    assert loaded.measured
    for name, entry in table["entries"].items():
        res = entry["resources"]
        assert loaded.entries[name]["elements_per_cycle"] == entry["elements_per_cycle"]
        # LUT-equivalents, priced as golden_model/costs.py's docstring states
        assert loaded.entries[name]["lut_equivalent"] == (
            res["LUT"] + 2 * res["CARRY"] + 150 * res["DSP"] + 100 * res["BRAM"])
    if table["target"] == "ecp5":
        assert load_cost_table().source == str(table_path("ecp5"))


def fake_jobs():
    entry = {"op": "x", "target": "ecp5", "resources": {"LUT": 3, "CARRY": 0, "FF": 1, "DSP": 0,
                                                        "BRAM": 0},
             "fmax_mhz": 100.0, "elements_per_cycle": 1, "cached": True}

    def broken(target):
        raise ValueError("elaboration failed\nsecond line")

    return [("good", lambda target: dict(entry)), ("bad", broken)]


def test_a_failing_unit_is_reported_and_left_out(monkeypatch):
    monkeypatch.setattr("intvit.fpga.table.jobs", fake_jobs)
    lines = []
    table, failures = build_table("ecp5", progress=lines.append)
    assert list(table["entries"]) == ["good"] and "cached" not in table["entries"]["good"]
    assert failures == {"bad": "ValueError: elaboration failed"}
    assert lines[0].startswith("[1/2] good: LUT 3") and lines[1].startswith("[2/2] bad: FAILED")


def test_cli_all_writes_the_table_and_exits_1_on_a_failure(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("intvit.fpga.table.jobs", fake_jobs)
    out = tmp_path / "t.json"
    assert main(["cost", "--all", "--target", "ecp5", "-o", str(out)]) == 1
    written = json.loads(out.read_text())
    assert set(written) == {"target", "device", "tools", "command", "entries"}
    assert list(written["entries"]) == ["good"]
    assert "bad" in capsys.readouterr().err


def test_cli_all_refuses_an_operator(capsys):
    assert main(["cost", "requant", "--all"]) == 2
    assert "--all measures every unit" in capsys.readouterr().err
