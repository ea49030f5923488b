"""Which hardware unit implements which registered operator."""
from golden_model.errors import IntvitError

from .requant import Requantizer

UNITS = {
    "requant": Requantizer,
}
"""Operator name -> unit class, constructed as ``Unit(config, lanes=...)``."""


def build_unit(name: str, config, *, lanes: int = 1):
    """The hardware unit for operator ``name`` built from ``config``."""
    if name not in UNITS:
        raise IntvitError(f"operator {name!r} has no hardware unit yet; units exist for "
                          f"{', '.join(sorted(UNITS))}")
    if isinstance(lanes, bool) or not isinstance(lanes, int) or not 1 <= lanes <= 64:
        raise IntvitError(f"lanes must be an integer in 1..64 (got {lanes!r})")
    return UNITS[name](config, lanes=lanes)
