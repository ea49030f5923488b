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
    stand-in. A malformed file is a one-line error."""
    if path is None:
        measured = MEASURED_DIR / f"{target}.json"
        path = measured if measured.is_file() else STANDIN
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        raw = data["entries"]
    except FileNotFoundError:
        raise IntvitError(f"cost table {path} does not exist") from None
    except (ValueError, KeyError, TypeError):
        raise IntvitError(f"cost table {path} is malformed (no 'entries'); regenerate it with "
                          "`intvit cost --all`") from None
    measured = path.resolve() != STANDIN.resolve()
    entries = {}
    for op, entry in raw.items():
        if measured:
            entries[op] = {"lut_equivalent": lut_equivalent(entry["resources"]),
                           "elements_per_cycle": float(entry["elements_per_cycle"])}
        else:
            entries[op] = entry
    return CostTable(entries, str(path), measured)
