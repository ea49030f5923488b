"""``intvit sim OP --vectors FILE`` (issue 14): the unit is built from the config stored in the
file, and the file is checked against the golden model before any RTL runs.

The workflow test quantizes the bundled model (``intvit quantize``, about 20 s), writes the
layer vectors of two test images (``intvit vectors --quant``) and simulates one LayerNorm layer
under Verilator (a minute for the first build, cached after). The bad-file tests build their own
small files and never start Verilator.
"""
import dataclasses

import numpy as np
import pytest

from intvit.cli import main
from intvit.golden_model import registry
from intvit.golden_model.vectors import (load_checked_vectors, make_row_vectors, make_vectors,
                                         save_vectors)

LAYER = "blocks.0.norm1"


@pytest.fixture(scope="module")
def layer_vectors(tmp_path_factory):
    """The vector files of every non-linear layer of the bundled model quantized with I-BERT's
    operators (``--rule all-ibert``: every LayerNorm is ``layernorm/ibert``)."""
    run = tmp_path_factory.mktemp("layers")
    assert main(["quantize", "--rule", "all-ibert", "-o", str(run / "q")]) == 0
    assert main(["vectors", "--quant", str(run / "q" / "quant.json"), "--images", "2",
                 "-o", str(run / "vectors")]) == 0
    return run / "vectors"


def test_layer_vectors_pass_under_verilator(layer_vectors, tmp_path, capsys):
    """The issue's case: a LayerNorm layer's real vectors, whose config is the layer's, not the
    example config the unit used to be built from (16,427 of 17,408 false mismatches)."""
    path = layer_vectors / f"{LAYER}.npz"
    vectors, config = load_checked_vectors(path)
    assert vectors.op == "layernorm/ibert"
    assert config != registry.get(vectors.op).example_config()
    capsys.readouterr()
    assert main(["sim", vectors.op, "--vectors", str(path), "--work-dir",
                 str(tmp_path / "sim")]) == 0
    captured = capsys.readouterr()
    assert "PASS" in captured.out and " 0 mismatches" in captured.out
    assert f"{int(vectors.lengths.sum()):,} vectors checked" in captured.out
    assert "simulating" in captured.err  # progress goes to stderr while it runs


def example_rows():
    """A small valid ``layernorm/ibert`` file's contents: rows of its example config."""
    operator = registry.get("layernorm/ibert")
    config = operator.example_config()
    rng = np.random.default_rng(0)
    rows = [rng.integers(-128, 128, config.channels) for _ in range(6)]
    return make_row_vectors("layernorm/ibert", config, rows, operator.run)


def out_of_range(v):
    x = v.x.copy()
    x[2, 3] = 128  # int8 inputs end at 127
    return dataclasses.replace(v, x=x)


def shorter_y(v):
    return dataclasses.replace(v, y=v.y[:, :-1])


def fewer_y_rows(v):
    return dataclasses.replace(v, y=v.y[:-1])


def wrong_y(v):
    y = v.y.copy()
    y[4, 7] += 1
    return dataclasses.replace(v, y=y)


def wrong_lengths(v):
    return dataclasses.replace(v, lengths=v.lengths[:-1])


def wrong_config(v):
    return dataclasses.replace(v, config={**v.config, "out_shift": -1})


def foreign_field(v):
    return dataclasses.replace(v, config={**v.config, "colour": "blue"})


def wrong_port(v):
    return dataclasses.replace(v, out_bits=v.out_bits + 1)


def unknown_operator(v):
    return dataclasses.replace(v, op="layernorm/nonsense")


@pytest.mark.parametrize("damage, words", [
    (out_of_range, "row 2 has inputs outside -128..127"),
    (shorter_y, "must have the same, non-empty shape"),
    (fewer_y_rows, "do not pair up"),
    (wrong_y, "y of row 4 is not the golden output"),
    (wrong_lengths, "lengths do not fit"),
    (wrong_config, "config is invalid"),
    (foreign_field, "no field(s) colour"),
    (wrong_port, "port formats differ"),
    (unknown_operator, "unknown operator"),
])
def test_a_bad_vector_file_is_an_input_error_before_any_rtl(damage, words, tmp_path, capsys,
                                                            monkeypatch):
    """Inputs out of range, x and y of different lengths, a y that is not the golden output, an
    invalid stored config: exit 2 and one line, without building or simulating anything."""
    monkeypatch.setattr("intvit.sim.verify.run_bench", pytest.fail)
    monkeypatch.setattr("intvit.sim.verify.build_unit", pytest.fail)
    path = save_vectors(tmp_path / "bad.npz", damage(example_rows()))
    work = tmp_path / "sim"
    assert main(["sim", "layernorm/ibert", "--vectors", str(path), "--work-dir", str(work)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "bad.npz" in err and words in err, err
    assert not work.exists()


def test_a_file_of_another_operator_names_the_right_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("intvit.sim.verify.run_bench", pytest.fail)
    path = save_vectors(tmp_path / "ln.npz", example_rows())
    assert main(["sim", "layernorm/ivit", "--vectors", str(path), "--work-dir",
                 str(tmp_path / "sim")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "intvit sim layernorm/ibert --vectors" in err


def masked_softmax_rows():
    """A small valid masked ``softmax/iptq`` file's contents (:func:`masked_row_sweep`)."""
    from intvit.golden_model.vectors import masked_row_sweep

    operator = registry.get("softmax/iptq")
    config = operator.example_config()
    rows, keeps = masked_row_sweep(config, np.random.default_rng(0), 16, count=6)
    return make_row_vectors("softmax/iptq", config, rows, operator.run, keeps)


def unmasked_y(v):
    """The golden outputs of the rows without their masks, beside the masks."""
    operator = registry.get(v.op)
    plain = make_row_vectors(v.op, operator.example_config(), [x for x, _ in v.rows()],
                             operator.run)
    return dataclasses.replace(v, y=plain.y)


def keep_as_integers(v):
    return dataclasses.replace(v, keep=v.keep.astype(np.int8))


def keep_of_another_shape(v):
    return dataclasses.replace(v, keep=v.keep[:, :-1])


def a_row_keeping_nothing(v):
    keep = v.keep.copy()
    keep[1] = False
    return dataclasses.replace(v, keep=keep)


def mask_on_a_layernorm(v):
    return dataclasses.replace(example_rows(), keep=np.ones_like(example_rows().x, bool))


@pytest.mark.parametrize("damage, words", [
    (unmasked_y, "is not the golden output"),
    (keep_as_integers, "keep must be booleans shaped as x"),
    (keep_of_another_shape, "keep must be booleans shaped as x"),
    (a_row_keeping_nothing, "a row keeps no element"),
    (mask_on_a_layernorm, "layernorm/ibert takes no keep mask"),
])
def test_a_bad_masked_vector_file_is_an_input_error(damage, words, tmp_path, capsys,
                                                    monkeypatch):
    """Masked rows whose y ignores the masks, masks of the wrong type or shape, a row that
    keeps nothing, a mask on an operator that takes none: exit 2, one line, no RTL."""
    monkeypatch.setattr("intvit.sim.verify.run_bench", pytest.fail)
    vectors = damage(masked_softmax_rows())
    path = save_vectors(tmp_path / "bad.npz", vectors)
    assert main(["sim", vectors.op, "--vectors", str(path), "--work-dir",
                 str(tmp_path / "sim")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.npz" in err and words in err, err


def test_masked_rows_round_trip_and_their_masks_change_the_outputs(tmp_path):
    """A masked file reads back with its masks and passes the golden check; the masks matter
    (the same rows unmasked give other outputs) and excluded elements have probability 0."""
    vectors = masked_softmax_rows()
    loaded, _ = load_checked_vectors(save_vectors(tmp_path / "m.npz", vectors))
    assert np.array_equal(loaded.keep, vectors.keep)
    assert not np.array_equal(unmasked_y(vectors).y, vectors.y)
    for (_, y), keep in zip(loaded.rows(), loaded.row_keeps()):
        assert (y[~keep] == 0).all()


@pytest.mark.parametrize("name", ["layernorm/ibert", "layernorm/fqvit", "gelu/ibert",
                                  "softmax/fqvit", "requant", "log2quant"])
def test_the_stored_config_round_trips(name, tmp_path):
    """The config rebuilt from a file equals the one the file was made from (nested configs and
    tuples included), and the file passes its own checks."""
    operator = registry.get(name)
    config = operator.example_config()
    x = np.atleast_2d(operator.sweep_inputs(config, np.random.default_rng(1)))[:4]
    if operator.row_wise:
        vectors = make_row_vectors(name, config, list(x), operator.run)
    else:
        vectors = make_vectors(name, config, x.reshape(-1), operator.run(config, x.reshape(-1)))
    _, rebuilt = load_checked_vectors(save_vectors(tmp_path / "v.npz", vectors))
    assert rebuilt == config
