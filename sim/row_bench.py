"""cocotb bench for row units (softmax, LayerNorm): stream every row back to back, each as beats
of ``lanes`` elements with ``keep`` (the final partial beat's real lanes; for masked rows, the
row's mask) and ``last``, and compare every output element of every row (masked ones too),
``keep`` and ``last`` with the golden model's. Measures the initiation interval.

Configured through the environment like :mod:`intvit.sim.elementwise_bench`.
"""
import json
import os

import cocotb
from cocotb.triggers import Join

from intvit.golden_model.vectors import keep_bits, load_vectors
from intvit.sim.tb import TB, BeatFormat, first_output_latency


def keyed_beats(row, lanes: int, keep=None):
    """``(elements, last, keep)`` beats of one row with its mask ``keep`` (``None``: every
    element kept), the final beat zero-padded."""
    beats = []
    for start in range(0, len(row), lanes):
        chunk = [int(v) for v in row[start:start + lanes]]
        beats.append((chunk + [0] * (lanes - len(chunk)), start + lanes >= len(row),
                      keep_bits(keep, start, len(chunk))))
    return beats


@cocotb.test()
async def rows_match_golden(dut):
    vectors = load_vectors(os.environ["INTVIT_VECTORS"])
    lanes = int(os.environ.get("INTVIT_LANES", "1"))
    tb = TB(dut, BeatFormat(vectors.in_bits, vectors.in_signed, lanes, keyed=True),
            BeatFormat(vectors.out_bits, vectors.out_signed, lanes, keyed=True),
            source_idle=float(os.environ.get("INTVIT_SOURCE_IDLE", "0")),
            sink_stall=float(os.environ.get("INTVIT_SINK_STALL", "0")),
            seed=int(os.environ.get("INTVIT_SEED", "1")))
    rows = vectors.rows()
    sent, expected = [], []
    for (x_row, y_row), keep in zip(rows, vectors.row_keeps()):
        sent += keyed_beats(x_row, lanes, keep)
        expected += keyed_beats(y_row, lanes, keep)

    await tb.start()
    sender = cocotb.start_soon(tb.send(sent))
    received = await tb.receive(len(expected), timeout_cycles=20_000)
    await Join(sender) if not sender.done() else None

    checked, mismatches, first = 0, 0, None
    beat = 0
    for row_index, (x_row, y_row) in enumerate(rows):
        for start in range(0, len(y_row), lanes):
            if beat >= len(received):
                break
            want, want_last, want_keep = expected[beat]
            got, got_last, got_keep = received[beat]
            for lane in range(min(lanes, len(y_row) - start)):
                checked += 1
                if got[lane] != want[lane]:
                    mismatches += 1
                    first = first or (f"row {row_index} element {start + lane} (row input "
                                      f"{[int(v) for v in x_row]}): golden {want[lane]}, "
                                      f"rtl {got[lane]}")
            if (got_last, got_keep) != (want_last, want_keep):
                mismatches += 1
                first = first or (f"row {row_index} beat at {start}: last/keep golden "
                                  f"{want_last}/{want_keep:b}, rtl {got_last}/{got_keep:b}")
            beat += 1
    missing = len(expected) - len(received)
    if missing:
        mismatches += missing
        first = first or f"{missing} of {len(expected)} beats never came out (timeout)"
    if int(dut.overflow.value):
        mismatches += 1
        first = first or "the overflow flag rose on rows within the maximum length"

    # Initiation interval: cycles between the final beats of consecutive rows.
    ends = [i for i, b in enumerate(expected) if b[1]]
    cycles_at_end = [tb.receive_cycles[i] for i in ends if i < len(tb.receive_cycles)]
    gaps = [b - a for a, b in zip(cycles_at_end, cycles_at_end[1:])]
    cycles = (tb.last_receive or 0) - (tb.first_accept or 0) + 1
    with open(os.environ["INTVIT_VERDICT"], "w") as handle:
        json.dump({"checked": checked, "mismatches": mismatches, "cycles": cycles,
                   "latency": first_output_latency(tb),
                   "beats": len(sent), "rows": len(rows), "first_mismatch": first,
                   "max_row_interval": max(gaps) if gaps else None}, handle)
    assert mismatches == 0, first
