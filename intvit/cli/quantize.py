"""``intvit quantize``: IPTQ-ViT's three stages (``--method iptq``) or ADFQ-ViT (``--method
adfq``) on a bundled model or a timm checkpoint."""
from pathlib import Path

from intvit.golden_model.errors import IntvitError

from .arguments import positive_int, refuse


IPTQ_BITS = ("w8a8", "w4a8")
"""Weight/activation widths of the integer pipeline: the GEMM array has 8- and 4-bit weights."""


def cmd_quantize(args) -> int:
    from intvit.golden_model.files import check_output_dir

    check_output_dir(args.out, "-o")
    if args.method == "adfq":
        return quantize_adfq_command(args)
    return quantize_iptq_command(args)


ADFQ_ONLY = ("components", "iterations", "outliers", "log_base")


IPTQ_ONLY = ("rule", "calibrator", "gelu_output", "score_snap", "weights", "cost_table",
             "calibration", "arch")


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
    from intvit.golden_model.quantfile import save_quant
    from intvit.golden_model.select import RULES, quantize_model

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
    model, splits, spec, what = model_and_data(args, name, bits, options)
    print(f"quantizing {what} at {bits.upper()}, rule {rule}, cost table "
          f"{table.source}{'' if table.measured else ' (stand-in)'}", flush=True)

    def progress(done, total, layer):
        print(f"  [{done}/{total}] scored {layer}", flush=True)

    result = quantize_model(model, splits, spec, rule, weights, table, progress=progress)
    path = save_quant(Path(args.out) / "quant.json", result, model=name or args.model)
    print(choice_table(result.assignment))
    acc = result.accuracy
    measure = "accuracy" if name else "top-1 agreement with float"
    print(f"test {measure}: float {acc['float']:.4f}, integer {acc['stage3']:.4f} "
          f"(before stage 3: {acc['stage2']:.4f})")
    print(f"wrote {path}")
    return 0


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
                      "give one of those names or the path of a timm ViT/DeiT checkpoint")


def model_and_data(args, name: str | None, bits: str, options: dict):
    """The float model, its calibration/test splits, the QuantSpec (``bits`` and the
    calibration ``options``, e.g. ``calibrator``) and a description for
    ``--model``: the bundled model ``name`` with its dataset and exact input scale, or (``name``
    None) a timm checkpoint with ``--calibration`` images (whose "test" is the same images
    labelled by the float model: integer-vs-float agreement)."""
    import torch

    from intvit.golden_model.calibration import load_calibration_images
    from intvit.golden_model.dataset import Split
    from intvit.golden_model.qvit import QuantSpec, image_scale_for

    if name is not None:
        from intvit.golden_model.checkpoint import load_bundled
        from intvit.golden_model.dataset import dataset, load_splits

        refuse(args.arch is not None or args.calibration is not None, "--arch and "
               "--calibration go with --model PATH; the bundled models have their own")
        model, _, meta = load_bundled(name)
        spec = QuantSpec.parse(bits, image_scale=dataset(name).image_scale, **options)
        return (model, load_splits(meta["split_seed"], name), spec,
                f"the bundled {name} model")
    from intvit.golden_model.checkpoint import load_checkpoint
    from intvit.golden_model.vit import PRESETS

    refuse(args.arch is not None and args.arch not in PRESETS, f"--arch {args.arch}: unknown "
           f"architecture; use one of {', '.join(sorted(PRESETS))}")
    refuse(args.calibration is None, "--model PATH needs --calibration IMAGES.npy (float "
           "images, N x C x H x W, normalized as the model expects)")
    refuse(not Path(args.model).is_file(), f"--model {args.model}: no such checkpoint file; "
           "give a timm ViT/DeiT .pth or .safetensors, or a bundled model: digits, mnist")
    model = load_checkpoint(args.model, PRESETS[args.arch] if args.arch else None)
    images = torch.from_numpy(load_calibration_images(args.calibration, model.config.in_chans,
                                                      model.config.img_size))
    with torch.no_grad():
        labels = model(images).argmax(-1)
    split = Split(images, labels)
    spec = QuantSpec.parse(bits, image_scale=image_scale_for(images.numpy()), **options)
    return model, {"calibration": split, "test": split}, spec, args.model


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
                          help="a bundled model: digits (default; alias bundled) or mnist, or "
                          "a timm ViT/DeiT checkpoint path")
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
    group.add_argument("--arch", default=None, help="architecture of --model PATH, e.g. "
                       "deit_tiny_patch16_224 (default: inferred from the weights)")
    group.add_argument("--calibration", default=None,
                       help="--model PATH: calibration images, a float .npy (N, C, H, W)")
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
