"""Read a ``.safetensors`` file into torch tensors with numpy and json alone (no extra package).

Format (huggingface/safetensors, README "Format"): an unsigned little-endian 64-bit header length
``n``; ``n`` bytes of UTF-8 JSON mapping every tensor name to ``{"dtype", "shape",
"data_offsets": [begin, end]}``, byte offsets into the data that follows the header, plus an
optional ``"__metadata__"`` entry of strings; then the raw little-endian tensor bytes, row-major.
"""
import json
from pathlib import Path

import numpy as np
import torch

from .errors import IntvitError

HEADER_LENGTH_BYTES = 8
METADATA = "__metadata__"
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
          "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}
"""The safetensors dtype names read here and their numpy layouts (``BF16`` is read as its 16
raw bits and widened by :func:`bfloat16_to_float32`)."""


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32: ``float32 bits = bf16 bits << 16`` (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the file, by name; a damaged or foreign file is a one-line
    :class:`IntvitError`."""
    data = path.read_bytes()
    header = _header(data, path)
    start = HEADER_LENGTH_BYTES + int.from_bytes(data[:HEADER_LENGTH_BYTES], "little")
    tensors = {}
    for name, entry in header.items():
        if name != METADATA:
            tensors[name] = _tensor(data, start, name, entry, path)
    return tensors


def _fail(path: Path, reason: str) -> IntvitError:
    return IntvitError(f"cannot read safetensors file {path}: {reason}; give a file written by "
                       "safetensors (e.g. save_pretrained's model.safetensors)")


def _header(data: bytes, path: Path) -> dict:
    """The JSON header, checked to be an object that fits in the file."""
    if len(data) < HEADER_LENGTH_BYTES:
        raise _fail(path, "it is shorter than the 8-byte header length")
    length = int.from_bytes(data[:HEADER_LENGTH_BYTES], "little")
    if length > len(data) - HEADER_LENGTH_BYTES:
        raise _fail(path, f"its header length {length} exceeds the file")
    try:
        header = json.loads(data[HEADER_LENGTH_BYTES:HEADER_LENGTH_BYTES + length])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _fail(path, "its header is not JSON") from None
    if not isinstance(header, dict):
        raise _fail(path, "its header is not a JSON object")
    return header


def _tensor(data: bytes, start: int, name: str, entry, path: Path) -> torch.Tensor:
    """One tensor: its dtype known, its shape non-negative integers, its byte range inside the
    data and exactly as long as the shape needs."""
    if not (isinstance(entry, dict) and entry.get("dtype") in DTYPES):
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        raise _fail(path, f"tensor {name} has dtype {dtype!r}, not one of {', '.join(DTYPES)}")
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise _fail(path, f"tensor {name} has shape {shape!r}")
    dtype = np.dtype(DTYPES[entry["dtype"]])
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(isinstance(n, int) for n in offsets)
            and 0 <= offsets[0] and offsets[1] - offsets[0] == size
            and start + offsets[1] <= len(data)):
        raise _fail(path, f"tensor {name} has data_offsets {offsets!r}, not {size} bytes inside "
                    "the file")
    array = np.frombuffer(data, dtype, size // dtype.itemsize, start + offsets[0]).reshape(shape)
    if entry["dtype"] == "BF16":
        array = bfloat16_to_float32(array)
    return torch.from_numpy(array.astype(array.dtype.newbyteorder("="), copy=True))
