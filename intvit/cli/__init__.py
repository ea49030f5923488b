"""The ``intvit`` command: one subcommand per stage, each reading the previous stage's files.

Bad input (an unknown operator, a value out of range, a malformed file, an output path that
cannot be written) is reported as one line on stderr, ``intvit COMMAND: what was wrong; what to
do``, with exit status 2, and nothing is written. Every command checks all its arguments and
paths before doing any work, and writes its files atomically (``golden_model/files.py``).
"""
import argparse
import sys

from intvit.golden_model.errors import IntvitError

from .accelerator import add_perf
from .arguments import EXIT_BAD_INPUT, METHOD_DOC, OneLineParser, operator_config
from .quantize import add_quantize
from .runs import add_demo, add_report
from .units import add_cost, add_doctor, add_ops, add_sim, add_vectors, add_verilog

__all__ = ["COMMANDS", "build_parser", "main", "operator_config"]


COMMANDS = (add_doctor, add_ops, add_verilog, add_vectors, add_sim, add_cost, add_quantize,
            add_perf, add_demo, add_report)


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
