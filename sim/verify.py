"""Verify one operator's unit against the golden model: make vectors, simulate, compare."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden_model import registry
from golden_model.errors import IntvitError
from golden_model.vectors import load_vectors, make_vectors, save_vectors
from hw.units import build_unit

from .runner import SimResult, run_bench

ELEMENTWISE_BENCH = "sim.elementwise_bench"


def bench_module(operator) -> str:
    """The cocotb bench that drives this kind of unit."""
    if operator.row_wise:
        raise NotImplementedError(f"no row-unit bench yet for {operator.name}")
    return ELEMENTWISE_BENCH


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
        text = (f"{self.op}: {verdict}, {r.checked:,} vectors checked, {r.mismatches} mismatches, "
                f"{r.cycles:,} cycles ({per_element:.3f} cycles/element at {self.lanes} lanes)")
        if r.first_mismatch:
            text += f"\n  first mismatch: {r.first_mismatch}\n  waveform: {r.waveform}"
        return text


def sweep_vectors(name: str, config, seed: int = 0):
    """The operator's sweep inputs and the golden outputs for them."""
    operator = registry.get(name)
    x = operator.sweep_inputs(config, np.random.default_rng(seed))
    return make_vectors(name, config, x, operator.run(config, x))


def verify(name: str, config, *, lanes: int = 1, work_dir: Path, seed: int = 0,
           source_idle: float = 0.0, sink_stall: float = 0.0,
           vectors_path: Path | None = None) -> Verification:
    """Simulate ``name``'s unit on ``vectors_path`` (or a fresh sweep written into ``work_dir``)."""
    operator = registry.get(name)
    work_dir = Path(work_dir)
    if vectors_path is None:
        vectors_path = save_vectors(work_dir / "vectors.npz", sweep_vectors(name, config, seed))
    else:
        vectors = load_vectors(vectors_path)
        if vectors.op != name:
            raise IntvitError(f"vector file {vectors_path} is for {vectors.op!r}, "
                                       f"not {name!r}")
    unit = build_unit(name, config, lanes=lanes)
    result = run_bench(unit, bench_module(operator), vectors_path, work_dir=work_dir / "sim",
                       env={"INTVIT_LANES": str(lanes), "INTVIT_SEED": str(seed),
                            "INTVIT_SOURCE_IDLE": str(source_idle),
                            "INTVIT_SINK_STALL": str(sink_stall)})
    return Verification(op=name, lanes=lanes, vectors=Path(vectors_path), result=result)
