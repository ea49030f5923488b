"""The accelerator's cycle model: each step's cycles from its engine's stages and the cycle
models of the parts it drives (``intvit.golden_model.gemm.predicted_cycles``,
``RowUnit.row_interval/row_latency``, ``ElementwisePipeline.latency``), summed over the program.

A step runs from the sequencer's fetch of its descriptor to its engine's last write being in
the activation memory; steps do not overlap.
"""
from intvit.golden_model.gemm import predicted_cycles
from intvit.golden_model.program import Program

FETCH = 3
"""Sequencer cycles per step: fetch (the program memory's read), load, start."""
SOURCE_LATENCY = 2
"""From the start to the first beat at a part's input: the address is issued, the memory's
read data enters the source buffer."""
WRITE_TAIL = 2
"""From a part's last output to the step's end: the write request is registered into the
memory, then the engine's done."""
TRANSPOSE_TAIL = 1 + 1
"""``T`` output: after the last row the buffer's columns are emitted (``L`` cycles), through
the read-ahead stage, before the write tail."""


def gemm_step_cycles(program: Program, step, gemm_config) -> int:
    """A GEMM step: the array's cycles for ``M x K x N`` plus the stages around it."""
    cycles = FETCH + SOURCE_LATENCY + predicted_cycles(step.m, step.k, step.n, gemm_config)
    if step.post == "logits":
        return cycles + 1
    if step.o_layout == "T":
        return cycles + program.lanes + TRANSPOSE_TAIL + WRITE_TAIL
    return cycles + WRITE_TAIL


def row_step_cycles(program: Program, step, unit, requant_latency: int) -> int:
    """A row step: ``rows`` rows of ``length`` through the unit at one element per cycle."""
    from .rowpipe import RowUnit

    through = requant_latency if step.chan_base >= 0 else 0
    if isinstance(unit, RowUnit):
        body = (step.m - 1) * unit.row_interval(step.n) + unit.row_latency(step.n)
    else:
        body = step.m * step.n + unit.latency
    return FETCH + SOURCE_LATENCY + through + body + WRITE_TAIL


def step_cycles(program: Program, accelerator=None) -> list:
    """``(name, cycles)`` of every step of one image."""
    from .accelerator import Accelerator

    accelerator = accelerator or Accelerator(program)
    units = accelerator.units()
    requant = accelerator.requant_latency
    result = []
    for step in program.steps:
        if step.kind == "input":
            cycles = FETCH + step.channels * (step.grid * step.patch) ** 2 + WRITE_TAIL
        elif step.kind == "gemm":
            cycles = gemm_step_cycles(program, step, accelerator.gemm_config)
        else:
            cycles = row_step_cycles(program, step, units[step.unit], requant)
        result.append((step.name, cycles))
    return result


def image_cycles(program: Program, accelerator=None) -> int:
    """Cycles per image by the model."""
    return sum(cycles for _, cycles in step_cycles(program, accelerator))
