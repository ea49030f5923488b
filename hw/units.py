"""Which hardware unit implements which registered operator.

Units are looked up lazily (``"module:Class"``) so that one family's generator being absent or
broken does not stop the others from building.
"""
import importlib

from intvit.golden_model.errors import IntvitError

UNITS = {
    "requant": "intvit.hw.requant:Requantizer",
    "gelu/iptq": "intvit.hw.gelu:PolyGeluUnit",
    "gelu/ivit": "intvit.hw.gelu:ShiftGeluUnit",
    "gelu/ibert": "intvit.hw.gelu:IBertGeluUnit",
    "softmax/iptq": "intvit.hw.softmax_shift:BitExpSoftmaxUnit",
    "softmax/ivit": "intvit.hw.softmax_shift:ShiftmaxUnit",
    "softmax/ibert": "intvit.hw.softmax_poly:IExpSoftmaxUnit",
    "softmax/fqvit": "intvit.hw.softmax_poly:LogIntSoftmaxUnit",
    "layernorm/ibert": "intvit.hw.layernorm:IBertLayerNormUnit",
    "layernorm/ivit": "intvit.hw.layernorm:ShiftLayerNormUnit",
    "layernorm/fqvit": "intvit.hw.layernorm:PTFLayerNormUnit",
    "log2quant": "hw.log2quant:Log2QuantUnit",
}
"""Operator name -> unit class. Element-wise units are built as ``Unit(config, lanes=...)``,
row units as ``Unit(config, lanes=..., max_row=...)``."""

DEFAULT_MAX_ROW = 256
"""Row capacity of a row unit when neither the caller nor the config fixes it (ViT-B/16 rows
have 197 tokens)."""


def unit_class(name: str):
    """The unit class for operator ``name``; a one-line error when there is none."""
    if name not in UNITS:
        raise IntvitError(f"operator {name!r} has no hardware unit; units exist for "
                          f"{', '.join(sorted(available_units()))}")
    module_name, class_name = UNITS[name].split(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise IntvitError(f"operator {name!r} has no hardware unit yet ({UNITS[name]} is "
                          "missing)") from None


def available_units() -> list[str]:
    """Names whose unit class can be imported."""
    found = []
    for name in UNITS:
        try:
            unit_class(name)
        except IntvitError:
            continue
        found.append(name)
    return found


def default_max_row(config) -> int:
    """A LayerNorm row is its channels; other rows default to :data:`DEFAULT_MAX_ROW`."""
    return getattr(config, "channels", None) or DEFAULT_MAX_ROW


def build_unit(name: str, config, *, lanes: int = 1, max_row: int | None = None):
    """The hardware unit for operator ``name`` built from ``config``."""
    from .rowpipe import RowUnit

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
    from intvit.golden_model.gemm import example_config, example_requant

    from .gemm import Gemm

    config = example_config(rows, cols, weight_bits, k_max, per_channel=per_channel)
    return Gemm(config) if per_channel else Gemm(config, requant or example_requant())
