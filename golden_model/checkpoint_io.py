"""Reading a checkpoint file into a state dict, shared by the ViT and Swin loaders.

``torch.load`` with ``weights_only=True`` (tensors and plain containers only, no code), a
``.safetensors`` file, or a Hugging Face ``save_pretrained`` directory's weight file; state
dicts nested under the wrappers training scripts use are unwrapped.
"""
import pickle
from pathlib import Path

import torch

from . import checkpoint_hf
from .errors import IntvitError
from .safetensors_file import read_safetensors

WRAPPERS = ("model", "state_dict")
"""Keys under which DeiT and other training scripts nest the state dict."""
SHOWN_KEYS = 3
"""How many missing or unexpected keys an error message names."""


def read_state(path: Path) -> object:
    """A ``save_pretrained`` directory's weight file, a ``.safetensors`` file, or ``torch.load``
    with ``weights_only=True``: tensors and plain containers only, no code."""
    if path.is_dir():
        path = checkpoint_hf.weights_in(path)
    if not path.is_file():
        raise IntvitError(f"checkpoint {path} does not exist; give the path of a torch.save file")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        reason = "it is damaged, or holds Python objects besides tensors"
    except Exception as error:  # torch raises many types for a damaged or foreign file
        reason = (str(error).strip().split(". ")[0].splitlines() or [type(error).__name__])[0]
    raise IntvitError(f"cannot read checkpoint {path}: {reason}; give a file written by "
                      "torch.save(model.state_dict(), path)")


def read_checkpoint(checkpoint, hint: str) -> tuple[dict[str, torch.Tensor], str, Path | None]:
    """``(state, source, path)``: the named tensors of ``checkpoint``, a path (:func:`read_state`)
    or an in-memory, possibly wrapped, state dict (``path`` None); ``source`` names it in
    messages and ``hint`` ends them."""
    path = Path(checkpoint) if isinstance(checkpoint, (str, Path)) else None
    source = "(in memory)" if path is None else str(path)
    state = unwrap_state(checkpoint if path is None else read_state(path), source, hint)
    return state, source, path


def unwrap_state(checkpoint: object, source: str, hint: str) -> dict[str, torch.Tensor]:
    """The named tensors of ``checkpoint`` (unwrapped from :data:`WRAPPERS`); ``hint`` ends
    a one-line error."""
    if not isinstance(checkpoint, dict):
        raise IntvitError(f"checkpoint {source} holds a {type(checkpoint).__name__}, not a "
                          f"state dict; {hint}")
    for wrapper in WRAPPERS:
        if isinstance(checkpoint.get(wrapper), dict):
            checkpoint = checkpoint[wrapper]
            break
    not_tensors = [key for key, value in checkpoint.items()
                   if not (isinstance(key, str) and torch.is_tensor(value))]
    if not_tensors:
        raise IntvitError(f"checkpoint {source}: entries {first_keys(not_tensors)} are not named "
                          f"tensors; {hint}")
    return checkpoint


def first_keys(keys) -> str:
    keys = sorted(map(str, keys))
    more = f" (+{len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else ""
    return ", ".join(keys[:SHOWN_KEYS]) + more


def key_mismatch(source: str, missing, unexpected, hint: str, family: str) -> IntvitError:
    """``checkpoint SOURCE is not a supported FAMILY: missing ...; unexpected ...; HINT``."""
    parts = [f"{what} {first_keys(keys)}" for what, keys in
             (("missing", missing), ("unexpected", unexpected)) if keys]
    return IntvitError(f"checkpoint {source} is not a supported {family}: {'; '.join(parts)}; "
                       f"{hint}")


def load_weights(model, state: dict, source: str, hint: str, family: str, shape_error=None):
    """``model`` in eval mode with ``state``'s weights (as float32): the key sets must match
    (:func:`key_mismatch`), and every shape (``shape_error(key)`` may first raise a more telling
    error for a key of another shape)."""
    expected = model.state_dict()
    missing, unexpected = expected.keys() - state.keys(), state.keys() - expected.keys()
    if missing or unexpected:
        raise key_mismatch(source, missing, unexpected, hint, family)
    for key, tensor in expected.items():
        if state[key].shape == tensor.shape:
            continue
        if shape_error is not None:
            shape_error(key)
        raise IntvitError(f"checkpoint {source}: {key} has shape {tuple(state[key].shape)} but "
                          f"the config needs {tuple(tensor.shape)}; pass the config the "
                          "checkpoint was trained with (or none, to infer it)")
    model.load_state_dict({key: value.float() for key, value in state.items()})
    return model.eval()

