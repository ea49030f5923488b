"""cocotb bench for the GEMM array (``intvit.hw.gemm.Gemm``), and the host side that runs it.

The host side (:func:`simulate_gemm`, :func:`verify_gemm`) turns operands into the exact beat
streams of ``intvit.golden_model.gemm.gemm_beats``, writes them to an ``.npz`` and runs this module's
cocotb test through ``intvit.sim.runner.run_bench``. The test drives ``a``, ``w`` and ``b`` and drains
``o`` in one cycle loop: drives are set after a rising edge, handshakes are sampled at the
falling edge (everything combinational has settled), and a beat transfers at the next rising
edge when valid and ready were both high there. Every output lane of every beat (padding
included) and every ``last`` flag is compared with the golden model's.

Environment: ``INTVIT_VECTORS`` (npz), ``INTVIT_VERDICT`` (JSON written here),
``INTVIT_SOURCE_IDLE``, ``INTVIT_SINK_STALL`` (probabilities of an idle source / stalled sink
cycle), ``INTVIT_WAIT_READY`` (1: every source waits for ``ready`` before raising ``valid``),
``INTVIT_SEED``.
"""
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

from intvit.golden_model.files import atomic_output
from intvit.golden_model.gemm import (BUNDLED_SHAPES, GemmBeats, GemmConfig,
                               example_channel_requant, gemm_beats, predicted_cycles,
                               reassemble, tile_origins)
from intvit.golden_model.integer import signed_range
from intvit.golden_model.ops.requant import MULTIPLIER_BITS, SHIFT_BITS
from intvit.sim.tb import BeatFormat

BENCH = "intvit.sim.gemm_bench"
RECEIVED = "received.npy"
"""The RTL's output lanes, saved beside the verdict."""
TIMEOUT_CYCLES = 2000
"""Cycles without any transfer after which the bench gives up."""


class Source:
    """Drives one input stream with optional idle cycles; ``valid`` stays up until the beat is
    taken (AXI4-Stream rule). With ``wait_ready`` the source raises ``valid`` only in the cycle
    after it saw ``ready`` high with ``valid`` low (AXI4-Stream allows a source to wait for
    ``tready``): a unit whose ``ready`` waited for this ``valid``, or for another input's,
    would never receive the beat."""

    def __init__(self, dut, name: str, words: list[int], idle: float, rng: random.Random,
                 wait_ready: bool = False):
        self.valid, self.ready = getattr(dut, f"{name}_valid"), getattr(dut, f"{name}_ready")
        self.payload = getattr(dut, f"{name}_payload")
        self.words, self.idle, self.rng = words, idle, rng
        self.wait_ready = wait_ready
        self.sent = 0
        self.showing = False
        self.saw_ready = False

    def drive(self) -> None:
        if not self.showing and self.sent < len(self.words):
            self.showing = not (self.idle and self.rng.random() < self.idle)
            self.showing &= self.saw_ready or not self.wait_ready
            if self.showing:
                self.payload.value = self.words[self.sent]
        self.valid.value = int(self.showing)

    def fires(self) -> bool:
        """Sampled at the falling edge: does the beat transfer at the next rising edge?"""
        ready = bool(self.ready.value)
        fire, self.saw_ready = self.showing and ready, ready and not self.showing
        return fire

    def transferred(self) -> None:
        self.sent += 1
        self.showing = False


CONFIG_FIELDS = ("rows", "cols", "k_max", "weight_bits", "act_bits", "bias_bits", "out_bits",
                 "requant_lanes")


def config_from(data) -> GemmConfig:
    """The array's config as saved in the vector file."""
    return GemmConfig(**{field: int(data[field]) for field in CONFIG_FIELDS},
                      per_channel=bool(data["per_channel"]))


def bias_words(config: GemmConfig, data) -> list[int]:
    """``b`` beats: the bias lanes, or per channel ``{bias, multiplier, shift}`` lanes
    (``intvit.hw.requant.channel_operand``: bias in the low bits, then m, then e)."""
    if not config.per_channel:
        bias = BeatFormat(config.bias_bits, True, config.cols)
        return [bias.pack(beat, False) for beat in data["bias"]]
    lane_bits = config.bias_bits + MULTIPLIER_BITS + SHIFT_BITS
    lanes = BeatFormat(lane_bits, False, config.cols)
    mask = (1 << config.bias_bits) - 1
    return [lanes.pack([(int(b) & mask) | (int(m) << config.bias_bits)
                        | (int(e) << (config.bias_bits + MULTIPLIER_BITS))
                        for b, m, e in zip(*beat)], False)
            for beat in zip(data["bias"], data["multiplier"], data["shift"])]


def stream_words(data) -> dict:
    """Payload words of the ``a``, ``w``, ``b`` streams from the vector file."""
    config = config_from(data)
    act = BeatFormat(config.act_bits, True, config.rows)
    return {"a": [act.pack(beat, last) for beat, last in zip(data["act"], data["act_last"])],
            "w": [int.from_bytes(bytes(beat.tolist()), "little") for beat in data["weight"]],
            "b": bias_words(config, data)}


async def reset(dut) -> None:
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for name in ("a", "w", "b"):
        getattr(dut, f"{name}_valid").value = 0
    dut.o_ready.value = 0
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def compare(data, received: list[tuple[list[int], bool]]) -> tuple[int, int, str | None]:
    """(elements checked, mismatches, first mismatch) of the output beats against the golden."""
    m, _, n = (int(v) for v in data["shape"])
    config = config_from(data)
    rows, cols = config.rows, config.cols
    origins = tile_origins(config, m, n)
    checked, mismatches, first = 0, 0, None
    for index, ((got, got_last), want, want_last) in enumerate(
            zip(received, data["out"], data["out_last"])):
        tile, r = divmod(index, rows)
        m0, n0 = origins[tile]
        for c in range(cols):
            checked += 1
            if got[c] != want[c]:
                mismatches += 1
                where = (f"y[{m0 + r}, {n0 + c}]" if m0 + r < m and n0 + c < n else "padding")
                first = first or (f"tile {tile} at ({m0}, {n0}), row {r}, lane {c} ({where}): "
                                  f"golden {int(want[c])}, rtl {got[c]}")
        if got_last != bool(want_last):
            mismatches += 1
            first = first or (f"output beat {index}: last flag golden {bool(want_last)}, "
                              f"rtl {got_last}")
    return checked, mismatches, first


@cocotb.test()
async def gemm_matches_golden(dut):
    with np.load(os.environ["INTVIT_VECTORS"], allow_pickle=False) as handle:
        data = {key: handle[key] for key in handle.files}
    rng = random.Random(int(os.environ.get("INTVIT_SEED", "1")))
    idle = float(os.environ.get("INTVIT_SOURCE_IDLE", "0"))
    stall = float(os.environ.get("INTVIT_SINK_STALL", "0"))
    wait_ready = os.environ.get("INTVIT_WAIT_READY", "0") == "1"
    sources = [Source(dut, name, words, idle, rng, wait_ready)
               for name, words in stream_words(data).items()]
    out_format = BeatFormat(int(data["out_bits"]), bool(data["out_signed"]), int(data["cols"]))
    expected = len(data["out"])

    await reset(dut)
    received, edge, first_in, last_out, quiet = [], 0, None, None, 0
    while len(received) < expected and quiet < TIMEOUT_CYCLES:
        for source in sources:
            source.drive()
        ready = not (stall and rng.random() < stall)
        dut.o_ready.value = int(ready)
        await FallingEdge(dut.clk)
        fired = [source.fires() for source in sources]
        word = dut.o_payload.value.to_unsigned() if ready and dut.o_valid.value else None
        await RisingEdge(dut.clk)
        edge += 1
        for source, fire in zip(sources, fired):
            if fire:
                source.transferred()
        if first_in is None and any(fired):
            first_in = edge
        if word is not None:
            received.append(out_format.unpack(word))
            last_out = edge
        quiet = 0 if any(fired) or word is not None else quiet + 1

    checked, mismatches, first = compare(data, received)
    if len(received) < expected:
        mismatches += expected - len(received)
        first = first or f"{expected - len(received)} of {expected} output beats never came out"
    for name, source in zip(("a", "w", "b"), sources):
        if source.sent != len(source.words):
            mismatches += 1
            first = first or f"the unit took {source.sent} of {len(source.words)} {name} beats"
    cycles = (last_out - first_in + 1) if received else 0
    lanes = np.array([beat for beat, _ in received], dtype=np.int64)
    np.save(Path(os.environ["INTVIT_VERDICT"]).with_name(RECEIVED),
            lanes.reshape(len(received), int(data["cols"])))
    with open(os.environ["INTVIT_VERDICT"], "w") as handle:
        json.dump({"checked": checked, "mismatches": mismatches, "cycles": cycles,
                   "beats": expected, "first_mismatch": first}, handle)
    assert mismatches == 0, first


# Host side: run by pytest, the CLI and bench/gemm.py, not inside the simulator.

def save_gemm_vectors(path, config: GemmConfig, requant, beats: GemmBeats) -> Path:
    """The beat streams and their formats as an ``.npz`` for the bench (written atomically)."""
    path = Path(path)
    fields = {field: getattr(config, field) for field in CONFIG_FIELDS}
    fields["out_bits"] = requant.out_bits  # per-tensor arrays: the RequantConfig's width
    channels = {} if beats.multiplier is None else {"multiplier": beats.multiplier,
                                                    "shift": beats.shift}
    with atomic_output(path, "wb") as handle:
        np.savez_compressed(handle, shape=np.array(beats.shape), **fields,
                            per_channel=config.per_channel,
                            out_signed=getattr(requant, "out_signed", True),
                            act=beats.act, act_last=beats.act_last, weight=beats.weight,
                            bias=beats.bias, out=beats.out, out_last=beats.out_last, **channels)
    return path


@dataclass(frozen=True)
class GemmRun:
    """One simulated product: its shape, the simulator's verdict, the model's cycles and the
    ``M x N`` result the RTL delivered (its output beats put back together; None when beats
    are missing)."""

    name: str
    shape: tuple[int, int, int]
    result: object  # sim.runner.SimResult
    predicted: int
    output: np.ndarray | None = None

    def summary(self) -> str:
        m, k, n = self.shape
        r = self.result
        verdict = "PASS" if r.passed else "FAIL"
        return (f"gemm {self.name} {m}x{k}x{n}: {verdict}, {r.checked:,} outputs checked, "
                f"{r.mismatches} mismatches, {r.cycles:,} cycles (model {self.predicted:,})"
                + r.failure_detail())


def simulate_gemm(config: GemmConfig, requant, a, w, bias=None, *,
                  work_dir, name: str = "gemm", sink_stall: float = 0.0,
                  source_idle: float = 0.0, wait_ready: bool = False, seed: int = 0) -> GemmRun:
    """Simulate ``requantize(a @ w + bias)`` on ``intvit.hw.gemm.Gemm(config, requant)`` (a
    ``ChannelRequant`` for a per-channel array, whose ``m, e`` then travel on ``b``); with
    ``wait_ready`` every source raises ``valid`` only after seeing ``ready``."""
    from intvit.hw.gemm import Gemm
    from intvit.sim.runner import run_bench

    work_dir = Path(work_dir).resolve()  # the simulator runs in another directory
    beats = gemm_beats(config, requant, a, w, bias)
    vectors = save_gemm_vectors(work_dir / "vectors.npz", config, requant, beats)
    unit = Gemm(config, None if config.per_channel else requant)
    result = run_bench(unit, BENCH, vectors, work_dir=work_dir / "sim",
                       env={"INTVIT_SEED": str(seed), "INTVIT_SOURCE_IDLE": str(source_idle),
                            "INTVIT_SINK_STALL": str(sink_stall),
                            "INTVIT_WAIT_READY": str(int(wait_ready))})
    m, _, n = beats.shape
    received = np.load(work_dir / "sim" / RECEIVED)
    output = (reassemble(config, m, n, received) if received.shape == beats.out.shape
              else None)
    return GemmRun(name=name, shape=beats.shape, result=result,
                   predicted=predicted_cycles(*beats.shape, config), output=output)


def random_operands(config: GemmConfig, shape: tuple[int, int, int], rng: np.random.Generator,
                    bias_bits: int = 16):
    """Uniform activations and weights over their full ranges, bias over ``bias_bits``."""
    m, k, n = shape
    a = rng.integers(*signed_range(config.act_bits), size=(m, k), endpoint=True)
    w = rng.integers(*signed_range(config.weight_bits), size=(k, n), endpoint=True)
    bias = rng.integers(*signed_range(min(bias_bits, config.bias_bits)), size=n, endpoint=True)
    return a, w, bias


SIM_SHAPES = {**BUNDLED_SHAPES, "M=1": (1, 9, 6), "K=1": (6, 1, 7), "N=1": (7, 10, 1)}
"""What ``intvit sim gemm`` runs: the bundled model's products and shapes with a dimension of 1."""


def verify_gemm(config: GemmConfig, requant, shapes: dict, *, work_dir,
                seed: int = 0, sink_stall: float = 0.0) -> list[GemmRun]:
    """Random operands at every ``{name: (M, K, N)}`` in ``shapes``, each simulated; a
    per-channel array (``requant`` None) gets random per-channel requantizers."""
    rng = np.random.default_rng(seed)
    runs = []
    for index, (name, shape) in enumerate(shapes.items()):
        a, w, bias = random_operands(config, shape, rng)
        if config.per_channel:
            requant = example_channel_requant(shape[2], rng, config.out_bits)
        runs.append(simulate_gemm(config, requant, a, w, bias, name=name, seed=seed,
                                  work_dir=Path(work_dir) / f"{index:02d}", sink_stall=sink_stall))
    return runs
