"""Files: atomic output (a result is either written whole or not at all) and the cache folder."""
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output(path, mode: str = "w"):
    """Open a temporary file beside ``path``; rename it onto ``path`` only if the block succeeds.

    Creates the parent directory. On any exception the temporary file is removed, so a failed
    command leaves nothing half-written on disk.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, mode) as stream:
            yield stream
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_output(path, "w") as stream:
        stream.write(text)
    return Path(path)


def cache_root() -> Path:
    """``$INTVIT_CACHE_DIR`` or ``~/.cache/intvit``: Verilator builds and FPGA flow results."""
    return Path(os.environ.get("INTVIT_CACHE_DIR", Path.home() / ".cache" / "intvit"))
