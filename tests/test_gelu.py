"""The three GELU candidates (``golden_model/ops/gelu/{iptq,ivit,ibert}.py``) against exact
GELU, second implementations in Python ints and Fractions, the references' float-held forms
and the papers' constants (docs/method.md)."""
import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
import pytest

from intvit.golden_model.errors import ConfigError, IntvitError
from intvit.golden_model.ops.gelu import common, ibert, iptq, ivit
from intvit.golden_model.ops.requant import RequantConfig
from intvit.golden_model.registry import get
from integer_trap import trap_floats

NAMES = ["gelu/iptq", "gelu/ivit", "gelu/ibert"]
CONFIG_TYPES = {"gelu/iptq": iptq.PolyGeluConfig, "gelu/ivit": ivit.ShiftGeluConfig,
                "gelu/ibert": ibert.IBertGeluConfig}
POINTS = [(0.05, 8, 8), (0.1, 6, 6), (0.004, 12, 10), (0.0005, 16, 8), (0.5, 4, 4), (1.0, 2, 2),
          (0.006, 8, 8), (0.001, 16, 16)]
"""(in_scale, in_bits, out_bits): the example, coarse and fine inputs, and a range that ends
near GELU's minimum (0.006 * -128 = -0.77)."""
EXAMPLE_BOUND_LSB = {"gelu/iptq": 0.55, "gelu/ivit": 1.05, "gelu/ibert": 0.9}
"""Stated max |error| at the example config (in_scale 0.05, 8 -> 8 bits), in output LSBs."""
INTEGER_SLACK_LSB = 0.2
"""What integerization may add to the float form's error beyond the 0.5 LSB output rounding
(floors of the clip point, the constants and the shifts)."""
GELU_ARGMIN = -0.7517915


def example(name, **options):
    return get(name).example_config(**options)


@lru_cache(maxsize=None)
def config_at(name, point):
    in_scale, in_bits, out_bits = point
    return example(name, in_scale=in_scale, in_bits=in_bits, out_bits=out_bits)


def all_codes(cfg):
    lo, hi = -(1 << (cfg.in_bits - 1)), (1 << (cfg.in_bits - 1)) - 1
    return np.arange(lo, hi + 1, dtype=np.int64)


def exact_gelu(x):
    return np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in np.ravel(x)])


def error_lsb(cfg, run, q):
    y = cfg.dequantize_output(run(cfg, q))
    return np.abs(y - exact_gelu(q * cfg.in_scale)) / cfg.out_scale


# ---------------------------------------------------------------- float forms of each method

def ibert_float_form(x):
    """I-BERT's i-GELU in real arithmetic with the paper's a, b, c and k = 1.4142."""
    u = x / 1.4142
    erf = np.sign(u) * (-0.2888 * (np.minimum(np.abs(u), 1.769) - 1.769) ** 2 + 1.0)
    return x / 2 * (1 + erf)


def poly_float_form(cfg):
    """The quartic with the config's fitted a and its integer clip point b_int * S_u."""
    s_u = cfg.in_scale / math.sqrt(2.0)

    def form(x):
        u = x / math.sqrt(2.0)
        clip = -cfg.b_int * s_u
        erf = np.sign(u) * (cfg.coeff_a * (np.minimum(np.abs(u), clip) - clip) ** 4 + 1.0)
        return x / 2 * (1 + erf)
    return form


def ivit_float_form(x):
    """ShiftGELU in real arithmetic: x * sigmoid(1.6875 x), e**t = 2**(1.4375 t), and
    2**f ~= 1 + f/2 on f in (-1, 0] (I-ViT's shift exponential)."""
    t = -np.abs(1.6875 * x) * 1.4375
    k = np.floor(-t)
    small = 2.0 ** (-k) * (1 + (t + k) / 2)
    return x * np.where(x >= 0, 1 / (1 + small), small / (1 + small))


FLOAT_FORMS = {"gelu/ibert": lambda cfg: ibert_float_form,
               "gelu/ivit": lambda cfg: ivit_float_form,
               "gelu/iptq": poly_float_form}


# ---------------------------------------------------------------- registration and contract

def test_three_elementwise_candidates_are_registered():
    for name in NAMES:
        op = get(name)
        assert op.kind == "gelu" and not op.row_wise and callable(op.calibrate)
        cfg = op.example_config()
        assert isinstance(cfg, op.config_type) and op.config_type is CONFIG_TYPES[name]
        assert (cfg.in_bits, cfg.out_bits, cfg.in_signed, cfg.out_signed) == (8, 8, True, True)
        assert op.sweep_inputs(cfg, np.random.default_rng(0)).tolist() == list(range(-128, 128))


@pytest.mark.parametrize("name", NAMES)
def test_reference_is_exact_gelu(name):
    x = np.linspace(-8, 8, 101)
    assert np.allclose(get(name).reference(example(name), x), exact_gelu(x), rtol=0, atol=1e-15)
    assert abs(common.gelu(1.0) - 0.8413447460685429) < 1e-15  # Phi(1) = 0.841344746...


# ---------------------------------------------------------------- accuracy

@pytest.mark.parametrize("name", NAMES)
def test_example_error_bound_in_output_lsbs(name):
    cfg = example(name)
    assert error_lsb(cfg, get(name).run, all_codes(cfg)).max() <= EXAMPLE_BOUND_LSB[name]


@pytest.mark.parametrize("point", POINTS, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_error_is_float_form_error_plus_rounding(name, point):
    """Over every input: |int - GELU| <= |float form - GELU| + 0.5 LSB + integerization slack."""
    cfg = config_at(name, point)
    q = all_codes(cfg)
    x = q * cfg.in_scale
    form_error = np.abs(FLOAT_FORMS[name](cfg)(x) - exact_gelu(x)).max() / cfg.out_scale
    assert error_lsb(cfg, get(name).run, q).max() <= form_error + 0.5 + INTEGER_SLACK_LSB


@pytest.mark.parametrize("point", POINTS, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_monotone_above_the_minimum_and_zero_maps_to_zero(name, point):
    cfg = config_at(name, point)
    q = all_codes(cfg)
    y = get(name).run(cfg, q)
    first_min = int(np.argmin(y))
    assert np.all(np.diff(y[first_min:]) >= 0)
    assert q[first_min] * cfg.in_scale <= -0.6  # the minimum is GELU's, near x = -0.75
    assert y[q == 0].tolist() == [0]


@pytest.mark.parametrize("point", [(0.05, 8, 8), (0.006, 8, 8), (0.0005, 16, 8), (1.0, 2, 2)],
                         ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_most_negative_input(name, point):
    """No overflow at -2**(in_bits-1); its error is the float form's there plus rounding (at
    0.006 * -128 = -0.77, near GELU's minimum, the methods' own error shows)."""
    cfg = config_at(name, point)
    lowest = np.array([-(1 << (cfg.in_bits - 1))])
    y = get(name).run(cfg, lowest)
    x = lowest * cfg.in_scale
    truth = exact_gelu(x)[0]
    form_error = abs(FLOAT_FORMS[name](cfg)(x)[0] - truth) / cfg.out_scale
    assert abs(int(y[0]) - truth / cfg.out_scale) <= form_error + 0.5 + INTEGER_SLACK_LSB


@pytest.mark.parametrize("name", NAMES)
def test_integer_only(name):
    op = get(name)
    for cfg in (op.example_config(), config_at(name, (0.0005, 16, 8))):
        q = all_codes(cfg)
        trapped = op.run(cfg, trap_floats(q))
        assert np.array_equal(np.asarray(trapped), op.run(cfg, q))


# ---------------------------------------------------------------- second implementations

def ibert_python(cfg, q):
    """i-GELU on one Python int, following I-BERT's steps; returns the named intermediates."""
    t = min(abs(q), -cfg.b_int)
    diff = t + cfg.b_int
    square = diff * diff
    poly = square + cfg.c_int
    signed_poly = (q > 0) * poly - (q < 0) * poly
    total = signed_poly // 2 ** cfg.shift + cfg.one
    return {"abs": abs(q), "diff": diff, "square": square, "poly": poly,
            "signed_poly": signed_poly, "sum": total, "acc": -(q * total)}


def poly_python(cfg, q):
    """Poly-GELU on one Python int: ((t + b_int)**2 // 2**s)**2 + c_int, then the i-GELU tail."""
    t = min(abs(q), -cfg.b_int)
    diff = t + cfg.b_int
    square = diff * diff
    reduced = square // 2 ** cfg.square_shift
    fourth = reduced * reduced
    poly = fourth + cfg.c_int
    signed_poly = (q > 0) * poly - (q < 0) * poly
    total = signed_poly // 2 ** cfg.poly_shift + cfg.one
    return {"abs": abs(q), "diff": diff, "square": square, "reduced": reduced, "fourth": fourth,
            "poly": poly, "signed_poly": signed_poly, "sum": total, "acc": -(q * total)}


def ivit_exp_reference(cfg, v):
    """I-ViT's int_exp_shift on one int v <= 0, its real-valued steps in exact Fractions:
    floor((r/2 - x0) * 2**(n - k)), clamped at 0 as the reference does."""
    v = v + math.floor(Fraction(v, 2)) - math.floor(Fraction(v, 16))
    v = max(v, cfg.max_k * cfg.x0)
    k = math.floor(Fraction(v, cfg.x0))
    r = v - cfg.x0 * k
    exp = max(0, math.floor((Fraction(r, 2) - cfg.x0) * Fraction(2) ** (cfg.exp_shift - k)))
    return exp, {"log2e": v, "k": k, "exp_operand": (r - 2 * cfg.x0) * 2 ** cfg.exp_shift,
                 "exp": exp}


def ivit_python(cfg, q):
    """ShiftGELU on one int as I-ViT writes it, with the row max replaced by max(z, 0):
    sigma = E(z - m) / (E(z - m) + E(-m))."""
    z = sum(math.floor(Fraction(q * 2 ** cfg.align_shift, 2 ** s)) for s in cfg.slope_shifts)
    m = max(z, 0)
    e1, steps = ivit_exp_reference(cfg, z - m)
    e0, steps0 = ivit_exp_reference(cfg, -m)
    if z >= 0:
        steps = steps0  # the non-constant exponential is E(-z)
    total = e1 + e0
    factor = (2 ** 31 - 1) // min(total, 2 ** 31 - 1)
    product = e1 * factor
    sigma = math.floor(Fraction(product, 2 ** (31 - cfg.sigmoid_bits + 1)))
    return {"slope": z, **steps, "sum": total, "factor": factor, "product": product,
            "sigmoid": sigma, "acc": q * sigma}


SECOND = {"gelu/ibert": (ibert_python, ibert.ibert_integer_gelu),
          "gelu/iptq": (poly_python, iptq.poly_integer_gelu),
          "gelu/ivit": (ivit_python, ivit.shift_integer_gelu)}


def width_configs(name):
    configs = [config_at(name, point) for point in POINTS if point[1] <= 12]
    if name != "gelu/iptq":
        configs.append(example(name, published=True))
    return configs


def check_second_implementation(name, cfg, q):
    """The Python-int version equals h bit for bit on ``q``, and every intermediate stays inside
    the range and the width the config states (the hardware sizes its datapath from them;
    acc within 32 bits)."""
    python, integer = SECOND[name]
    steps = [python(cfg, int(v)) for v in q]
    assert integer(cfg, q).tolist() == [s["acc"] for s in steps]
    assert set(steps[0]) == set(cfg.ranges) == set(cfg.widths)
    for key, (lo, hi) in cfg.ranges.items():
        values = [s[key] for s in steps]
        bits = cfg.widths[key]
        assert lo <= min(values) and max(values) <= hi, key
        assert -(1 << (bits - 1)) <= lo and hi < 1 << (bits - 1), key
    assert cfg.acc_bits <= 32


@pytest.mark.parametrize("name", NAMES)
def test_second_implementation_and_worst_case_widths(name):
    for cfg in width_configs(name):
        check_second_implementation(name, cfg, all_codes(cfg))


def test_widths_of_the_16_bit_configs_cover_the_extremes():
    for name in NAMES:
        cfg = config_at(name, (0.0005, 16, 8))
        q = all_codes(cfg)
        picks = np.concatenate([q[:300], q[-300:], q[::97], q[np.abs(q) < 300]])
        check_second_implementation(name, cfg, picks)


def test_poly_stays_inside_int32():
    for point in POINTS:
        widths = config_at("gelu/iptq", point).widths
        assert max(widths["fourth"], widths["poly"], widths["acc"]) <= 32, point


# ---------------------------------------------------------------- I-BERT

def ibert_float_held(x_int, in_scale, n):
    """I-BERT's IntGELU as its reference code runs it: integers held in floats, floor of real
    divisions; returns its x_int * (sigmoid_int + shift_int) and that product's real scale."""
    coeff = [-0.2888, -1.769, 1.0]
    coeff[2] /= coeff[0]
    s_e = in_scale / 1.4142
    b_int = np.floor(coeff[1] / s_e)
    c_int = np.floor(coeff[2] / s_e ** 2)
    abs_int = np.minimum(np.abs(x_int), -b_int)
    y_int = np.sign(x_int) * ((abs_int + b_int) ** 2 + c_int)
    sigmoid_scale = s_e ** 2 * coeff[0] * 2 ** n
    y_int = np.floor(y_int / 2 ** n)
    shift_int = np.floor(1.0 / sigmoid_scale)
    return x_int * (y_int + shift_int), in_scale * sigmoid_scale / 2


@pytest.mark.parametrize("published", [False, True])
@pytest.mark.parametrize("point", [(0.05, 8, 8), (0.004, 12, 10), (2e-4, 16, 8)], ids=str)
def test_ibert_agrees_with_its_float_held_reference(point, published):
    cfg = example("gelu/ibert", in_scale=point[0], in_bits=point[1], out_bits=point[2],
                  published=published)
    q = np.random.default_rng(3).integers(*cfg.in_range, size=3000, endpoint=True)
    held, scale = ibert_float_held(q.astype(np.float64), cfg.in_scale, cfg.shift)
    assert ibert.ibert_integer_gelu(cfg, q).tolist() == (-held).astype(np.int64).tolist()
    assert math.isclose(cfg.gelu_scale, -scale, rel_tol=1e-12)


def test_ibert_paper_constants():
    assert (ibert.IBERT_A, ibert.IBERT_B, ibert.IBERT_C, ibert.IBERT_SQRT2) == \
        (-0.2888, -1.769, 1.0, 1.4142)  # docs/method.md sec. 4.1, I-BERT i-GELU
    assert ibert.IBertGeluConfig.published(0.05).shift == 14
    cfg = example("gelu/ibert")
    s_e = Fraction(cfg.in_scale) / Fraction("1.4142")
    assert cfg.b_int == math.floor(Fraction("-1.769") / s_e)
    assert cfg.c_int == math.floor(1 / Fraction("-0.2888") / s_e ** 2)


def test_ibert_published_shift_overflows_at_16_bit_fine_scale():
    """n = 14 on 16-bit codes of step 2e-5 needs more than the 32-bit requantizer input."""
    with pytest.raises(ConfigError) as error:
        example("gelu/ibert", in_scale=0.00002, in_bits=16, out_bits=16, published=True)
    assert "32" in one_line(error)


def test_ibert_published_shift_wipes_out_an_8_bit_input():
    cfg = example("gelu/ibert", published=True)
    assert cfg.one == -1  # L >> 14 keeps at most a sign: why from_scale derives the shift
    assert error_lsb(cfg, ibert.run_ibert, all_codes(cfg)).max() > 10


# ---------------------------------------------------------------- I-ViT

def ivit_float_held(cfg, q):
    """I-ViT's ShiftGELU as its reference code runs it (floats holding integers, floor of real
    divisions), element-wise with the row max replaced by max(z, 0); returns sigmoid_int."""
    z = sum(np.floor(q * 2.0 ** cfg.align_shift / 2 ** s) for s in cfg.slope_shifts)

    def int_exp_shift(v):
        v = v + np.floor(v / 2) - np.floor(v / 2 ** 4)
        v = np.maximum(v, cfg.max_k * cfg.x0)
        k = np.floor(v / cfg.x0)
        r = v - cfg.x0 * k
        return np.maximum(np.floor((r / 2 - cfg.x0) * 2.0 ** (cfg.exp_shift - k)), 0)

    m = np.maximum(z, 0)
    e1, e0 = int_exp_shift(z - m), int_exp_shift(-m)
    total = np.minimum(e1 + e0, 2 ** 31 - 1)
    factor = np.floor((2 ** 31 - 1) / total)
    return np.floor(e1 * factor / 2 ** (31 - cfg.sigmoid_bits + 1))


@pytest.mark.parametrize("published", [False, True])
@pytest.mark.parametrize("point", [(0.05, 8, 8), (0.004, 12, 10), (0.0005, 16, 8)], ids=str)
def test_ivit_agrees_with_its_float_held_reference(point, published):
    cfg = example("gelu/ivit", in_scale=point[0], in_bits=point[1], out_bits=point[2],
                  published=published)
    q = np.random.default_rng(4).integers(*cfg.in_range, size=3000, endpoint=True)
    sigma = ivit_float_held(cfg, q.astype(np.float64))
    assert ivit.shift_integer_gelu(cfg, q).tolist() == (q * sigma.astype(np.int64)).tolist()


def test_ivit_paper_constants():
    assert sum(Fraction(1, 2 ** s) for s in ivit.IVIT_SLOPE_SHIFTS) == Fraction(0b11011, 0b10000)
    assert abs(1.6875 - 1.702) < 0.015
    first, second = ivit.IVIT_LOG2E_SHIFTS
    assert 1 + Fraction(1, 2 ** first) - Fraction(1, 2 ** second) == Fraction(0b10111, 0b10000)
    assert abs(1.4375 - math.log2(math.e)) < 0.006
    paper = ivit.ShiftGeluConfig.published(0.05)
    assert (paper.align_shift, paper.exp_shift, paper.max_k, paper.sigmoid_bits,
            paper.div_bits) == (0, 23, 23, 8, 31)
    assert paper.x0 == math.floor(Fraction(-1) / Fraction(0.05))
    ours = example("gelu/ivit")
    assert ours.x0 == math.floor(Fraction(-16) / Fraction(0.05))
    q = np.arange(-128, 128)
    assert ours.slope(q).tolist() == (27 * q).tolist()  # exact 1.1011b after the 4-bit align


def test_ivit_exp_of_zero_is_the_unit_constant():
    cfg = example("gelu/ivit")
    assert ivit.shift_exp(cfg, np.array([0])).tolist() == [cfg.exp_one]
    assert ivit_exp_reference(cfg, 0)[0] == cfg.exp_one


# ---------------------------------------------------------------- IPTQ data-aware fit

def test_poly_integer_path_follows_its_float_form():
    cfg = example("gelu/iptq")
    s_u = cfg.in_scale / math.sqrt(2.0)
    assert math.isclose(cfg.coeff_b, cfg.b_int * s_u, rel_tol=1e-12)  # the fit's b is on the grid
    q = all_codes(cfg)
    h = iptq.poly_integer_gelu(cfg, q) * cfg.gelu_scale
    assert np.abs(h - poly_float_form(cfg)(q * cfg.in_scale)).max() < 1e-5


def test_fit_is_deterministic_and_depends_on_the_histogram_only():
    samples = np.random.default_rng(5).normal(0.0, 1.5, 5000)
    first = get("gelu/iptq").calibrate(0.05, samples)
    again = get("gelu/iptq").calibrate(0.05, samples.copy())
    shuffled = get("gelu/iptq").calibrate(0.05, np.random.default_rng(6).permutation(samples))
    assert first == again == shuffled


def test_fit_is_data_aware():
    """A fit to a narrow sample beats the wide fit on that sample (RMS GELU error, 16-bit out
    so that the approximation, not the output rounding, is measured)."""
    rng = np.random.default_rng(7)
    narrow = rng.normal(0.0, 0.3, 20000)
    wide = np.arange(-128, 128) * 0.02
    calibrate = get("gelu/iptq").calibrate
    narrow_fit = calibrate(0.02, narrow, out_bits=16)
    wide_fit = calibrate(0.02, wide, out_bits=16, out_scale=narrow_fit.out_scale)
    assert narrow_fit != wide_fit
    q = np.clip(np.rint(narrow / 0.02), -128, 127).astype(np.int64)
    truth = exact_gelu(q * 0.02)

    def rms(cfg):
        return np.sqrt(np.mean((cfg.dequantize_output(iptq.run_poly(cfg, q)) - truth) ** 2))
    assert rms(narrow_fit) < 0.5 * rms(wide_fit)


def test_fit_beats_a_brute_force_grid():
    """The fitted (a, b) is at least as good, on the sample's squared GELU error, as the best
    point of an independent dense (a, b) grid."""
    in_scale = 0.05
    samples = np.random.default_rng(8).normal(0.3, 1.2, 4000)
    codes, counts = np.unique(np.clip(np.rint(samples / in_scale), -128, 127),
                              return_counts=True)
    x = codes * in_scale
    truth = exact_gelu(x)

    def sse(a, b):
        u = np.abs(x)[:, None] / math.sqrt(2.0)
        erf = np.sign(x)[:, None] * (a * (np.minimum(u, -b) + b) ** 4 + 1.0)
        return counts @ ((x[:, None] / 2 * (1 + erf) - truth[:, None]) ** 2)

    a_grid, b_grid = np.meshgrid(np.linspace(-0.05, -0.005, 91), np.linspace(-4.0, -1.0, 121))
    best_grid = sse(a_grid.ravel(), b_grid.ravel()).min()
    a, b = iptq.fit_poly_gelu(in_scale, samples)
    assert sse(np.array([a]), np.array([b]))[0] <= best_grid * 1.001
    assert a < 0 and b < 0


def test_poly_from_scale_defaults_to_the_wide_fit():
    cfg = iptq.PolyGeluConfig.from_scale(0.05)
    assert (cfg.coeff_a, cfg.coeff_b) == (-0.0191, -2.72)  # docs/method.md sec. 1, the wide fit
    assert cfg.b_int == round(-2.72 / (0.05 / math.sqrt(2)))


# ---------------------------------------------------------------- calibration of fixed methods

@pytest.mark.parametrize("name", ["gelu/ivit", "gelu/ibert"])
def test_fixed_methods_calibrate_to_from_scale(name):
    samples = np.random.default_rng(9).normal(0, 2, 100)
    assert get(name).calibrate(0.03, samples, in_bits=10, out_bits=8) == \
        CONFIG_TYPES[name].from_scale(0.03, in_bits=10, out_bits=8)


# ---------------------------------------------------------------- errors

def one_line(error):
    message = str(error.value)
    assert "\n" not in message and message
    return message


@pytest.mark.parametrize("name", NAMES)
def test_float_and_out_of_range_input_rejected(name):
    op = get(name)
    cfg = op.example_config()
    with pytest.raises(IntvitError) as error:
        op.run(cfg, np.array([0.5, 1.0]))
    assert "integer" in one_line(error)
    with pytest.raises(IntvitError) as error:
        op.run(cfg, np.array([0, 128]))
    assert "-128..127" in one_line(error)


@pytest.mark.parametrize("options, word", [
    ({"in_bits": 1}, "in_bits"), ({"in_bits": 17}, "in_bits"), ({"out_bits": 1}, "out_bits"),
    ({"out_bits": 17}, "out_bits"), ({"in_scale": 0.0}, "in_scale"),
    ({"in_scale": float("nan")}, "in_scale"), ({"in_scale": float("inf")}, "in_scale"),
    ({"in_scale": -0.1}, "in_scale"), ({"out_scale": 0.0}, "out_scale"),
    ({"out_scale": float("nan")}, "out_scale")])
@pytest.mark.parametrize("name", NAMES)
def test_bad_options_give_one_line_errors(name, options, word):
    with pytest.raises(ConfigError) as error:
        example(name, **options)
    assert word in one_line(error)


@pytest.mark.parametrize("samples, word", [
    ([], "empty"), (np.array([0.1, np.nan]), "NaN"), (np.array([np.inf, 1.0]), "inf"),
    (["a", "b"], "real")])
@pytest.mark.parametrize("name", NAMES)
def test_bad_calibration_samples_give_one_line_errors(name, samples, word):
    with pytest.raises(IntvitError) as error:
        get(name).calibrate(0.05, samples)
    assert word in one_line(error)


def test_poly_fit_needs_a_nonzero_sample():
    with pytest.raises(IntvitError) as error:
        get("gelu/iptq").calibrate(0.05, np.zeros(10))
    assert "nonzero" in one_line(error)


def test_hand_built_configs_are_checked():
    good = example("gelu/ibert")
    fields = {k: getattr(good, k) for k in good.__dataclass_fields__}
    with pytest.raises(ConfigError) as error:
        ibert.IBertGeluConfig(**{**fields, "b_int": 3})
    assert "b_int" in one_line(error)
    with pytest.raises(ConfigError) as error:  # no shift: q * (L + one) needs more than 32 bits
        ibert.IBertGeluConfig(**{**fields, "in_bits": 16, "c_int": -(1 << 30),
                                 "one": -(1 << 30)})
    assert "32" in one_line(error)
    with pytest.raises(ConfigError) as error:
        ibert.IBertGeluConfig(**{**fields,
                                 "requant": RequantConfig.from_scale(0.1, signed=False)})
    assert "signed codes" in one_line(error)
    shift = example("gelu/ivit")
    shift_fields = {k: getattr(shift, k) for k in shift.__dataclass_fields__}
    with pytest.raises(ConfigError) as error:
        ivit.ShiftGeluConfig(**{**shift_fields, "slope_shifts": [0, 1, 3, 4]})
    assert "slope_shifts" in one_line(error)
    with pytest.raises(ConfigError) as error:
        ivit.ShiftGeluConfig(**{**shift_fields, "x0": 5})
    assert "x0" in one_line(error)
    poly = example("gelu/iptq")
    poly_fields = {k: getattr(poly, k) for k in poly.__dataclass_fields__}
    with pytest.raises(ConfigError) as error:
        iptq.PolyGeluConfig(**{**poly_fields, "coeff_a": 0.02})
    assert "coeff_a" in one_line(error)
