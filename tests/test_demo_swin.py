"""The demo's stages on the bundled Swin (issue 19): the softmax vectors come from the shifted
block, masks and all, and the accelerator stage records why it does not simulate a Swin along
with the cycle model's figures. The run is ``intvit quantize --model mnist-swin --rule
all-iptq`` (no stage-1 scoring, about 30 s); the demo's units run under Verilator in
sim/test_swin_softmax.py and ``intvit demo --model mnist-swin``."""
import json

import pytest

from intvit import demo
from intvit.cli import main
from intvit.golden_model.vectors import load_checked_vectors

SHIFTED = "layers.0.blocks.1.attn.softmax"


@pytest.fixture(scope="module")
def swin_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("swin_demo")
    assert main(["quantize", "--model", "mnist-swin", "--rule", "all-iptq", "-o", str(out)]) == 0
    return out


def test_softmax_vectors_come_from_the_shifted_block_with_their_masks(swin_run):
    record = demo.stage_vectors(swin_run)
    softmax = record["units"]["softmax/iptq"]
    assert softmax["layer"] == SHIFTED
    vectors, _ = load_checked_vectors(softmax["vectors"])  # golden check with the masks
    masked = [keep for keep in vectors.row_keeps() if not keep.all()]
    assert softmax["masked_rows"] == len(masked) > 0
    assert all((y[~keep] == 0).all() for (_, y), keep in zip(vectors.rows(),
                                                               vectors.row_keeps()))
    assert record["units"]["gelu/iptq"]["layer"] == "layers.0.blocks.0.mlp.gelu"
    assert json.loads((swin_run / "vectors.done").read_text()) == record


def test_the_accelerator_stage_gives_a_swin_the_cycle_model(swin_run, capsys):
    record = demo.stage_accelerator(swin_run)
    assert record["skipped"] == demo.SWIN_NOT_ON_ACCELERATOR
    assert record["model_cycles"] > record["gemm_cycles"] > 0
    # The image's cycles are its steps' less the first fetch and the logits' tail.
    assert record["model_cycles"] < sum(record["by_kind"].values()) < 1.001 * record[
        "model_cycles"]
    assert {"GEMM", "softmax", "layernorm", "gelu"} <= set(record["by_kind"])
    assert "not simulated" in capsys.readouterr().out
    assert not (swin_run / "accelerator" / "program.json").exists()
