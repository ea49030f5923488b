"""The ``intvit`` command: one subcommand per stage, each reading the previous stage's files.

Bad input (an unknown operator, a value out of range, a malformed file) is reported as one line
on stderr with exit status 2, and no output file is written.
"""
import argparse
import inspect
import sys
from pathlib import Path

from golden_model.errors import IntvitError

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
    from golden_model import registry

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
    from golden_model.registry import REGISTRY
    from hw.units import available_units

    units = set(available_units())
    print(f"{'name':18s} {'hw':3s} {'shape':8s} description (source)")
    for name, operator in sorted(REGISTRY.items()):
        shape = "row" if operator.row_wise else "element"
        hw = "yes" if name in units else "-"
        print(f"{name:18s} {hw:3s} {shape:8s} {operator.description} ({operator.source})")
    return 0


def cmd_verilog(args) -> int:
    from fpga.export import export_verilog, module_name
    from golden_model.files import write_text_atomic
    from hw.units import build_unit

    _, _, config = operator_config(args.op, args.set)
    unit = build_unit(args.op, config, lanes=args.lanes, max_row=args.max_row)
    text = export_verilog(unit, module_name(args.op))
    write_text_atomic(args.output, text)
    print(f"wrote {args.output}: module {module_name(args.op)}, {args.lanes} lane(s)")
    return 0


def cmd_vectors(args) -> int:
    import numpy as np

    from golden_model.vectors import make_vectors, save_vectors

    operator, _, config = operator_config(args.op, args.set)
    x = operator.sweep_inputs(config, np.random.default_rng(args.seed))
    save_vectors(args.output, make_vectors(args.op, config, x, operator.run(config, x)))
    print(f"wrote {args.output}: {np.asarray(x).size:,} inputs of {args.op}")
    return 0


def cmd_sim(args) -> int:
    from sim.verify import verify

    _, _, config = operator_config(args.op, args.set)
    work_dir = Path(args.work_dir or Path("runs") / "sim" / args.op.replace("/", "_"))
    outcome = verify(args.op, config, lanes=args.lanes, max_row=args.max_row,
                     work_dir=work_dir, seed=args.seed,
                     source_idle=args.stall, sink_stall=args.stall, vectors_path=args.vectors)
    print(outcome.summary())
    return 0 if outcome.result.passed else 1


def cmd_cost(args) -> int:
    from fpga.cost import measure, write_cost_json

    _, options, config = operator_config(args.op, args.set)
    entry = measure(args.op, config, lanes=args.lanes, target=args.target,
                    config_options=options)
    output = Path(args.output or Path("runs") / "cost" /
                  f"{args.op.replace('/', '_')}-{args.target}.json")
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


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(Path(args.out))


def add_unit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("op", help="operator name, e.g. requant or softmax/iptq (see `intvit ops`)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="config option (repeatable), e.g. --set bits=4 --set ratio=0.01")


def add_lanes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lanes", type=int, default=1, help="elements per beat (default 1)")
    parser.add_argument("--max-row", type=int, default=None,
                        help="row units: longest row the buffer holds (default: LayerNorm's "
                             "channels, else 256)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    verilog.add_argument("-o", "--output", required=True, type=Path, help="Verilog file to write")
    verilog.set_defaults(run=cmd_verilog)

    vectors = commands.add_parser("vectors", help="write golden test vectors (.npz)")
    add_unit_options(vectors)
    vectors.add_argument("-o", "--output", required=True, type=Path, help=".npz file to write")
    vectors.add_argument("--seed", type=int, default=0)
    vectors.set_defaults(run=cmd_vectors)

    sim = commands.add_parser("sim", help="simulate a unit under Verilator against the golden "
                              "model")
    add_unit_options(sim)
    add_lanes(sim)
    sim.add_argument("--vectors", type=Path, help="vector file (default: a fresh sweep)")
    sim.add_argument("--stall", type=float, default=0.0,
                     help="probability of an idle source / stalled sink cycle (default 0)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--work-dir", type=Path, help="where vectors, logs and waves go")
    sim.set_defaults(run=cmd_sim)

    cost = commands.add_parser("cost", help="synthesize and place-and-route a unit; write its "
                               "cost JSON")
    add_unit_options(cost)
    add_lanes(cost)
    cost.add_argument("--target", default="ecp5", choices=("ecp5", "xilinx"))
    cost.add_argument("-o", "--output", type=Path, help="JSON file (default runs/cost/...)")
    cost.set_defaults(run=cmd_cost)

    demo = commands.add_parser("demo", help="the main job on the bundled model")
    demo.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
