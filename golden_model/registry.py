"""The operator registry: one list that the metric, the vector exporter, the CLI, the testbench
parametrization and the cost flow all iterate.

Each module in ``intvit.golden_model.ops`` exposes ``OPERATORS``, a list of :class:`Operator`; the
registry collects them. Names are ``kind/method`` (``softmax/iptq``) or a bare kind for
operators with a single form (``requant``).

The operator record and the config protocol are in :mod:`intvit.golden_model.operator`.
"""
import importlib
import pkgutil

from .errors import IntvitError
from .operator import SELECTABLE_KINDS, Operator

__all__ = ["REGISTRY", "SELECTABLE_KINDS", "Operator", "by_kind", "get"]


def _collect() -> dict[str, Operator]:
    from . import ops

    found: dict[str, Operator] = {}
    for info in sorted(pkgutil.iter_modules(ops.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{ops.__name__}.{info.name}")
        for operator in getattr(module, "OPERATORS", ()):
            if operator.name in found:
                raise RuntimeError(f"operator {operator.name!r} is registered twice")
            found[operator.name] = operator
    return found


REGISTRY: dict[str, Operator] = _collect()


def get(name: str) -> Operator:
    """The operator called ``name``; an unknown name is a one-line :class:`IntvitError`."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise IntvitError(f"unknown operator {name!r}; known: {', '.join(sorted(REGISTRY))} "
                          "(see `intvit ops`)") from None


def by_kind(kind: str) -> list[Operator]:
    """Operators of one kind, in name order."""
    return [op for name, op in sorted(REGISTRY.items()) if op.kind == kind]
