"""The cycle model behind the metric's cost term, against the units' simulated cycles at the
bundled digits model's shapes (17 tokens: softmax 4 x 17 rows of 17, LayerNorm 17 rows of 64,
GELU 17 x 128 elements).

Each unit is built at its example config with one lane, as the cost table measured it, and fed
one image's rows of its layer back to back with no stalls in Amaranth's simulator. The *span* is
the cycles from the first accepted input beat to the last output beat, both counted. What the
model claims, and what is tested:

- row units: ``I = row_interval(n)`` bounds the interval between consecutive row ends, and
  ``row_latency(n) + (rows - 1) * I`` the span of the layer's rows (and ``row_latency`` a
  single row alone), within a few cycles per gap (the model allows each row step one cycle
  more than some units need). Counting the rows' intervals alone, without the fill, is not a
  bound: on ``softmax/fqvit`` the layer's 68 rows take longer than ``68 * I``. The entry is
  the one ``intvit cost`` writes for the unit as built now (``fpga.cost.cycle_model``); a
  table measured before the rows overlapped keeps its older, looser fields;
- element-wise units: ``ceil(elements / lanes) + latency`` is the span, to within one cycle.
"""
import numpy as np
import pytest
from amaranth.sim import Simulator

from intvit.golden_model import registry
from intvit.golden_model.checkpoint import load_bundled
from intvit.fpga.cost import cycle_model
from intvit.golden_model.costs import cycles_for_rows, load_cost_table
from intvit.golden_model.select import layer_shapes
from intvit.hw.rowpipe import RowUnit
from intvit.hw.units import build_unit

ROW_UNITS = ("softmax/iptq", "softmax/ivit", "softmax/ibert", "softmax/fqvit",
             "layernorm/ibert", "layernorm/ivit", "layernorm/fqvit")
ELEMENTWISE_UNITS = ("gelu/iptq", "gelu/ivit", "gelu/ibert")


@pytest.fixture(scope="module")
def shapes():
    _, config, _ = load_bundled()
    shapes = layer_shapes(config)
    return {"softmax": shapes["blocks.0.attn.softmax"], "layernorm": shapes["blocks.0.norm1"],
            "gelu": shapes["blocks.0.mlp.gelu"]}


@pytest.fixture(scope="module")
def table():
    return load_cost_table()


def simulate(unit, rows):
    """Stream ``rows`` (lists of ints) through ``unit`` back to back, output always ready:
    ``(span, row end cycles, elements out)``."""
    keyed = isinstance(unit, RowUnit)
    marks = {"accept": None, "ends": [], "out": 0}

    async def source(ctx):
        cycle = 0
        for row in rows:
            for i, value in enumerate(row):
                payload = {"data": [int(value)], "last": i == len(row) - 1}
                ctx.set(unit.i.payload, {**payload, "keep": 1} if keyed else payload)
                ctx.set(unit.i.valid, 1)
                while True:
                    ready = ctx.get(unit.i.ready)
                    await ctx.tick()
                    cycle += 1
                    if ready:
                        marks["accept"] = marks["accept"] or cycle
                        break
        ctx.set(unit.i.valid, 0)

    async def sink(ctx):
        cycle = 0
        ctx.set(unit.o.ready, 1)
        while len(marks["ends"]) < len(rows) and cycle < 50_000:
            valid, payload = ctx.get(unit.o.valid), ctx.get(unit.o.payload)
            await ctx.tick()
            cycle += 1
            if valid:
                marks["out"] += 1
                if payload.last:
                    marks["ends"].append(cycle)

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    assert len(marks["ends"]) == len(rows), "not every row came out"
    return marks["ends"][-1] - marks["accept"] + 1, marks["ends"], marks["out"]


def random_rows(config, count, length):
    rng = np.random.default_rng(count * 1000 + length)
    lo, hi = -(1 << (config.in_bits - 1)), (1 << (config.in_bits - 1)) - 1
    return [list(rng.integers(lo, hi, length, endpoint=True)) for _ in range(count)]


def kind_of(name):
    return name.split("/")[0]


@pytest.mark.parametrize("name", ROW_UNITS)
def test_row_unit_cycles_at_the_layer_shape_are_bounded_by_the_model(name, shapes):
    shape = shapes[kind_of(name)]
    config = registry.get(name).example_config()
    unit = build_unit(name, config, lanes=1)
    entry = {"lanes": 1, **cycle_model(unit)}
    span, ends, _ = simulate(unit, random_rows(config, shape.rows, shape.length))
    model = cycles_for_rows(entry, shape.length, shape.rows)
    interval = unit.row_interval(shape.length)
    assert model == unit.row_latency(shape.length) + (shape.rows - 1) * interval
    assert max(np.diff(ends)) <= interval
    assert span <= model <= span + 2 * len(unit.passes()), (span, model)
    alone, _, _ = simulate(unit, random_rows(config, 1, shape.length))
    assert alone <= cycles_for_rows(entry, shape.length, 1) <= alone + 2 * len(unit.passes())


@pytest.mark.parametrize("name", ELEMENTWISE_UNITS)
def test_elementwise_cycles_at_the_layer_shape_match_the_model(name, shapes, table):
    shape = shapes[kind_of(name)]
    config = registry.get(name).example_config()
    unit = build_unit(name, config, lanes=1)
    entry = table.entry(name)
    assert entry["latency"] == unit.latency and entry["row_overhead"] is None
    span, _, out = simulate(unit, random_rows(config, shape.rows, shape.length))
    assert out == shape.rows * shape.length
    model = cycles_for_rows(entry, shape.length, shape.rows)
    assert model == shape.rows * shape.length + unit.latency
    assert 0 <= model - span <= 1, (span, model)


def test_the_intervals_alone_do_not_bound_the_span(shapes, table):
    """Without the fill term the model would undercount ``softmax/fqvit``'s layer."""
    config = registry.get("softmax/fqvit").example_config()
    unit = build_unit("softmax/fqvit", config, lanes=1)
    shape = shapes["softmax"]
    span, _, _ = simulate(unit, random_rows(config, shape.rows, shape.length))
    assert span > shape.rows * unit.row_interval(shape.length)
