"""``quant.json``: the per-layer assignment and quantization settings that ``intvit quantize``
chose, read back by the later stages (vectors, verilog, sim, report), with the integer model and
the evaluation images' codes beside it (:func:`save_run`); a bundled model's ``quant.json``
alone rebuilds its integer model deterministically (under a second on the digits model)."""
import json
import pickle
from pathlib import Path

import numpy as np

from .errors import IntvitError
from .files import atomic_output, write_text_atomic
from .qvit import QuantSpec


def save_quant(path, result, model: str = "digits") -> Path:
    """Write a :class:`~golden_model.select.QuantizationResult` as JSON, atomically, with the
    model it quantized: a bundled model's name (``digits``, ``mnist``) or a checkpoint path."""
    return write_text_atomic(path, json.dumps({"model": model, **result.to_json()}, indent=1)
                             + "\n")


LEGACY_SPEC = {"score_snap": "off", "gelu_output": "symmetric"}
"""Spec fields a ``quant.json`` written before they existed was built without: such a file
rebuilds the model it describes, not one with today's defaults."""


def load_quant(path) -> dict:
    """``{"model", "spec": QuantSpec, "rule", "assignment", "accuracy", "scores"}`` from
    ``quant.json`` (``model`` is ``digits`` in files written before it was recorded); a missing
    or malformed file is a one-line error."""
    path = Path(path)
    hint = "rerun `intvit quantize`"
    try:
        data = json.loads(path.read_text())
        spec = QuantSpec(**{**LEGACY_SPEC, **data["spec"]})
        assignment = dict(data["assignment"])
        rule = str(data["rule"])
        model = str(data.get("model", "digits"))
    except FileNotFoundError:
        raise IntvitError(f"{path} does not exist; {hint}") from None
    except (ValueError, KeyError, TypeError) as error:
        if isinstance(error, IntvitError):
            raise
        raise IntvitError(f"{path} is not a quant.json file ({error}); {hint}") from None
    return {"model": model, "spec": spec, "rule": rule, "assignment": assignment,
            "accuracy": data.get("accuracy", {}), "scores": data.get("scores", {})}


MODEL_FILE = "integer_model.pkl"
"""Beside ``quant.json``: the integer model itself (a user's checkpoint takes minutes to
calibrate again; the later stages load it instead)."""
EVAL_FILE = "eval_images.npy"
"""Beside ``quant.json``: the evaluation images as the int8 codes the integer model takes."""
MODEL_FORMAT = "intvit integer model 1"


def save_run(directory, result, model: str, eval_codes) -> Path:
    """``quant.json``, the stage-3 integer model and the evaluation images' int8 codes, each
    written atomically; returns the path of ``quant.json`` (written last)."""
    directory = Path(directory)
    with atomic_output(directory / MODEL_FILE, "wb") as stream:
        pickle.dump({"format": MODEL_FORMAT, "model": result.model}, stream)
    with atomic_output(directory / EVAL_FILE, "wb") as stream:
        np.save(stream, np.asarray(eval_codes, np.int8))
    return save_quant(directory / "quant.json", result, model=model)


def load_run(path) -> tuple[dict, object, np.ndarray]:
    """``(quant, integer model, evaluation int8 codes)`` of the run whose ``quant.json`` is
    ``path``: the files :func:`save_run` wrote, or, for a bundled model's ``quant.json`` without
    them, the model rebuilt from it (deterministic) and its test split."""
    path = Path(path)
    quant = load_quant(path)
    stored = path.parent / MODEL_FILE
    if stored.is_file():
        return quant, _load_model(stored, quant), _load_codes(path.parent / EVAL_FILE)
    from .checkpoint import BUNDLED_NAMES, load_bundled

    if quant["model"] not in BUNDLED_NAMES:
        raise IntvitError(f"{path.parent} lacks {MODEL_FILE}, the integer model of "
                          f"{quant['model']}; rerun `intvit quantize` into that directory")
    from .dataset import load_splits
    from .qvit import quantize_images
    from .select import calibrate_mix

    model, _, meta = load_bundled(quant["model"])
    splits = load_splits(meta["split_seed"], quant["model"])
    qmodel = calibrate_mix(model, splits["calibration"].images, quant["assignment"],
                           quant["spec"])
    return quant, qmodel, quantize_images(splits["test"].images.numpy(), quant["spec"].image_scale)


def evaluation_count(path) -> int:
    """How many evaluation images the run of ``quant.json`` at ``path`` has (read without
    building its model)."""
    path = Path(path)
    quant = load_quant(path)
    codes = path.parent / EVAL_FILE
    if (path.parent / MODEL_FILE).is_file():
        return len(_load_codes(codes, mmap=True))
    from .dataset import dataset

    return dataset(quant["model"]).split_sizes["test"]


def _load_model(path: Path, quant: dict):
    hint = "rerun `intvit quantize` into that directory"
    try:
        with path.open("rb") as stream:
            record = pickle.load(stream)
        valid = isinstance(record, dict) and record.get("format") == MODEL_FORMAT
    except Exception:  # a damaged pickle raises many types
        valid = False
    if not valid:
        raise IntvitError(f"{path} is not an integer model written by this intvit; {hint}")
    qmodel = record["model"]
    if qmodel.assignment != quant["assignment"]:
        raise IntvitError(f"{path} does not belong to the quant.json beside it; {hint}")
    return qmodel


def _load_codes(path: Path, mmap: bool = False) -> np.ndarray:
    try:
        codes = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (OSError, ValueError, EOFError):
        raise IntvitError(f"{path} is missing or not a .npy array; rerun `intvit quantize` into "
                          "that directory") from None
    if codes.ndim != 4 or codes.dtype != np.int8:
        raise IntvitError(f"{path} does not hold int8 images (N, C, H, W); rerun `intvit "
                          "quantize` into that directory")
    return codes if mmap else codes.astype(np.int64)
