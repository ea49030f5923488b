"""cocotb bench of the accelerator (``intvit.hw.accelerator``) with its write taps: the run
that names the first differing step of a mismatching image (``intvit.sim.accelerator``; the
images themselves go through the faster Verilog testbench).

Reads the vectors file (``pixels``, expected ``logits``, the timeout per image from the cycle
model, whether to record the taps) and writes a verdict JSON: images checked, mismatching
images, cycles per image (first pixel accepted to last logits beat, inclusive), the first
mismatch, and every write of the activation memory with its step.
"""
import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge, with_timeout
from cocotb.triggers import SimTimeoutError
from cocotb.utils import get_sim_time

CLOCK_NS = 10


def _cycle() -> int:
    return int(get_sim_time(unit="ns")) // CLOCK_NS


def _signed(raw: int, bits: int) -> int:
    return raw - (1 << bits) if raw >> (bits - 1) & 1 else raw


async def _feed(dut, pixels, accepted: list):
    """Drive one image's pixels, a beat per cycle while ``pixels_ready``."""
    for index, pixel in enumerate(pixels):
        dut.pixels_payload.value = int(pixel) & 0xFF
        dut.pixels_valid.value = 1
        await RisingEdge(dut.clk)
        while not dut.pixels_ready.value:
            await RisingEdge(dut.clk)
        if index == 0:
            accepted.append(_cycle() - 1)
    dut.pixels_valid.value = 0


async def _logits(dut, beats: int, lanes: int, bits: int) -> tuple[list, int]:
    """The next ``beats`` logits beats (``logits_ready`` is held high) and the cycle of the
    last."""
    values = []
    await RisingEdge(dut.logits_valid)
    while True:
        await ReadOnly()
        if dut.logits_valid.value:
            raw = dut.logits_payload.value.to_unsigned()
            values += [_signed(raw >> (lane * bits) & ((1 << bits) - 1), bits)
                       for lane in range(lanes)]
            if len(values) == beats * lanes:
                end = _cycle()
                await RisingEdge(dut.clk)  # out of the read-only phase
                return values, end
        await RisingEdge(dut.clk)


async def _taps(dut, writes: list):
    while True:
        await RisingEdge(dut.clk)
        await ReadOnly()
        if dut.tap_en.value:
            writes.append((int(dut.step.value), int(dut.tap_addr.value),
                           dut.tap_data.value.to_unsigned(), int(dut.tap_mask.value)))


@cocotb.test()
async def accelerator_matches_golden(dut):
    vectors = np.load(os.environ["INTVIT_VECTORS"])
    pixels, expected = vectors["pixels"], vectors["logits"]
    lanes, bits = int(vectors["lanes"]), int(vectors["logit_bits"])
    timeout = int(vectors["timeout_cycles"])
    names = [str(name) for name in vectors["step_names"]]
    beats = -(-expected.shape[1] // lanes)
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    dut.pixels_valid.value = 0
    dut.logits_ready.value = 1
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    writes, accepted = [], []
    if int(vectors["taps"]):
        cocotb.start_soon(_taps(dut, writes))
    checked = mismatches = 0
    first = None
    cycles = []
    for image in range(len(pixels)):
        feeder = cocotb.start_soon(_feed(dut, pixels[image], accepted))
        try:
            values, end = await with_timeout(_logits(dut, beats, lanes, bits),
                                             timeout * CLOCK_NS, "ns")
        except SimTimeoutError:
            step = int(dut.step.value)
            first = first or (f"image {image}: no logits within {timeout} cycles; stalled in "
                              f"step {step} ({names[step]})")
            mismatches += 1
            feeder.cancel()
            break
        got = values[:expected.shape[1]]
        checked += 1
        cycles.append(end - accepted[image] + 1)
        if got != [int(x) for x in expected[image]]:
            mismatches += 1
            first = first or f"image {image}: logits {got}, expected {expected[image].tolist()}"
    verdict = {"checked": checked, "mismatches": mismatches,
               "cycles": int(sum(cycles)), "image_cycles": cycles,
               "first_mismatch": first,
               "writes": [[s, a, str(d), k] for s, a, d, k in writes]}
    with open(os.environ["INTVIT_VERDICT"], "w") as handle:
        json.dump(verdict, handle)
