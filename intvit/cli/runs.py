"""``intvit demo`` (the main job, as resumable stages) and ``intvit report``."""
from pathlib import Path

from .arguments import refuse
from .quantize import (CHECKPOINT_OPTIONS, add_checkpoint_options, bundled_choice,
                       checkpoint_and_images, with_score_split)



def cmd_demo(args) -> int:
    from intvit.golden_model.files import check_output_dir

    from intvit.demo import ModelSource, bundled_source, run_demo

    name = bundled_choice(args.model)
    check_output_dir(args.out, "--out")
    if name is not None:
        for flag in CHECKPOINT_OPTIONS:
            refuse(getattr(args, flag) is not None, f"--{flag.replace('_', '-')} goes with "
                   "--model PATH; the bundled models have their own images")
        source = bundled_source(name)
    else:
        def load():
            from intvit.golden_model.qvit import QuantSpec, image_scale_for

            model, splits = checkpoint_and_images(args)
            spec = QuantSpec(image_scale=image_scale_for(splits["calibration"].images.numpy()))
            return model, with_score_split(splits, args.score_images), spec

        refuse(args.calibration is None, "--model PATH needs --calibration IMAGES (a float "
               ".npy N x C x H x W, or a folder of image files)")
        source = ModelSource(args.model, False, load, args.batch)
    return run_demo(Path(args.out), force=args.force, only=args.only, source=source)


REPORT_INPUTS = ("quant.json", "rules.json", "quantize.done", "vectors.done", "sim.done",
                 "accelerator.done", "cost.done")


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

    demo = commands.add_parser("demo", help="the main job on a bundled model or a checkpoint")
    demo.add_argument("--model", default="digits", help="the bundled model: digits (default; "
                      "alias bundled), mnist or mnist-swin (a Swin), or a timm ViT/DeiT, "
                      "Hugging Face ViT or timm Swin checkpoint path (with --calibration; a "
                      "Swin's accelerator stage gives the cycle model's figures, not a "
                      "simulation)")
    demo.add_argument("-o", "--out", default="runs/demo",
                      help="output directory (default runs/demo)")
    demo.add_argument("--force", action="store_true",
                      help="redo every stage (default: reuse the stages finished earlier)")
    demo.add_argument("--only", metavar="STAGE", choices=STAGES, help="run one stage "
                      f"({', '.join(STAGES)}) from the files of the stages before it; the "
                      "stages after it are then redone by the next full run")
    add_checkpoint_options(demo.add_argument_group("--model PATH"))
    demo.set_defaults(run=cmd_demo)


def add_report(commands) -> None:
    report = commands.add_parser("report", help="write report.md and report.html of a demo run")
    report.add_argument("directory", nargs="?", default="runs/demo")
    report.set_defaults(run=cmd_report)
