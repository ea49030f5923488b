"""cocotb bench for element-wise units (requantizer, GELU): stream the vectors through the unit
and compare every output element and every ``last`` flag with the golden model's.

Configured by the runner through the environment: ``INTVIT_VECTORS`` (npz), ``INTVIT_VERDICT``
(JSON written here), ``INTVIT_LANES``, ``INTVIT_SOURCE_IDLE``, ``INTVIT_SINK_STALL``,
``INTVIT_SEED``.
"""
import json
import os

import cocotb
import numpy as np
from cocotb.triggers import Join

from intvit.golden_model.vectors import load_vectors
from intvit.sim.tb import TB, BeatFormat, first_output_latency


def row_beats(x: np.ndarray, lanes: int):
    """Split each row of ``x`` into beats of ``lanes`` (zero-padded), ``last`` on a row's end.

    Returns the beats and, per beat, how many of its lanes hold real elements."""
    beats, used = [], []
    for row in x.reshape(-1, x.shape[-1]) if x.ndim > 1 else [x]:
        for start in range(0, len(row), lanes):
            chunk = [int(v) for v in row[start:start + lanes]]
            used.append(len(chunk))
            beats.append((chunk + [0] * (lanes - len(chunk)), start + lanes >= len(row)))
    return beats, used


@cocotb.test()
async def outputs_match_golden(dut):
    vectors = load_vectors(os.environ["INTVIT_VECTORS"])
    lanes = int(os.environ.get("INTVIT_LANES", "1"))
    tb = TB(dut, BeatFormat(vectors.in_bits, vectors.in_signed, lanes),
            BeatFormat(vectors.out_bits, vectors.out_signed, lanes),
            source_idle=float(os.environ.get("INTVIT_SOURCE_IDLE", "0")),
            sink_stall=float(os.environ.get("INTVIT_SINK_STALL", "0")),
            seed=int(os.environ.get("INTVIT_SEED", "1")))
    beats, used = row_beats(vectors.x, lanes)
    expected_beats, _ = row_beats(vectors.y, lanes)

    await tb.start()
    sender = cocotb.start_soon(tb.send(beats))
    received = await tb.receive(len(beats), timeout_cycles=1000)
    await Join(sender) if not sender.done() else None

    checked, mismatches, first = 0, 0, None
    inputs = [b[0] for b in beats]
    for index, (n, (want, want_last), (got, got_last)) in enumerate(
            zip(used, expected_beats, [r[:2] for r in received])):
        for lane in range(n):
            checked += 1
            if got[lane] != want[lane]:
                mismatches += 1
                first = first or (f"beat {index} lane {lane}: input {inputs[index][lane]}, "
                                  f"golden {want[lane]}, rtl {got[lane]}")
        if got_last != want_last:
            mismatches += 1
            first = first or f"beat {index}: last flag golden {want_last}, rtl {got_last}"
    missing = len(beats) - len(received)
    if missing:
        mismatches += missing
        first = first or f"{missing} of {len(beats)} beats never came out (timeout)"
    cycles = (tb.last_receive or 0) - (tb.first_accept or 0) + 1
    with open(os.environ["INTVIT_VERDICT"], "w") as handle:
        json.dump({"checked": checked, "mismatches": mismatches, "cycles": cycles,
                   "latency": first_output_latency(tb),
                   "beats": len(beats), "first_mismatch": first}, handle)
    assert mismatches == 0, first
