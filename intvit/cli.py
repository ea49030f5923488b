"""The ``intvit`` command: one subcommand per stage, each reading the previous stage's files.

Bad input (an unknown operator, a value out of range, a malformed file) is reported as one line
on stderr with exit status 2, and no output file is written.
"""
import argparse
import inspect
import sys
from pathlib import Path

from intvit.golden_model.errors import IntvitError

EXIT_BAD_INPUT = 2
EXIT_TOOLCHAIN = 3


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
    from intvit.hw.units import available_units

    units = set(available_units())
    print(f"{'name':18s} {'hw':3s} {'shape':8s} description (source)")
    for name, operator in sorted(REGISTRY.items()):
        shape = "row" if operator.row_wise else "element"
        hw = "yes" if name in units else "-"
        print(f"{name:18s} {hw:3s} {shape:8s} {operator.description} ({operator.source})")
    return 0


def cmd_verilog(args) -> int:
    from intvit.fpga.axis import AxisTop, axis_module_name
    from intvit.hw.export import export_verilog, module_name
    from intvit.golden_model.files import write_text_atomic
    from intvit.hw.units import build_gemm, build_unit

    if args.op == "gemm":
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

    from intvit.golden_model.vectors import make_vectors, save_vectors

    if args.quant is not None:
        return model_vectors(args)
    if args.op is None:
        raise IntvitError("give an operator (see `intvit ops`) or --quant quant.json")
    operator, _, config = operator_config(args.op, args.set)
    x = operator.sweep_inputs(config, np.random.default_rng(args.seed))
    save_vectors(args.output, make_vectors(args.op, config, x, operator.run(config, x)))
    print(f"wrote {args.output}: {np.asarray(x).size:,} inputs of {args.op}")
    return 0


def model_vectors(args) -> int:
    """One vector file per non-linear layer of a quantized bundled model, from test images."""
    from intvit.golden_model.checkpoint import load_bundled
    from intvit.golden_model.dataset import load_splits
    from intvit.golden_model.qvit import quantize_images
    from intvit.golden_model.quantfile import load_quant
    from intvit.golden_model.select import calibrate_mix
    from intvit.golden_model.vectors import layer_vectors, save_vectors

    quant = load_quant(args.quant)
    model, _, _ = load_bundled()
    splits = load_splits()
    qmodel = calibrate_mix(model, splits["calibration"].images, quant["assignment"],
                           quant["spec"])
    images = quantize_images(splits["test"].images[:args.images].numpy(),
                             quant["spec"].image_scale)
    for layer, vectors in layer_vectors(qmodel, images).items():
        path = save_vectors(Path(args.output) / f"{layer}.npz", vectors)
        print(f"wrote {path} ({vectors.op})")
    return 0


def cmd_sim(args) -> int:
    from intvit.sim.verify import verify

    work_dir = Path(args.work_dir or Path("runs") / "sim" / args.op.replace("/", "_"))
    if args.op == "gemm":
        return sim_gemm(args, work_dir)
    _, _, config = operator_config(args.op, args.set)
    outcome = verify(args.op, config, lanes=args.lanes, max_row=args.max_row,
                     work_dir=work_dir, seed=args.seed,
                     source_idle=args.stall, sink_stall=args.stall, vectors_path=args.vectors)
    print(outcome.summary())
    return 0 if outcome.result.passed else 1


def sim_gemm(args, work_dir: Path) -> int:
    from intvit.golden_model.gemm import example_config, example_requant
    from intvit.sim.gemm_bench import SIM_SHAPES, verify_gemm

    config = example_config(args.rows, args.cols, args.weight_bits, args.k_max,
                            per_channel=args.per_channel)
    runs = verify_gemm(config, None if args.per_channel else example_requant(), SIM_SHAPES,
                       work_dir=work_dir, seed=args.seed, sink_stall=args.stall)
    for run in runs:
        print(run.summary())
    mismatches = sum(run.result.mismatches for run in runs)
    print(f"gemm: {len(runs)} products, {mismatches} mismatches in all")
    return 0 if all(run.result.passed for run in runs) else 1


def cmd_cost(args) -> int:
    from intvit.fpga.cost import measure, write_cost_json
    from intvit.fpga.table import build_table, measure_gemm, write_table

    if args.all:
        if args.op or args.set:
            raise IntvitError("--all measures every unit at its example config; give no "
                              "operator and no --set with it")
        table, failures = build_table(args.target, progress=lambda line: print(line, flush=True))
        path = write_table(table, args.output)
        print(f"wrote {path}: {len(table['entries'])} entries")
        if failures:
            print(f"{len(failures)} unit(s) failed and are not in the table: "
                  f"{', '.join(failures)}", file=sys.stderr)
            return 1
        return 0
    if not args.op:
        raise IntvitError("name an operator (see `intvit ops`), gemm, or give --all")
    if args.op == "gemm":
        entry = measure_gemm(args.rows, args.cols, target=args.target,
                             per_channel=args.per_channel)
        stem = f"gemm_{args.rows}x{args.cols}" + ("_per_channel" if args.per_channel else "")
    else:
        _, options, config = operator_config(args.op, args.set)
        entry = measure(args.op, config, lanes=args.lanes, target=args.target,
                        config_options=options, max_row=args.max_row)
        stem = args.op.replace("/", "_")
    output = Path(args.output or Path("runs") / "cost" / f"{stem}-{args.target}.json")
    write_cost_json(entry, output)
    print(format_cost(entry))
    print(f"wrote {output}")
    return 0


def format_cost(entry: dict) -> str:
    resources = ", ".join(f"{k} {v}" for k, v in entry["resources"].items())
    fmax = entry.get("fmax_mhz")
    timing = f", Fmax {fmax:.1f} MHz" if fmax else ""
    source = " (cached)" if entry.get("cached") else ""
    return f"{entry['op']} on {entry['target']}: {resources}{timing}{source}"


def cmd_quantize(args) -> int:
    from intvit.golden_model.costs import load_cost_table
    from intvit.golden_model.metrics import OmegaWeights
    from intvit.golden_model.quantfile import save_quant
    from intvit.golden_model.select import quantize_model

    if args.method == "adfq":
        return quantize_adfq_command(args)
    weights = OmegaWeights(*parse_weights(args.weights))
    table = load_cost_table(args.cost_table)
    model, splits, spec, what = model_and_data(args)
    print(f"quantizing {what} at {args.bits.upper()}, rule {args.rule}, cost table "
          f"{table.source}{'' if table.measured else ' (stand-in)'}", flush=True)

    def progress(done, total, layer):
        print(f"  [{done}/{total}] scored {layer}", flush=True)

    result = quantize_model(model, splits, spec, args.rule, weights, table, progress=progress)
    path = save_quant(Path(args.out) / "quant.json", result)
    print(choice_table(result.assignment))
    acc = result.accuracy
    measure = "accuracy" if args.model == "bundled" else "top-1 agreement with float"
    print(f"test {measure}: float {acc['float']:.4f}, integer {acc['stage3']:.4f} "
          f"(before stage 3: {acc['stage2']:.4f})")
    print(f"wrote {path}")
    return 0


def quantize_adfq_command(args) -> int:
    """ADFQ-ViT (``--method adfq``) on the bundled model; writes ``adfq.json``."""
    import json

    from intvit.golden_model.adfq import adfq_splits
    from intvit.golden_model.adfq_pipeline import DEFAULT_ITERATIONS, quantize_adfq
    from intvit.golden_model.checkpoint import load_bundled
    from intvit.golden_model.dataset import load_splits
    from intvit.golden_model.files import write_text_atomic

    if args.model != "bundled":
        raise IntvitError("--method adfq runs on the bundled model only (it needs labelled "
                          "test images)")
    bits = args.bits if args.bits != "w8a8" else "w4a4"
    model, _, _ = load_bundled()
    print(f"ADFQ-ViT on the bundled model at {bits.upper()}, components {args.components}, "
          f"log base {args.log_base}", flush=True)
    result = quantize_adfq(model, adfq_splits(load_splits()), bits, args.components,
                           args.iterations if args.iterations is not None else
                           DEFAULT_ITERATIONS, outliers=args.outliers, log_base=args.log_base,
                           progress=lambda d, n, name: print(f"  [{d}/{n}] reconstructed {name}",
                                                             flush=True))
    path = write_text_atomic(Path(args.out) / "adfq.json", json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, indent=1))
    print(f"wrote {path}")
    return 0


def model_and_data(args):
    """The float model, its calibration/test splits and the QuantSpec for ``--model``: the
    bundled digits model and dataset, or a timm checkpoint with ``--calibration`` images (whose
    "test" is the same images labelled by the float model: integer-vs-float agreement)."""
    import torch

    from intvit.golden_model.dataset import Split
    from intvit.golden_model.qvit import QuantSpec, image_scale_for

    if args.model == "bundled":
        from intvit.golden_model.checkpoint import load_bundled
        from intvit.golden_model.dataset import load_splits

        model, _, _ = load_bundled()
        return (model, load_splits(), QuantSpec.parse(args.bits, calibrator=args.calibrator),
                "the bundled model")
    from intvit.golden_model.checkpoint import load_checkpoint
    from intvit.golden_model.vit import PRESETS

    if args.arch is not None and args.arch not in PRESETS:
        raise IntvitError(f"--arch {args.arch}: unknown architecture; use one of "
                          f"{', '.join(sorted(PRESETS))}")
    if args.calibration is None:
        raise IntvitError("--model PATH needs --calibration IMAGES.npy (float images, "
                          "N x C x H x W, normalized as the model expects)")
    model = load_checkpoint(args.model, PRESETS[args.arch] if args.arch else None)
    images = load_images(args.calibration, model.config)
    with torch.no_grad():
        labels = model(images).argmax(-1)
    split = Split(images, labels)
    spec = QuantSpec.parse(args.bits, calibrator=args.calibrator,
                           image_scale=image_scale_for(images.numpy()))
    return model, {"calibration": split, "test": split}, spec, args.model


def load_images(path, config):
    """Float calibration images from a ``.npy`` file, checked against the model's input."""
    import numpy as np
    import torch

    try:
        images = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise IntvitError(f"calibration images {path} do not exist") from None
    except (OSError, ValueError) as error:
        raise IntvitError(f"calibration images {path} are not a .npy array ({error})") from None
    expected = (config.in_chans, config.img_size, config.img_size)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise IntvitError(f"calibration images {path} have shape {images.shape}; the model "
                          f"takes (N, {', '.join(map(str, expected))})")
    if len(images) == 0:
        raise IntvitError(f"calibration images {path} are empty; give at least one image")
    if not np.issubdtype(images.dtype, np.floating) or not np.all(np.isfinite(images)):
        raise IntvitError(f"calibration images {path} must be finite floats (found NaN, "
                          "infinity or integers)")
    return torch.from_numpy(images.astype(np.float32))


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
    """``"1,1,0.5"`` -> the three Omega weights."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise IntvitError(f"--weights {text!r}: give three numbers, e.g. 1,1,0.5 "
                          "(sensitivity, perturbation, cost)")
    return values


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(Path(args.out), force=args.force, only=args.only)


def cmd_report(args) -> int:
    from .report import write_report

    directory = Path(args.directory)
    missing = [name for name in ("quant.json", "rules.json", "quantize.done", "sim.done",
                                 "cost.done") if not (directory / name).exists()]
    if missing:
        raise IntvitError(f"{directory} lacks {', '.join(missing)}; run `intvit demo --out "
                          f"{directory}` first")
    files = write_report(directory)
    print(f"wrote {files['markdown']} and {files['html']}")
    return 0


def add_unit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("op", help="operator name, e.g. requant, softmax/iptq (see `intvit ops`) "
                        "or gemm")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="config option (repeatable), e.g. --set bits=4 --set ratio=0.01")


def add_gemm_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("gemm (the GEMM array)")
    group.add_argument("--rows", type=int, default=8, help="array rows R (default 8)")
    group.add_argument("--cols", type=int, default=8, help="array columns C (default 8)")
    group.add_argument("--weight-bits", type=int, default=8, choices=(4, 8),
                       help="weight width (default 8)")
    group.add_argument("--k-max", type=int, default=4096,
                       help="longest reduction, sizes the accumulators (default 4096)")
    group.add_argument("--per-channel", action="store_true",
                       help="requantize per output channel, m and e streamed with the bias "
                            "(as the integer ViT's layers); default one built-in requantizer")


def add_lanes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lanes", type=int, default=1, help="elements per beat (default 1)")
    parser.add_argument("--max-row", type=int, default=None,
                        help="row units: longest row the buffer holds (default: LayerNorm's "
                             "channels, else 256)")


class OneLineParser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (what was wrong, and where to read more)."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="intvit", description="Integer-only ViT: golden model, RTL, bit-exact simulation "
        "and FPGA cost for every operator.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    doctor = commands.add_parser("doctor", help="check the toolchain (Amaranth, Yosys, cocotb, "
                                 "Verilator, nextpnr)")
    doctor.set_defaults(run=cmd_doctor)

    ops = commands.add_parser("ops", help="list the registered operators")
    ops.set_defaults(run=cmd_ops)

    verilog = commands.add_parser("verilog", help="write Verilog for an operator's unit")
    add_unit_options(verilog)
    add_lanes(verilog)
    add_gemm_options(verilog)
    verilog.add_argument("--axis", action="store_true", help="wrap the unit in an AXI4-Stream "
                         "top (aclk, aresetn, s_axis_*, m_axis_*; see docs/fpga.md)")
    verilog.add_argument("-o", "--output", required=True, type=Path, help="Verilog file to write")
    verilog.set_defaults(run=cmd_verilog)

    vectors = commands.add_parser("vectors", help="write golden test vectors (.npz): an "
                                  "operator's sweep, or every layer of a quantized model")
    vectors.add_argument("op", nargs="?", help="operator name (see `intvit ops`)")
    vectors.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                         help="config option (repeatable)")
    vectors.add_argument("--quant", type=Path, help="quant.json of `intvit quantize`: write one "
                         "file per non-linear layer, from real test images, into -o DIR")
    vectors.add_argument("--images", type=int, default=16, help="--quant: test images used")
    vectors.add_argument("-o", "--output", required=True, type=Path,
                         help=".npz file to write (a directory with --quant)")
    vectors.add_argument("--seed", type=int, default=0)
    vectors.set_defaults(run=cmd_vectors)

    sim = commands.add_parser("sim", help="simulate a unit under Verilator against the golden "
                              "model")
    add_unit_options(sim)
    add_lanes(sim)
    add_gemm_options(sim)
    sim.add_argument("--vectors", type=Path, help="vector file (default: a fresh sweep)")
    sim.add_argument("--stall", type=float, default=0.0,
                     help="probability of an idle source / stalled sink cycle (default 0)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--work-dir", type=Path, help="where vectors, logs and waves go")
    sim.set_defaults(run=cmd_sim)

    cost = commands.add_parser("cost", help="synthesize and place-and-route a unit; write its "
                               "cost JSON (--all: the whole cost table)")
    cost.add_argument("op", nargs="?", help="operator name, e.g. requant, softmax/iptq (see "
                      "`intvit ops`) or gemm; omit with --all")
    cost.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                      help="config option (repeatable), e.g. --set bits=4")
    cost.add_argument("--all", action="store_true", help="measure every available unit at its "
                      "8-bit example config and the GEMM array at 4x4 and 8x8; write the table "
                      "(default fpga/tables/TARGET.json)")
    add_lanes(cost)
    cost.add_argument("--rows", type=int, default=8, help="gemm: array rows R (default 8)")
    cost.add_argument("--cols", type=int, default=8, help="gemm: array columns C (default 8)")
    cost.add_argument("--per-channel", action="store_true",
                      help="gemm: per-channel requantization (m, e streamed with the bias)")
    cost.add_argument("--target", default="ecp5", choices=("ecp5", "xilinx"))
    cost.add_argument("-o", "--output", type=Path, help="JSON file (default runs/cost/..., or "
                      "with --all fpga/tables/TARGET.json)")
    cost.set_defaults(run=cmd_cost)

    quantize = commands.add_parser("quantize", help="quantize the bundled model to integers, "
                                   "one candidate per non-linear layer")
    quantize.add_argument("--model", default="bundled",
                          help="bundled (default) or a timm ViT/DeiT checkpoint path")
    quantize.add_argument("--arch", default=None, help="architecture of --model PATH, e.g. "
                          "deit_tiny_patch16_224 (default: inferred from the weights)")
    quantize.add_argument("--calibration", default=None,
                          help="--model PATH: calibration images, a float .npy (N, C, H, W)")
    quantize.add_argument("--bits", default="w8a8", help="w8a8 (default) or w4a8; with "
                          "--method adfq: w4a4 (default) or w6a6")
    quantize.add_argument("--method", default="iptq", choices=("iptq", "adfq"),
                          help="iptq (integer-only, default) or adfq (ADFQ-ViT quantizers and "
                          "module-wise reconstruction)")
    quantize.add_argument("--components", default="all",
                          help="--method adfq: all, none, or a list like poq,amo")
    quantize.add_argument("--iterations", type=int, default=None,
                          help="--method adfq: reconstruction iterations per module")
    quantize.add_argument("--outliers", default="float", choices=("float", "int16"),
                          help="--method adfq: outlier path (int16 keeps it integer)")
    quantize.add_argument("--log-base", default="sqrt2", choices=("sqrt2", "2"),
                          help="--method adfq: log quantizer base, sqrt2 (the authors' code, "
                          "default) or 2 (the paper's text)")
    quantize.add_argument("--rule", default="unified", help="unified (IPTQ-ViT, default), "
                          "sqnr-diff, sqnr-output, all-iptq, all-ivit, all-ibert, all-fqvit")
    quantize.add_argument("--calibrator", default="percentile",
                          help="activation calibrator: minmax, percentile (default), mse")
    quantize.add_argument("--weights", default="1,1,0.5",
                          help="Omega weights of sensitivity, perturbation, cost")
    quantize.add_argument("--cost-table", default=None,
                          help="cost table JSON (default: fpga/tables/ecp5.json, else stand-in)")
    quantize.add_argument("-o", "--out", default="runs/quantize", help="output directory")
    quantize.set_defaults(run=cmd_quantize)

    demo = commands.add_parser("demo", help="the main job on the bundled model")
    demo.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    demo.add_argument("--force", action="store_true",
                      help="redo every stage (default: reuse the stages finished earlier)")
    demo.add_argument("--only", metavar="STAGE", help="run one stage (quantize, vectors, "
                      "verilog, sim, cost, report) from the files of the stages before it")
    demo.set_defaults(run=cmd_demo)

    report = commands.add_parser("report", help="write report.md and report.html of a demo run")
    report.add_argument("directory", nargs="?", default="runs/demo")
    report.set_defaults(run=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error already printed on one line
        return stop.code
    try:
        return args.run(args)
    except IntvitError as error:
        print(f"intvit {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"intvit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
