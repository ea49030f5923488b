"""Files: atomic output (a result is either written whole or not at all) and the cache folder."""
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import IntvitError


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


def check_output_file(path, what: str = "output file") -> Path:
    """Check, before any work, that ``path`` can be written as a file: it is not a directory, and
    its nearest existing ancestor is a directory this process can create files in (tried by
    creating and removing a temporary file, so the check holds for root too). Nothing is left on
    disk; a problem is a one-line :class:`IntvitError`."""
    path = Path(path)
    if _probe(path, what, Path.is_dir):
        raise IntvitError(f"{what} {path} is a directory; give a file name, e.g. "
                          f"{path / 'out'}")
    _check_writable_ancestor(path.parent, what, path)
    return path


def check_output_dir(path, what: str = "output directory") -> Path:
    """Check, before any work, that ``path`` is (or can be created as) a directory whose files
    this process can write; nothing is created. A problem is a one-line :class:`IntvitError`."""
    path = Path(path)
    if _probe(path, what, Path.exists) and not _probe(path, what, Path.is_dir):
        raise IntvitError(f"{what} {path} is a file, not a directory; give a directory")
    _check_writable_ancestor(path, what, path)
    return path


def _probe(path: Path, what: str, test) -> bool:
    """``test(path)``, with a path that cannot even be looked at as a one-line error."""
    try:
        return test(path)
    except OSError as error:
        raise IntvitError(f"{what} {path}: cannot look it up ({error.strerror or error}); choose "
                          "another path") from None


def _check_writable_ancestor(directory: Path, what: str, target: Path) -> None:
    ancestor = directory
    while not _probe(ancestor, what, Path.exists) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not _probe(ancestor, what, Path.is_dir):
        raise IntvitError(f"{what} {target}: {ancestor} is not a directory; choose another "
                          "path")
    try:
        with tempfile.TemporaryFile(dir=ancestor, prefix=".intvit-probe-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise IntvitError(f"{what} {target}: cannot write in {ancestor} ({reason}); choose a "
                          "writable path") from None


def cache_root() -> Path:
    """``$INTVIT_CACHE_DIR`` or ``~/.cache/intvit``: Verilator builds and FPGA flow results."""
    return Path(os.environ.get("INTVIT_CACHE_DIR", Path.home() / ".cache" / "intvit"))
