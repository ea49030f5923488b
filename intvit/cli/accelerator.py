"""``intvit verilog|sim accelerator`` and ``intvit perf``: the whole integer ViT on one array
(``perf`` also the cycle model of a Swin: ``golden_model/program_swin.py``).

The model comes from ``--quant DIR/quant.json`` (``intvit quantize`` or ``intvit demo``), by
default the demo's run ``runs/demo/quant.json`` (the bundled model's unified mix).
"""
from pathlib import Path

from .arguments import (DEFAULT_QUANT, add_accelerator_options, default_cost_path,
                        format_cost, refuse, say)

SIM_IMAGES = 4
"""``sim accelerator``: test images simulated by default."""


def accelerator_config(args):
    from intvit.golden_model.program import AcceleratorConfig

    refuse(args.rows != args.cols, f"the accelerator's array is square (its memory word is an "
           f"activation beat and a weight beat): give --rows equal to --cols (got {args.rows} "
           f"x {args.cols})")
    return AcceleratorConfig(lanes=args.rows, requant_lanes=min(args.requant_lanes, args.rows))


def quantized_run(args):
    """``(quant, integer model, evaluation codes)`` of ``--quant`` (default the demo's)."""
    from intvit.golden_model.quantfile import load_run

    path = args.quant or DEFAULT_QUANT
    if args.quant is None and not path.exists():
        refuse(True, f"no --quant given and {path} does not exist; run `intvit demo` (the "
               "bundled model's unified mix) or `intvit quantize`, or give --quant quant.json")
    if path.is_dir():
        path = path / "quant.json"
    return load_run(path)


def compiled(args):
    from intvit.golden_model.program import compile_program

    config = accelerator_config(args)
    quant, qmodel, codes = quantized_run(args)
    return quant, qmodel, codes, compile_program(qmodel, config)


def cmd_verilog_accelerator(args) -> int:
    from intvit.golden_model.files import check_output_file, write_text_atomic
    from intvit.hw.accelerator import Accelerator
    from intvit.hw.export import export_verilog

    check_output_file(args.output, "-o")
    _, _, _, program = compiled(args)
    say(f"{len(program.steps)} steps, {len(program.units)} units; generating Verilog ...")
    write_text_atomic(args.output, export_verilog(Accelerator(program), "intvit_accelerator"))
    program_path = args.output.with_name(args.output.stem + ".program.json")
    program.write(program_path)
    print(f"wrote {args.output}: module intvit_accelerator, and its program {program_path}")
    return 0


def cmd_sim_accelerator(args, work_dir: Path) -> int:
    from intvit.golden_model.files import check_output_dir
    from intvit.hw.accelerator_timing import image_cycles
    from intvit.sim.accelerator import simulate_accelerator

    check_output_dir(work_dir, "--work-dir")
    _, qmodel, codes, program = compiled(args)
    images = args.images or SIM_IMAGES
    refuse(images > len(codes), f"--images {images}: the run has {len(codes)} evaluation "
           "images")
    batch = codes[:images]
    expected = qmodel.forward(batch)
    model_cycles = image_cycles(program)
    say(f"simulating {images} images on the accelerator ({len(program.steps)} steps, "
        f"{model_cycles:,} cycles per image by the cycle model) ...")
    run = simulate_accelerator(program, batch, expected, work_dir=work_dir,
                               timeout_cycles=model_cycles)
    print(run.summary())
    return 0 if run.mismatches == 0 and run.images == images else 1


def cmd_cost_accelerator(args) -> int:
    from intvit.fpga.cost import cached_flow, write_cost_json
    from intvit.golden_model.files import check_output_file
    from intvit.hw.accelerator import Accelerator
    from intvit.hw.export import export_verilog

    from intvit.hw.accelerator_timing import check_fits

    output = check_output_file(args.output or default_cost_path("accelerator", args.target),
                               "-o")
    _, _, _, program = compiled(args)
    check_fits(program, args.target)
    top = "intvit_accelerator"
    say(f"synthesizing and placing the accelerator for {args.target} (tens of minutes the "
        "first time; cached after) ...")
    result, cached, versions = cached_flow(export_verilog(Accelerator(program), top), top,
                                           args.target)
    entry = {"op": "accelerator", "target": args.target, **result, "tools": versions,
             "lanes": program.lanes, "steps": len(program.steps),
             "units": [op for op, _ in program.units], "cached": cached,
             "command": f"intvit cost accelerator --rows {program.lanes} --cols "
                        f"{program.lanes} --target {args.target}"}
    write_cost_json(entry, output)
    print(format_cost(entry))
    print(f"wrote {output}")
    return 0


def cmd_perf(args) -> int:
    from intvit.hw.accelerator_timing import perf_report, shape_program

    config = accelerator_config(args)
    if args.quant is not None:
        program = perf_program(args, config)
        name = str(args.quant)
    else:
        refuse(args.arch is None, "give --arch (a timm ViT/DeiT or Swin name, e.g. "
               "deit_tiny_patch16_224 or swin_tiny_patch4_window7_224) or --quant quant.json")
        program = shape_program(args.arch, config.lanes, config.requant_lanes, args.method)
        name = args.arch
    report = perf_report(program, mhz=args.mhz, bandwidth_gbs=args.bandwidth)
    print(format_perf(name, program, report, args.mhz))
    return 0


def perf_program(args, config):
    """The program of ``--quant``'s model: an integer ViT's (the one the accelerator runs) or an
    integer Swin's (shape-only, for the cycle model: ``golden_model/program_swin.py``)."""
    from intvit.golden_model.program_swin import cycle_program

    _, qmodel, _ = quantized_run(args)
    return cycle_program(qmodel, config)


def format_perf(name: str, program, report: dict, mhz: float) -> str:
    """The performance model's figures as lines."""
    from intvit.hw.accelerator_timing import cycle_shares

    memory = ", ".join(f"{kind} {bits / 8 / 1024:,.0f} KiB"
                       for kind, bits in report["memory_bits"].items())
    lines = [f"{name} on a {program.lanes}x{program.lanes} array at {mhz:g} MHz: "
             f"{report['cycles']:,} cycles per image ({report['cycles'] / report['gemm_cycles']:.3f}"
             f"x the array's busy cycles), {report['ms_per_image']:.2f} ms, "
             f"{report['images_per_s']:.2f} images/s; array utilization "
             f"{report['utilization']:.1%}",
             f"  cycle shares: {cycle_shares(report)}",
             f"  on-chip memory: {memory}",
             f"  weights: {report['weights']}"
             + (f", {report['weight_traffic_bytes'] / 1e6:,.1f} MB per image"
                if report["weight_traffic_bytes"] else "")]
    return "\n".join(lines)


def add_perf(commands) -> None:
    perf = commands.add_parser("perf", help="the accelerator's performance model: cycles, "
                               "images/s, on-chip memory and weight traffic of a ViT or a Swin")
    perf.add_argument("--arch", help="a timm ViT/DeiT or Swin name, e.g. "
                      "deit_tiny_patch16_224, swin_tiny_patch4_window7_224")
    perf.add_argument("--rows", type=int, default=8, help="array rows (default 8)")
    perf.add_argument("--cols", type=int, default=8, help="array columns (default 8)")
    perf.add_argument("--mhz", type=float, default=100.0, help="clock in MHz (default 100)")
    perf.add_argument("--bandwidth", type=float, default=4.0, help="off-chip bandwidth for "
                      "streamed weights, GB/s (default 4)")
    perf.add_argument("--method", default="ivit", help="--arch: the candidate of every "
                      "non-linear layer (default ivit)")
    add_accelerator_options(perf)
    perf.set_defaults(run=cmd_perf)

