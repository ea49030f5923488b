"""``quant.json``: the per-layer assignment and quantization settings that ``intvit quantize``
chose, read back by the later stages (vectors, verilog, sim, report). The integer model itself
is rebuilt from it deterministically (under a second on the bundled model)."""
import json
from pathlib import Path

from .errors import IntvitError
from .files import write_text_atomic
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
