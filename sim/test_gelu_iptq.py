"""Testbench of ``gelu/iptq``: the Poly-GELU unit (``hw/gelu/iptq.py``) equals its golden model
(``golden_model/ops/gelu/iptq.py``) bit for bit under Verilator on every input code (the example
config, lanes 1; 10-bit codes to 6 bits, lanes 4, random stalls) and in Amaranth's simulator
on 2- to 16-bit configs; its Verilog is lint-clean."""
import pytest

from intvit.sim.gelu_checks import (POINTS, STALL, check_asymmetric_output_in_amaranth_sim,
                                    check_in_amaranth_sim, check_rtl_on_every_input,
                                    check_verilog_lint, point_options)

NAME = "gelu/iptq"


@pytest.mark.parametrize("options, lanes, stall", [
    pytest.param({}, 1, 0.0, id="example-lanes1"),
    pytest.param(dict(in_scale=0.02, in_bits=10, out_bits=6), 4, STALL,
                 id="in10-out6-lanes4-stalls")])
def test_rtl_equals_golden_on_every_input(options, lanes, stall, tmp_path):
    check_rtl_on_every_input(NAME, options, lanes, stall, tmp_path)


def test_verilog_is_lint_clean(tmp_path):
    check_verilog_lint(NAME, tmp_path)


@pytest.mark.parametrize("point", POINTS, ids=str)
def test_unit_equals_golden_in_amaranth_sim(point):
    check_in_amaranth_sim(NAME, point_options(point))


def test_asymmetric_output_in_amaranth_sim():
    check_asymmetric_output_in_amaranth_sim(NAME)
