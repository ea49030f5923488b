"""The hardware-cost term of the unified metric, read from a cost table file.

The measured table is ``fpga/tables/<target>.json``, written by ``intvit cost --all`` (Yosys and
nextpnr figures per unit). Until it exists, ``golden_model/data/cost_standin.json`` stands in:
operation counts per element, priced in LUT-equivalents, and marked as a stand-in wherever it is
used. The golden model reads the file; it never imports the FPGA flow.

LUT-equivalents of a measured unit (intvit's pricing): ``LUT + 2 * CARRY + 150 * DSP +
100 * BRAM`` (an ECP5 CCU2C carry cell spans two LUT4s; an 18x18 multiplier in LUT4s is of the
order of 150; a 16-kbit block RAM is priced like a small multiplier). Cost of a layer:
``LUT-equivalents x cycles``, with cycles = the layer's elements / elements per cycle.
"""
import json
import math
from dataclasses import dataclass
from pathlib import Path

from .errors import IntvitError

STANDIN = Path(__file__).parent / "data" / "cost_standin.json"
MEASURED_DIR = Path(__file__).resolve().parents[1] / "fpga" / "tables"
PRICES = {"LUT": 1, "CARRY": 2, "DSP": 150, "BRAM": 100}


@dataclass(frozen=True)
class CostTable:
    """LUT-equivalents and elements per cycle per operator; ``source`` names the file and
    whether it is measured or the stand-in."""
    entries: dict
    source: str
    measured: bool

    def layer_cost(self, op: str, elements: int) -> float:
        """``LUT-equivalents x cycles`` of running ``op`` over ``elements`` elements."""
        if op not in self.entries:
            raise IntvitError(f"the cost table {self.source} has no entry for {op}; regenerate "
                              "it with `intvit cost --all`")
        entry = self.entries[op]
        return entry["lut_equivalent"] * elements / entry["elements_per_cycle"]


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
    hint = "regenerate it with `intvit cost --all`"
    if not path.is_file():
        raise IntvitError(f"cost table {path} does not exist or is not a file; give a cost table "
                          "JSON or omit --cost-table")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise IntvitError(f"cost table {path} is not readable JSON ({error}); {hint}") from None
    raw = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(raw, dict) or not raw:
        raise IntvitError(f"cost table {path} has no 'entries' object; {hint}")
    measured = path.resolve() != STANDIN.resolve()
    entries = {op: check_entry(path, op, entry, measured) for op, entry in raw.items()}
    return CostTable(entries, str(path), measured)


def check_entry(path, op: str, entry, measured: bool) -> dict:
    """One entry as ``{"lut_equivalent", "elements_per_cycle"}``. A measured entry needs
    ``resources`` (an object of non-negative counts, at least one of :data:`PRICES` priced above
    zero) and ``elements_per_cycle`` > 0; a stand-in entry needs ``lut_equivalent`` > 0 and
    ``elements_per_cycle`` > 0."""
    where = f"cost table {path}, entry {op!r}"
    hint = "regenerate it with `intvit cost --all`"
    if not isinstance(entry, dict):
        raise IntvitError(f"{where} is not an object; {hint}")
    per_cycle = _positive(where, "elements_per_cycle", entry.get("elements_per_cycle"), hint)
    if not measured:
        return {"lut_equivalent": _positive(where, "lut_equivalent", entry.get("lut_equivalent"),
                                            hint),
                "elements_per_cycle": per_cycle}
    resources = entry.get("resources")
    if not isinstance(resources, dict):
        raise IntvitError(f"{where}: field 'resources' is missing or not an object; {hint}")
    for name, count in resources.items():
        if not _is_number(count) or count < 0:
            raise IntvitError(f"{where}: resources.{name} must be a number >= 0 (got "
                              f"{count!r}); {hint}")
    price = lut_equivalent(resources)
    if price <= 0:
        raise IntvitError(f"{where}: resources name none of {', '.join(PRICES)} (a unit costs "
                          f"something); {hint}")
    return {"lut_equivalent": price, "elements_per_cycle": per_cycle}


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _positive(where: str, field: str, value, hint: str) -> float:
    if not _is_number(value) or value <= 0:
        raise IntvitError(f"{where}: field {field!r} must be a finite number > 0 (got "
                          f"{value!r}); {hint}")
    return float(value)
