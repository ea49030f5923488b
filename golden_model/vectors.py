"""Test-vector files: one ``.npz`` format for every consumer, plus ``$readmemh`` hex export.

An ``.npz`` holds ``op`` (name), ``config_json`` (every config field), ``cfg_<field>`` (each
integer field on its own), ``x`` and ``y`` (input and expected output ints) and the port formats
``in_bits``, ``in_signed``, ``out_bits``, ``out_signed``; row vectors of several lengths add
``lengths``, and masked softmax rows (a shifted Swin window's) ``keep``.
"""
import dataclasses
import json
import typing
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import IntvitError
from .files import atomic_output, write_text_atomic
from .integer import signed_range, unsigned_range

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
    keep: np.ndarray | None = None
    """Masked rows (softmax): booleans shaped as ``x``, false where an element is excluded from
    its row (the candidates' ``keep``); ``None`` when every element of every row takes part."""

    def rows(self):
        """``(input row, expected row)`` pairs, padding removed."""
        x, y = np.atleast_2d(self.x), np.atleast_2d(self.y)
        return [(x[i, :n], y[i, :n]) for i, n in enumerate(self._lengths())]

    def row_keeps(self) -> list[np.ndarray]:
        """Each row's ``keep`` mask, padding removed (all true without :attr:`keep`)."""
        lengths = self._lengths()
        if self.keep is None:
            return [np.ones(n, bool) for n in lengths]
        return [np.atleast_2d(self.keep)[i, :n] for i, n in enumerate(lengths)]

    def _lengths(self):
        x = np.atleast_2d(self.x)
        return self.lengths if self.lengths is not None else [x.shape[-1]] * len(x)


def make_vectors(op_name: str, config, x: np.ndarray, y: np.ndarray) -> Vectors:
    return Vectors(op=op_name, config=dataclasses.asdict(config), x=np.asarray(x, np.int64),
                   y=np.asarray(y, np.int64), in_bits=config.in_bits,
                   in_signed=bool(config.in_signed), out_bits=config.out_bits,
                   out_signed=bool(config.out_signed))


def make_row_vectors(op_name: str, config, rows, run, keeps=None) -> Vectors:
    """Vectors for a row operator from rows of any lengths: each row goes through ``run`` on its
    own (with its ``keep`` mask from ``keeps``, one per row, when given), and rows are stored
    zero-padded to the longest with their ``lengths`` (and masks, false in the padding)."""
    rows = [np.asarray(row, np.int64).reshape(-1) for row in rows]
    if not rows or min(len(r) for r in rows) < 1:
        raise IntvitError("row vectors need at least one row, each of length >= 1")
    if keeps is not None:
        keeps = [np.asarray(k, bool).reshape(-1) for k in keeps]
        if [len(k) for k in keeps] != [len(r) for r in rows]:
            raise IntvitError("row vectors: give one keep mask per row, as long as its row")
    width = max(len(r) for r in rows)
    x = np.zeros((len(rows), width), np.int64)
    y = np.zeros((len(rows), width), np.int64)
    keep = None if keeps is None else np.zeros((len(rows), width), bool)
    for i, row in enumerate(rows):
        x[i, :len(row)] = row
        masked = {} if keeps is None else {"keep": keeps[i][None, :]}
        y[i, :len(row)] = np.asarray(run(config, row[None, :], **masked), np.int64).reshape(-1)
        if keeps is not None:
            keep[i, :len(row)] = keeps[i]
    return dataclasses.replace(make_vectors(op_name, config, x, y), keep=keep,
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
                            **({} if vectors.lengths is None else {"lengths": vectors.lengths}),
                            **({} if vectors.keep is None else {"keep": vectors.keep}))
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
            keep = data["keep"] if "keep" in data.files else None
            if keep is not None and (keep.dtype != np.bool_ or keep.shape != x.shape):
                raise IntvitError(f"vector file {path} is malformed: keep must be booleans "
                                  f"shaped as x {x.shape}; {hint}")
            vectors = Vectors(op=str(data["op"]), config=json.loads(str(data["config_json"])),
                              x=x.astype(np.int64), y=y.astype(np.int64),
                              in_bits=int(data["in_bits"]), in_signed=bool(data["in_signed"]),
                              out_bits=int(data["out_bits"]),
                              out_signed=bool(data["out_signed"]), lengths=lengths, keep=keep)
            if keep is not None and not all(k.any() for k in vectors.row_keeps()):
                raise IntvitError(f"vector file {path} is malformed: a row keeps no element; "
                                  f"{hint}")
            return vectors
    except FileNotFoundError:
        raise IntvitError(f"vector file {path} does not exist; {hint}") from None
    except IntvitError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise IntvitError(f"vector file {path} is not a readable .npz ({reason}); {hint}") \
            from None


def config_from_fields(config_type, values: dict):
    """Rebuild a config of ``config_type`` from its fields as a vector file stores them
    (``dataclasses.asdict`` through JSON): nested configs from their objects, lists as tuples.
    The config validates itself; a missing, unknown or out-of-range field is an
    :class:`IntvitError` (a :class:`TypeError` from the constructor becomes one)."""
    if not isinstance(values, dict):
        raise IntvitError(f"{config_type.__name__}: stored config is not an object")
    hints = typing.get_type_hints(config_type)
    names = [f.name for f in dataclasses.fields(config_type) if f.init]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise IntvitError(f"{config_type.__name__} has no field(s) {', '.join(unknown)}")
    kwargs = {}
    for name in names:
        if name not in values:
            continue
        value, kind = values[name], hints.get(name)
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            kwargs[name] = config_from_fields(kind, value)
        else:
            kwargs[name] = _as_tuples(value)
    try:
        return config_type(**kwargs)
    except TypeError as error:
        raise IntvitError(f"{config_type.__name__}: {error}") from None


def _as_tuples(value):
    return tuple(_as_tuples(item) for item in value) if isinstance(value, list) else value


def input_range(config) -> tuple[int, int]:
    """The codes a config's input port carries: ``in_bits`` wide, signed or not."""
    return signed_range(config.in_bits) if config.in_signed else unsigned_range(config.in_bits)


def load_checked_vectors(path):
    """A vector file and the config it was made for, checked before any simulation: the operator
    is registered, its stored config is valid, the port formats are the config's, x and y have
    the same shape, row lengths fit, every input is within the config's input range, and y is
    the golden model's output on x. Returns ``(Vectors, config)``; any problem is a one-line
    :class:`IntvitError` naming the file."""
    from . import registry

    vectors = load_vectors(path)
    where = f"vector file {path}"
    hint = "regenerate it with `intvit vectors`"
    try:
        operator = registry.get(vectors.op)
    except IntvitError as error:
        raise IntvitError(f"{where}: {error}") from None
    try:
        config = config_from_fields(operator.config_type, vectors.config)
    except IntvitError as error:
        raise IntvitError(f"{where}: its {vectors.op} config is invalid ({error}); {hint}") \
            from None
    ports = (config.in_bits, bool(config.in_signed), config.out_bits, bool(config.out_signed))
    if (vectors.in_bits, vectors.in_signed, vectors.out_bits, vectors.out_signed) != ports:
        raise IntvitError(f"{where}: port formats differ from its config's; {hint}")
    if vectors.x.shape != vectors.y.shape or vectors.x.size == 0:
        raise IntvitError(f"{where}: x {vectors.x.shape} and y {vectors.y.shape} must have the "
                          f"same, non-empty shape; {hint}")
    if operator.row_wise and vectors.x.ndim != 2:
        raise IntvitError(f"{where}: {vectors.op} vectors are rows (a 2-D x), not "
                          f"{vectors.x.ndim}-D; {hint}")
    lo, hi = input_range(config)
    for index, (x_row, _) in enumerate(vectors.rows()):
        if x_row.size and (x_row.min() < lo or x_row.max() > hi):
            raise IntvitError(f"{where}: row {index} has inputs outside {lo}..{hi}, the range of "
                              f"its config's {config.in_bits}-bit input; {hint}")
    try:
        _check_golden(vectors, operator, config, where, hint)
    except IntvitError as error:
        if str(error).startswith(where):
            raise
        raise IntvitError(f"{where}: the golden model refuses its x ({error}); {hint}") from None
    return vectors, config


def _check_golden(vectors: Vectors, operator, config, where: str, hint: str) -> None:
    """y must equal the golden run on x (row by row for row operators)."""
    if vectors.keep is not None and not operator.masked_rows:
        raise IntvitError(f"{where}: {vectors.op} takes no keep mask, but the file has one; {hint}")
    if operator.row_wise:
        pairs, keeps = vectors.rows(), vectors.row_keeps()
        for length in sorted({len(x_row) for x_row, _ in pairs}):
            index = [i for i, (x_row, _) in enumerate(pairs) if len(x_row) == length]
            x = np.stack([pairs[i][0] for i in index])
            masked = {} if vectors.keep is None else {"keep": np.stack([keeps[i] for i in index])}
            want = np.asarray(operator.run(config, x, **masked), np.int64)
            wrong = np.nonzero(np.any(want != np.stack([pairs[i][1] for i in index]), axis=1))[0]
            if wrong.size:
                raise IntvitError(f"{where}: y of row {index[wrong[0]]} is not the golden output "
                                  f"of {vectors.op} on its x; {hint}")
        return
    want = np.asarray(operator.run(config, vectors.x), np.int64)
    wrong = np.flatnonzero(want.reshape(-1) != vectors.y.reshape(-1))
    if wrong.size:
        raise IntvitError(f"{where}: y[{wrong[0]}] = {vectors.y.reshape(-1)[wrong[0]]} is not the "
                          f"golden output {want.reshape(-1)[wrong[0]]} of {vectors.op} on its x "
                          f"({wrong.size:,} such outputs); {hint}")


@dataclass(frozen=True)
class HexBeats:
    """What :func:`export_hex` wrote: the two ``$readmemh`` files and the stream they hold."""
    inputs: Path
    expected: Path
    beats: int
    """Beats in each file (input and output beats pair one to one)."""
    rows: int
    longest_row: int
    """Beats of the longest row (a row unit's latency grows with it)."""
    elements: int
    """Real elements (padding lanes not counted, nor the masked lanes of a masked row's final
    beat, which its ``keep`` cannot tell from padding): the checks a clean run passes."""


def export_hex(vectors: Vectors, directory, stem: str, *, lanes: int = 1,
               keyed: bool = False) -> HexBeats:
    """Write ``<stem>_in.hex`` (input beats) and ``<stem>_out.hex`` (expected output beats) for
    ``$readmemh``: one beat a line, the exact payload word the unit's port carries, as hex.

    A testbench reads whole beats, so each word is packed as ``intvit.hw.stream.row_beat`` (or,
    ``keyed``, ``intvit.hw.rowpipe.keyed_beat``) lays it out: lane ``k`` at bits
    ``[k*w, (k+1)*w)`` (two's complement), then with ``keyed`` one ``keep`` bit per lane, then
    ``last`` on top. Each row of the vectors (:func:`stream_rows`) is split into beats of
    ``lanes``; its final beat is zero-padded, with ``keep`` marking the real lanes (and, for
    masked rows, the row's :attr:`Vectors.keep`, on input and output beats alike) and ``last``
    set. A ``//`` comment line on top states the layout (``$readmemh`` skips it)."""
    directory = Path(directory)
    rows = stream_rows(vectors)
    if vectors.keep is not None and not keyed:
        raise IntvitError(f"{stem}: masked rows need keyed beats (a row unit's port)")
    keeps = vectors.row_keeps() if vectors.keep is not None else [None] * len(rows)
    written = []
    for suffix, values, bits, what in (("in", [x for x, _ in rows], vectors.in_bits, "input"),
                                       ("out", [y for _, y in rows], vectors.out_bits,
                                        "expected output")):
        words, width = _beat_words(values, bits, lanes, keyed, keeps)
        keep = f"keep at bits [{lanes * bits + lanes - 1}:{lanes * bits}], " if keyed else ""
        header = (f"// {stem}: {len(words)} {what} beats of {width} bits; {lanes} lane(s) of "
                  f"{bits} bits, lane k at bits [{bits}k+{bits - 1}:{bits}k]; {keep}"
                  f"last at bit {width - 1}\n")
        digits = (width + 3) // 4
        text = header + "".join(f"{word:0{digits}x}\n" for word in words)
        written.append(write_text_atomic(directory / f"{stem}_{suffix}.hex", text))
    return HexBeats(inputs=written[0], expected=written[1],
                    beats=sum(-(-len(x) // lanes) for x, _ in rows), rows=len(rows),
                    longest_row=max(-(-len(x) // lanes) for x, _ in rows),
                    elements=sum(_checked_lanes(len(x), keep, lanes)
                                 for (x, _), keep in zip(rows, keeps)))


def stream_rows(vectors: Vectors) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(input row, expected row)`` pairs in streaming order: :meth:`Vectors.rows` for rows of
    several lengths, else the last axis of ``x`` (element-wise vectors of any shape)."""
    if vectors.lengths is not None:
        return vectors.rows()
    width = vectors.x.shape[-1]
    return list(zip(vectors.x.reshape(-1, width), vectors.y.reshape(-1, width)))


def _beat_words(rows, bits: int, lanes: int, keyed: bool, keeps) -> tuple[list[int], int]:
    """Payload words of ``rows`` split into beats (see :func:`export_hex`) and their width;
    ``keeps`` holds each row's mask (``None``: every element kept)."""
    mask = (1 << bits) - 1
    top = lanes * bits + (lanes if keyed else 0)
    words = []
    for row, keep in zip(rows, keeps):
        for start in range(0, len(row), lanes):
            chunk = row[start:start + lanes]
            word = sum((int(v) & mask) << (k * bits) for k, v in enumerate(chunk))
            if keyed:
                word |= keep_bits(keep, start, len(chunk)) << (lanes * bits)
            words.append(word | (int(start + lanes >= len(row)) << top))
    return words, top + 1


def _checked_lanes(length: int, keep, lanes: int) -> int:
    """Lanes a testbench compares in a row of ``length``: every lane of its full beats, and the
    kept lanes of its final beat."""
    final = (length - 1) // lanes * lanes
    return final + (length - final if keep is None else int(np.count_nonzero(keep[final:])))


def keep_bits(keep, start: int, count: int) -> int:
    """The ``keep`` field of the beat holding a row's elements ``start .. start + count - 1``:
    lane ``k``'s bit set when its element is kept (``keep`` ``None``: every element)."""
    if keep is None:
        return (1 << count) - 1
    return sum(int(bool(keep[start + k])) << k for k in range(count))


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


def masked_row_sweep(config, rng: np.random.Generator, max_len: int,
                     count: int = 200) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(rows, keeps)`` for a masked row unit (softmax): corner masks on full rows (every other
    element, only the last element, the row's peak masked so that a lower element is the
    maximum kept, a run of 8 masked elements mid-row, which clears whole beats at up to 8
    lanes) and ``count`` random rows of random length with random masks (each keeps at least one
    element)."""
    lo, hi = input_range(config)
    n = max_len
    row = rng.integers(lo, hi, n, endpoint=True)
    peak = np.full(n, lo // 2 if lo < 0 else hi // 4)
    peak[::3] = hi
    alternate = np.arange(n) % 2 == 0
    last_only = np.arange(n) == n - 1
    run = (np.arange(n) < 4) | (np.arange(n) >= 12)
    rows, keeps = [row, row, peak, row], [alternate, last_only, np.arange(n) % 3 != 0, run]
    keeps = [keep if keep.any() else last_only for keep in keeps]  # rows of one element
    for _ in range(count):
        length = int(rng.integers(1, n + 1))
        keep = rng.random(length) < rng.uniform(0.2, 0.9)
        keep[rng.integers(length)] = True
        rows.append(rng.integers(lo, hi, length, endpoint=True))
        keeps.append(keep)
    return rows, keeps


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


VECTOR_BATCH = 2
"""Images per integer forward pass while layer vectors are gathered."""


ELEMENT_LIMIT = 1 << 16
"""Element-wise layers keep at most this many real inputs (a DeiT-Tiny GELU layer has 151,296
per image; the unit's own sweep already covers every input code)."""


def layer_vectors(qmodel, images_q, layers=None, row_limit: int = 600, progress=None) -> dict:
    """Test vectors of the integer model's non-linear ``layers`` (default: all) from real
    images: each layer's integer inputs on ``images_q`` (with their ``keep`` masks where the
    model masks a layer's rows: the tap ``<layer>:keep``) and its golden outputs (checked equal
    to the model's own outputs). Row layers keep their first ``row_limit`` rows, element-wise
    layers their first :data:`ELEMENT_LIMIT` inputs. The images go through the model
    :data:`VECTOR_BATCH` at a time; ``progress(done, total)`` after each."""
    from . import registry

    layers = layers or list(qmodel.plans)
    inputs: dict = {layer: [] for layer in layers}
    outputs: dict = {layer: [] for layer in layers}
    keeps: dict = {}  # the masked layers' keep masks (a shifted Swin window's softmax)
    if progress:
        progress(0, len(images_q))
    for start in range(0, len(images_q), VECTOR_BATCH):
        taps: dict = {}
        qmodel.forward(images_q[start:start + VECTOR_BATCH], taps)
        for layer in layers:
            x, out = taps[f"{layer}:in"], taps[f"{layer}:out"]
            inputs[layer].append(x.reshape(-1, x.shape[-1]))
            outputs[layer].append(out.reshape(-1, x.shape[-1]))
            if f"{layer}:keep" in taps:
                keeps.setdefault(layer, []).append(taps[f"{layer}:keep"].reshape(-1, x.shape[-1]))
        if progress:
            progress(min(start + VECTOR_BATCH, len(images_q)), len(images_q))
    found = {}
    for layer in layers:
        plan = qmodel.plans[layer]
        operator = registry.get(plan.op)
        x, expected = np.concatenate(inputs.pop(layer)), np.concatenate(outputs.pop(layer))
        if operator.row_wise:
            x, expected = x[:row_limit], expected[:row_limit]
            keep = np.concatenate(keeps.pop(layer))[:row_limit] if layer in keeps else None
            vectors = make_row_vectors(plan.op, plan.config, list(x), operator.run,
                                       None if keep is None else list(keep))
        else:
            x, expected = x.reshape(-1)[:ELEMENT_LIMIT], expected.reshape(-1)[:ELEMENT_LIMIT]
            vectors = make_vectors(plan.op, plan.config, x, operator.run(plan.config, x))
        if not np.array_equal(vectors.y.reshape(expected.shape), expected):
            raise IntvitError(f"{layer}: golden outputs differ from the model's own outputs")
        found[layer] = vectors
    return found


def check_row_capacity(vectors: Vectors, capacity: int | None, where) -> None:
    """Rows of ``vectors`` must fit a row unit's buffer of ``capacity`` elements (None: an
    element-wise unit, any length)."""
    longest = max(len(x_row) for x_row, _ in vectors.rows())
    if capacity is not None and longest > capacity:
        raise IntvitError(f"vector file {where} has rows of {longest} elements but the unit holds "
                          f"{capacity}; give --max-row {longest} or more")
