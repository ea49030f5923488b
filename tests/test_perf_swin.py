"""``intvit perf`` of a Swin (issue 19): the program's matrix products and row steps against a
hand count of the Swin architecture (Liu et al., ICCV 2021, sec. 3.1-3.2, from the config's raw
fields), its multiply-accumulates against the paper's FLOPs, its GEMM cycles against the tiles
of that hand count, and a quantized mnist-swin run through the CLI."""
from collections import Counter
from dataclasses import replace

import pytest

from intvit.cli import main
from intvit.golden_model.gemm import GemmConfig, predicted_cycles
from intvit.golden_model.program_swin import compile_swin_program, model_shape
from intvit.golden_model.swin import PRESETS
from intvit.hw.accelerator import Accelerator, model_only
from intvit.hw.accelerator_timing import gemm_step_cycles, perf_report, shape_program, step_cycles

TINY = "swin_tiny_patch4_window7_224"
PUBLISHED_GMACS = {TINY: 4.5, "swin_small_patch4_window7_224": 8.7,
                   "swin_base_patch4_window7_224": 15.4}
"""Swin Table 1 (Liu et al., ICCV 2021): FLOPs of one 224 x 224 image, counted as
multiply-accumulates, rounded to 0.1 G."""
LANES = 8


def architecture(c) -> list:
    """Per stage, by hand (Swin sec. 3.1-3.2): tokens ``T`` (the patch grid, halved a side per
    stage), width ``C`` (doubled per stage), window side ``M`` (at most the grid), windows, heads
    ``H``, head width ``d``, MLP width ``F`` and depth."""
    stages, side = [], c.img_size // c.patch_size
    for s, (depth, heads) in enumerate(zip(c.depths, c.num_heads)):
        width, window = c.embed_dim * 2 ** s, min(c.window_size, side)
        stages.append({"T": side * side, "C": width, "M": window,
                       "windows": (side // window) ** 2, "H": heads, "d": width // heads,
                       "F": int(width * c.mlp_ratio), "depth": depth})
        side //= 2
    return stages


def hand_gemms(c) -> list:
    """``(M, K, N)`` of every matrix product of one image: the patch embedding, each merging's
    reduction (``4C' -> 2C'``, ``C' = C / 2``), per block QKV (as the engine writes it: ``q, k``
    then ``v``), per window and head ``q @ k^T`` and ``probs @ v``, the projection, FC1, FC2;
    the mean pooling (``ones @ h``) and the head."""
    stages = architecture(c)
    gemms = [(stages[0]["T"], c.in_chans * c.patch_size ** 2, c.embed_dim)]
    for s, a in enumerate(stages):
        t, width, n = a["T"], a["C"], a["M"] ** 2
        if s:
            gemms.append((t, 2 * width, width))
        for _ in range(a["depth"]):
            gemms += [(t, width, 2 * width), (t, width, width)]
            gemms += [(n, a["d"], n), (n, n, a["d"])] * (a["windows"] * a["H"])
            gemms += [(t, width, width), (t, width, a["F"]), (t, a["F"], width)]
    last = stages[-1]
    return gemms + [(1, last["T"], last["C"]), (1, last["C"], c.num_classes)]


def gemm_shapes(program) -> Counter:
    return Counter((s.m, s.k, s.n) for s in program.steps if s.kind == "gemm")


def row_work(program) -> dict:
    """``{operator kind: (row steps, rows, elements, lengths)}`` of the program's row steps."""
    work: dict = {}
    for step in program.steps:
        if step.kind == "row":
            kind = program.units[step.unit][0].split("/")[0]
            steps, rows, elements, lengths = work.get(kind, (0, 0, 0, set()))
            work[kind] = (steps + 1, rows + step.m, elements + step.m * step.n,
                          lengths | {step.n})
    return work


@pytest.fixture(scope="module")
def tiny():
    return shape_program(TINY)


def test_gemm_steps_are_the_architectures_matrix_products(tiny):
    assert gemm_shapes(tiny) == Counter(hand_gemms(PRESETS[TINY]))


def test_gemm_busy_cycles_are_the_hand_counted_tiles(tiny):
    """Every product's ``ceil(M/L) * ceil(N/L)`` tiles take ``K`` beats each (``K`` >= the
    array's drain interval throughout Swin-T), plus one tile's drain latency per product: the
    array's own model for a lone ``L x K x L`` tile less its ``K`` beats."""
    gemms = hand_gemms(PRESETS[TINY])
    beats = sum(-(-m // LANES) * -(-n // LANES) * k for m, k, n in gemms)
    assert min(k for _, k, _ in gemms) >= LANES * LANES // 4 + 3
    config = GemmConfig(rows=LANES, cols=LANES, per_channel=True, out_bits=16, requant_lanes=4)
    drain = predicted_cycles(LANES, 64, LANES, config) - 64
    report = perf_report(tiny, mhz=100, bandwidth_gbs=4)
    assert report["gemm_cycles"] == beats + len(gemms) * drain


def test_row_steps_are_the_architectures_rows(tiny):
    """Softmax: a row of ``n = M*M`` per token, head and window (one step per window and head);
    LayerNorm: the embedding's, each merging's (``2C`` wide), two per block and the final one;
    GELU: a row of ``F`` per token and block."""
    stages = architecture(PRESETS[TINY])
    work = row_work(tiny)
    heads_windows = sum(a["depth"] * a["windows"] * a["H"] for a in stages)
    assert work["softmax"][:3] == (heads_windows,
                                   sum(a["depth"] * a["windows"] * a["H"] * a["M"] ** 2
                                       for a in stages),
                                   sum(a["depth"] * a["windows"] * a["H"] * a["M"] ** 4
                                       for a in stages))
    assert work["softmax"][3] == {a["M"] ** 2 for a in stages}
    merged = stages[1:]
    assert work["layernorm"][1:3] == (
        stages[0]["T"] + sum(a["T"] for a in merged) + sum(2 * a["depth"] * a["T"]
                                                           for a in stages) + stages[-1]["T"],
        stages[0]["T"] * stages[0]["C"] + sum(a["T"] * 2 * a["C"] for a in merged)
        + sum(2 * a["depth"] * a["T"] * a["C"] for a in stages) + stages[-1]["T"] * stages[-1]["C"])
    assert work["gelu"][2] == sum(a["depth"] * a["T"] * a["F"] for a in stages)


def test_masks_and_the_relative_position_bias_cost_no_cycles(tiny):
    """A shifted window's masked softmax rows cost what the unshifted block's cost; the bias
    add in the scores' write-back costs what no post-add, or the residual add, costs."""
    cycles = dict(step_cycles(tiny))
    assert cycles["layers.0.blocks.1.attn.softmax[0,0]"] == \
        cycles["layers.0.blocks.0.attn.softmax[0,0]"]
    gemm_config = model_only(Accelerator(tiny)).gemm_config
    scores = next(s for s in tiny.steps if s.name == "layers.0.blocks.0.attn.scores[0,0]")
    assert {gemm_step_cycles(tiny, replace(scores, post=post), gemm_config)
            for post in (scores.post, "none", "residual")} == {cycles[scores.name]}


@pytest.mark.parametrize("arch", sorted(PUBLISHED_GMACS))
def test_perf_of_timm_swins_is_the_papers_work_on_the_array(arch, capsys):
    """The program's multiply-accumulates are the paper's FLOPs; the figure printed lies above
    the array's bound (``MACs / L**2`` cycles) and within 1.5x of it."""
    program = shape_program(arch)
    macs = sum(m * k * n for m, k, n in gemm_shapes(program).elements())
    assert abs(macs / 1e9 - PUBLISHED_GMACS[arch]) < 0.06
    assert main(["perf", "--arch", arch]) == 0
    out = capsys.readouterr().out
    cycles = int(out.split(" cycles per image")[0].split(": ")[-1].replace(",", ""))
    assert macs / LANES ** 2 <= cycles <= 1.5 * macs / LANES ** 2
    assert "images/s" in out and "relative position bias" in out and "weights: streamed" in out


@pytest.fixture(scope="module")
def mnist_swin(tmp_path_factory):
    """A run of the bundled mnist-swin as ``intvit quantize`` writes it (quant.json, the integer
    model, evaluation codes), calibrated on 16 images (the figures depend on shapes only)."""
    from intvit.golden_model.checkpoint import load_bundled
    from intvit.golden_model.dataset import dataset, load_splits
    from intvit.golden_model.qswin import build_integer_swin
    from intvit.golden_model.quantfile import save_run
    from intvit.golden_model.qvit import QuantSpec, default_assignment, quantize_images
    from intvit.golden_model.select import QuantizationResult

    model, _, meta = load_bundled("mnist-swin")
    images = load_splits(meta["split_seed"], "mnist-swin")["calibration"].images[:16]
    spec = QuantSpec(image_scale=dataset("mnist-swin").image_scale)
    assignment = default_assignment(model.config, "iptq")
    qmodel = build_integer_swin(model, images, assignment, spec)
    result = QuantizationResult(spec, "all-iptq", assignment, {}, {}, model=qmodel)
    directory = tmp_path_factory.mktemp("mnist-swin")
    save_run(directory, result, "mnist-swin", quantize_images(images.numpy(), spec.image_scale))
    return directory, model.config, qmodel


def test_perf_of_a_quantized_mnist_swin_run(mnist_swin, capsys):
    """``intvit perf --quant`` of the run: its matrix products are the hand count of the
    bundled Swin's config, its steps those of its shape-only program (SwinShape), its cycles
    above the array's bound and within 4x of it (rows of 32 to 128 keep the row units about as
    busy as the array), and its weights fit on chip."""
    directory, config, qmodel = mnist_swin
    assert main(["perf", "--quant", str(directory)]) == 0
    out = capsys.readouterr().out
    cycles = int(out.split(" cycles per image")[0].split(": ")[-1].replace(",", ""))
    program = compile_swin_program(qmodel)
    assert gemm_shapes(program) == Counter(hand_gemms(config))
    shape = shape_program_of(config)
    assert [(s.kind, s.name, s.m, s.k, s.n) for s in program.steps] == \
        [(s.kind, s.name, s.m, s.k, s.n) for s in shape.steps]
    macs = sum(m * k * n for m, k, n in hand_gemms(config))
    assert macs / LANES ** 2 <= cycles <= 4 * macs / LANES ** 2
    assert "images/s" in out and "weights: on chip" in out


def shape_program_of(config):
    return compile_swin_program(model_shape(config, "iptq"))


@pytest.mark.parametrize("argv, words", [
    (["perf", "--arch", "swin_huge_patch4_window7_224"], "swin_tiny_patch4_window7_224"),
    (["perf", "--rows", "32", "--cols", "32", "--quant", "RUN"], "cannot hold this Swin's widths"),
    (["verilog", "accelerator", "--quant", "RUN", "-o", "OUT"], "compiles an IntegerViT"),
])
def test_bad_swin_input_is_one_line(argv, words, mnist_swin, tmp_path, capsys):
    """A one-line error, exit status 2, nothing written (the Verilog accelerator runs a ViT)."""
    output = tmp_path / "accel.v"
    paths = {"RUN": str(mnist_swin[0]), "OUT": str(output)}
    assert main([paths.get(arg, arg) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert not output.exists()
