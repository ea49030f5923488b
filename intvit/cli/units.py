"""The per-unit commands: ``doctor``, ``ops``, ``verilog``, ``vectors``, ``sim``, ``cost``."""
import sys
from pathlib import Path

from .arguments import (add_accelerator_options, default_cost_path, format_cost,
                        EXIT_TOOLCHAIN, METHOD_DOC, add_gemm_options, add_lanes, add_unit_options,
                        non_negative_int, operator_config, positive_int, refuse, say,
                        stall_probability)



def cmd_doctor(args) -> int:
    from intvit.doctor import check_toolchain

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
    if args.op == "accelerator":
        from .accelerator import cmd_verilog_accelerator
        return cmd_verilog_accelerator(args)
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

    from intvit.golden_model.files import check_output_dir, check_output_file
    from intvit.golden_model.vectors import make_vectors, save_vectors

    refuse(args.output is None and args.hex is None, "give -o FILE (.npz), --hex DIR "
           "(Verilog testbench and $readmemh files), or both")
    refuse(args.hex is None and (args.lanes != 1 or args.max_row is not None),
           "--lanes and --max-row size the unit of --hex; give them with --hex only")
    if args.hex is not None:
        check_output_dir(args.hex, "--hex")
    if args.quant is not None:
        return model_vectors(args)
    refuse(args.op is None, "give an operator (see `intvit ops`) or --quant quant.json")
    refuse(args.images is not None, "--images applies with --quant only")
    operator, _, config = operator_config(args.op, args.set)
    if args.output is not None:
        check_output_file(args.output, "-o")
    x = operator.sweep_inputs(config, np.random.default_rng(args.seed))
    vectors = make_vectors(args.op, config, x, operator.run(config, x))
    if args.hex is not None:
        write_hex(args, args.hex, args.op, config, vectors)
    if args.output is not None:
        save_vectors(args.output, vectors)
        print(f"wrote {args.output}: {np.asarray(x).size:,} inputs of {args.op}")
    return 0


def write_hex(args, directory: Path, op: str, config, vectors) -> None:
    """The unit's Verilog, its ``$readmemh`` beats and self-checking testbench in
    ``directory`` (:mod:`intvit.fpga.hextb`)."""
    from intvit.fpga.hextb import write_hex_bench

    bench = write_hex_bench(directory, op, config, vectors, lanes=args.lanes,
                            max_row=args.max_row)
    print(bench.summary())


VECTOR_IMAGES = 16
"""``vectors --quant``: test images whose activations become the vectors, by default."""


def model_vectors(args) -> int:
    """One vector file per non-linear layer of a quantized model (the run whose quant.json
    ``--quant`` names: a bundled model or a user's checkpoint), from its evaluation images."""
    from intvit.golden_model.files import check_output_dir
    from intvit.golden_model.quantfile import evaluation_count, load_run

    refuse(args.op is not None or bool(args.set), "--quant takes the operators and configs "
           "from quant.json; give no operator and no --set with it")
    images = VECTOR_IMAGES if args.images is None else args.images
    available = evaluation_count(args.quant)
    refuse(images > available, f"--images {images}: the evaluation images of {args.quant} "
           f"number {available}; give 1..{available}")
    if args.output is not None:
        check_output_dir(args.output, "-o")
    _, qmodel, codes = load_run(args.quant)
    return write_layer_vectors(qmodel, codes[:images], args)


def write_layer_vectors(qmodel, codes, args) -> int:
    """Per layer: with ``-o DIR`` the file ``DIR/<layer>.npz``, with ``--hex DIR`` a testbench
    directory ``DIR/<layer>`` of the layer's unit (built from the layer's own config)."""
    from intvit.golden_model.vectors import layer_vectors, save_vectors
    from intvit.progress import Eta

    eta = Eta()
    found = layer_vectors(qmodel, codes, progress=lambda done, total: eta("images", done, total))
    for layer, vectors in found.items():
        if args.hex is not None:
            write_hex(args, args.hex / layer, vectors.op, qmodel.plans[layer].config, vectors)
        if args.output is not None:
            path = save_vectors(args.output / f"{layer}.npz", vectors)
            print(f"wrote {path} ({vectors.op})")
    return 0


def cmd_sim(args) -> int:
    from intvit.golden_model.files import check_output_dir
    from intvit.golden_model.vectors import load_checked_vectors
    from intvit.sim.verify import verify

    work_dir = Path(args.work_dir or Path("runs") / "sim" / args.op.replace("/", "_"))
    check_output_dir(work_dir, "--work-dir")
    if args.op == "accelerator":
        from .accelerator import cmd_sim_accelerator
        return cmd_sim_accelerator(args, work_dir)
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
    if args.op == "accelerator":
        from .accelerator import cmd_cost_accelerator
        return cmd_cost_accelerator(args)
    if args.op == "gemm":
        refuse(bool(args.set), "gemm takes no --set; size it with --rows, --cols, --weight-bits")
        stem = (f"gemm_{args.rows}x{args.cols}" + ("_per_channel" if args.per_channel else "")
                + ("" if args.weight_bits == 8 else f"_w{args.weight_bits}"))
        output = check_output_file(args.output or default_cost_path(stem, args.target), "-o")
        entry = measure_gemm(args.rows, args.cols, target=args.target,
                             per_channel=args.per_channel, weight_bits=args.weight_bits)
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


def add_doctor(commands) -> None:
    doctor = commands.add_parser("doctor", help="check the toolchain (Amaranth, Yosys, cocotb, "
                                 "Verilator, nextpnr)")
    doctor.set_defaults(run=cmd_doctor)


def add_ops(commands) -> None:
    ops = commands.add_parser("ops", help=f"list the registered operators (method: {METHOD_DOC})")
    ops.set_defaults(run=cmd_ops)


def add_verilog(commands) -> None:
    verilog = commands.add_parser("verilog", help="write Verilog for an operator's unit")
    add_unit_options(verilog, extra=", gemm or accelerator (the whole model, from --quant)")
    add_lanes(verilog)
    add_gemm_options(verilog)
    add_accelerator_options(verilog)
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
    vectors.add_argument("-o", "--output", type=Path,
                         help=".npz file to write (a directory with --quant)")
    vectors.add_argument("--hex", type=Path, metavar="DIR", help="write the unit's Verilog, "
                         "the beats as $readmemh files and a self-checking Verilog testbench "
                         "(tb_<module>.v) for any simulator into DIR (with --quant: DIR/<layer>)")
    add_lanes(vectors)
    vectors.add_argument("--seed", type=non_negative_int, default=0)
    vectors.set_defaults(run=cmd_vectors)


def add_sim(commands) -> None:
    sim = commands.add_parser("sim", help="simulate a unit under Verilator against the golden "
                              "model")
    add_unit_options(sim, extra=", gemm or accelerator (real test images of --quant)")
    add_lanes(sim)
    add_gemm_options(sim)
    add_accelerator_options(sim)
    sim.add_argument("--images", type=positive_int, default=None,
                     help="accelerator: test images to simulate (default 4)")
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
    add_unit_options(cost, optional=True, extra=", gemm or accelerator; omit with --all")
    cost.add_argument("--all", action="store_true", help="measure every available unit at its "
                      "8-bit example config and the GEMM array at 4x4 and 8x8; write the table "
                      "(default fpga/tables/TARGET.json)")
    add_lanes(cost)
    add_gemm_options(cost, full=False)
    add_accelerator_options(cost)
    cost.add_argument("--target", default="ecp5", choices=("ecp5", "xilinx"))
    cost.add_argument("-o", "--output", type=Path, help="JSON file (default runs/cost/..., or "
                      "with --all fpga/tables/TARGET.json)")
    cost.set_defaults(run=cmd_cost)
