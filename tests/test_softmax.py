"""The four integer softmax candidates against second implementations (Python ints or the
references' float-held style), the true softmax, the papers' constants and the stated widths."""
import dataclasses
import functools
import inspect
import math
from fractions import Fraction

import numpy as np
import pytest

from intvit.golden_model.errors import ConfigError, IntvitError
from intvit.golden_model.ops import softmax as sm
from intvit.golden_model.ops.softmax import common, ibert, iptq
from intvit.golden_model.registry import get
from integer_trap import trap_floats

LN2 = math.log(2.0)
NAMES = ["softmax/iptq", "softmax/ivit", "softmax/ibert", "softmax/fqvit"]
LINEAR = NAMES[:3]
CONFIG_TYPES = {"softmax/iptq": sm.BitExpSoftmaxConfig, "softmax/ivit": sm.ShiftmaxConfig,
                "softmax/ibert": sm.IBertSoftmaxConfig, "softmax/fqvit": sm.LogIntSoftmaxConfig}


def variants(name):
    """(id, config): the example, a coarse 6-bit one, a fine 12-bit one, the published preset."""
    kind = CONFIG_TYPES[name]
    out = {"softmax/fqvit": 4}.get(name, 8)
    found = [("example", kind.from_scale(0.05)),
             ("coarse", kind.from_scale(0.2, in_bits=6, out_bits=min(6, out), max_row=64)),
             ("fine", kind.from_scale(0.003, in_bits=12, out_bits=out, max_row=256))]
    if hasattr(kind, "published"):
        found.append(("published", kind.published(0.05)))
    if name in ("softmax/ibert", "softmax/fqvit"):
        found.append(("published-paper", kind.published(0.05, polynomial="paper")))
    return found


CASES = [(name, label, cfg) for name in NAMES for label, cfg in variants(name)]
CASE_IDS = [f"{name.split('/')[1]}-{label}" for name, label, _ in CASES]


def random_rows(cfg, rng, count=40, length=None):
    """Attention-like rows: Gaussian scores (spread 0.5..4 real units) around random centres."""
    length = length or min(cfg.max_row, 197)
    lo, hi = -(1 << (cfg.in_bits - 1)), (1 << (cfg.in_bits - 1)) - 1
    spread = rng.uniform(0.5, 4.0, (count, 1)) / cfg.in_scale
    rows = rng.normal(rng.uniform(lo, hi, (count, 1)), spread, (count, length))
    return np.clip(np.round(rows), lo, hi).astype(np.int64)


def sample_rows(cfg, rng):
    """Random rows of several lengths plus the operator's own sweep, as a list of 1-D rows."""
    rows = list(sm.sweep_inputs(cfg, rng)[::3])
    for length in (1, 2, 7, min(cfg.max_row, 64)):
        rows += list(random_rows(cfg, rng, 8, length))
    return rows


# --- second implementations, one element / one row at a time --------------------------------

IPTQ_COEFFS = (1 - Fraction(3, 1024), -Fraction(21, 32), Fraction(81, 512))
"""1 - 2**-9 - 2**-10, -(2**-1 + 2**-3 + 2**-5), 2**-3 + 2**-5 + 2**-9 (the docstring's sums)."""
LOG2E_16 = int("10111", 2)
"""I-ViT's log2(e) ~ (1.0111)_2 (paper Sec. 3.3), times 2**4: 23."""
IBERT_PAPER = (0.3585, 1.353, 0.344)
"""I-BERT paper eq. 13: exp(p) ~ a*(p + b)**2 + c."""
IBERT_CODE = (0.35815147, 0.96963238, 1.0)
"""I-BERT's released IntSoftmax.coef (also FQ-ViT's): exp(p) ~ a*p**2 + b*p + c."""


def ibert_poly(cfg, p):
    """The float polynomial the config names, in its source's own form."""
    if cfg.polynomial == "paper":
        a, b, c = IBERT_PAPER
        return a * (p + b) ** 2 + c
    a, b, c = IBERT_CODE
    return a * p ** 2 + b * p + c


def iptq_exp(cfg, d: int) -> int:
    """Bit-exp in Python ints and fractions: u = round(23|d| R / 2**s), k, f, Horner, >> k."""
    u = math.floor(Fraction(-LOG2E_16 * d * cfg.scale_mult, 1 << cfg.scale_shift) + Fraction(1, 2))
    k, f = divmod(u, 1 << cfg.frac_bits)
    c0, c1, c2 = (int(c * (1 << cfg.exp_bits)) for c in IPTQ_COEFFS)
    inner = c1 + (c2 * f) // (1 << cfg.frac_bits)
    return (c0 + (inner * f) // (1 << cfg.frac_bits)) // (1 << k)


def iptq_row(cfg, row):
    e = [iptq_exp(cfg, int(v) - int(max(row))) for v in row]
    factor = (1 << cfg.recip_bits) // sum(e)
    shift = cfg.recip_bits - cfg.out_bits
    return [min((x * factor + (1 << (shift - 1))) >> shift, (1 << cfg.out_bits) - 1) for x in e]


def ivit_exp(cfg, d):
    """I-ViT's int_exp_shift held in float64 as the reference does (floor of real divisions)."""
    x = np.asarray(d, dtype=np.float64)
    x = x + np.floor(x / 2) - np.floor(x / 2 ** 4)
    x0 = np.floor(-1.0 / cfg.in_scale)
    x = np.maximum(x, cfg.n * x0)
    q = np.floor(x / x0)
    r = x - x0 * q
    return np.maximum(np.floor((r / 2 - x0) * 2.0 ** (cfg.n - q)), 0)


def ivit_row(cfg, row):
    e = ivit_exp(cfg, row - row.max())
    total = min(e.sum(), 2.0 ** 31 - 1)
    factor = np.floor((2.0 ** 31 - 1) / total)
    return np.floor(e * factor / 2.0 ** (31 - cfg.out_bits)).astype(np.int64).tolist()


def ibert_exp(cfg, d):
    """I-BERT's i-exp held in float64 (reference style): the paper's (r + b_int)**2 + c_int
    (Algorithm 1) or the released code's r*(r + b_int) + c_int (its int_polynomial)."""
    s = cfg.in_scale
    x0 = np.floor(-0.6931 / s)
    x = np.maximum(np.asarray(d, dtype=np.float64), cfg.k_max * x0)
    q = np.floor(x / x0)
    r = x - x0 * q
    if cfg.polynomial == "paper":
        a, b, c = IBERT_PAPER
        b_int, c_int = np.floor(b / s), np.floor(c / (a * s * s))
        z = (r + b_int) ** 2 + c_int
    else:
        a, b, c = IBERT_CODE
        b_int, c_int = np.floor((b / a) / s), np.floor((c / a) / s ** 2)
        z = r * (r + b_int) + c_int
    return np.maximum(np.floor(z * 2.0 ** (cfg.exp_shift - q)), 0)


def ibert_row(cfg, row):
    e = ibert_exp(cfg, row - row.max())
    factor = np.floor(2.0 ** cfg.recip_bits / e.sum())
    y = np.floor(e * factor / 2.0 ** (cfg.recip_bits - cfg.out_bits))
    return np.minimum(y, 2 ** cfg.out_bits - 1).astype(np.int64).tolist()


def fqvit_row(cfg, row):
    """FQ-ViT's log_round held in float64, with our half-up rounding of sum / e."""
    e = ibert_exp(cfg, row - row.max())
    codes = []
    for x in e:
        if x == 0:
            codes.append(cfg.top_code)
            continue
        t = np.floor(e.sum() / x + 0.5)
        big = np.floor(np.log2(t))
        big += (t - 2 ** big) >= 2 ** (big - 1)
        codes.append(int(min(big, cfg.top_code)))
    return codes


SECOND = {"softmax/iptq": iptq_row, "softmax/ivit": ivit_row, "softmax/ibert": ibert_row,
          "softmax/fqvit": fqvit_row}
EXP_ONE = {"softmax/iptq": lambda c: iptq_exp(c, 0), "softmax/ivit": lambda c: ivit_exp(c, 0),
           "softmax/ibert": lambda c: ibert_exp(c, 0), "softmax/fqvit": lambda c: ibert_exp(c, 0)}


@functools.lru_cache(maxsize=None)
def all_exps(name, cfg):
    """e for every input difference d in -(2**in_bits - 1) .. 0, by the second implementation."""
    d = np.arange(-(1 << cfg.in_bits) + 1, 1)
    if name == "softmax/iptq":
        return np.array([iptq_exp(cfg, int(v)) for v in d])
    return (ivit_exp if name == "softmax/ivit" else ibert_exp)(cfg, d)


@pytest.mark.parametrize("name,label,cfg", CASES, ids=CASE_IDS)
def test_matches_second_implementation(name, label, cfg):
    run = get(name).run
    for row in sample_rows(cfg, np.random.default_rng(10)):
        assert run(cfg, row).tolist() == SECOND[name](cfg, row), row.tolist()


# --- real-valued models of each method's approximation, for the accuracy bounds ---------------

def model_exp(name, cfg, d):
    """The method's exponential in real arithmetic (its integer range reduction kept, no
    rounding of the result): what the integer path approximates to within its LSBs."""
    d = np.asarray(d, dtype=np.float64)
    if name == "softmax/iptq":
        u = -d * cfg.in_scale * LOG2E_16 / 16
        k = np.floor(u)
        f = u - k
        c0, c1, c2 = (float(c) for c in IPTQ_COEFFS)
        return (c0 + c1 * f + c2 * f * f) * 2.0 ** -k
    if name == "softmax/ivit":
        t = np.maximum(d + np.floor(d / 2) - np.floor(d / 16), cfg.n * cfg.x0)
        k = np.floor(t / cfg.x0)
        return (1 + (t - cfg.x0 * k) / (-2.0 * cfg.x0)) * 2.0 ** -k
    x0 = np.floor(-0.6931 / cfg.in_scale)
    x = np.maximum(d, cfg.k_max * x0)
    k = np.floor(x / x0)
    p = (x - x0 * k) * cfg.in_scale
    return ibert_poly(cfg, p) * 2.0 ** -k


def model_softmax(name, cfg, row):
    e = model_exp(name, cfg, row - row.max())
    return e / e.sum()


def integer_slack(name, cfg, length):
    """LSBs the integer path may add to the model's error: e floors (< 1 unit each, so the row
    sum is off by < length units of at least e(0)) and the reciprocal's floor (< e_max units)."""
    one = float(EXP_ONE[name](cfg))
    recip_bits = 31 if name == "softmax/ivit" else cfg.recip_bits
    return 2.0 ** cfg.out_bits * ((length + 1) / one + all_exps(name, cfg).max() / 2.0 ** recip_bits)


@pytest.mark.parametrize("name,label,cfg", [c for c in CASES if c[0] in LINEAR],
                         ids=[i for i, c in zip(CASE_IDS, CASES) if c[0] in LINEAR])
def test_error_against_float_softmax_is_the_methods_own(name, label, cfg):
    """|y/2**b - p| <= |model - p| + output rounding (1/2 LSB iptq, 1 LSB floor) + slack."""
    op = get(name)
    rounding = 0.5 if name == "softmax/iptq" else 1.0
    for row in sample_rows(cfg, np.random.default_rng(11)):
        p = op.reference(cfg, row * cfg.in_scale)
        saturated = np.minimum(p, 1 - 2.0 ** -cfg.out_bits)  # the stated saturation
        got = cfg.dequantize_output(op.run(cfg, row))
        bound = (np.abs(model_softmax(name, cfg, row) - p)
                 + (rounding + integer_slack(name, cfg, len(row))) / 2 ** cfg.out_bits)
        assert np.all(np.abs(got - saturated) <= bound + 1e-12), row.tolist()


def test_bit_exp_is_the_most_accurate_candidate():
    """Bit-exp is meant to beat I-ViT's 1 - f/2 (and I-BERT at 8-bit scales): docs/method.md
    sec. 1."""
    worst = {}
    for name in LINEAR:
        cfg = get(name).example_config()
        rows = random_rows(cfg, np.random.default_rng(13), 200)
        p = sm.softmax_reference(cfg, rows * cfg.in_scale)
        worst[name] = np.abs(cfg.dequantize_output(get(name).run(cfg, rows)) - p).max()
    assert worst["softmax/iptq"] < worst["softmax/ibert"] < worst["softmax/ivit"]


@pytest.mark.parametrize("label,cfg", variants("softmax/fqvit"))
def test_log_codes_are_within_fqvit_rounding_of_the_true_probability(label, cfg):
    """t = round(sum/e) and rounding up at 1.5 * 2**l put 2**-code within [0.625, 1.5) of
    1/t; the i-exp approximation adds its own relative error eps (from the real model)."""
    for row in sample_rows(cfg, np.random.default_rng(14)):
        p = sm.softmax_reference(cfg, row * cfg.in_scale)
        got = cfg.dequantize_output(sm.log_int_softmax(cfg, row))
        big = p >= 2.0 ** -8
        eps = np.abs(model_softmax("softmax/fqvit", cfg, row)[big] / p[big] - 1).max() + 2 ** -8
        ratio = got[big] / p[big]
        assert ratio.min() >= 0.625 * (1 - eps) and ratio.max() < 1.5 * (1 + eps), row.tolist()
        assert np.abs(got - p).max() <= 1 / 3 + eps


# --- edge rows ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("value", ["top", "zero", "bottom"])
def test_all_equal_row_is_uniform(name, value):
    cfg = get(name).example_config()
    level = {"top": 127, "zero": 0, "bottom": -128}[value]
    for length in (1, 2, 8, 197):
        y = get(name).run(cfg, np.full(length, level))
        assert len(set(y.tolist())) == 1
        if name == "softmax/fqvit":
            expect = min(round(math.log2(length)), cfg.top_code) if length != 197 else 8
            assert y[0] == expect  # round(197) = 197 = 0b11000101: l = 7, next bit 1 -> 8
        else:
            assert abs(y[0] - 256 / length) <= 1 or (length == 1 and y[0] == 255)


@pytest.mark.parametrize("name", NAMES)
def test_row_of_length_one_is_probability_one(name):
    cfg = get(name).example_config()
    for v in (-128, -1, 0, 57, 127):
        y = get(name).run(cfg, np.array([[v]]))
        assert y.tolist() == [[0 if name == "softmax/fqvit" else 255]]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("where", [0, 99, 196])
def test_single_large_outlier_is_one_hot(name, where):
    cfg = get(name).example_config()
    row = np.full(197, -128)
    row[where] = 127
    y = get(name).run(cfg, row)
    others = np.delete(y, where)
    if name == "softmax/fqvit":
        assert y[where] == 0 and np.all(others == cfg.top_code)
    else:
        # true p = 1/(1 + 196 e**-12.75) = 1 - 5.7e-4; I-ViT's floor value 2**-16 per element
        # costs 196 * 2**-16 = 0.3 % more, still within the floor's 1 LSB and 1 more
        assert y[where] >= 253 and np.all(others == 0)


@pytest.mark.parametrize("name", NAMES)
def test_most_negative_input_everywhere_and_beside_the_maximum(name):
    cfg = get(name).example_config()
    op = get(name)
    assert len(set(op.run(cfg, np.full(50, -128)).tolist())) == 1
    row = np.array([-128, -128, -127, -128])
    y = op.run(cfg, row)
    p = sm.softmax_reference(cfg, row * cfg.in_scale)
    if name == "softmax/fqvit":  # p = 0.244, 0.244, 0.268, 0.244: all round to 2**-2
        assert y.tolist() == [2, 2, 2, 2]
    else:
        assert np.argmax(y) == 2 and np.abs(cfg.dequantize_output(y) - p).max() <= 0.02


# --- properties -------------------------------------------------------------------------------

@pytest.mark.parametrize("name,label,cfg", CASES, ids=CASE_IDS)
def test_outputs_are_codes_and_rows_sum_to_one(name, label, cfg):
    """Row sums: sum(e * floor(N/sum)) lies in (N - sum, N], so sum(y) is 2**b minus at most
    the per-element rounding (L LSB floor, L/2 round) and sum/2**(M-b) from the reciprocal."""
    op = get(name)
    for row in sample_rows(cfg, np.random.default_rng(15)):
        y = op.run(cfg, row)
        assert y.dtype == np.int64 and y.min() >= 0 and y.max() <= (1 << cfg.out_bits) - 1
        if name == "softmax/fqvit":
            assert (2.0 ** -np.where(y == cfg.top_code, np.inf, y)).sum() > 0.5
            continue
        recip = 31 if name == "softmax/ivit" else cfg.recip_bits
        total_e = all_exps(name, cfg).max() * len(row)
        loss = total_e * 2.0 ** cfg.out_bits / 2.0 ** recip + 1
        full = 1 << cfg.out_bits
        if name == "softmax/iptq":
            assert abs(y.sum() - full) <= len(row) / 2 + loss
        else:
            assert full - len(row) - loss <= y.sum() <= full


@pytest.mark.parametrize("name", NAMES)
def test_leading_batch_shape(name):
    cfg = get(name).example_config()
    x = np.random.default_rng(16).integers(-128, 128, (2, 3, 4, 9))
    y = get(name).run(cfg, x)
    assert y.shape == x.shape
    assert y.reshape(-1, 9).tolist() == get(name).run(cfg, x.reshape(-1, 9)).tolist()
    assert y[1, 2, 3].tolist() == get(name).run(cfg, x[1, 2, 3]).tolist()


@pytest.mark.parametrize("name,label,cfg", CASES, ids=CASE_IDS)
def test_run_is_integer_only(name, label, cfg):
    rows = sm.sweep_inputs(cfg, np.random.default_rng(17))
    y = get(name).run(cfg, trap_floats(rows))
    assert y.tolist() == get(name).run(cfg, rows).tolist()


# --- the papers' constants ----------------------------------------------------------------------

def test_ivit_log2e_is_1_0111b_by_two_shifts():
    assert LOG2E_16 / 16 == 1 + 1 / 2 - 1 / 16 == 1.4375
    assert abs(1.4375 / math.log2(math.e) - 1) < 0.004
    assert sum(sign * 2.0 ** -shift for shift, sign in common.LOG2E_TERMS) == LOG2E_16 / 16
    d = np.arange(-4096, 1)
    assert common.log2e_shift_add(d).tolist() == [v + v // 2 - v // 16 for v in range(-4096, 1)]
    assert common.log2e_shift_add(d[::16]).tolist() == [LOG2E_16 * v // 16
                                                        for v in range(-4096, 1, 16)]
    assert common.log2e_times16(d).tolist() == [LOG2E_16 * v for v in range(-4096, 1)]


def test_worst_case_intermediates_cover_every_offset():
    """Bit-exp's ``u_max`` and Shiftmax's ``t_min`` (the hardware sizes its registers by them)
    are the extremes over every offset, in Python ints."""
    for cfg in (sm.BitExpSoftmaxConfig.from_scale(0.05),
                sm.BitExpSoftmaxConfig.from_scale(0.2, in_bits=6, out_bits=6, max_row=64)):
        half = (1 << cfg.scale_shift) >> 1
        offsets = range(1 - (1 << cfg.in_bits), 1)
        assert cfg.u_max == max((-LOG2E_16 * d * cfg.scale_mult + half) >> cfg.scale_shift
                                for d in offsets)
    for cfg in (sm.ShiftmaxConfig.from_scale(0.05), sm.ShiftmaxConfig.published(0.1, out_bits=6),
                sm.ShiftmaxConfig.published(0.0005, in_bits=12)):
        offsets = range(1 - (1 << cfg.in_bits), 1)
        assert cfg.t_min == max(min(d + d // 2 - d // 16 for d in offsets), cfg.n * cfg.x0)


def test_ivit_constants_are_the_references():
    cfg = sm.ShiftmaxConfig.published(0.047)
    assert cfg.n == 15 and cfg.x0 == math.floor(-1 / 0.047) == -22
    assert cfg.recip_numerator == cfg.sum_limit == 2 ** 31 - 1
    f = np.linspace(0, 1, 10001)
    assert np.abs((1 - f / 2) / 2.0 ** -f - 1).max() == pytest.approx(0.0615, abs=5e-4)


def test_ibert_constants_are_the_references():
    assert ibert.IBERT_X0 == -0.6931 and abs(ibert.IBERT_X0 + LN2) < 1e-4
    assert ibert.IBERT_N == 30 and ibert.IBERT_RECIP_BITS == 32
    for scale in (0.05, 0.0123, 0.2):
        for cfg in (sm.IBertSoftmaxConfig.from_scale(scale),
                    sm.LogIntSoftmaxConfig.published(scale, polynomial="paper")):
            a, b, c = IBERT_PAPER
            assert cfg.polynomial == "paper" and cfg.x0_int == math.floor(-0.6931 / scale)
            assert cfg.b_int == cfg.b2_int == math.floor(b / scale)
            assert cfg.c_int == math.floor(c / (a * scale ** 2))
        for cfg in (sm.IBertSoftmaxConfig.published(scale),
                    sm.LogIntSoftmaxConfig.published(scale)):
            a, b, c = IBERT_CODE
            assert cfg.polynomial == "code" and cfg.x0_int == math.floor(-0.6931 / scale)
            assert cfg.b_int == math.floor((b / a) / scale) and cfg.b2_int == 0
            assert cfg.c_int == math.floor((c / a) / scale ** 2)
    for polynomial in ("paper", "code"):
        published = sm.IBertSoftmaxConfig.published(0.05, polynomial=polynomial)
        assert published.k_max == 30 and published.recip_bits == 32
        assert published.exp_max < 2 ** 15 <= 2 * published.exp_max  # int16 like QuantAct(16)
        assert sm.LogIntSoftmaxConfig.published(0.05, polynomial=polynomial).exp_shift == 30


@pytest.mark.parametrize("polynomial", ["paper", "code"])
def test_i_exp_polynomial_is_its_sources(polynomial):
    """Each named polynomial is its source's (paper eq. 13, or the released code's coef) and
    approximates exp on (-ln2, 0] to 2.2e-3; the two differ by < 3e-4 (docs/method.md sec. 4.1)."""
    p = np.linspace(-LN2, 0, 10001)
    cfg = sm.IBertSoftmaxConfig.published(0.05, polynomial=polynomial)
    assert np.abs(sm.I_EXP_POLYNOMIALS[polynomial].value(p) - ibert_poly(cfg, p)).max() < 1e-12
    assert np.abs(ibert_poly(cfg, p) - np.exp(p)).max() < 2.2e-3
    paper, code = IBERT_PAPER, IBERT_CODE
    gap = paper[0] * (p + paper[1]) ** 2 + paper[2] - (code[0] * p * p + code[1] * p + code[2])
    assert np.abs(gap).max() < 3e-4


def test_unknown_polynomial_is_a_one_line_error():
    for build in (sm.IBertSoftmaxConfig.published, sm.LogIntSoftmaxConfig.from_scale):
        with pytest.raises(ConfigError, match="polynomial") as info:
            build(0.05, polynomial="taylor")
        assert "\n" not in str(info.value)


def test_bit_exp_coefficients_are_three_powers_of_two_and_beat_ivit():
    def power_terms(c):  # fewest signed powers of two (non-adjacent form) summing to c
        n, count = int(c * 1024), 0
        while n:
            if n % 2:
                n -= 2 - (n % 4)
                count += 1
            n //= 2
        return count
    assert iptq.BIT_EXP_COEFFS == IPTQ_COEFFS
    assert [power_terms(c) for c in IPTQ_COEFFS] == [3, 3, 3]
    f = np.linspace(0, 1, 100001)
    c0, c1, c2 = (float(c) for c in IPTQ_COEFFS)
    relative = np.abs((c0 + c1 * f + c2 * f * f) / 2.0 ** -f - 1).max()
    assert relative <= 0.00293 < 0.0615 / 20


def test_bit_exp_scale_multiplier_is_the_scale():
    for scale in (0.05, 0.0123, 2.0 ** -16, 1.0):
        cfg = sm.BitExpSoftmaxConfig.from_scale(scale)
        assert 2 ** 15 <= cfg.scale_mult < 2 ** 16
        exact = Fraction(scale) * 2 ** (cfg.frac_bits - 4 + cfg.scale_shift)
        assert abs(cfg.scale_mult - exact) <= Fraction(1, 2)


# --- widths -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,label,cfg", CASES, ids=CASE_IDS)
def test_worst_case_row_sum_fits_sum_bits(name, label, cfg):
    exps = all_exps(name, cfg)
    worst = int(exps.max()) * cfg.max_row
    assert worst < 2 ** cfg.sum_bits <= 2 ** 62
    assert exps.min() >= 0 and exps[-1] == exps.max()  # the row maximum (d = 0) is the largest
    y = get(name).run(cfg, np.zeros(cfg.max_row, dtype=np.int64))  # the worst row runs
    assert len(set(y.tolist())) == 1
    if name != "softmax/fqvit":
        recip = 31 if name == "softmax/ivit" else cfg.recip_bits
        numerator = 2 ** 31 - 1 if name == "softmax/ivit" else 2 ** recip
        assert (numerator // int(exps.max())).bit_length() == cfg.quotient_bits
        assert int(exps.max()) * (numerator // int(exps.max())) <= 2 ** recip


def test_published_fqvit_overflow_is_refused():
    with pytest.raises(ConfigError, match="sum_bits") as info:
        sm.LogIntSoftmaxConfig.published(2.0 ** -12, in_bits=16)
    assert "\n" not in str(info.value)


# --- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kwargs,field", [
    (dict(in_scale=0.05, in_bits=0), "in_bits"), (dict(in_scale=0.05, in_bits=17), "in_bits"),
    (dict(in_scale=float("nan")), "in_scale"), (dict(in_scale=0.0), "in_scale"),
    (dict(in_scale=float("inf")), "in_scale"), (dict(in_scale=-0.05), "in_scale"),
    (dict(in_scale=3.0), "in_scale"), (dict(in_scale=0.05, max_row=0), "max_row"),
    (dict(in_scale=0.05, out_bits=1), "out_bits")])
def test_bad_config_is_a_one_line_error(name, kwargs, field):
    kwargs = dict(kwargs)
    with pytest.raises(ConfigError, match=field) as info:
        CONFIG_TYPES[name].from_scale(**kwargs)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=field):
        get(name).calibrate(kwargs.pop("in_scale"), np.zeros(3), **kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_a_one_line_error(name):
    cfg = get(name).example_config(max_row=16)
    run = get(name).run
    cases = [(np.array([[0.5, 1.0]]), "integer"), (np.zeros((2, 17), dtype=np.int64), "max_row"),
             (np.zeros((2, 0), dtype=np.int64), "length"), (np.int64(3), "length"),
             (np.array([0, 128]), "signed 8-bit")]
    for x, words in cases:
        with pytest.raises(IntvitError, match=words) as info:
            run(cfg, x)
        assert "\n" not in str(info.value)
    assert run(cfg, np.zeros((2, 16), dtype=np.int64)).shape == (2, 16)


# --- registration -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_registered_with_calibrate_and_sweep(name):
    op = get(name)
    assert op.row_wise and op.kind == "softmax" and op.config_type is CONFIG_TYPES[name]
    assert op.calibrate(0.05, np.zeros((4, 8))) == op.config_type.from_scale(0.05)
    cfg = op.example_config()
    assert cfg.in_signed and not cfg.out_signed and cfg.in_scale == 0.05
    sweep = op.sweep_inputs(cfg, np.random.default_rng(18))
    assert sweep.ndim == 2 and sweep.dtype == np.int64 and sweep.shape[1] == 197
    assert sweep.min() == -128 and sweep.max() == 127
    assert any((r == -128).all() for r in sweep) and any((r == 127).all() for r in sweep)
    with pytest.raises(ConfigError):
        dataclasses.replace(cfg, in_bits=0)


@pytest.mark.parametrize("name", NAMES)
def test_example_config_states_the_options_of_from_scale(name):
    """``intvit --set`` reads ``example_config``'s parameters: they are ``from_scale``'s, so
    ``intvit cost softmax/iptq --set out_bits=16`` builds the 16-bit config (issue 15)."""
    operator = get(name)
    parameters = inspect.signature(operator.example_config).parameters
    assert list(parameters) == list(inspect.signature(CONFIG_TYPES[name].from_scale).parameters)
    assert parameters["in_scale"].default == common.EXAMPLE_SCALE
    assert operator.example_config(out_bits=6) == CONFIG_TYPES[name].from_scale(
        common.EXAMPLE_SCALE, out_bits=6)


# --- masked rows (issue 19: Swin's shifted windows) ---------------------------------------------

def excluded_code(cfg) -> int:
    """The output code of an excluded element: probability 0 (FQ-ViT: its top log2 code)."""
    return getattr(cfg, "top_code", 0)


@pytest.mark.parametrize("name,label,cfg", CASES, ids=CASE_IDS)
def test_masked_row_is_the_row_of_its_kept_elements(name, label, cfg):
    """With a mask, the kept elements get what the unmasked operator and the second
    implementation give the row of the kept elements alone; the excluded get probability 0."""
    run = get(name).run
    rng = np.random.default_rng(31)
    for row in sample_rows(cfg, rng)[::2]:
        keep = rng.random(row.shape) < 0.6
        keep[rng.integers(len(row))] = True
        y = run(cfg, row, keep=keep)
        assert y[keep].tolist() == run(cfg, row[keep]).tolist()
        assert y[keep].tolist() == SECOND[name](cfg, row[keep])
        assert (y[~keep] == excluded_code(cfg)).all()


@pytest.mark.parametrize("name,label,cfg", CASES, ids=CASE_IDS)
def test_mask_keeping_everything_changes_nothing(name, label, cfg):
    rows = sm.sweep_inputs(cfg, np.random.default_rng(17))
    run = get(name).run
    assert run(cfg, rows, keep=np.ones(rows.shape, bool)).tolist() == run(cfg, rows).tolist()


@pytest.mark.parametrize("name", NAMES)
def test_masked_run_is_integer_only(name):
    cfg = get(name).example_config()
    rows = sm.sweep_inputs(cfg, np.random.default_rng(5))
    keep = np.random.default_rng(6).random(rows.shape) < 0.5
    keep[:, 0] = True
    run = get(name).run
    assert run(cfg, trap_floats(rows), keep=keep).tolist() == run(cfg, rows, keep=keep).tolist()


@pytest.mark.parametrize("name", NAMES)
def test_bad_mask_is_a_one_line_error(name):
    cfg = get(name).example_config(max_row=16)
    run, x = get(name).run, np.zeros((2, 4), dtype=np.int64)
    cases = [(np.ones((2, 3), bool), "does not match"), (np.ones((2, 4), int), "booleans"),
             (np.array([[True] * 4, [False] * 4]), "excludes every element")]
    for keep, words in cases:
        with pytest.raises(IntvitError, match=words) as info:
            run(cfg, x, keep=keep)
        assert "\n" not in str(info.value)
