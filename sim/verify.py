"""Verify one operator's unit against the golden model: make vectors, simulate, compare."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intvit.golden_model import registry
from intvit.golden_model.errors import IntvitError
from intvit.golden_model.vectors import (load_vectors, make_row_vectors, make_vectors,
                                  real_activation_rows, row_sweep, save_vectors)
from intvit.hw.units import build_unit

from .runner import SimResult, run_bench

ELEMENTWISE_BENCH = "intvit.sim.elementwise_bench"
ROW_BENCH = "intvit.sim.row_bench"
ROW_COUNT = 2000
"""Random rows of random length per row-unit sweep (on top of corner and the operator's rows)."""


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
    random lengths up to the unit's ``max_row``, corner rows (:func:`row_sweep`) and rows of
    real activations of the bundled model (:func:`real_activation_rows`)."""
    operator = registry.get(name)
    rng = np.random.default_rng(seed)
    if operator.row_wise:
        rows = row_sweep(operator, config, rng, max_row, row_count)
        rows += [r for r in real_activation_rows(operator.kind, config) if len(r) <= max_row]
        return make_row_vectors(name, config, rows, operator.run)
    x = operator.sweep_inputs(config, rng)
    return make_vectors(name, config, x, operator.run(config, x))


def verify(name: str, config, *, lanes: int = 1, max_row: int | None = None, work_dir: Path,
           seed: int = 0, source_idle: float = 0.0, sink_stall: float = 0.0,
           vectors_path: Path | None = None, row_count: int = ROW_COUNT) -> Verification:
    """Simulate ``name``'s unit on ``vectors_path`` (or a fresh sweep written into ``work_dir``).
    ``max_row`` sizes a row unit's buffer (default: :func:`intvit.hw.units.default_max_row`);
    ``row_count`` random rows join the corner rows of a row unit's sweep."""
    operator = registry.get(name)
    work_dir = Path(work_dir)
    unit = build_unit(name, config, lanes=lanes, max_row=max_row)
    if vectors_path is None:
        vectors_path = save_vectors(work_dir / "vectors.npz",
                                    sweep_vectors(name, config, seed,
                                                  getattr(unit, "max_row", None), row_count))
    else:
        vectors = load_vectors(vectors_path)
        if vectors.op != name:
            raise IntvitError(f"vector file {vectors_path} is for {vectors.op!r}, "
                                       f"not {name!r}")
    result = run_bench(unit, bench_module(operator), vectors_path, work_dir=work_dir / "sim",
                       env={"INTVIT_LANES": str(lanes), "INTVIT_SEED": str(seed),
                            "INTVIT_SOURCE_IDLE": str(source_idle),
                            "INTVIT_SINK_STALL": str(sink_stall)})
    return Verification(op=name, lanes=lanes, vectors=Path(vectors_path), result=result)
