"""``intvit demo`` (the main job, as resumable stages) and ``intvit report``."""
from pathlib import Path

from .arguments import refuse
from .quantize import bundled_choice



def cmd_demo(args) -> int:
    from intvit.golden_model.files import check_output_dir

    from intvit.demo import run_demo

    model = bundled_choice(args.model)
    refuse(model is None, f"--model {args.model}: the demo runs on a bundled model only "
           "(digits, mnist); quantize a checkpoint with `intvit quantize --model PATH`")
    check_output_dir(args.out, "--out")
    return run_demo(Path(args.out), force=args.force, only=args.only, model=model)


REPORT_INPUTS = ("quant.json", "rules.json", "quantize.done", "sim.done", "cost.done")


def cmd_report(args) -> int:
    from intvit.golden_model.files import check_output_dir

    from intvit.report import write_report

    directory = Path(args.directory)
    refuse(not directory.is_dir(), f"{directory} is not a directory; run `intvit demo --out "
           f"{directory}` first")
    missing = [name for name in REPORT_INPUTS if not (directory / name).is_file()]
    refuse(bool(missing), f"{directory} lacks {', '.join(missing)}; run `intvit demo --out "
           f"{directory}` first")
    check_output_dir(directory, "report directory")
    files = write_report(directory)
    print(f"wrote {files['markdown']} and {files['html']}")
    return 0


def add_demo(commands) -> None:
    from intvit.demo import STAGES

    demo = commands.add_parser("demo", help="the main job on a bundled model")
    demo.add_argument("--model", default="digits", help="the bundled model: digits (default; "
                      "alias bundled) or mnist")
    demo.add_argument("-o", "--out", default="runs/demo",
                      help="output directory (default runs/demo)")
    demo.add_argument("--force", action="store_true",
                      help="redo every stage (default: reuse the stages finished earlier)")
    demo.add_argument("--only", metavar="STAGE", choices=STAGES, help="run one stage "
                      f"({', '.join(STAGES)}) from the files of the stages before it; the "
                      "stages after it are then redone by the next full run")
    demo.set_defaults(run=cmd_demo)


def add_report(commands) -> None:
    report = commands.add_parser("report", help="write report.md and report.html of a demo run")
    report.add_argument("directory", nargs="?", default="runs/demo")
    report.set_defaults(run=cmd_report)
