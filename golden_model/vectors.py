"""Test-vector files: one ``.npz`` format for every consumer, plus ``$readmemh`` hex export.

An ``.npz`` holds ``op`` (name), ``config_json`` (every config field), ``cfg_<field>`` (each
integer field on its own), ``x`` and ``y`` (input and expected output ints) and the port formats
``in_bits``, ``in_signed``, ``out_bits``, ``out_signed``.
"""
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import IntvitError
from .files import atomic_output

REQUIRED_KEYS = ("op", "config_json", "x", "y", "in_bits", "in_signed", "out_bits", "out_signed")


@dataclass(frozen=True)
class Vectors:
    op: str
    config: dict
    x: np.ndarray
    y: np.ndarray
    in_bits: int
    in_signed: bool
    out_bits: int
    out_signed: bool
    lengths: np.ndarray | None = None
    """Row operators with rows of several lengths: row ``i`` is ``x[i, :lengths[i]]`` (the rest
    is padding); ``None`` when every row is whole."""

    def rows(self):
        """``(input row, expected row)`` pairs, padding removed."""
        x, y = np.atleast_2d(self.x), np.atleast_2d(self.y)
        lengths = self.lengths if self.lengths is not None else [x.shape[-1]] * len(x)
        return [(x[i, :n], y[i, :n]) for i, n in enumerate(lengths)]


def make_vectors(op_name: str, config, x: np.ndarray, y: np.ndarray) -> Vectors:
    return Vectors(op=op_name, config=dataclasses.asdict(config), x=np.asarray(x, np.int64),
                   y=np.asarray(y, np.int64), in_bits=config.in_bits,
                   in_signed=bool(config.in_signed), out_bits=config.out_bits,
                   out_signed=bool(config.out_signed))


def make_row_vectors(op_name: str, config, rows, run) -> Vectors:
    """Vectors for a row operator from rows of any lengths: each row goes through ``run`` on its
    own, and rows are stored zero-padded to the longest with their ``lengths``."""
    rows = [np.asarray(row, np.int64).reshape(-1) for row in rows]
    if not rows or min(len(r) for r in rows) < 1:
        raise IntvitError("row vectors need at least one row, each of length >= 1")
    width = max(len(r) for r in rows)
    x = np.zeros((len(rows), width), np.int64)
    y = np.zeros((len(rows), width), np.int64)
    for i, row in enumerate(rows):
        x[i, :len(row)] = row
        y[i, :len(row)] = np.asarray(run(config, row[None, :]), np.int64).reshape(-1)
    return dataclasses.replace(make_vectors(op_name, config, x, y),
                               lengths=np.array([len(r) for r in rows], np.int64))


def save_vectors(path, vectors: Vectors) -> Path:
    """Write ``vectors`` to ``path`` atomically (a temporary file renamed into place)."""
    path = Path(path)
    integer_fields = {f"cfg_{k}": np.int64(v) for k, v in vectors.config.items()
                      if isinstance(v, (int, np.integer)) and not isinstance(v, bool)}
    with atomic_output(path, "wb") as stream:
        np.savez_compressed(stream, op=vectors.op, config_json=json.dumps(vectors.config),
                            x=vectors.x, y=vectors.y, in_bits=vectors.in_bits,
                            in_signed=vectors.in_signed, out_bits=vectors.out_bits,
                            out_signed=vectors.out_signed, **integer_fields,
                            **({} if vectors.lengths is None else {"lengths": vectors.lengths}))
    return path


def load_vectors(path) -> Vectors:
    """Read a vector file; a missing or malformed file is a one-line :class:`IntvitError`."""
    path = Path(path)
    hint = "regenerate it with `intvit vectors`"
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in REQUIRED_KEYS if k not in data.files]
            if missing:
                raise IntvitError(f"vector file {path} is malformed: missing {', '.join(missing)}; "
                                  f"{hint}")
            x, y = data["x"], data["y"]
            if not (np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer)):
                raise IntvitError(f"vector file {path} is malformed: x and y must be integer "
                                  f"arrays; {hint}")
            if x.shape[:-1] != y.shape[:-1] or (x.ndim == 1 and x.shape != y.shape):
                raise IntvitError(f"vector file {path} is malformed: x {x.shape} and y {y.shape} "
                                  f"do not pair up; {hint}")
            lengths = data["lengths"].astype(np.int64) if "lengths" in data.files else None
            if lengths is not None and (x.ndim != 2 or lengths.shape != x.shape[:1]
                                        or lengths.min() < 1 or lengths.max() > x.shape[1]):
                raise IntvitError(f"vector file {path} is malformed: lengths do not fit the "
                                  f"rows of x; {hint}")
            return Vectors(op=str(data["op"]), config=json.loads(str(data["config_json"])),
                           x=x.astype(np.int64), y=y.astype(np.int64),
                           in_bits=int(data["in_bits"]), in_signed=bool(data["in_signed"]),
                           out_bits=int(data["out_bits"]), out_signed=bool(data["out_signed"]),
                           lengths=lengths)
    except FileNotFoundError:
        raise IntvitError(f"vector file {path} does not exist; {hint}") from None
    except (OSError, ValueError, KeyError) as error:
        if isinstance(error, IntvitError):
            raise
        raise IntvitError(f"vector file {path} is not a readable .npz ({error}); {hint}") from None


def export_hex(vectors: Vectors, directory, stem: str) -> tuple[Path, Path]:
    """Write ``<stem>_x.hex`` and ``<stem>_y.hex`` for ``$readmemh``: one element a line,
    two's complement, ``ceil(bits/4)`` hex digits, rows flattened in order."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, values, bits in (("x", vectors.x, vectors.in_bits), ("y", vectors.y, vectors.out_bits)):
        digits = (bits + 3) // 4
        mask = (1 << bits) - 1
        text = "".join(f"{int(v) & mask:0{digits}x}\n" for v in values.reshape(-1))
        target = directory / f"{stem}_{suffix}.hex"
        target.write_text(text)
        paths.append(target)
    return paths[0], paths[1]


def row_sweep(operator, config, rng: np.random.Generator, max_len: int,
              count: int = 2000) -> list[np.ndarray]:
    """Rows for a row unit's testbench: the operator's own sweep rows, corner rows (all equal at
    the extremes and zero, one large outlier, the most negative value everywhere, length 1,
    maximum length) and ``count`` random rows of random length in ``1..max_len``.

    A config that fixes the row length (LayerNorm: ``config.channels``) gets rows of that
    length only."""
    fixed = getattr(config, "channels", None)
    if fixed is not None and fixed > max_len:
        raise IntvitError(f"{operator.name}: rows have {fixed} channels but the unit holds "
                          f"{max_len}; raise max_row")
    lo = -(1 << (config.in_bits - 1)) if config.in_signed else 0
    hi = (1 << (config.in_bits - 1)) - 1 if config.in_signed else (1 << config.in_bits) - 1

    def length(n):
        return fixed if fixed is not None else n

    corners = [np.full(length(max_len), v) for v in (lo, hi, 0, lo + 1)]
    outlier = np.full(length(max_len), lo // 4 if lo < 0 else hi // 4)
    outlier[length(max_len) // 2] = hi
    corners += [outlier, np.full(length(1), lo), np.full(length(1), hi),
                rng.integers(lo, hi, length(max_len), endpoint=True)]
    own = [np.asarray(r)[:length(max_len)] for r in
           np.atleast_2d(operator.sweep_inputs(config, rng))]
    own = [r for r in own if fixed is None or len(r) == fixed]
    randoms = [rng.integers(lo, hi, length(int(rng.integers(1, max_len + 1))), endpoint=True)
               for _ in range(count)]
    return corners + own + randoms


REAL_IMAGES = 8
"""Calibration images whose activations join a row unit's test vectors."""


def real_activation_rows(kind: str, config, count: int = 200) -> list[np.ndarray]:
    """Rows of real activations: the bundled model's inputs to its first layer of ``kind`` on
    calibration images, quantized by ``config``'s own input quantizer (its scale, or per-channel
    scales); ``[]`` when the config's row length does not fit the model (LayerNorm channels)."""
    from .checkpoint import load_bundled
    from .dataset import load_splits
    from .qvit import float_taps
    from .calibration import quantize_input
    from .vit import nonlinear_layers

    model, model_config, _ = load_bundled()
    channels = getattr(config, "channels", None)
    if channels is not None and channels != model_config.embed_dim:
        return []
    layer = next(name for name, k in nonlinear_layers(model_config).items() if k == kind)
    taps = float_taps(model, load_splits()["calibration"].images[:REAL_IMAGES])
    x = taps[layer]
    rows = quantize_input(config, x).reshape(-1, x.shape[-1])
    return list(rows[:count])


def layer_vectors(qmodel, images_q, layers=None, row_limit: int = 600) -> dict:
    """Test vectors of the integer model's non-linear ``layers`` (default: all) from real
    images: each layer's integer inputs on ``images_q`` and its golden outputs (checked equal to
    the model's own outputs). Row layers keep at most ``row_limit`` rows."""
    from . import registry

    taps: dict = {}
    qmodel.forward(images_q, taps)
    found = {}
    for layer in layers or list(qmodel.plans):
        plan = qmodel.plans[layer]
        operator = registry.get(plan.op)
        x, out = taps[f"{layer}:in"], taps[f"{layer}:out"]
        if operator.row_wise:
            rows = x.reshape(-1, x.shape[-1])[:row_limit]
            vectors = make_row_vectors(plan.op, plan.config, list(rows), operator.run)
            expected = out.reshape(-1, x.shape[-1])[:row_limit]
        else:
            vectors = make_vectors(plan.op, plan.config, x.reshape(-1),
                                   operator.run(plan.config, x.reshape(-1)))
            expected = out.reshape(-1)
        if not np.array_equal(vectors.y.reshape(expected.shape), expected):
            raise IntvitError(f"{layer}: golden outputs differ from the model's own outputs")
        found[layer] = vectors
    return found
