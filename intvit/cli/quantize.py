"""``intvit quantize``: IPTQ-ViT's three stages (``--method iptq``) or ADFQ-ViT (``--method
adfq``) on a bundled model or a timm ViT/DeiT, Hugging Face ViT or timm Swin checkpoint."""
from pathlib import Path

from intvit.golden_model.errors import IntvitError

from .arguments import int_in_range, positive_int, refuse


IPTQ_BITS = ("w8a8", "w4a8")
"""Weight/activation widths of the integer pipeline: the GEMM array has 8- and 4-bit weights."""


def cmd_quantize(args) -> int:
    from intvit.golden_model.files import check_output_dir

    check_output_dir(args.out, "-o")
    if args.method == "adfq":
        return quantize_adfq_command(args)
    return quantize_iptq_command(args)


ADFQ_ONLY = ("components", "iterations", "outliers", "log_base")


USER_IMAGES = ("arch", "heads", "img_size", "calibration", "eval", "eval_count", "eval_labels")
"""A user's checkpoint's shape and images (the bundled models have their own)."""
CHECKPOINT_OPTIONS = USER_IMAGES + ("score_images", "batch")
"""Every option of :func:`add_checkpoint_options`."""
IPTQ_ONLY = ("rule", "calibrator", "gelu_output", "score_snap", "weights", "cost_table",
             "softmax_bits") + CHECKPOINT_OPTIONS


def check_method_options(args, foreign: tuple[str, ...]) -> None:
    """Options of the other method are refused, not ignored."""
    for name in foreign:
        refuse(getattr(args, name) is not None, f"--{name.replace('_', '-')} does not apply to "
               f"--method {args.method}; leave it out")


def quantize_iptq_command(args) -> int:
    """IPTQ-ViT's three stages (``--method iptq``); writes ``quant.json``."""
    from intvit.golden_model.calibration import CALIBRATORS
    from intvit.golden_model.costs import load_cost_table
    from intvit.golden_model.metrics import OmegaWeights
    from intvit.golden_model.qvit import GELU_OUTPUTS, SCORE_SNAPS
    from intvit.golden_model.qvit import quantize_images
    from intvit.golden_model.quantfile import save_run
    from intvit.golden_model.select import RULES, quantize_model
    from intvit.progress import Eta

    check_method_options(args, ADFQ_ONLY)
    bits = (args.bits or "w8a8").lower()
    refuse(bits not in IPTQ_BITS, f"--bits {args.bits!r} is not supported by the integer "
           f"pipeline (the GEMM array has 8- and 4-bit weights); use {' or '.join(IPTQ_BITS)}")
    rule = args.rule or "unified"
    refuse(rule not in RULES, f"--rule {rule!r}: unknown rule; use one of {', '.join(RULES)}")
    calibrator = args.calibrator or "percentile"
    refuse(calibrator not in CALIBRATORS, f"--calibrator {calibrator!r}: unknown calibrator; "
           f"use one of {', '.join(CALIBRATORS)}")
    weights = (OmegaWeights() if args.weights is None
               else OmegaWeights(*parse_weights(args.weights)))
    table = load_cost_table(args.cost_table)
    name = bundled_choice(args.model)
    options = {"calibrator": calibrator}
    for flag, allowed in (("gelu_output", GELU_OUTPUTS), ("score_snap", SCORE_SNAPS)):
        value = getattr(args, flag)
        refuse(value is not None and value not in allowed, f"--{flag.replace('_', '-')} "
               f"{value!r}: use one of {', '.join(allowed)}")
        if value is not None:
            options[flag] = value
    if args.softmax_bits is not None:
        options["softmax_bits"] = args.softmax_bits
    model, splits, spec, what = model_and_data(args, name, bits, options)
    print(f"quantizing {what} at {bits.upper()}, rule {rule}, cost table "
          f"{table.source}{'' if table.measured else ' (stand-in)'}; images: "
          f"{len(splits['calibration'])} calibration, {len(splits['score'])} scored, "
          f"{len(splits['test'])} evaluation", flush=True)
    eta = Eta()
    result = quantize_model(model, splits, spec, rule, weights, table, batch=args.batch,
                            progress=lambda done, total, layer: eta("scored", done, total, layer),
                            stage_progress=eta)
    codes = quantize_images(splits["test"].images.numpy(), spec.image_scale)
    path = save_run(args.out, result, name or args.model, codes)
    print(choice_table(result.assignment))
    acc = result.accuracy
    measure = "accuracy" if splits["test"].labels is not None else "top-1 agreement with float"
    print(f"evaluation {measure}: float {acc['float']:.4f}, integer {acc['stage3']:.4f} "
          f"(before stage 3: {acc['stage2']:.4f})")
    if result.fidelity:
        print(fidelity_line(result.fidelity))
    print(f"wrote {path} and the integer model beside it")
    return 0


def fidelity_line(fidelity: dict) -> str:
    """The stage-3 mix against the float model, in one line."""
    return (f"fidelity to float on {fidelity['images']} images: logit SQNR "
            f"{fidelity['logit_sqnr_db']:.1f} dB, KL {fidelity['kl']:.2e} ± "
            f"{fidelity['kl_se']:.1e}, top-1 agreement {fidelity['agreement']:.4f}")


def quantize_adfq_command(args) -> int:
    """ADFQ-ViT (``--method adfq``) on the bundled model; writes ``adfq.json``."""
    import json

    from intvit.golden_model.adfq import BITS, adfq_splits, parse_components
    from intvit.golden_model.adfq_pipeline import DEFAULT_ITERATIONS, quantize_adfq
    from intvit.golden_model.checkpoint import load_bundled
    from intvit.golden_model.dataset import load_splits
    from intvit.golden_model.files import write_text_atomic

    check_method_options(args, IPTQ_ONLY)
    name = bundled_choice(args.model)
    refuse(name is None, "--method adfq runs on a bundled model only (it needs labelled test "
           "images): digits or mnist")
    refuse(name == "mnist-swin", "--method adfq runs on the ViT models only (digits or mnist); "
           "quantize mnist-swin with --method iptq")
    bits = (args.bits or "w4a4").lower()
    refuse(bits not in BITS, f"--bits {args.bits!r} is not supported by --method adfq; use "
           f"{' or '.join(BITS)}")
    components = parse_components(args.components or "all")
    model, _, meta = load_bundled(name)
    print(f"ADFQ-ViT on the bundled {name} model at {bits.upper()}, components "
          f"{args.components or 'all'}, log base {args.log_base or 'sqrt2'}", flush=True)
    result = quantize_adfq(model, adfq_splits(load_splits(meta["split_seed"], name)), bits,
                           components, args.iterations or DEFAULT_ITERATIONS,
                           outliers=args.outliers or "float", log_base=args.log_base or "sqrt2",
                           progress=lambda d, n, module: print(
                               f"  [{d}/{n}] reconstructed {module}", flush=True))
    result = {"model": name, **result}
    path = write_text_atomic(Path(args.out) / "adfq.json", json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, indent=1))
    print(f"wrote {path}")
    return 0


def bundled_choice(model: str) -> str | None:
    """What ``--model`` names: a bundled model (``digits``, ``mnist``; ``bundled`` = digits),
    returned by name, or None for a checkpoint path. A bare word that is neither (no directory,
    no file suffix, no such file) is a one-line error listing the bundled models."""
    from intvit.golden_model.checkpoint import BUNDLED_NAMES, bundled_name

    if model in BUNDLED_NAMES:
        return bundled_name(model)
    path = Path(model)
    if path.exists() or path.suffix or len(path.parts) > 1:
        return None
    raise IntvitError(f"--model {model!r} is neither a bundled model "
                      f"({', '.join(BUNDLED_NAMES)}; bundled = digits) nor a checkpoint file; "
                      "give one of those names or the path of a timm ViT/DeiT, Hugging Face ViT or "
                      "timm Swin checkpoint")


def model_and_data(args, name: str | None, bits: str, options: dict):
    """The float model, its splits (``calibration``, ``score``: the first ``--score-images``
    calibration images, ``test``: the evaluation images), the QuantSpec (``bits`` and the
    calibration ``options``) and a description for ``--model``: the bundled model ``name``
    with its dataset and exact input scale, or (``name`` None) a timm checkpoint with
    ``--calibration`` images and ``--eval`` images (or the last ``--eval-count`` calibration
    images), labelled by ``--eval-labels`` or else compared with the float model."""
    from intvit.golden_model.qvit import QuantSpec, image_scale_for

    if name is not None:
        from intvit.golden_model.checkpoint import load_bundled
        from intvit.golden_model.dataset import dataset, load_splits

        for flag in USER_IMAGES:
            refuse(getattr(args, flag) is not None, f"--{flag.replace('_', '-')} goes with "
                   "--model PATH; the bundled models have their own images")
        model, _, meta = load_bundled(name)
        spec = QuantSpec.parse(bits, image_scale=dataset(name).image_scale, **options)
        splits = load_splits(meta["split_seed"], name)
        what = f"the bundled {name} model"
    else:
        model, splits = checkpoint_and_images(args)
        spec = QuantSpec.parse(bits, image_scale=image_scale_for(
            splits["calibration"].images.numpy()), **options)
        what = args.model
    return model, with_score_split(splits, args.score_images), spec, what


def with_score_split(splits: dict, count: int | None) -> dict:
    """``splits`` with ``score``: the first ``count`` (default :data:`SCORE_IMAGES`)
    calibration images, the ones stage 1 scores on."""
    from intvit.golden_model.dataset import Split

    images = splits["calibration"].images
    return {**splits, "score": Split(images[:min(count or SCORE_IMAGES, len(images))], None)}


SCORE_IMAGES = 100
"""Stage 1 scores the candidates on at most this many calibration images by default (all of
the bundled models' 100)."""
EVAL_FRACTION = 5
"""Without ``--eval``, one image in this many of ``--calibration`` (the last ones) is held out
for evaluation."""


def checkpoint_and_images(args):
    """A checkpoint (``--model PATH``, ``--arch``, ``--heads``, ``--img-size``: a ViT or a
    Swin, :func:`~intvit.golden_model.checkpoint.load_checkpoint`) and its calibration and
    evaluation splits from ``--calibration``, ``--eval``/``--eval-count`` and
    ``--eval-labels``."""
    import torch

    from intvit.golden_model.checkpoint import ARCHITECTURES, load_checkpoint
    from intvit.golden_model.dataset import Split
    from intvit.golden_model.images import load_images, load_labels, split_images

    refuse(args.arch is not None and args.arch not in ARCHITECTURES, f"--arch {args.arch}: "
           f"unknown architecture; use one of {', '.join(sorted(ARCHITECTURES))}")
    for flag, what in (("heads", "heads"), ("img_size", "image size")):
        refuse(args.arch is not None and getattr(args, flag) is not None, f"--arch sets the "
               f"{what} too; give --arch or --{flag.replace('_', '-')}, not both")
    refuse(args.calibration is None, "--model PATH needs --calibration IMAGES (a float .npy "
           "N x C x H x W normalized as the model expects, or a folder of image files)")
    refuse(args.eval is not None and args.eval_count is not None, "--eval-count holds out "
           "calibration images; with --eval the evaluation images are given: use one")
    refuse(not Path(args.model).exists(), f"--model {args.model}: no such checkpoint file; "
           "give a timm ViT/DeiT or Swin .pth or .safetensors, a Hugging Face ViT directory or "
           "weight file, or a bundled model: digits, mnist, mnist-swin")
    model = load_checkpoint(args.model, ARCHITECTURES.get(args.arch), args.heads, args.img_size)
    shape = (model.config.in_chans, model.config.img_size)
    calibration = load_images(args.calibration, *shape, "calibration images")
    if args.eval is not None:
        evaluation = load_images(args.eval, *shape, "evaluation images")
    else:
        count = args.eval_count or max(1, len(calibration) // EVAL_FRACTION)
        calibration, evaluation = split_images(calibration, count)
    labels = None if args.eval_labels is None else torch.from_numpy(
        load_labels(args.eval_labels, len(evaluation)))
    return model, {"calibration": Split(torch.from_numpy(calibration), None),
                   "test": Split(torch.from_numpy(evaluation), labels)}


def choice_table(assignment: dict) -> str:
    """Per-layer choices, then how many layers of each kind took each method (the shape of
    Mixed-NLQ's Table 3)."""
    from collections import Counter

    lines = [f"  {layer:24s} {op}" for layer, op in assignment.items()]
    counts = Counter(op for op in assignment.values())
    kinds = sorted({op.split("/")[0] for op in counts})
    methods = sorted({op.split("/")[1] for op in counts})
    lines.append("  " + "layers".ljust(10) + "".join(m.rjust(8) for m in methods))
    for kind in kinds:
        lines.append("  " + kind.ljust(10)
                     + "".join(str(counts.get(f"{kind}/{m}", 0)).rjust(8) for m in methods))
    return "\n".join(lines)


def parse_weights(text: str) -> tuple[float, float, float]:
    """``"1,1,0.5"`` -> the three Omega weights (sensitivity, perturbation, cost): three finite
    numbers >= 0, not all zero; anything else (two or four numbers, a word, NaN, infinity, a
    negative weight, all zero) is a one-line error."""
    import math

    usage = "give three numbers >= 0, not all zero, e.g. 1,1,0.5 (sensitivity, perturbation, cost)"
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise IntvitError(f"--weights {text!r}: {usage}")
    if not all(math.isfinite(v) for v in values):
        raise IntvitError(f"--weights {text!r}: every weight must be finite (no nan or inf); "
                          f"{usage}")
    if any(v < 0 for v in values):
        raise IntvitError(f"--weights {text!r}: a weight is negative; {usage}")
    if not any(v > 0 for v in values):
        raise IntvitError(f"--weights {text!r}: the weights are all zero; {usage}")
    return values


def add_quantize(commands) -> None:
    quantize = commands.add_parser("quantize", help="quantize the bundled model to integers, "
                                   "one candidate per non-linear layer")
    quantize.add_argument("--model", default="digits",
                          help="a bundled model: digits (default; alias bundled), mnist or "
                          "mnist-swin (a Swin), or a checkpoint path: timm ViT/DeiT (distilled "
                          "too) or timm Swin (.pth or .safetensors), or a Hugging Face ViT "
                          "directory or weight file; the family is told from the weights' names")
    quantize.add_argument("--bits", default=None, help=f"{' or '.join(IPTQ_BITS)} (default "
                          "w8a8); with --method adfq: w4a4 (default) or w6a6")
    quantize.add_argument("--method", default="iptq", choices=("iptq", "adfq"),
                          help="iptq (integer-only, default) or adfq (ADFQ-ViT quantizers and "
                          "module-wise reconstruction)")
    quantize.add_argument("-o", "--out", default="runs/quantize", help="output directory")
    add_iptq_options(quantize.add_argument_group("--method iptq"))
    add_adfq_options(quantize.add_argument_group("--method adfq"))
    quantize.set_defaults(run=cmd_quantize)


def add_iptq_options(group) -> None:
    add_checkpoint_options(group)
    group.add_argument("--rule", default=None, help="unified (IPTQ-ViT, default), sqnr-diff, "
                       "sqnr-output, all-iptq, all-ivit, all-ibert, all-fqvit")
    group.add_argument("--calibrator", default=None,
                       help="activation calibrator: minmax, percentile (default), mse, "
                       "per-layer (the lower-MSE of percentile and mse, per tensor)")
    group.add_argument("--gelu-output", default=None,
                       help="GELU output codes: symmetric (default) or asymmetric (a zero point "
                       "that FC2's bias absorbs)")
    group.add_argument("--score-snap", default=None,
                       help="snap the softmax input scale to the shift candidates' constants: "
                       "grid (default), log2e, off")
    group.add_argument("--weights", default=None,
                       help="Omega weights of sensitivity, perturbation, cost (default 1,1,0.5)")
    group.add_argument("--softmax-bits", type=int_in_range(8, 16), default=None,
                       help="width of the softmax probabilities, 8 (default) to 16; FQ-ViT's "
                       "log2 codes keep their own")
    group.add_argument("--cost-table", default=None,
                       help="cost table JSON (default: fpga/tables/ecp5.json, else stand-in)")


def add_adfq_options(group) -> None:
    group.add_argument("--components", default=None,
                       help="all (default), none, or a list like poq,amo")
    group.add_argument("--iterations", type=positive_int, default=None,
                       help="reconstruction iterations per module")
    group.add_argument("--outliers", default=None, choices=("float", "int16"),
                       help="outlier path: float (default) or int16 (keeps it integer)")
    group.add_argument("--log-base", default=None, choices=("sqrt2", "2"),
                       help="log quantizer base, sqrt2 (the authors' code, default) or 2 (the "
                       "paper's text)")



def add_checkpoint_options(group) -> None:
    """The checkpoint's architecture and images, and how many images a pass takes."""
    group.add_argument("--arch", default=None, help="architecture of --model PATH, e.g. "
                       "deit_tiny_patch16_224 or swin_tiny_patch4_window7_224 (default: "
                       "inferred from the weights)")
    group.add_argument("--heads", type=positive_int, default=None,
                       help="--model PATH, a ViT: attention heads, which its weights do not "
                       "record (default: those of the timm preset of the same shapes; a Swin's "
                       "come from its relative-position tables)")
    group.add_argument("--img-size", type=positive_int, default=None,
                       help="--model PATH, a Swin: image side in pixels, which its weights do "
                       "not record (default: that of the timm preset of the same shapes; a "
                       "ViT's comes from its position embedding)")
    group.add_argument("--calibration", default=None,
                       help="--model PATH: calibration images, a float .npy (N, C, H, W) "
                       "normalized as the model expects, or a folder of image files (timm's "
                       "eval transform: resize, center crop, ImageNet mean/std)")
    group.add_argument("--eval", default=None, help="--model PATH: evaluation images, in the "
                       "same forms (default: the last fifth of --calibration, held out)")
    group.add_argument("--eval-count", type=positive_int, default=None,
                       help="--model PATH without --eval: hold out this many of the last "
                       "--calibration images for evaluation")
    group.add_argument("--eval-labels", default=None, help="--model PATH: class indices of "
                       "the evaluation images, an integer .npy (N,), for top-1 accuracy "
                       "(without: agreement with the float model)")
    group.add_argument("--score-images", type=positive_int, default=None,
                       help=f"stage 1 scores on the first N calibration images (default "
                       f"{SCORE_IMAGES})")
    group.add_argument("--batch", type=positive_int, default=None,
                       help="images per batch (default: as many as 1 GiB of activations "
                       "holds)")
