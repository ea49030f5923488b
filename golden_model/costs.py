"""The hardware-cost term of the unified metric and the cost of a mix, read from a cost table
file.

The measured table is ``fpga/tables/<target>.json``, written by ``intvit cost --all`` (Yosys and
nextpnr figures per unit). Until it exists, ``golden_model/data/cost_standin.json`` stands in:
operation counts per element, priced in LUT-equivalents, and marked as a stand-in wherever it is
used. The golden model reads the file; it never imports the FPGA flow or the hardware units: the
units' cycle models reach it as data in the table's entries (written by ``intvit.fpga.cost``
from each unit's own attributes).

LUT-equivalents of a measured unit (intvit's pricing): ``LUT + 2 * CARRY + 150 * DSP +
100 * BRAM`` (an ECP5 CCU2C carry cell spans two LUT4s; an 18x18 multiplier in LUT4s is of the
order of 150; a 16-kbit block RAM is priced like a small multiplier).

Cycle model of an entry (:func:`cycles_for_rows`), ``lanes`` elements per beat:

- a *row* unit (softmax, LayerNorm; the entry has ``row_passes``, ``row_fill``, ``row_bubble``,
  ``row_step_interval`` and ``row_full_rate_beats``, ``intvit.hw.rowpipe``): a row of ``n``
  elements is ``B = ceil(n / lanes)`` beats; a lone row takes ``L = row_passes * B + row_fill``
  cycles from its first input beat to its last output beat, and back-to-back rows end every
  ``I = max(max(B, row_full_rate_beats) + row_bubble, row_step_interval)`` cycles at most (a
  row step slower than a row sets the pace). ``r`` rows take at most ``L + (r - 1) * I``
  cycles (``tests/test_layer_cost.py`` measures it in simulation). An entry written before
  the rows overlapped (``row_overhead`` and ``row_passes`` only) keeps its own bound,
  ``(r + row_passes - 1) * (B + row_overhead)``;
- an *element-wise* unit (GELU, requantizer; the entry has ``latency``) takes
  ``ceil(elements / lanes) + latency`` cycles for a layer's elements streamed back to back (one
  beat per cycle, the pipeline filled once).

Cost of a candidate at a layer's shape (the metric's ``C``, intvit's definition, docs/method.md
section 1): ``LUT-equivalents x time``, time = the cycles for the layer's rows of one image at
the unit's measured Fmax (``cycles / fmax_mhz``, in microseconds), so ``C`` is in
LUT-equivalent microseconds. A table without Fmax (the Xilinx synthesis-only table, the stand-in)
prices time in cycles instead, and says so (:attr:`CostTable.has_fmax`).
"""
import json
import math
from dataclasses import dataclass
from pathlib import Path

from .errors import IntvitError

STANDIN = Path(__file__).parent / "data" / "cost_standin.json"
MEASURED_DIR = Path(__file__).resolve().parents[1] / "fpga" / "tables"
PRICES = {"LUT": 1, "CARRY": 2, "DSP": 150, "BRAM": 100}
HINT = "regenerate it with `intvit cost --all`"


@dataclass(frozen=True)
class LayerShape:
    """The rows one image sends through a layer's unit: ``rows`` rows of ``length`` elements
    (an element-wise layer: its elements are ``rows * length``)."""
    length: int
    rows: int

    @classmethod
    def of(cls, shape) -> "LayerShape":
        """From a tap's per-image shape ``(..., length)``: the last axis is the row."""
        shape = tuple(int(n) for n in shape)
        return cls(shape[-1], math.prod(shape[:-1]))


@dataclass(frozen=True)
class CostTable:
    """Per operator: LUT-equivalents, elements per cycle, lanes, the cycle model (the row
    fields, or ``latency``) and Fmax; ``source`` names the file and whether it is
    measured or the stand-in."""
    entries: dict
    source: str
    measured: bool

    @property
    def has_fmax(self) -> bool:
        """Whether every entry states an Fmax, so that time is in microseconds, not cycles."""
        return all(e.get("fmax_mhz") for e in self.entries.values())

    def entry(self, op: str) -> dict:
        """The entry of ``op``, or a one-line error naming the table and the missing entry."""
        if op not in self.entries:
            raise IntvitError(f"the cost table {self.source} has no entry for {op}; {HINT}")
        return self.entries[op]

    def require(self, ops) -> None:
        """Every one of ``ops`` has an entry (checked before any work that needs them)."""
        missing = sorted(set(ops) - set(self.entries))
        if missing:
            raise IntvitError(f"the cost table {self.source} has no entry for "
                              f"{', '.join(missing)}; {HINT}")

    def cycles(self, op: str, shape: LayerShape) -> int:
        """Cycles of ``op``'s unit for one image's rows of a layer (:func:`cycles_for_rows`)."""
        return cycles_for_rows(self.entry(op), shape.length, shape.rows, op, self.source)

    def time(self, op: str, shape: LayerShape) -> float:
        """Microseconds at the unit's Fmax (cycles when the table has no Fmax)."""
        cycles = self.cycles(op, shape)
        return cycles / self.entry(op)["fmax_mhz"] if self.has_fmax else float(cycles)

    def layer_cost(self, op: str, shape: LayerShape) -> float:
        """The metric's ``C``: ``LUT-equivalents x time`` of ``op`` at the layer's shape."""
        return self.entry(op)["lut_equivalent"] * self.time(op, shape)


ROW_FIELDS = ("row_passes", "row_fill", "row_bubble", "row_step_interval", "row_full_rate_beats")
"""The cycle model of a row unit's entry (module docstring)."""


def cycles_for_rows(entry: dict, length: int, rows: int, op: str = "unit",
                    source: str = "the cost table") -> int:
    """Cycles of the unit ``entry`` describes for ``rows`` rows of ``length`` elements streamed
    back to back, from the first input beat to the last output beat (module docstring): row
    units ``L + (rows - 1) * I``, element-wise units ``ceil(rows * length / lanes) + latency``;
    0 for no rows."""
    if not (isinstance(length, int) and isinstance(rows, int) and length >= 1 and rows >= 0):
        raise IntvitError(f"rows of {op}: length must be an integer >= 1 and rows >= 0 (got "
                          f"{length!r}, {rows!r})")
    lanes = entry.get("lanes", 1)
    beats = -(-length // lanes)
    if all(entry.get(name) is not None for name in ROW_FIELDS):
        if not rows:
            return 0
        span = entry["row_passes"] * beats + entry["row_fill"]
        interval = max(max(beats, entry["row_full_rate_beats"]) + entry["row_bubble"],
                       entry["row_step_interval"])
        return span + (rows - 1) * interval
    if entry.get("row_overhead") is not None and entry.get("row_passes") is not None:
        return (rows + entry["row_passes"] - 1) * (beats + entry["row_overhead"]) if rows else 0
    if entry.get("latency") is not None:
        return -(-(rows * length) // lanes) + entry["latency"] if rows else 0
    raise IntvitError(f"{source}, entry {op!r}: no cycle model (neither the row fields "
                      f"{', '.join(ROW_FIELDS)} nor 'latency'); {HINT}")


@dataclass(frozen=True)
class MixCost:
    """The cost of a mix as the hardware sees it (intvit's stand-in until the accelerator model
    of issue #18 exists): ``area`` = the LUT-equivalents of each distinct non-linear unit of the
    mix, counted once (the GEMM array and requantizers, the same for every mix, are left out);
    ``cycles`` = the cycles per image, summed over the model's non-linear layers, of the assigned
    unit for that layer's rows (:func:`cycles_for_rows`), the layers run one after the other;
    ``fmax_mhz`` = the slowest distinct unit's Fmax, the clock one design holding them all can
    run at (None without Fmax); ``time_us`` = ``cycles / fmax_mhz`` (None without Fmax)."""
    area: float
    cycles: int
    fmax_mhz: float | None
    time_us: float | None
    units: tuple

    @property
    def area_time(self) -> float:
        """``area x time`` (LUT-equivalent microseconds; x cycles without Fmax): one number to
        order mixes by."""
        return self.area * (self.time_us if self.time_us is not None else self.cycles)


def mix_cost(table: CostTable, assignment: dict, shapes: dict) -> MixCost:
    """:class:`MixCost` of ``assignment`` (``{layer: op}``) with ``shapes`` ``{layer:
    LayerShape}`` (one image). Every unit of the mix must have an entry (one-line error
    otherwise)."""
    table.require(assignment.values())
    missing = sorted(set(assignment) - set(shapes))
    if missing:
        raise IntvitError(f"no layer shape for {', '.join(missing)}")
    units = tuple(sorted(set(assignment.values())))
    area = sum(table.entry(op)["lut_equivalent"] for op in units)
    cycles = sum(table.cycles(op, shapes[layer]) for layer, op in assignment.items())
    fmax = min(table.entry(op)["fmax_mhz"] for op in units) if table.has_fmax else None
    return MixCost(area, cycles, fmax, cycles / fmax if fmax else None, units)


def lut_equivalent(resources: dict) -> float:
    """intvit's LUT-equivalent price of a measured unit's resources."""
    return float(sum(PRICES[k] * resources.get(k, 0) for k in PRICES))


def load_cost_table(path=None, target: str = "ecp5") -> CostTable:
    """The cost table at ``path``, else the measured ``fpga/tables/<target>.json``, else the
    stand-in. The file is checked entry by entry (:func:`check_entry`); a missing or malformed
    file is a one-line error naming the file, the entry and the field."""
    if path is None:
        measured = MEASURED_DIR / f"{target}.json"
        path = measured if measured.is_file() else STANDIN
    path = Path(path)
    if not path.is_file():
        raise IntvitError(f"cost table {path} does not exist or is not a file; give a cost table "
                          "JSON or omit --cost-table")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise IntvitError(f"cost table {path} is not readable JSON ({error}); {HINT}") from None
    raw = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(raw, dict) or not raw:
        raise IntvitError(f"cost table {path} has no 'entries' object; {HINT}")
    measured = path.resolve() != STANDIN.resolve()
    entries = {op: check_entry(path, op, entry, measured) for op, entry in raw.items()}
    return CostTable(entries, str(path), measured)


def check_entry(path, op: str, entry, measured: bool) -> dict:
    """One entry as ``{"lut_equivalent", "elements_per_cycle", "lanes", "row_overhead",
    "row_passes", "row_fill", "row_bubble", "row_step_interval", "row_full_rate_beats",
    "latency", "fmax_mhz"}``. A measured entry needs ``resources`` (an object of non-negative
    counts, at least one of :data:`PRICES` priced above zero) and ``elements_per_cycle`` > 0; a
    stand-in entry needs ``lut_equivalent`` > 0 and ``elements_per_cycle`` > 0. The cycle-model
    fields are optional here (an entry without them fails when a cost needs its cycles): ``lanes``
    an integer >= 1 (default 1), ``row_overhead``, ``row_fill``, ``row_bubble`` and ``latency``
    integers >= 0 or null, ``row_passes``, ``row_step_interval`` and ``row_full_rate_beats``
    integers >= 1 or null,
    ``fmax_mhz`` a number > 0 or null."""
    where = f"cost table {path}, entry {op!r}"
    if not isinstance(entry, dict):
        raise IntvitError(f"{where} is not an object; {HINT}")
    per_cycle = _positive(where, "elements_per_cycle", entry.get("elements_per_cycle"))
    cycle_model = {"lanes": _integer(where, "lanes", entry.get("lanes", 1), 1),
                   "row_overhead": _integer(where, "row_overhead", entry.get("row_overhead")),
                   "row_passes": _integer(where, "row_passes", entry.get("row_passes"), 1),
                   "row_fill": _integer(where, "row_fill", entry.get("row_fill")),
                   "row_bubble": _integer(where, "row_bubble", entry.get("row_bubble")),
                   "row_step_interval": _integer(where, "row_step_interval",
                                                 entry.get("row_step_interval"), 1),
                   "row_full_rate_beats": _integer(where, "row_full_rate_beats",
                                                   entry.get("row_full_rate_beats"), 1),
                   "latency": _integer(where, "latency", entry.get("latency")),
                   "fmax_mhz": (None if entry.get("fmax_mhz") is None
                                else _positive(where, "fmax_mhz", entry["fmax_mhz"]))}
    if not measured:
        return {"lut_equivalent": _positive(where, "lut_equivalent", entry.get("lut_equivalent")),
                "elements_per_cycle": per_cycle, **cycle_model}
    resources = entry.get("resources")
    if not isinstance(resources, dict):
        raise IntvitError(f"{where}: field 'resources' is missing or not an object; {HINT}")
    for name, count in resources.items():
        if not _is_number(count) or count < 0:
            raise IntvitError(f"{where}: resources.{name} must be a number >= 0 (got "
                              f"{count!r}); {HINT}")
    price = lut_equivalent(resources)
    if price <= 0:
        raise IntvitError(f"{where}: resources name none of {', '.join(PRICES)} (a unit costs "
                          f"something); {HINT}")
    return {"lut_equivalent": price, "elements_per_cycle": per_cycle, **cycle_model}


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _positive(where: str, field: str, value) -> float:
    if not _is_number(value) or value <= 0:
        raise IntvitError(f"{where}: field {field!r} must be a finite number > 0 (got "
                          f"{value!r}); {HINT}")
    return float(value)


def _integer(where: str, field: str, value, least: int = 0):
    """``value`` if it is null or an integer >= ``least``, else a one-line error."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise IntvitError(f"{where}: field {field!r} must be an integer >= {least} or null (got "
                          f"{value!r}); {HINT}")
    return value
