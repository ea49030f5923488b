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
DEFAULT_MHZ = 100.0
"""The clock ``intvit perf`` and the benches assume unless told."""
DEFAULT_BANDWIDTH_GBS = 4.0
"""Off-chip bandwidth (GB/s) for streamed weights, unless told."""
TRANSPOSE_TAIL = 1
"""``T`` output: after the last row the buffer's columns are emitted (``L`` cycles), through
the read-ahead stage, before the write tail."""


def gemm_step_cycles(program: Program, step, gemm_config) -> int:
    """A GEMM step: the array's cycles for ``M x K x N`` plus the stages around it."""
    cycles = FETCH + SOURCE_LATENCY + predicted_cycles(step.m, step.k, step.n, gemm_config)
    if step.o_layout == "T" and step.post != "logits":
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
    from .accelerator import Accelerator, model_only

    accelerator = accelerator or model_only(Accelerator(program))
    units = [model_only(unit) for unit in accelerator.units()]
    requant = accelerator.requant_latency
    result, rows = [], {}  # rows: a row step's cycles by all they depend on (a Swin repeats them)
    for step in program.steps:
        if step.kind == "input":
            cycles = FETCH + step.channels * (step.grid * step.patch) ** 2 + WRITE_TAIL
        elif step.kind == "gemm":
            cycles = gemm_step_cycles(program, step, accelerator.gemm_config)
        else:
            key = (step.unit, step.m, step.n, step.chan_base >= 0)
            if key not in rows:
                rows[key] = row_step_cycles(program, step, units[step.unit], requant)
            cycles = rows[key]
        result.append((step.name, cycles))
    return result


def logits_tail(program: Program) -> int:
    """Cycles from an image's last logits beat to the end of its last step: the array's other
    ``L - 1`` rows of that tile drain (``L / requant_lanes`` cycles each), then the write
    tail; the beat itself is seen a cycle after its row leaves the array."""
    lanes = program.lanes
    return (lanes - 1) * (lanes // program.requant_lanes) - 1 + WRITE_TAIL


def image_cycles(program: Program, accelerator=None) -> int:
    """Cycles per image by the model, as the testbenches count them: from the first pixel
    accepted to the last logits beat, both counted (the steps' sum less the first step's fetch
    and :func:`logits_tail`)."""
    return _image_total(program, step_cycles(program, accelerator))


def cycle_shares(report: dict) -> str:
    """``kind share, ...``: each step kind's part of :func:`perf_report`'s cycles per image."""
    return ", ".join(f"{kind} {cycles / report['cycles']:.1%}"
                     for kind, cycles in report["by_kind"].items())


def _image_total(program: Program, steps: list) -> int:
    """:func:`image_cycles` from the steps' ``(name, cycles)``."""
    return sum(cycles for _, cycles in steps) - FETCH - logits_tail(program)


ECP5_85F_BRAM_BITS = 208 * 18 * 1024
"""LFE5U-85F block RAM: 208 EBR of 18 Kbit."""


def memory_bits(program: Program) -> dict:
    """On-chip bits of each memory: activations (``L`` lanes of ``lane_bits``), weights (int8
    lanes), biases (``bias, m, e`` per lane), LayerNorm-input requantizers, class token +
    position embedding (a Swin: its relative position bias codes, ``program.position``)."""
    from intvit.golden_model.ops.requant import MULTIPLIER_BITS, SHIFT_BITS

    lanes = program.lanes
    return {"activations": program.act_words * lanes * program.lane_bits,
            "weights": len(program.weights) * lanes * 8,
            "biases": len(program.biases) * lanes * (31 + MULTIPLIER_BITS + SHIFT_BITS),
            "requantizers": len(program.channels) * (MULTIPLIER_BITS + SHIFT_BITS),
            program.position: len(program.clspos) * lanes * program.lane_bits}


def check_fits(program: Program, target: str) -> None:
    """A one-line error when the accelerator's memories (all on chip: the streamed-weight port
    is not generated) exceed ``target``'s block RAM (ECP5: the LFE5U-85F)."""
    from intvit.golden_model.errors import IntvitError

    if target != "ecp5":
        return
    bits = memory_bits(program)
    total = sum(bits.values())
    if total > ECP5_85F_BRAM_BITS:
        raise IntvitError(f"the accelerator of this model needs {total / 2**20:.1f} Mbit of "
                          f"on-chip memory (activations {bits['activations'] / 2**20:.1f}, "
                          f"weights {bits['weights'] / 2**20:.1f}); an LFE5U-85F has "
                          f"{ECP5_85F_BRAM_BITS / 2**20:.1f} Mbit and streamed weights are not "
                          "generated yet: see `intvit perf` for its figures")


def weight_traffic_bytes(program: Program) -> int:
    """Bytes of weights read per image: each GEMM step reads its weight words once per row
    tile (the array is output-stationary)."""
    lanes = program.lanes
    total = 0
    for step in program.steps:
        if step.kind == "gemm" and step.w_src == "rom":
            m_tiles = -(-step.m // lanes)
            total += m_tiles * (-(-step.n // lanes)) * step.k * lanes
    return total


def perf_report(program: Program, mhz: float = DEFAULT_MHZ,
                bandwidth_gbs: float = DEFAULT_BANDWIDTH_GBS, accelerator=None) -> dict:
    """Cycles per image, images per second at ``mhz``, on-chip memory, and the weights' home:
    on chip when everything fits the LFE5U-85F's block RAM, else streamed (the weight traffic
    per image at ``bandwidth_gbs`` then bounds the rate from below)."""
    from .accelerator import Accelerator, model_only

    accelerator = accelerator or model_only(Accelerator(program))
    steps = step_cycles(program, accelerator)
    cycles = _image_total(program, steps)
    by_kind: dict = {}
    for step, (_, c) in zip(program.steps, steps):
        kind = {"gemm": "GEMM", "input": "data movement"}.get(step.kind) or \
            program.units[step.unit][0].split("/")[0]
        by_kind[kind] = by_kind.get(kind, 0) + c
    bits = memory_bits(program)
    on_chip = sum(bits.values()) <= ECP5_85F_BRAM_BITS
    traffic = 0 if on_chip else weight_traffic_bytes(program)
    seconds = cycles / (mhz * 1e6)
    if traffic:
        seconds = max(seconds, traffic / (bandwidth_gbs * 1e9))
    gemm_busy = sum(predicted_cycles(s.m, s.k, s.n, accelerator.gemm_config)
                    for s in program.steps if s.kind == "gemm")
    macs = sum(s.m * s.k * s.n for s in program.steps if s.kind == "gemm")
    return {"cycles": cycles, "gemm_cycles": gemm_busy, "by_kind": by_kind,
            "utilization": macs / (program.lanes ** 2 * cycles),
            "images_per_s": 1 / seconds, "ms_per_image": seconds * 1e3,
            "memory_bits": bits, "weights": "on chip" if on_chip else "streamed",
            "weight_traffic_bytes": traffic}


def shape_program(arch: str, lanes: int = 8, requant_lanes: int = 4, method: str = "ivit"):
    """The program of timm ViT/DeiT or Swin ``arch`` (a :data:`~intvit.golden_model.vit.PRESETS`
    or :data:`~intvit.golden_model.swin.PRESETS` name) with every non-linear layer on
    ``method``, from its shape alone."""
    from intvit.golden_model import swin, vit
    from intvit.golden_model.errors import IntvitError
    from intvit.golden_model.program import AcceleratorConfig
    from intvit.golden_model.program_swin import cycle_program, model_shape

    presets = {**vit.PRESETS, **swin.PRESETS}
    if arch not in presets:
        raise IntvitError(f"unknown architecture {arch!r}; known: {', '.join(sorted(presets))}")
    return cycle_program(model_shape(presets[arch], method),
                         AcceleratorConfig(lanes=lanes, requant_lanes=requant_lanes))
