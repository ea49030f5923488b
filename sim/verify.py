"""Verify one operator's unit against the golden model: make vectors, simulate, compare."""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from intvit.golden_model import registry
from intvit.golden_model.errors import IntvitError
from intvit.golden_model.vectors import (check_row_capacity, load_checked_vectors,
                                         make_row_vectors, make_vectors, masked_row_sweep,
                                         real_activation_rows, row_sweep, save_vectors)
from intvit.hw.units import build_unit

from .runner import SimResult, run_bench

ELEMENTWISE_BENCH = "intvit.sim.elementwise_bench"
ROW_BENCH = "intvit.sim.row_bench"
ROW_COUNT = 2000
"""Random rows of random length per row-unit sweep (on top of corner and the operator's rows)."""
MASKED_ROW_COUNT = 200
"""Random masked rows per softmax sweep (on top of the corner masks)."""


def bench_module(operator) -> str:
    """The cocotb bench that drives this kind of unit."""
    return ROW_BENCH if operator.row_wise else ELEMENTWISE_BENCH


@dataclass(frozen=True)
class Verification:
    op: str
    lanes: int
    vectors: Path
    result: SimResult

    def summary(self) -> str:
        r = self.result
        per_element = r.cycles / max(r.checked, 1)
        verdict = "PASS" if r.passed else "FAIL"
        return (f"{self.op}: {verdict}, {r.checked:,} vectors checked, {r.mismatches} mismatches, "
                f"{r.cycles:,} cycles ({per_element:.3f} cycles/element at {self.lanes} lanes)"
                + r.failure_detail())


def sweep_vectors(name: str, config, seed: int = 0, max_row: int | None = None,
                  row_count: int = ROW_COUNT):
    """The operator's sweep inputs and the golden outputs for them; for row operators, rows of
    random lengths up to the unit's ``max_row``, corner rows (:func:`row_sweep`), rows of real
    activations of the bundled model (:func:`real_activation_rows`) and, for softmax units,
    masked rows (:func:`masked_row_sweep`)."""
    operator = registry.get(name)
    rng = np.random.default_rng(seed)
    if operator.row_wise:
        rows = row_sweep(operator, config, rng, max_row, row_count)
        rows += [r for r in real_activation_rows(operator.kind, config) if len(r) <= max_row]
        if not operator.masked_rows:
            return make_row_vectors(name, config, rows, operator.run)
        masked, masks = masked_row_sweep(config, rng, max_row, MASKED_ROW_COUNT)
        keeps = [np.ones(len(r), bool) for r in rows] + masks
        return make_row_vectors(name, config, rows + masked, operator.run, keeps)
    x = operator.sweep_inputs(config, rng)
    return make_vectors(name, config, x, operator.run(config, x))


def verify(name: str, config=None, *, lanes: int = 1, max_row: int | None = None,
           work_dir: Path, seed: int = 0, source_idle: float = 0.0, sink_stall: float = 0.0,
           vectors_path: Path | None = None, row_count: int = ROW_COUNT,
           progress: Callable[[str], None] | None = None) -> Verification:
    """Simulate ``name``'s unit on ``vectors_path`` (or a fresh sweep of ``config`` written into
    ``work_dir``).

    A vector file is checked before any RTL runs (:func:`load_checked_vectors`) and the unit is
    built from the config stored in it; ``config``, when given too, must equal that config. A bad
    file is an :class:`IntvitError`, not a failed simulation. ``max_row`` sizes a row unit's
    buffer (default: :func:`intvit.hw.units.default_max_row`); ``row_count`` random rows join the
    corner rows of a row unit's sweep; ``progress`` receives one line per step."""
    say = progress or (lambda line: None)
    for option, value in (("source_idle", source_idle), ("sink_stall", sink_stall)):
        if not 0 <= value < 1:
            raise IntvitError(f"{option} must be a probability with 0 <= p < 1 (got {value!r}); "
                              "at 1 no beat would ever move")
    operator = registry.get(name)
    work_dir = Path(work_dir)
    if vectors_path is not None:
        vectors, stored = load_checked_vectors(vectors_path)
        if vectors.op != name:
            raise IntvitError(f"vector file {vectors_path} is for {vectors.op!r}, not {name!r}; "
                              f"run `intvit sim {vectors.op} --vectors {vectors_path}`")
        if config is not None and config != stored:
            raise IntvitError(f"vector file {vectors_path} was made for another {name} config "
                              "than the one given; regenerate it")
        config = stored
    elif config is None:
        raise IntvitError(f"{name}: give a config or a vector file to simulate")
    unit = build_unit(name, config, lanes=lanes, max_row=max_row)
    if vectors_path is None:
        vectors = sweep_vectors(name, config, seed, getattr(unit, "max_row", None), row_count)
        vectors_path = save_vectors(work_dir / "vectors.npz", vectors)
        say(f"wrote {vectors_path}: a sweep of {element_count(vectors):,} inputs")
    else:
        check_row_capacity(vectors, getattr(unit, "max_row", None), vectors_path)
        say(f"read {vectors_path}: {element_count(vectors):,} inputs, checked against the "
            "golden model")
    result = run_bench(unit, bench_module(operator), vectors_path, work_dir=work_dir / "sim",
                       env={"INTVIT_LANES": str(lanes), "INTVIT_SEED": str(seed),
                            "INTVIT_SOURCE_IDLE": str(source_idle),
                            "INTVIT_SINK_STALL": str(sink_stall)}, progress=progress)
    return Verification(op=name, lanes=lanes, vectors=Path(vectors_path), result=result)


def element_count(vectors) -> int:
    """Real inputs in ``vectors`` (row padding not counted)."""
    return int(vectors.lengths.sum()) if vectors.lengths is not None else int(vectors.x.size)
