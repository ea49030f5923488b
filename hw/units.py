"""The hardware unit of each registered operator, found by the operator's name.

There is one registry, :data:`intvit.golden_model.registry.REGISTRY`; the unit of operator
``kind/method`` is the attribute ``UNIT`` of module ``intvit.hw.<kind>.<method>`` (a bare kind
``requant``: ``intvit.hw.requant``), beside the golden candidate
``intvit.golden_model.ops.<kind>.<method>``. A missing module or ``UNIT`` is a one-line error;
an error inside a unit's module is raised as it is, never skipped.
"""
import importlib

from intvit.golden_model import registry
from intvit.golden_model.errors import IntvitError
from intvit.golden_model.gemm import example_config, example_requant

from .gemm import Gemm
from .rowpipe import RowUnit

DEFAULT_MAX_ROW = 256
"""Row capacity of a row unit when neither the caller nor the config fixes it (ViT-B/16 rows
have 197 tokens)."""


def unit_module(name: str) -> str:
    """``softmax/iptq`` -> ``intvit.hw.softmax.iptq``; ``requant`` -> ``intvit.hw.requant``."""
    return "intvit.hw." + registry.get(name).name.replace("/", ".")


def unit_class(name: str):
    """The unit class of registered operator ``name``."""
    module_name = unit_module(name)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is None or not module_name.startswith(error.name):
            raise
        raise IntvitError(f"operator {name!r} has no hardware unit: module {module_name} "
                          "is missing") from None
    if not hasattr(module, "UNIT"):
        raise IntvitError(f"operator {name!r} has no hardware unit: {module_name} defines "
                          "no UNIT")
    return module.UNIT


def unit_names() -> list[str]:
    """Every registered operator, in name order: each has a unit (``tests/test_layout.py``)."""
    return sorted(registry.REGISTRY)


def default_max_row(config) -> int:
    """A LayerNorm row is its channels; other rows default to :data:`DEFAULT_MAX_ROW`."""
    return getattr(config, "channels", None) or DEFAULT_MAX_ROW


def build_unit(name: str, config, *, lanes: int = 1, max_row: int | None = None):
    """The hardware unit for operator ``name`` built from ``config``."""
    cls = unit_class(name)
    if isinstance(lanes, bool) or not isinstance(lanes, int) or not 1 <= lanes <= 64:
        raise IntvitError(f"lanes must be an integer in 1..64 (got {lanes!r})")
    if not issubclass(cls, RowUnit):
        return cls(config, lanes=lanes)
    max_row = default_max_row(config) if max_row is None else max_row
    if isinstance(max_row, bool) or not isinstance(max_row, int) or not 1 <= max_row <= 65536:
        raise IntvitError(f"max_row must be an integer in 1..65536 (got {max_row!r})")
    return cls(config, lanes=lanes, max_row=max_row)


def build_gemm(*, rows: int = 8, cols: int = 8, weight_bits: int = 8, k_max: int = 4096,
               requant=None, per_channel: bool = False):
    """The GEMM array (not a registered operator: it has operand streams of its own); with
    ``per_channel`` its requantizer constants arrive per output channel on ``b``."""
    config = example_config(rows, cols, weight_bits, k_max, per_channel=per_channel)
    return Gemm(config) if per_channel else Gemm(config, requant or example_requant())
