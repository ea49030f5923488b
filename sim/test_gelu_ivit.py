"""Testbench of ``gelu/ivit``: the ShiftGELU unit (``hw/gelu/ivit.py``) equals its golden model
(``golden_model/ops/gelu/ivit.py``) bit for bit under Verilator on every input code (the example
config, lanes 1; the paper's constants, lanes 4, random stalls) and in Amaranth's simulator on
2- to 16-bit configs, derived and published; its Verilog is lint-clean."""
import pytest

from intvit.sim.gelu_checks import (POINTS, STALL, check_asymmetric_output_in_amaranth_sim,
                                    check_in_amaranth_sim, check_rtl_on_every_input,
                                    check_verilog_lint, point_options)

NAME = "gelu/ivit"


@pytest.mark.parametrize("options, lanes, stall", [
    pytest.param({}, 1, 0.0, id="example-lanes1"),
    pytest.param(dict(in_scale=0.1, out_bits=6, published=True), 4, STALL,
                 id="published-out6-lanes4-stalls")])
def test_rtl_equals_golden_on_every_input(options, lanes, stall, tmp_path):
    """The published case has floor slope shifts, ``n = 23`` and a 5-stage reciprocal divider."""
    check_rtl_on_every_input(NAME, options, lanes, stall, tmp_path)


def test_verilog_is_lint_clean(tmp_path):
    check_verilog_lint(NAME, tmp_path)


@pytest.mark.parametrize("published", [False, True], ids=["derived", "published"])
@pytest.mark.parametrize("point", POINTS, ids=str)
def test_unit_equals_golden_in_amaranth_sim(point, published):
    check_in_amaranth_sim(NAME, point_options(point, published))


def test_asymmetric_output_in_amaranth_sim():
    check_asymmetric_output_in_amaranth_sim(NAME)
