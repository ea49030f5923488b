"""``intvit demo``: the main job, stage by stage, with progress and a one-screen summary."""
import time
from pathlib import Path

DEMO_UNITS = ("requant",)
"""Units the demo generates, verifies and costs (grows as operators land)."""


class Progress:
    """Prints ``[i/n] stage ...`` lines with the time each stage took."""

    def __init__(self, total: int):
        self.total, self.done = total, 0

    def stage(self, title: str):
        self.done += 1
        print(f"[{self.done}/{self.total}] {title} ...", flush=True)
        return _Timer()


class _Timer:
    def __enter__(self):
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            print(f"      done in {time.monotonic() - self.start:.1f} s", flush=True)


def run_demo(out: Path) -> int:
    from fpga.cost import measure, write_cost_json
    from fpga.export import export_verilog, module_name
    from golden_model import registry
    from golden_model.files import write_text_atomic
    from hw.units import build_unit
    from sim.verify import verify

    out = Path(out)
    progress = Progress(3 * len(DEMO_UNITS))
    lines = []
    failed = 0
    for name in DEMO_UNITS:
        config = registry.get(name).example_config()
        stem = name.replace("/", "_")
        with progress.stage(f"{name}: Verilog"):
            unit = build_unit(name, config, lanes=1)
            path = write_text_atomic(out / "verilog" / f"{stem}.v",
                                     export_verilog(unit, module_name(name)))
            print(f"      {path}")
        with progress.stage(f"{name}: simulate under Verilator against the golden model"):
            outcome = verify(name, config, lanes=1, work_dir=out / "sim" / stem)
            print(f"      {outcome.summary()}")
        with progress.stage(f"{name}: synthesize (Yosys) and place and route (nextpnr-ecp5)"):
            entry = measure(name, config, lanes=1, target="ecp5")
            write_cost_json(entry, out / "cost" / f"{stem}-ecp5.json")
        failed += not outcome.result.passed
        r = entry["resources"]
        lines.append(f"{name:16s} {outcome.result.checked:>9,} {outcome.result.mismatches:>10} "
                     f"{r.get('LUT', 0):>5} {r.get('FF', 0):>5} {r.get('DSP', 0):>4} "
                     f"{entry.get('fmax_mhz') or 0:>8.1f}")

    print("\nunit              vectors  mismatches   LUT    FF  DSP  Fmax/MHz")
    print("\n".join(lines))
    print(f"\noutputs in {out}/ (Verilog, simulation logs, cost JSON)")
    return 1 if failed else 0
