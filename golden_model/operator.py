"""What an integer operator is: the :class:`Operator` record every op module registers.

A config type follows one protocol: a frozen dataclass that validates itself, with properties
``in_bits``, ``in_signed``, ``out_bits``, ``out_signed``, ``in_scale`` (real value of one input
step) and a method ``dequantize_output(y)`` (real value of output codes).
"""
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

SELECTABLE_KINDS = ("softmax", "gelu", "layernorm")
"""Non-linear kinds among whose candidates IPTQ-ViT chooses per layer."""


@dataclass(frozen=True)
class Operator:
    """One integer operator and everything the rest of the toolkit needs to know about it.

    Attributes
    ----------
    name : str
        ``kind/method`` or a bare kind.
    description : str
        One line for ``intvit ops``.
    source : str
        Paper and equation the operator follows.
    config_type : type
        The frozen config dataclass.
    run : callable
        ``run(config, q: int array) -> int array``, integer arithmetic only. Softmax
        candidates also take ``keep=`` (booleans broadcastable to ``q``): elements where it is
        false are excluded from their row and get probability 0 (Swin's shifted windows).
    reference : callable
        ``reference(config, x: float array) -> float array``, the real function approximated.
    example_config : callable
        ``example_config(**options) -> config``: a representative 8-bit config for the CLI, the
        cost flow and the testbenches; options override its defaults.
    sweep_inputs : callable
        ``sweep_inputs(config, rng) -> int array``: the input sweep for test vectors (exhaustive
        where the input space is small, else random plus corner cases).
    row_wise : bool
        True for operators that reduce over the last axis (softmax, LayerNorm).
    calibrate : callable or None
        For the selectable kinds: ``calibrate(in_scale, samples, *, in_bits=8, out_bits=8,
        **layer_params) -> config``, the config for one model layer from its input scale and a
        sample of its real (float) inputs; LayerNorm also takes ``gamma``, ``beta`` and the
        model's ``eps``.
    fast_run : callable or None
        The integer ViT's internal entry point (issue 15): ``fast_run(config, codes) -> codes or
        None``, ``run``'s function on *float codes* (``exact.float_codes``: a float32 or float64
        ndarray of integer codes) that the **caller guarantees** lie in the config's input range
        (the integer ViT feeds it a saturating requantizer's output, which is in that range by
        construction), so it skips ``run``'s input checks. It computes in float arithmetic that
        the config's bounds prove exact and returns float32 codes equal to ``run``'s output bit
        for bit, or ``None`` where a bound fails (the caller then runs ``run``). ``None``: no
        such path. ``run`` itself always validates its input.
    """

    name: str
    description: str
    source: str
    config_type: type
    run: Callable[[Any, np.ndarray], np.ndarray]
    reference: Callable[[Any, np.ndarray], np.ndarray]
    example_config: Callable[..., Any]
    sweep_inputs: Callable[[Any, np.random.Generator], np.ndarray]
    row_wise: bool = False
    calibrate: Callable[..., Any] | None = None
    fast_run: Callable[[Any, np.ndarray], np.ndarray | None] | None = None

    @property
    def kind(self) -> str:
        return self.name.split("/")[0]

    @property
    def masked_rows(self) -> bool:
        """Whether ``run`` takes a ``keep`` mask (the softmax candidates)."""
        return self.kind == "softmax"

    @property
    def method(self) -> str | None:
        return self.name.split("/")[1] if "/" in self.name else None
