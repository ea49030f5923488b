"""The ``intvit`` command: one subcommand per stage, each reading the previous stage's files.

Bad input (an unknown operator, a value out of range, a malformed file, an output path that
cannot be written) is reported as one line on stderr, ``intvit COMMAND: what was wrong; what to
do``, with exit status 2, and nothing is written. Every command checks all its arguments and
paths before doing any work, and writes its files atomically (``golden_model/files.py``).
"""
import argparse
import inspect
import sys
from pathlib import Path

from intvit.golden_model.errors import IntvitError

EXIT_BAD_INPUT = 2
EXIT_TOOLCHAIN = 3
IPTQ_BITS = ("w8a8", "w4a8")
"""Weight/activation widths of the integer pipeline: the GEMM array has 8- and 4-bit weights."""
METHOD_DOC = "docs/method.md"
"""Where the method, its equations and their sources are described."""


def int_at_least(minimum: int, what: str):
    """argparse type: an integer ``>= minimum`` (``what`` names such values in the help)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum} (got {text!r})")
        return value

    parse.__name__ = what
    return parse


positive_int = int_at_least(1, "positive integer")
non_negative_int = int_at_least(0, "seed")


def stall_probability(text: str) -> float:
    """argparse type: a probability ``0 <= p < 1`` (at 1 no beat would ever move)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a probability with 0 <= p < 1 (got {text!r}); "
                                         "at 1 no beat would ever move")
    return value


def parse_value(text: str):
    """``--set`` values: ``true``/``false``, then int, then float, else the string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def config_options(operator, settings: list[str]) -> dict:
    """``["k=v", ...]`` checked against the parameters of ``operator.example_config``."""
    known = list(inspect.signature(operator.example_config).parameters)
    options = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise IntvitError(f"--set {setting!r}: write it as NAME=VALUE")
        if key not in known:
            raise IntvitError(f"--set {key}: {operator.name} has no option {key!r}; "
                              f"options: {', '.join(known) or 'none'}")
        options[key] = parse_value(value)
    return options


def operator_config(name: str, settings: list[str]):
    """The registered operator ``name``, the parsed ``settings`` and its example config with
    them applied."""
    from intvit.golden_model import registry

    operator = registry.get(name)
    options = config_options(operator, settings)
    try:
        return operator, options, operator.example_config(**options)
    except TypeError as error:  # a value of the wrong type for the config
        raise IntvitError(f"{name}: bad option value ({error})") from None


def refuse(condition: bool, message: str) -> None:
    """One-line input error when ``condition`` holds."""
    if condition:
        raise IntvitError(message)


def cmd_doctor(args) -> int:
    from .doctor import check_toolchain

    problems = 0
    for tool in check_toolchain():
        print(f"{tool.name:22s} {tool.version or 'missing':28s} {'ok' if tool.ok else tool.fix}")
        problems += not tool.ok
    if problems:
        print(f"{problems} problem(s) in the toolchain; fix them as shown above", file=sys.stderr)
        return EXIT_TOOLCHAIN
    return 0


def cmd_ops(args) -> int:
    from intvit.golden_model.registry import REGISTRY
    from intvit.hw.units import unit_names

    units = set(unit_names())
    print(f"{'name':18s} {'hw':3s} {'shape':8s} description (source)")
    for name, operator in sorted(REGISTRY.items()):
        shape = "row" if operator.row_wise else "element"
        hw = "yes" if name in units else "-"
        print(f"{name:18s} {hw:3s} {shape:8s} {operator.description} ({operator.source})")
    print(f"the method, each candidate's equations and their sources: {METHOD_DOC}")
    return 0


def cmd_verilog(args) -> int:
    from intvit.fpga.axis import AxisTop, axis_module_name
    from intvit.golden_model.files import check_output_file, write_text_atomic
    from intvit.hw.export import export_verilog, module_name
    from intvit.hw.units import build_gemm, build_unit

    check_output_file(args.output, "-o")
    if args.op == "gemm":
        refuse(bool(args.set), "gemm takes no --set; size it with --rows, --cols, --weight-bits")
        unit = build_gemm(rows=args.rows, cols=args.cols, weight_bits=args.weight_bits,
                          k_max=args.k_max, per_channel=args.per_channel)
    else:
        _, _, config = operator_config(args.op, args.set)
        unit = build_unit(args.op, config, lanes=args.lanes, max_row=args.max_row)
    if args.axis:
        top, name = AxisTop(unit), axis_module_name(args.op)
    else:
        top, name = unit, module_name(args.op)
    write_text_atomic(args.output, export_verilog(top, name))
    print(f"wrote {args.output}: module {name}")
    if args.axis:
        for port in top.ports:
            print(f"  {port.describe()}")
        latency = f"latency {top.latency} cycles" if top.latency is not None else "no fixed latency"
        print(f"  clock aclk, synchronous active-low reset aresetn; {latency}")
    return 0


def cmd_vectors(args) -> int:
    import numpy as np

    from intvit.golden_model.files import check_output_file
    from intvit.golden_model.vectors import make_vectors, save_vectors

    if args.quant is not None:
        return model_vectors(args)
    refuse(args.op is None, "give an operator (see `intvit ops`) or --quant quant.json")
    refuse(args.images is not None, "--images applies with --quant only")
    operator, _, config = operator_config(args.op, args.set)
    check_output_file(args.output, "-o")
    x = operator.sweep_inputs(config, np.random.default_rng(args.seed))
    save_vectors(args.output, make_vectors(args.op, config, x, operator.run(config, x)))
    print(f"wrote {args.output}: {np.asarray(x).size:,} inputs of {args.op}")
    return 0


VECTOR_IMAGES = 16
"""``vectors --quant``: test images whose activations become the vectors, by default."""


def model_vectors(args) -> int:
    """One vector file per non-linear layer of a quantized bundled model (the one quant.json
    names), from its test images."""
    from intvit.golden_model.checkpoint import BUNDLED_NAMES
    from intvit.golden_model.dataset import dataset
    from intvit.golden_model.files import check_output_dir
    from intvit.golden_model.quantfile import load_quant

    refuse(args.op is not None or bool(args.set), "--quant takes the operators and configs "
           "from quant.json; give no operator and no --set with it")
    quant = load_quant(args.quant)
    refuse(quant["model"] not in BUNDLED_NAMES, f"{args.quant} quantized {quant['model']}; "
           "--quant needs a quant.json of a bundled model (its test images give the vectors)")
    images = VECTOR_IMAGES if args.images is None else args.images
    tests = dataset(quant["model"]).split_sizes["test"]
    refuse(images > tests, f"--images {images}: the {quant['model']} test split has {tests} "
           f"images; give 1..{tests}")
    check_output_dir(args.output, "-o")
    return write_layer_vectors(quant, images, Path(args.output))


def write_layer_vectors(quant: dict, count: int, directory: Path) -> int:
    from intvit.golden_model.checkpoint import load_bundled
    from intvit.golden_model.dataset import load_splits
    from intvit.golden_model.qvit import quantize_images
    from intvit.golden_model.select import calibrate_mix
    from intvit.golden_model.vectors import layer_vectors, save_vectors

    model, _, meta = load_bundled(quant["model"])
    splits = load_splits(meta["split_seed"], quant["model"])
    qmodel = calibrate_mix(model, splits["calibration"].images, quant["assignment"],
                           quant["spec"])
    images = quantize_images(splits["test"].images[:count].numpy(), quant["spec"].image_scale)
    for layer, vectors in layer_vectors(qmodel, images).items():
        path = save_vectors(directory / f"{layer}.npz", vectors)
        print(f"wrote {path} ({vectors.op})")
    return 0


def cmd_sim(args) -> int:
    from intvit.golden_model.files import check_output_dir
    from intvit.golden_model.vectors import load_checked_vectors
    from intvit.sim.verify import verify

    work_dir = Path(args.work_dir or Path("runs") / "sim" / args.op.replace("/", "_"))
    check_output_dir(work_dir, "--work-dir")
    if args.op == "gemm":
        refuse(args.vectors is not None or bool(args.set), "gemm takes no --vectors and no "
               "--set; it simulates its own products (size it with --rows, --cols)")
        return sim_gemm(args, work_dir)
    if args.vectors is not None:
        refuse(bool(args.set), "--vectors brings its own config; give no --set with it")
        vectors, config = load_checked_vectors(args.vectors)
        refuse(vectors.op != args.op, f"vector file {args.vectors} is for {vectors.op}, not "
               f"{args.op}; run `intvit sim {vectors.op} --vectors {args.vectors}`")
    else:
        _, _, config = operator_config(args.op, args.set)
    outcome = verify(args.op, config, lanes=args.lanes, max_row=args.max_row,
                     work_dir=work_dir, seed=args.seed, source_idle=args.stall,
                     sink_stall=args.stall, vectors_path=args.vectors, progress=say)
    print(outcome.summary())
    return 0 if outcome.result.passed else 1


def say(line: str) -> None:
    """A progress line on stderr (stdout keeps the result)."""
    print(f"  {line}", file=sys.stderr, flush=True)


def sim_gemm(args, work_dir: Path) -> int:
    from intvit.golden_model.gemm import example_config, example_requant
    from intvit.sim.gemm_bench import SIM_SHAPES, verify_gemm

    config = example_config(args.rows, args.cols, args.weight_bits, args.k_max,
                            per_channel=args.per_channel)
    say(f"simulating {len(SIM_SHAPES)} products on the {args.rows}x{args.cols} array ...")
    runs = verify_gemm(config, None if args.per_channel else example_requant(), SIM_SHAPES,
                       work_dir=work_dir, seed=args.seed, sink_stall=args.stall)
    for run in runs:
        print(run.summary())
    mismatches = sum(run.result.mismatches for run in runs)
    print(f"gemm: {len(runs)} products, {mismatches} mismatches in all")
    return 0 if all(run.result.passed for run in runs) else 1


def cmd_cost(args) -> int:
    if args.all:
        return cost_table(args)
    from intvit.fpga.cost import measure, write_cost_json
    from intvit.fpga.table import measure_gemm
    from intvit.golden_model.files import check_output_file

    refuse(not args.op, "name an operator (see `intvit ops`), gemm, or give --all")
    if args.op == "gemm":
        refuse(bool(args.set), "gemm takes no --set; size it with --rows and --cols")
        stem = f"gemm_{args.rows}x{args.cols}" + ("_per_channel" if args.per_channel else "")
        output = check_output_file(args.output or default_cost_path(stem, args.target), "-o")
        entry = measure_gemm(args.rows, args.cols, target=args.target,
                             per_channel=args.per_channel)
    else:
        _, options, config = operator_config(args.op, args.set)
        stem = args.op.replace("/", "_")
        output = check_output_file(args.output or default_cost_path(stem, args.target), "-o")
        entry = measure(args.op, config, lanes=args.lanes, target=args.target,
                        config_options=options, max_row=args.max_row)
    write_cost_json(entry, output)
    print(format_cost(entry))
    print(f"wrote {output}")
    return 0


def default_cost_path(stem: str, target: str) -> Path:
    return Path("runs") / "cost" / f"{stem}-{target}.json"


def cost_table(args) -> int:
    """``cost --all``: every unit at its example config, written as the cost table."""
    from intvit.fpga.table import build_table, table_path, write_table
    from intvit.golden_model.files import check_output_file

    refuse(bool(args.op or args.set), "--all measures every unit at its example config; give "
           "no operator and no --set with it")
    output = check_output_file(args.output or table_path(args.target), "-o")
    table, failures = build_table(args.target, progress=lambda line: print(line, flush=True))
    path = write_table(table, output)
    print(f"wrote {path}: {len(table['entries'])} entries")
    if failures:
        print(f"{len(failures)} unit(s) failed and are not in the table: "
              f"{', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def format_cost(entry: dict) -> str:
    resources = ", ".join(f"{k} {v}" for k, v in entry["resources"].items())
    fmax = entry.get("fmax_mhz")
    timing = f", Fmax {fmax:.1f} MHz" if fmax else ""
    source = " (cached)" if entry.get("cached") else ""
    return f"{entry['op']} on {entry['target']}: {resources}{timing}{source}"


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
    weights = OmegaWeights(*parse_weights("1,1,0.5" if args.weights is None else args.weights))
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


def cmd_demo(args) -> int:
    from intvit.golden_model.files import check_output_dir

    from .demo import run_demo

    model = bundled_choice(args.model)
    refuse(model is None, f"--model {args.model}: the demo runs on a bundled model only "
           "(digits, mnist); quantize a checkpoint with `intvit quantize --model PATH`")
    check_output_dir(args.out, "--out")
    return run_demo(Path(args.out), force=args.force, only=args.only, model=model)


REPORT_INPUTS = ("quant.json", "rules.json", "quantize.done", "sim.done", "cost.done")


def cmd_report(args) -> int:
    from intvit.golden_model.files import check_output_dir

    from .report import write_report

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


class OneLineParser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (what was wrong, and where to read more)."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message}; see '{self.prog} --help'\n")


def add_unit_options(parser: argparse.ArgumentParser, optional: bool = False,
                     extra: str = "") -> None:
    parser.add_argument("op", nargs="?" if optional else None,
                        help="operator name, e.g. requant, softmax/iptq (see `intvit ops`)"
                        + extra)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="config option (repeatable), e.g. --set bits=4 --set ratio=0.01")


def add_gemm_options(parser: argparse.ArgumentParser, full: bool = True) -> None:
    group = parser.add_argument_group("gemm (the GEMM array)")
    group.add_argument("--rows", type=positive_int, default=8, help="array rows R (default 8)")
    group.add_argument("--cols", type=positive_int, default=8,
                       help="array columns C (default 8)")
    group.add_argument("--per-channel", action="store_true",
                       help="requantize per output channel, m and e streamed with the bias "
                            "(as the integer ViT's layers); default one built-in requantizer")
    if full:
        group.add_argument("--weight-bits", type=int, default=8, choices=(4, 8),
                           help="weight width (default 8)")
        group.add_argument("--k-max", type=positive_int, default=4096,
                           help="longest reduction, sizes the accumulators (default 4096)")


def add_lanes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lanes", type=positive_int, default=1,
                        help="elements per beat, 1..64 (default 1)")
    parser.add_argument("--max-row", type=positive_int, default=None,
                        help="row units: longest row the buffer holds (default: LayerNorm's "
                             "channels, else 256)")


def add_doctor(commands) -> None:
    doctor = commands.add_parser("doctor", help="check the toolchain (Amaranth, Yosys, cocotb, "
                                 "Verilator, nextpnr)")
    doctor.set_defaults(run=cmd_doctor)


def add_ops(commands) -> None:
    ops = commands.add_parser("ops", help=f"list the registered operators (method: {METHOD_DOC})")
    ops.set_defaults(run=cmd_ops)


def add_verilog(commands) -> None:
    verilog = commands.add_parser("verilog", help="write Verilog for an operator's unit")
    add_unit_options(verilog, extra=" or gemm")
    add_lanes(verilog)
    add_gemm_options(verilog)
    verilog.add_argument("--axis", action="store_true", help="wrap the unit in an AXI4-Stream "
                         "top (aclk, aresetn, s_axis_*, m_axis_*; see docs/fpga.md)")
    verilog.add_argument("-o", "--output", required=True, type=Path, help="Verilog file to write")
    verilog.set_defaults(run=cmd_verilog)


def add_vectors(commands) -> None:
    vectors = commands.add_parser("vectors", help="write golden test vectors (.npz): an "
                                  "operator's sweep, or every layer of a quantized model")
    add_unit_options(vectors, optional=True, extra="; omit with --quant")
    vectors.add_argument("--quant", type=Path, help="quant.json of `intvit quantize`: write one "
                         "file per non-linear layer, from real test images, into -o DIR")
    vectors.add_argument("--images", type=positive_int, default=None,
                         help=f"--quant: test images used, at most the test split's "
                         f"(default {VECTOR_IMAGES})")
    vectors.add_argument("-o", "--output", required=True, type=Path,
                         help=".npz file to write (a directory with --quant)")
    vectors.add_argument("--seed", type=non_negative_int, default=0)
    vectors.set_defaults(run=cmd_vectors)


def add_sim(commands) -> None:
    sim = commands.add_parser("sim", help="simulate a unit under Verilator against the golden "
                              "model")
    add_unit_options(sim, extra=" or gemm")
    add_lanes(sim)
    add_gemm_options(sim)
    sim.add_argument("--vectors", type=Path, help="vector file of `intvit vectors`: the unit is "
                     "built from the config stored in it, and the file is checked against the "
                     "golden model first (default: a fresh sweep)")
    sim.add_argument("--stall", type=stall_probability, default=0.0,
                     help="probability of an idle source / stalled sink cycle, 0 <= p < 1 "
                     "(default 0)")
    sim.add_argument("--seed", type=non_negative_int, default=0)
    sim.add_argument("--work-dir", type=Path, help="where vectors, logs and waves go (default "
                     "runs/sim/OP)")
    sim.set_defaults(run=cmd_sim)


def add_cost(commands) -> None:
    cost = commands.add_parser("cost", help="synthesize and place-and-route a unit; write its "
                               "cost JSON (--all: the whole cost table)")
    add_unit_options(cost, optional=True, extra=" or gemm; omit with --all")
    cost.add_argument("--all", action="store_true", help="measure every available unit at its "
                      "8-bit example config and the GEMM array at 4x4 and 8x8; write the table "
                      "(default fpga/tables/TARGET.json)")
    add_lanes(cost)
    add_gemm_options(cost, full=False)
    cost.add_argument("--target", default="ecp5", choices=("ecp5", "xilinx"))
    cost.add_argument("-o", "--output", type=Path, help="JSON file (default runs/cost/..., or "
                      "with --all fpga/tables/TARGET.json)")
    cost.set_defaults(run=cmd_cost)


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


def add_demo(commands) -> None:
    from .demo import STAGES

    demo = commands.add_parser("demo", help="the main job on a bundled model")
    demo.add_argument("--model", default="digits", help="the bundled model: digits (default; "
                      "alias bundled) or mnist")
    demo.add_argument("-o", "--out", default="runs/demo", help="output directory (default runs/demo)")
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


COMMANDS = (add_doctor, add_ops, add_verilog, add_vectors, add_sim, add_cost, add_quantize,
            add_demo, add_report)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="intvit", description="Integer-only ViT: golden model, RTL, bit-exact simulation "
        f"and FPGA cost for every operator (the method: {METHOD_DOC}).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error already printed on one line
        return stop.code
    try:
        return args.run(args)
    except IntvitError as error:  # ConfigError too: bad input, never a traceback
        message = " ".join(str(error).split())
        print(f"intvit {args.command}: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"intvit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
