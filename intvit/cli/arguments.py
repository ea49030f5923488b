"""What every ``intvit`` command shares: exit codes, argument types, config options from
``--set``, the one-line refusal, and the option groups several commands take."""
import argparse
import inspect
import sys
from pathlib import Path

from intvit.golden_model.errors import IntvitError


EXIT_BAD_INPUT = 2


EXIT_TOOLCHAIN = 3


METHOD_DOC = "docs/method.md"
"""Where the method, its equations and their sources are described."""


def int_in_range(lowest: int, highest: int | None = None, what: str | None = None):
    """argparse type: an integer ``lowest..highest`` (no upper bound when ``highest`` is None;
    ``what`` names such values in the help)."""
    wanted = f">= {lowest}" if highest is None else f"{lowest}..{highest}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = lowest - 1
        if value < lowest or (highest is not None and value > highest):
            raise argparse.ArgumentTypeError(f"must be an integer {wanted} (got {text!r})")
        return value

    parse.__name__ = what or f"integer {wanted}"
    return parse


def int_at_least(minimum: int, what: str):
    """argparse type: an integer ``>= minimum`` (``what`` names such values in the help)."""
    return int_in_range(minimum, None, what)


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


def say(line: str) -> None:
    """A progress line on stderr (stdout keeps the result)."""
    print(f"  {line}", file=sys.stderr, flush=True)


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
    group.add_argument("--weight-bits", type=int, default=8, choices=(4, 8),
                       help="weight width (default 8; 4: two multiply-accumulates per DSP)")
    if full:
        group.add_argument("--k-max", type=positive_int, default=4096,
                           help="longest reduction, sizes the accumulators (default 4096)")


def add_lanes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lanes", type=positive_int, default=1,
                        help="elements per beat, 1..64 (default 1)")
    parser.add_argument("--max-row", type=positive_int, default=None,
                        help="row units: longest row the buffer holds (default: LayerNorm's "
                             "channels, else 256)")


DEFAULT_QUANT = Path("runs") / "demo" / "quant.json"
"""The accelerator commands' model when no ``--quant`` is given: the demo's unified mix."""


def add_accelerator_options(parser, quant: bool = True) -> None:
    if quant:
        parser.add_argument("--quant", type=Path, help="accelerator: quant.json (or its "
                            f"directory) of `intvit quantize`/`demo` (default {DEFAULT_QUANT})")
    parser.add_argument("--requant-lanes", type=int, default=4, help="accelerator: requantizer "
                        "lanes of the array's drain (default 4)")


def default_cost_path(stem: str, target: str) -> Path:
    return Path("runs") / "cost" / f"{stem}-{target}.json"


def format_cost(entry: dict) -> str:
    resources = ", ".join(f"{k} {v}" for k, v in entry["resources"].items())
    fmax = entry.get("fmax_mhz")
    timing = f", Fmax {fmax:.1f} MHz" if fmax else ""
    source = " (cached)" if entry.get("cached") else ""
    return f"{entry['op']} on {entry['target']}: {resources}{timing}{source}"
