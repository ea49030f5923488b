"""Each softmax candidate's row unit under Verilator on the bundled Swin's real window rows of its
shifted block, masks included (issue 19), over more test images than the suite's short run
(sim/test_swin_softmax.py): every row of the shifted block on each image, compared bit for bit
with the golden masked softmax (which the integer Swin computed on those rows).

Usage: python bench/swin_rows.py [--images 16] [--lanes 1] [--out runs/swin_rows]
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import markdown_table, write_section  # noqa: E402
from intvit.golden_model.vectors import save_vectors  # noqa: E402
from intvit.report import count  # noqa: E402
from intvit.sim.swin_rows import SHIFTED_SOFTMAX, WINDOW_ROW, BundledSwinRows  # noqa: E402
from intvit.sim.verify import verify  # noqa: E402

METHODS = ("iptq", "ivit", "ibert", "fqvit")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--lanes", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/swin_rows"))
    args = parser.parse_args()
    swin = BundledSwinRows()
    rows_per_image = (swin.config.resolution(0) // swin.config.window(0)) ** 2 \
        * swin.config.num_heads[0] * WINDOW_ROW
    table, mismatches = [], 0
    for method in METHODS:
        start = time.monotonic()
        vectors = swin.vectors(method, args.images, args.images * rows_per_image)
        path = save_vectors(args.out / f"{method}.npz", vectors)
        outcome = verify(f"softmax/{method}", lanes=args.lanes, max_row=WINDOW_ROW,
                         work_dir=args.out / method, vectors_path=path,
                         progress=lambda line: print(f"  {line}", flush=True))
        keeps = vectors.row_keeps()
        r = outcome.result
        mismatches += r.mismatches
        table.append([f"softmax/{method}", count(len(keeps)),
                      count(sum(not keep.all() for keep in keeps)),
                      count(sum(int((~keep).sum()) for keep in keeps)), count(r.checked),
                      count(r.mismatches), count(r.cycles),
                      f"{time.monotonic() - start:.0f}"])
        print(outcome.summary(), flush=True)
    body = (f"The bundled Swin's shifted block (`{SHIFTED_SOFTMAX}`): every softmax input row "
            f"of its windows on the first {args.images} test images ({count(rows_per_image)} "
            f"rows of {WINDOW_ROW} elements per image), with the window masks the model applies "
            "(3 of an image's 4 windows straddle the rolled edges). Each candidate's config is "
            "that layer's in the integer Swin with every non-linear layer on that candidate, "
            "calibrated on the bundled calibration split. The unit, at "
            f"{args.lanes} lane(s) and rows of {WINDOW_ROW}, runs under Verilator (cocotb) and "
            "every output is compared, masked elements' too (probability 0; FQ-ViT's top "
            "code). Wall time includes the Verilator build (cached across runs) on this shared "
            "machine.\n\n"
            + markdown_table(["unit", "rows", "masked rows", "masked elements",
                              "outputs checked", "mismatches", "cycles", "seconds"], table))
    path = write_section("swin_rows", "The bundled Swin's masked window rows under Verilator",
                         f"python bench/swin_rows.py --images {args.images} --lanes "
                         f"{args.lanes}", body)
    print(f"wrote {path}")
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
