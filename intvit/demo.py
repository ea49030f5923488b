"""``intvit demo``: the main job on a bundled model (``digits``, ``mnist`` or the Swin
``mnist-swin``) or a user's timm ViT/DeiT checkpoint with its images, stage by stage, resumable.

Stages (each writes its files under the output directory, then a ``<stage>.done`` record; a
rerun skips finished stages, so an interrupted demo resumes):

1. ``quantize``: IPTQ-ViT's three stages at W8A8 plus every other rule for comparison;
   ``quant.json`` (the unified rule's mix) and ``rules.json`` (accuracy of every rule).
2. ``vectors``: for every distinct operator of the chosen mix, real-activation test vectors:
   the inputs of its first layer in the integer model on test images, with golden outputs (a
   Swin's softmax: its first shifted block's, whose window rows are masked).
3. ``verilog``: Verilog of each chosen unit (that layer's config) and of the GEMM array.
4. ``sim``: each unit simulated under Verilator against its vectors, bit for bit.
5. ``accelerator``: the whole ViT on the generated accelerator under Verilator (a Swin: the
   cycle model's figures only, the accelerator's Verilog takes ViT/DeiT programs; the record
   says so).
6. ``cost``: the resources of the units whose Verilog stage 3 wrote, measured at those configs
   (Yosys and nextpnr, cached: a rerun is free); the GEMM array from the checked-in table.
7. ``report``: ``report.md`` and ``report.html``.

A stage's marker is written only after all its outputs. Before a stage runs (``--force``,
``--only``, or a resume after an interruption), its marker and those of every later stage are
removed, so an interrupted run never leaves a marker beside outputs it does not describe.

One output directory holds one model's demo: ``quant.json`` and the quantize marker name the
model, the later stages rebuild that model, and a run for another model in the same directory
is refused unless ``--force`` redoes it from the start.
"""
import json
import time
from pathlib import Path

import numpy as np

STAGES = ("quantize", "vectors", "verilog", "sim", "accelerator", "cost", "report")
VECTOR_IMAGES = 24
"""Test images whose activations become the real-activation vectors."""
ROW_LIMIT = 600
"""Most rows per row-unit vector file (rows of real activations, in tap order)."""
GEMM_SIZE = 8


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


def _done_path(out: Path, stage: str) -> Path:
    return out / f"{stage}.done"


def clear_markers(out: Path, first: str) -> None:
    """Remove the markers of ``first`` and of every stage after it (their outputs are about to
    be rewritten, or depend on outputs that are)."""
    for stage in STAGES[STAGES.index(first):]:
        _done_path(out, stage).unlink(missing_ok=True)


def _load(out: Path, stage: str):
    """The stage's record, or None when it has not finished (no marker, or one that is not a
    JSON record: the stage then runs again)."""
    path = _done_path(out, stage)
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _finish(out: Path, stage: str, record: dict) -> dict:
    from intvit.golden_model.files import write_text_atomic

    write_text_atomic(_done_path(out, stage), json.dumps(record, indent=1) + "\n")
    return record


def stage_quantize(out: Path, source) -> dict:
    """IPTQ-ViT at W8A8 on ``source`` (a :class:`ModelSource`): the unified rule's run
    (``quant.json``, the integer model, the evaluation codes) and, on a bundled model, every
    other rule for comparison (``rules.json``; a user's checkpoint runs the unified rule only,
    each rule's calibration and evaluation taking minutes at ImageNet scale)."""
    from intvit.golden_model.costs import load_cost_table
    from intvit.golden_model.files import write_text_atomic
    from intvit.golden_model.qvit import quantize_images
    from intvit.golden_model.quantfile import save_run
    from intvit.golden_model.select import RULES, quantize_model, score_layers
    from intvit.progress import Eta

    model, splits, spec = source.load()
    table = load_cost_table()
    print(f"      cost table {Path(table.source).name}"
          f"{'' if table.measured else ' (stand-in: operation counts)'}", flush=True)
    eta = Eta()
    scores = score_layers(model, splits["calibration"].images, spec, table,
                          progress=lambda i, n, layer: eta("      scored", i, n, layer),
                          score_images=splits["score"].images, batch=source.batch)
    rules = {}
    for rule in RULES if source.bundled else ("unified",):
        result = quantize_model(model, splits, spec, rule, scores=scores, batch=source.batch,
                                stage_progress=eta)
        rules[rule] = {"accuracy": result.accuracy, "assignment": result.assignment,
                       "cost": result.to_json()["cost"], "fidelity": result.fidelity}
        print(f"      {rule:10s} integer top-1 {result.accuracy['stage3']:.4f}", flush=True)
        if rule == "unified":
            save_run(out, result, source.name,
                     quantize_images(splits["test"].images.numpy(), spec.image_scale))
    write_text_atomic(out / "rules.json", json.dumps(rules, indent=1) + "\n")
    return _finish(out, "quantize", {"model": source.name, "cost_table": table.source,
                                     "measured": table.measured,
                                     "accuracy": rules["unified"]["accuracy"]})


class ModelSource:
    """What the demo quantizes: a bundled model by ``name``, or a user's checkpoint whose
    ``load`` (the ``intvit quantize`` options' reading of the checkpoint and its images) gives
    ``(model, splits, spec)``; ``batch`` images per batch (None: by the memory budget)."""

    def __init__(self, name: str, bundled: bool, load, batch: int | None = None):
        self.name, self.bundled, self.load, self.batch = name, bundled, load, batch


def bundled_source(name: str) -> ModelSource:
    """The bundled model ``name`` with its splits, all 100 calibration images scored."""
    def load():
        from intvit.golden_model.checkpoint import load_bundled
        from intvit.golden_model.dataset import Split, dataset, load_splits
        from intvit.golden_model.qvit import QuantSpec

        model, _, meta = load_bundled(name)
        splits = load_splits(meta["split_seed"], name)
        splits["score"] = Split(splits["calibration"].images, None)
        return model, splits, QuantSpec(image_scale=dataset(name).image_scale)
    return ModelSource(name, True, load)


def chosen_model(out: Path):
    """The unified rule's integer model and the evaluation images' int8 codes of the run in
    ``out`` (:func:`intvit.golden_model.quantfile.load_run`)."""
    from intvit.golden_model.quantfile import load_run

    _, qmodel, codes = load_run(out / "quant.json")
    return qmodel, codes


def representative_layers(qmodel) -> dict:
    """The first layer of each distinct operator of the mix, a layer with masked rows (a
    shifted Swin window's softmax) before any other: ``{op: layer}``."""
    chosen = {}
    for layer in sorted(qmodel.plans, key=lambda name: name not in qmodel.masked_layers):
        chosen.setdefault(qmodel.plans[layer].op, layer)
    return chosen


def stage_vectors(out: Path) -> dict:
    import numpy as np

    from intvit.golden_model.vectors import layer_vectors, save_vectors

    qmodel, codes = chosen_model(out)
    chosen = representative_layers(qmodel)
    found = layer_vectors(qmodel, codes[:VECTOR_IMAGES], list(chosen.values()), ROW_LIMIT)
    units = {}
    for op, layer in chosen.items():
        path = save_vectors(out / "vectors" / f"{op.replace('/', '_')}.npz", found[layer])
        count = int(found[layer].lengths.sum()) if found[layer].lengths is not None \
            else int(np.size(found[layer].x))
        masked = sum(not keep.all() for keep in found[layer].row_keeps())
        units[op] = {"layer": layer, "vectors": str(path), "count": count,
                     "masked_rows": masked}
        rows = f" ({masked} rows masked)" if masked else ""
        print(f"      {op:16s} {count:>7,} real inputs from {layer}{rows}", flush=True)
    return _finish(out, "vectors", {"units": units})


def _unit(qmodel, op, layer):
    from intvit.hw.units import build_unit

    return build_unit(op, qmodel.plans[layer].config, lanes=1)


def stage_verilog(out: Path, units: dict) -> dict:
    from intvit.hw.export import export_verilog, module_name
    from intvit.golden_model.files import write_text_atomic
    from intvit.hw.units import build_gemm

    qmodel, _ = chosen_model(out)
    files = {}
    for op, info in units.items():
        unit = _unit(qmodel, op, info["layer"])
        path = write_text_atomic(out / "verilog" / f"{op.replace('/', '_')}.v",
                                 export_verilog(unit, module_name(op)))
        files[op] = str(path)
    gemm = build_gemm(rows=GEMM_SIZE, cols=GEMM_SIZE, per_channel=True)
    files["gemm"] = str(write_text_atomic(out / "verilog" / "gemm.v",
                                          export_verilog(gemm, module_name("gemm"))))
    for op, path in files.items():
        print(f"      {op:16s} {path}")
    return _finish(out, "verilog", {"files": files})


def stage_sim(out: Path, units: dict) -> dict:
    from intvit.sim.verify import verify

    qmodel, codes = chosen_model(out)
    verdicts = {}
    for op, info in units.items():
        config = qmodel.plans[info["layer"]].config
        outcome = verify(op, config, lanes=1, work_dir=out / "sim" / op.replace("/", "_"),
                         vectors_path=Path(info["vectors"]),
                         progress=lambda line: print(f"        {line}", flush=True))
        r = outcome.result
        verdicts[op] = {"checked": r.checked, "mismatches": r.mismatches, "cycles": r.cycles,
                        "passed": r.passed, "first_mismatch": r.first_mismatch,
                        "waveform": str(r.waveform) if r.waveform else None}
        print(f"      {outcome.summary()}", flush=True)
    runs = [real_qkv_gemm(out, qmodel, codes[:1])]
    checked = sum(run.result.checked for run in runs)
    mismatches = sum(run.result.mismatches for run in runs)
    verdicts["gemm"] = {"checked": checked, "mismatches": mismatches,
                        "cycles": sum(run.result.cycles for run in runs),
                        "passed": all(run.result.passed for run in runs),
                        "first_mismatch": None, "waveform": None}
    for run in runs:
        print(f"      {run.summary()}", flush=True)
    return _finish(out, "sim", {"verdicts": verdicts})


ACCELERATOR_IMAGES = 16
"""Test images the demo runs through the whole accelerator (the bench runs all of them)."""


SWIN_NOT_ON_ACCELERATOR = ("the accelerator's Verilog takes ViT/DeiT programs only (a Swin's "
                           "windows, masks and patch merging are in its cycle model alone)")


def stage_accelerator(out: Path) -> dict:
    """The unified mix's whole model on the generated accelerator: its program
    (``accelerator/program.json``), ``ACCELERATOR_IMAGES`` test images under Verilator against
    ``IntegerViT.forward``, cycles per image measured and by the cycle model. A Swin is not
    simulated (the record's ``skipped`` says why); its record holds the cycle model's figures
    (:mod:`intvit.golden_model.program_swin`)."""
    from intvit.golden_model.program_swin import cycle_program
    from intvit.golden_model.qswin import IntegerSwin
    from intvit.hw.accelerator_timing import perf_report

    qmodel, codes = chosen_model(out)
    program = cycle_program(qmodel)
    report = perf_report(program)
    model = {"model_cycles": report["cycles"], "gemm_cycles": report["gemm_cycles"],
             "by_kind": report["by_kind"]}
    if isinstance(qmodel, IntegerSwin):
        print(f"      not simulated: {SWIN_NOT_ON_ACCELERATOR}; the cycle model: "
              f"{report['cycles']:,} cycles per image", flush=True)
        return _finish(out, "accelerator", {"skipped": SWIN_NOT_ON_ACCELERATOR, **model})
    from intvit.sim.accelerator import simulate_accelerator

    program.write(out / "accelerator" / "program.json")
    batch = codes[:ACCELERATOR_IMAGES]
    run = simulate_accelerator(program, batch, qmodel.forward(batch),
                               work_dir=out / "accelerator", timeout_cycles=report["cycles"],
                               progress=lambda line: print(f"      {line}", flush=True))
    print(f"      {run.summary()}", flush=True)
    return _finish(out, "accelerator", {
        "images": run.images, "mismatches": run.mismatches,
        "image_cycles": run.image_cycles, **model,
        "steps": len(program.steps), "units": [op for op, _ in program.units],
        "first_mismatch": run.first_mismatch, "first_step": run.first_step,
        "program": str(out / "accelerator" / "program.json")})


def real_qkv_gemm(out: Path, qmodel, codes):
    """Block 0's QKV layer (a Swin: its first window's) on the per-channel GEMM array: real
    int8 activations of an image,
    the model's int8 weights, int32 bias and per-channel requantizer; the array's output beats
    are compared with the golden beats, and put back together they must equal the integer
    model's own QKV output (else the run fails)."""
    import dataclasses

    import numpy as np

    from intvit.golden_model.errors import IntvitError
    from intvit.golden_model.gemm import example_config
    from intvit.sim.gemm_bench import simulate_gemm

    taps: dict = {}
    qmodel.forward(codes, taps)
    name, linear = qmodel.first_qkv
    x = taps[name][0]
    config = dataclasses.replace(example_config(GEMM_SIZE, GEMM_SIZE, per_channel=True),
                                 out_bits=linear.requant.out_bits)
    run = simulate_gemm(config, linear.requant, x, linear.weight.T, linear.bias,
                        work_dir=out / "sim" / "gemm", name=f"{name} (real)")
    if run.result.passed and not np.array_equal(run.output, linear(x)):
        raise IntvitError("the GEMM array's QKV output differs from the integer model's")
    return run


def stage_cost(out: Path, units: dict) -> dict:
    """Resources of the chosen units at the configs of their layers (the Verilog of stage 3),
    measured by Yosys and nextpnr-ecp5 (cached by the Verilog, so a rerun is free); the GEMM
    array is the checked-in table's entry of the same per-channel 8x8 array."""
    from intvit.fpga.cost import measure

    qmodel, _ = chosen_model(out)
    entries = {}
    for op, info in units.items():
        entry = measure(op, qmodel.plans[info["layer"]].config, lanes=1, target="ecp5")
        source = "cached measurement" if entry["cached"] else "measured now"
        entries[op] = {**entry, "source": f"{source}, {info['layer']}'s config"}
        print_cost(op, entries[op])
    table_path = Path(__file__).resolve().parents[1] / "fpga" / "tables" / "ecp5.json"
    table = json.loads(table_path.read_text())["entries"] if table_path.exists() else {}
    gemm_key = f"gemm/{GEMM_SIZE}x{GEMM_SIZE}/per-channel"
    if gemm_key in table:
        entries["gemm"] = {**table[gemm_key], "source": "checked-in table"}
        print_cost("gemm", entries["gemm"])
    return _finish(out, "cost", {"entries": entries})


def print_cost(op: str, entry: dict) -> None:
    r = entry["resources"]
    print(f"      {op:16s} LUT {r.get('LUT', 0)}, FF {r.get('FF', 0)}, DSP {r.get('DSP', 0)}, "
          f"Fmax {entry.get('fmax_mhz') or 0:.1f} MHz ({entry['source']})", flush=True)


def demo_model(out: Path) -> str | None:
    """The model (a bundled name or a checkpoint path) whose demo ``out`` holds (by its
    quantize marker), None if none."""
    record = _load(out, "quantize")
    return None if record is None else record.get("model", "digits")


def check_same_model(out: Path, model: str) -> None:
    """Refuse to run a stage on another model's files."""
    from intvit.golden_model.errors import IntvitError

    held = demo_model(out)
    if held not in (None, model):
        raise IntvitError(f"{out} holds the demo of the {held} model, not {model}; give "
                          f"--force to redo it for {model}, or another --out")


def run_stage(out: Path, stage: str, records: dict) -> dict:
    """Run ``stage``; ``records`` holds the ``source`` to quantize (:class:`ModelSource`) and
    the records of the stages before this one."""
    from .report import write_report

    if stage == "quantize":
        return stage_quantize(out, records["source"])
    if stage == "vectors":
        return stage_vectors(out)
    units = records["vectors"]["units"]
    if stage == "verilog":
        return stage_verilog(out, units)
    if stage == "sim":
        return stage_sim(out, units)
    if stage == "accelerator":
        return stage_accelerator(out)
    if stage == "cost":
        return stage_cost(out, units)
    return _finish(out, "report", {"files": write_report(out)})


def run_demo(out: Path, force: bool = False, only: str | None = None,
             source: ModelSource | None = None) -> int:
    """All stages on ``source`` (default: the bundled digits model), reusing finished ones
    unless ``force``, or ``only`` one stage, which reads the files of the stages before it. A
    stage that runs first clears its own marker and the later ones (:func:`clear_markers`)."""
    from intvit.golden_model.errors import IntvitError

    out = Path(out)
    source = source or bundled_source("digits")
    model = source.name
    if only is not None:
        if only not in STAGES:
            raise IntvitError(f"unknown stage {only!r}; stages: {', '.join(STAGES)}")
        records = {"source": source}
        for stage in STAGES[:STAGES.index(only)]:
            records[stage] = _load(out, stage)
            if records[stage] is None:
                raise IntvitError(f"stage {only} needs stage {stage} first: run `intvit demo "
                                  f"--out {out} --only {stage}` (or the whole demo)")
        if only != STAGES[0]:
            check_same_model(out, model)
        clear_markers(out, only)
        with Progress(1).stage(only):
            run_stage(out, only, records)
        return 0
    if force:
        clear_markers(out, STAGES[0])
    check_same_model(out, model)
    progress = Progress(len(STAGES))
    records = {"source": source}
    created = not out.exists()
    try:
        for stage in STAGES:
            record = _load(out, stage)
            with progress.stage(stage if record is None
                                else f"{stage} (finished earlier, reused)"):
                if record is None:
                    clear_markers(out, stage)
                    out.mkdir(parents=True, exist_ok=True)
                    record = run_stage(out, stage, records)
            records[stage] = record
    except IntvitError:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # bad input: leave no empty run directory behind
        raise
    return summary(records)


def summary(records: dict) -> int:
    acc = records["quantize"]["accuracy"]
    verdicts = records["sim"]["verdicts"]
    entries = records["cost"]["entries"]
    passed = sum(v["passed"] for v in verdicts.values())
    mismatches = sum(v["mismatches"] for v in verdicts.values())
    checked = sum(v["checked"] for v in verdicts.values())
    lut = sum(e["resources"].get("LUT", 0) for op, e in entries.items() if op != "gemm")
    dsp = sum(e["resources"].get("DSP", 0) for op, e in entries.items() if op != "gemm")
    print("\n" + "=" * 72)
    source = records["source"]
    what = f"bundled {source.name} model" if source.bundled else source.name
    measure = "accuracy" if source.bundled else "top-1 (agreement with float without labels)"
    print(f"{what}, W8A8, unified rule: float {measure} {acc['float']:.2%}, integer "
          f"{acc['stage3']:.2%}")
    print(f"units verified: {passed}/{len(verdicts)} with {mismatches} mismatches in "
          f"{checked:,} real-activation outputs (Verilator, bit-exact)")
    print(f"chosen non-linear units: {lut} LUT, {dsp} DSP in all (ECP5, one lane each, measured "
          "at the configs of their layers)")
    accel = records["accelerator"]
    if "skipped" in accel:
        print(f"accelerator: not simulated ({accel['skipped']}); the cycle model: "
              f"{accel['model_cycles']:,} cycles per image")
    else:
        print(f"accelerator: {accel['images']} test images, {accel['mismatches']} mismatches, "
              f"{np.mean(accel['image_cycles']):,.0f} cycles per image (Verilator; the cycle "
              f"model: {accel['model_cycles']:,})")
    print(f"report: {records['report']['files']['html']}")
    print("=" * 72)
    return 0 if passed == len(verdicts) and accel.get("mismatches", 0) == 0 else 1
