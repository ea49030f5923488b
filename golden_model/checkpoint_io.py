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
