"""One cost-table entry per (operator, config, lanes, target): resources, Fmax, throughput.

Tool results are cached under ``cache_root()/cost/<key>.json``, the key a SHA-256 of the unit's
Verilog, the target, the tool versions and the flow settings (device, seed, target clock), so an
unchanged unit is not synthesized again. Only tool results are cached; the entry's description
of the request (operator, config, command) is rebuilt on every call.
"""
import hashlib
import json
import shutil
from dataclasses import fields, is_dataclass
from pathlib import Path
from tempfile import mkdtemp

from intvit.golden_model import registry
from intvit.golden_model.errors import IntvitError
from intvit.golden_model.files import cache_root, write_text_atomic
from intvit.hw.pipeline import ElementwisePipeline
from intvit.hw.rowpipe import ROW_BUBBLE
from intvit.hw.units import build_unit

from intvit.hw.export import export_verilog, module_name
from .synth import (ECP5_DEVICE, PNR_SEED, PNR_TARGET_MHZ, XILINX_FAMILY, place_and_route_ecp5,
                    synth_ecp5, synth_xilinx, tool_versions)

TARGETS = ("ecp5", "xilinx")
"""``ecp5``: Yosys ``synth_ecp5`` then nextpnr-ecp5 (resources and Fmax); ``xilinx``: Yosys
``synth_xilinx`` for 7-series (resources only, no open place and route)."""

FLOW_SETTINGS = {"ecp5": f"{' '.join(ECP5_DEVICE)} --seed {PNR_SEED} --freq {PNR_TARGET_MHZ:g}",
                 "xilinx": f"-family {XILINX_FAMILY}"}
"""Everything besides the Verilog and tool versions that changes a target's result."""


def cached_flow(verilog: str, top: str, target: str) -> tuple[dict, bool, dict]:
    """The flow's figures for ``verilog`` on ``target``, from the cache (keyed by the Verilog,
    the target, the tool versions and the flow settings) or a fresh run stored there;
    returns ``(figures, cached, tool versions)``."""
    versions = tool_versions(target)
    cache_file = cache_root() / "cost" / f"{cache_key(verilog, target, versions)}.json"
    if cache_file.exists():
        return json.loads(cache_file.read_text()), True, versions
    result = run_flow(verilog, top, target)
    write_text_atomic(cache_file, json.dumps(result, indent=1))
    return result, False, versions


def measure(op_name: str, config=None, *, lanes: int = 1, target: str = "ecp5",
            config_options: dict | None = None, max_row: int | None = None) -> dict:
    """The cost entry of ``op_name``'s unit built from ``config`` with ``lanes`` lanes (row
    units: a buffer for rows of ``max_row`` elements, default ``intvit.hw.units.default_max_row``).

    ``config`` defaults to ``example_config(**config_options)``; ``config_options`` are the
    options that built it, recorded as the ``--set`` values of the equivalent ``intvit cost``
    command (``command`` is None when a hand-built config has no such options). The cycle model
    (:func:`cycle_model`): the ``row_*`` fields for a row unit, ``latency`` for an element-wise
    one, the others None.
    """
    if target not in TARGETS:
        raise IntvitError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    operator = registry.get(op_name)
    if config is None:
        config = operator.example_config(**(config_options or {}))
    unit = build_unit(op_name, config, lanes=lanes, max_row=max_row)
    cycles = cycles_per_beat(unit)
    top = module_name(op_name)
    verilog = export_verilog(unit, top)
    result, cached, versions = cached_flow(verilog, top, target)
    rows = {"max_row": unit.max_row} if hasattr(unit, "max_row") else {}
    return {"op": op_name, "config": config_fields(config), "lanes": lanes, **rows,
            "target": target, **result, "cycles_per_beat": cycles, "elements_per_cycle": lanes / cycles,
            **cycle_model(unit), "tools": versions,
            "command": command_line(operator, config, lanes, target, config_options, max_row),
            "cached": cached}


ROW_MODEL_FIELDS = ("row_passes", "row_fill", "row_bubble", "row_step_interval",
                    "row_full_rate_beats")
"""The entry fields of a row unit's cycle model (``intvit.hw.rowpipe``)."""


def cycle_model(unit) -> dict:
    """The unit's cycle model as entry fields, read from the unit itself, for the golden side's
    ``intvit.golden_model.costs.cycles_for_rows`` (which may not import ``hw``). A row unit
    (``row_fill``) gives ``row_passes``, ``row_fill`` (a lone row of ``B`` beats takes
    ``row_passes * B + row_fill`` cycles), ``row_bubble``, ``row_step_interval`` and
    ``row_full_rate_beats`` (back-to-back rows every ``max(max(B, row_full_rate_beats) +
    row_bubble, row_step_interval)`` cycles), and ``latency`` None; an element-wise unit gives
    ``latency`` (its pipeline depth; one beat per cycle) and the row fields None."""
    if getattr(unit, "row_fill", None) is None:
        return {**dict.fromkeys(ROW_MODEL_FIELDS), "latency": getattr(unit, "latency", None)}
    return {"row_passes": len(unit.passes()), "row_fill": unit.row_fill,
            "row_bubble": ROW_BUBBLE, "row_step_interval": unit.row_step_interval,
            "row_full_rate_beats": unit.full_rate_beats, "latency": None}


def cache_key(verilog: str, target: str, versions: dict[str, str]) -> str:
    text = "\n".join([verilog, target, json.dumps(versions, sort_keys=True),
                      FLOW_SETTINGS[target]])
    return hashlib.sha256(text.encode()).hexdigest()


def run_flow(verilog: str, top: str, target: str) -> dict:
    """Synthesize (and on ECP5 place and route) in a scratch directory: ``resources``,
    ``cells`` (raw cell counts), ``fmax_mhz`` (None on Xilinx) and ``pnr`` (ECP5 only). The
    directory is removed on success and kept, for its logs, when a tool fails."""
    work = Path(mkdtemp(prefix="intvit-cost-"))
    if target == "xilinx":
        result = {**synth_xilinx(verilog, top, work), "fmax_mhz": None}
    else:
        synth = synth_ecp5(verilog, top, work)
        pnr = place_and_route_ecp5(synth.pop("netlist"))
        result = {**synth, "fmax_mhz": pnr.pop("fmax_mhz"), "pnr": pnr}
    shutil.rmtree(work)
    return result


def cycles_per_beat(unit) -> float:
    """Steady-state cycles per input beat: the unit's own ``cycles_per_beat`` if it states one;
    1 for element-wise pipelines; for row units (``max_beats``, ``row_interval``) the interval
    of back-to-back full rows per beat, ``row_interval(max_row) / max_beats``."""
    stated = getattr(unit, "cycles_per_beat", None)
    if stated is not None:
        return stated
    if isinstance(unit, ElementwisePipeline):
        return 1
    if hasattr(unit, "max_beats") and hasattr(unit, "row_interval"):
        return unit.row_interval(unit.max_row) / unit.max_beats
    raise IntvitError(f"{type(unit).__name__} does not state cycles_per_beat, so its throughput "
                      "is unknown; give the unit a cycles_per_beat attribute")


def config_fields(config) -> dict:
    """The config's fields as JSON values: numbers, bools, strings and None as they are, tuples as
    lists, nested dataclasses as dicts; other values are left out."""
    encoded = {}
    for field in fields(config):
        value = plain_value(getattr(config, field.name))
        if value is not OMIT:
            encoded[field.name] = value
    return encoded


OMIT = object()


def plain_value(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if is_dataclass(value) and not isinstance(value, type):
        return config_fields(value)
    if isinstance(value, (tuple, list)):
        items = [plain_value(item) for item in value]
        return OMIT if any(item is OMIT for item in items) else items
    return OMIT


def command_line(operator, config, lanes: int, target: str, options: dict | None,
                 max_row: int | None = None) -> str | None:
    """``intvit cost OP --target T --lanes N [--max-row M] --set k=v ...`` that rebuilds this
    entry, or None when ``config`` was built by hand and is not the example config."""
    if options is None:
        if config != operator.example_config():
            return None
        options = {}
    settings = "".join(f" --set {key}={format_option(value)}" for key, value in options.items())
    rows = "" if max_row is None else f" --max-row {max_row}"
    return f"intvit cost {operator.name} --target {target} --lanes {lanes}{rows}{settings}"


def format_option(value) -> str:
    """As ``intvit``'s ``--set`` parser reads it back: bools as ``true``/``false``."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def write_cost_json(entry: dict, path) -> Path:
    """Write one cost entry as JSON, atomically (a temporary file renamed onto ``path``)."""
    return write_text_atomic(path, json.dumps(entry, indent=2) + "\n")
