"""LayerNorm candidates (layernorm/ibert, layernorm/ivit, layernorm/fqvit) against the float
LayerNorm, float-held versions of the authors' algorithms, Python-int worst cases and
``math.isqrt``."""
import math
from fractions import Fraction

import numpy as np
import pytest

from intvit.golden_model.errors import ConfigError, IntvitError
from intvit.golden_model.ops import layernorm as ln
from intvit.golden_model.registry import get
from integer_trap import trap_floats

NAMES = ("layernorm/ibert", "layernorm/ivit", "layernorm/fqvit")
CONFIG_TYPES = {"layernorm/ibert": ln.IBertLayerNormConfig,
                "layernorm/ivit": ln.ShiftLayerNormConfig,
                "layernorm/fqvit": ln.PTFLayerNormConfig}


@pytest.fixture(scope="module", params=NAMES)
def case(request):
    op = get(request.param)
    return op, op.example_config()


def quantize(cfg, x):
    """Real rows to input codes at the config's per-channel steps (round half up, saturate)."""
    lo, hi = -(1 << cfg.in_bits - 1), (1 << cfg.in_bits - 1) - 1
    return np.clip(np.floor(x / cfg.channel_scales + 0.5), lo, hi).astype(np.int64)


def lsb_error(cfg, q, y):
    """|output - float LayerNorm of the dequantized input| in output LSBs (reference saturated)."""
    lo, hi = -(1 << cfg.out_bits - 1), (1 << cfg.out_bits - 1) - 1
    want = np.clip(ln.reference(cfg, q * cfg.channel_scales) / cfg.out_scale, lo, hi)
    return np.abs(y - want)


def realistic_rows(cfg, rows=400, seed=11):
    return quantize(cfg, ln.example_samples(cfg.channels, rows=rows, seed=seed))


def half_up(value):
    return np.floor(np.asarray(value) + 0.5)


# --- accuracy against the float LayerNorm ------------------------------------------------------

def rounded_mean_bound(cfg, q):
    """I-BERT/I-ViT error bound per element, in output LSBs.

    With ``m`` the true row mean, ``mu = round(m)``, ``delta = m - mu``, ``s`` the row std (codes)
    and ``n`` the normalized value: the integer path normalizes ``(q - m + delta) /
    sqrt(s**2 + delta**2)``, off by at most ``|delta|/s + |n| delta**2 / (2 s**2)``; the float
    eps moves ``n`` by ``|n| eps / (2 s**2 S**2)``; the floor of the root (``1 / isqrt(v)``) and
    the 16-bit fold constants and reciprocal (2**-13) are relative to the integer path's value
    (``<= |n| + |delta|/s``); plus output rounding 0.5.
    """
    x = q.astype(np.float64)
    channels = q.shape[-1]
    total = q.sum(axis=-1, keepdims=True)
    mu = (2 * total + channels) // (2 * channels)
    m = x.mean(axis=-1, keepdims=True)
    s = x.std(axis=-1, keepdims=True)
    delta = np.abs(m - mu)
    n = np.abs((x - m) / s)
    v = ((q - mu) ** 2).sum(axis=-1, keepdims=True)
    root = np.array([[math.isqrt(int(t))] for t in v.ravel()], dtype=np.float64)
    eps_codes = cfg.eps / cfg.in_scale ** 2
    gain = np.abs(np.array(cfg.gamma)) / cfg.out_scale
    shifted = delta / s + n * (delta ** 2 / (2 * s ** 2) + eps_codes / (2 * s ** 2))
    return 0.5 + gain * (shifted + (n + delta / s) * (1 / root + 2.0 ** -13)) + 1e-9


def ptf_bound(cfg, q):
    """FQ-ViT-path error bound per element, in output LSBs: output rounding 0.5; the 8-bit ``M``
    (floor, ``M >= 128``) loses under 1/128 of ``gamma n / out_scale``; the root's floor
    ``1 / r``; ``R``, ``gamma_int`` 2**-14; float eps as above; beta's 2**-N step (N >= 8
    here)."""
    aligned = (q << np.array(cfg.alpha)).astype(np.float64)
    channels = q.shape[-1]
    s = aligned.std(axis=-1, keepdims=True)
    n = np.abs((aligned - aligned.mean(axis=-1, keepdims=True)) / s)
    root = channels * s * 2.0 ** cfg.root_frac
    eps_codes = cfg.eps / cfg.in_scale ** 2
    out = np.abs(np.array(cfg.gamma)) / cfg.out_scale * n
    return 0.5 + out * (1 / 128 + 1 / root + 2.0 ** -14 + eps_codes / (2 * s ** 2)) + 2.0 ** -8


BOUNDS = {"layernorm/ibert": rounded_mean_bound, "layernorm/ivit": rounded_mean_bound,
          "layernorm/fqvit": ptf_bound}
REALISTIC_MAX_LSB = {"layernorm/ibert": 4.0, "layernorm/ivit": 4.0, "layernorm/fqvit": 1.0}
"""Largest error on the example's realistic rows (measured 3.69, 3.69, 0.84 LSB)."""


def test_realistic_rows_agree_with_float_layernorm(case):
    op, cfg = case
    q = realistic_rows(cfg)
    err = lsb_error(cfg, q, op.run(cfg, q))
    assert np.all(err <= BOUNDS[op.name](cfg, q))
    assert err.max() <= REALISTIC_MAX_LSB[op.name]
    assert err.mean() < 0.6


def test_random_sweep_rows_within_bound(case):
    op, cfg = case
    q = op.sweep_inputs(cfg, np.random.default_rng(3))[len(ln.corner_rows(cfg)):]
    err = lsb_error(cfg, q, op.run(cfg, q))
    assert np.all(err <= BOUNDS[op.name](cfg, q))


# --- float-held versions of the authors' algorithms ---------------------------------------------

def float_held_ibert(cfg, q, numerator):
    """The authors' IntLayerNorm in float64 (I-BERT: numerator 2**31, float sqrt; I-ViT:
    2**31 - 1 with the root taken exactly), bias folded as ``floor(beta/gamma / scale)`` and the
    result requantized with a float round; the mean is rounded half up as ours (theirs is
    ``torch.round``, half to even)."""
    x = q.astype(np.float64)
    channels = x.shape[-1]
    y = x - half_up(x.mean(axis=-1, keepdims=True))
    shift = getattr(cfg, "var_shift", 0)
    var = (np.floor(y / 2.0 ** shift) ** 2).sum(axis=-1, keepdims=True)
    std = np.floor(np.sqrt(var)) * 2.0 ** shift
    z = np.floor(y * np.floor(numerator / std) / 2)
    scale = 2 * math.sqrt(channels) / numerator
    gamma, beta = np.array(cfg.gamma), np.array(cfg.beta)
    real = (z + np.floor(beta / gamma / scale)) * scale * gamma
    return np.clip(half_up(real / cfg.out_scale), -128, 127)


def get_mn(a, max_shift):
    """FQ-ViT ``get_MN`` (bit = 7) in float with our ``max_shift``."""
    with np.errstate(divide="ignore"):
        shift = np.clip(7 - np.floor(np.log2(a)), 0, max_shift)
    return np.clip(np.floor(a * 2.0 ** shift), 0, 255), shift


def float_held_fqvit(cfg, q, original):
    """FQ-ViT QIntLayerNorm in float64: float sqrt, float gain, float ``log2``. ``original``:
    their form ``round((sign M q + B) / 2**N)`` with ``B`` from the float mean and gain;
    otherwise ours, ``M`` applied to ``d = C q - sum q``."""
    aligned = (q << np.array(cfg.alpha)).astype(np.float64)
    channels = aligned.shape[-1]
    gamma, beta, out_scale = np.array(cfg.gamma), np.array(cfg.beta), cfg.out_scale
    s1 = aligned.sum(axis=-1, keepdims=True)
    spread = np.sqrt(channels * (aligned ** 2).sum(axis=-1, keepdims=True) - s1 ** 2)
    if original:
        gain = channels * gamma / (spread * out_scale)
        mult, shift = get_mn(np.abs(gain), 31)
        bias = np.round((beta - s1 / spread * gamma) / out_scale * 2.0 ** shift)
        out = np.round((np.sign(gain) * mult * aligned + bias) / 2.0 ** shift)
    else:
        gain = gamma / (spread * out_scale)
        mult, shift = get_mn(np.abs(gain), cfg.max_shift)
        centred = channels * aligned - s1
        out = half_up((np.sign(gain) * mult * centred + half_up(beta / out_scale * 2.0 ** shift))
                      / 2.0 ** shift)
    return np.clip(out, -128, 127)


@pytest.mark.parametrize("name,numerator", [("layernorm/ibert", 2.0 ** 31),
                                            ("layernorm/ivit", 2.0 ** 31 - 1)])
def test_agrees_with_float_held_reference_algorithm(name, numerator):
    op = get(name)
    cfg = op.example_config()
    q = realistic_rows(cfg, rows=1000, seed=5)
    diff = np.abs(op.run(cfg, q) - float_held_ibert(cfg, q, numerator))
    assert diff.max() <= 1          # only the 16-bit fold constants move a rounding
    assert (diff == 0).mean() > 0.999


def test_ibert_wide_input_matches_float_held_with_its_overflow_shift():
    cfg = get("layernorm/ibert").example_config(in_bits=16, channels=768)
    assert cfg.var_shift > 0
    q = realistic_rows(cfg, rows=100, seed=2)
    diff = np.abs(ln.run_ibert(cfg, q) - float_held_ibert(cfg, q, 2.0 ** 31))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999


def test_fqvit_agrees_with_float_held_algorithm():
    cfg = get("layernorm/fqvit").example_config()
    q = realistic_rows(cfg, rows=1000, seed=5)
    y = ln.run_fqvit(cfg, q)
    ours = np.abs(y - float_held_fqvit(cfg, q, original=False))
    assert ours.max() <= 1 and (ours == 0).mean() > 0.999
    theirs = np.abs(y - float_held_fqvit(cfg, q, original=True))
    assert theirs.max() <= 1 and (theirs == 0).mean() > 0.99


# --- corner rows -----------------------------------------------------------------------------

def expected_beta(cfg):
    return np.clip(half_up(np.array(cfg.beta) / cfg.out_scale), -128, 127)


def alpha_of(cfg):
    return np.array(getattr(cfg, "alpha", (0,) * cfg.channels))


@pytest.mark.parametrize("fill", ["zero", "max", "most_negative"])
def test_all_equal_row_outputs_beta(case, fill):
    """Variance 0 (for FQ-ViT: equal after the ``<< alpha`` alignment): the output is
    ``round(beta / out_scale)``, which is also the float LayerNorm (eps) of such a row."""
    op, cfg = case
    alpha = alpha_of(cfg)
    top = (127 >> alpha.max()) << alpha.max()
    aligned = {"zero": 0, "max": top, "most_negative": -128}[fill]
    q = aligned >> alpha
    y = op.run(cfg, q)
    assert np.array_equal(y, expected_beta(cfg))
    assert np.all(lsb_error(cfg, q, y) <= 0.5 + 1e-9)


def test_one_large_outlier(case):
    op, cfg = case
    rows = realistic_rows(cfg, rows=50, seed=8)
    rows[:, 7] = 127
    rows[::2, 7] = -128
    quiet = np.zeros((2, cfg.channels), dtype=np.int64)
    quiet[0, 5], quiet[1, 5] = 127, -128
    for q in (rows, quiet):
        err = lsb_error(cfg, q, op.run(cfg, q))
        assert np.all(err <= BOUNDS[op.name](cfg, q))


def test_most_negative_input(case):
    op, cfg = case
    rows = realistic_rows(cfg, rows=50, seed=9)
    rows[:, ::3] = -128
    alternating = np.where(np.arange(cfg.channels) % 2, 127, -128)[None, :]
    for q in (rows, alternating, -128 + (np.arange(cfg.channels)[None, :] % 2)):
        err = lsb_error(cfg, q, op.run(cfg, q))
        assert np.all(err <= BOUNDS[op.name](cfg, q))


def test_leading_batch_shape_is_row_by_row(case):
    op, cfg = case
    q = realistic_rows(cfg, rows=24, seed=4).reshape(2, 3, 4, cfg.channels)
    y = op.run(cfg, q)
    assert y.shape == q.shape and y.dtype == np.int64
    flat = q.reshape(-1, cfg.channels)
    assert np.array_equal(y.reshape(-1, cfg.channels),
                          np.stack([op.run(cfg, row) for row in flat]))
    assert op.run(cfg, np.zeros((0, cfg.channels), dtype=np.int64)).shape == (0, cfg.channels)


def test_sweep_has_rows_in_range_and_corners(case):
    op, cfg = case
    rows = op.sweep_inputs(cfg, np.random.default_rng(0))
    assert rows.ndim == 2 and rows.shape[1] == cfg.channels and rows.dtype == np.int64
    assert rows.min() == -128 and rows.max() == 127
    assert any(np.all(row == row[0]) for row in rows)          # variance 0
    assert any(np.all(row == -128) for row in rows)
    y = op.run(cfg, rows)
    assert y.min() >= -128 and y.max() <= 127


# --- integer square roots ----------------------------------------------------------------------

def sqrt_cases(bound):
    """All of 0..4095, every perfect square m*m and m*m +- 1 for m around sqrt(bound) and at a
    spread of magnitudes, random values up to the bound, and the bound itself."""
    rng = np.random.default_rng(1)
    top = math.isqrt(bound)
    roots = {m for m in range(max(0, top - 300), top + 1)}
    roots |= {int(m) for m in np.unique(np.geomspace(1, top, 400).astype(np.int64))}
    values = set(range(4096)) | {bound, bound - 1}
    for m in roots:
        values |= {m * m - 1, m * m, m * m + 1}
    values |= {int(v) for v in rng.integers(0, bound, 3000, endpoint=True)}
    return np.array(sorted(v for v in values if 0 <= v <= bound), dtype=np.int64)


@pytest.mark.parametrize("bound", [(1 << 20) - 1, 1040416, (1 << 32) - 1, (1 << 46) + 12345,
                                   (1 << 62) - 1])
def test_newton_isqrt_exact(bound):
    v = sqrt_cases(bound)
    want = np.array([math.isqrt(int(t)) for t in v])
    assert np.array_equal(ln.newton_isqrt(v, ln.newton_iterations(bound)), want)


def test_newton_iteration_count_is_needed():
    """One step fewer than derived is not exact somewhere up to 2**32 (the count is not slack)."""
    bound = (1 << 32) - 1
    v = sqrt_cases(bound)
    want = np.array([math.isqrt(int(t)) for t in v])
    assert not np.array_equal(ln.newton_isqrt(v, ln.newton_iterations(bound) - 1), want)


@pytest.mark.parametrize("bound", [3, (1 << 20) - 1, 1040416, (1 << 40) + 7, (1 << 62) - 1])
def test_bitserial_isqrt_exact(bound):
    v = sqrt_cases(bound)
    want = np.array([math.isqrt(int(t)) for t in v])
    assert np.array_equal(ln.bitserial_isqrt(v, ln.bitserial_steps(bound)), want)


def test_config_roots_exact_up_to_their_variance_bound(case):
    op, cfg = case
    if op.name == "layernorm/ibert":
        bound, root = cfg.sumsq_bound, lambda v: ln.newton_isqrt(v, cfg.sqrt_iterations)
    elif op.name == "layernorm/ivit":
        bound, root = cfg.sumsq_bound, lambda v: ln.bitserial_isqrt(v, cfg.sqrt_steps)
    else:
        bound = cfg.var_bound << 2 * cfg.root_frac
        root = lambda v: ln.bitserial_isqrt(v, cfg.sqrt_steps)  # noqa: E731
    v = sqrt_cases(bound)
    assert np.array_equal(root(v), np.array([math.isqrt(int(t)) for t in v]))


# --- accumulator widths ------------------------------------------------------------------------

def centred_sumsq(row):
    """``sum (q - round_half_up(mean))**2`` in Python ints."""
    mu = (2 * sum(row) + len(row)) // (2 * len(row))
    return sum((q - mu) ** 2 for q in row)


def test_centred_sumsq_bound_is_the_exhaustive_maximum():
    import itertools
    for bits, channels in ((3, 4), (2, 5), (4, 3)):
        lo, hi = -(1 << bits - 1), (1 << bits - 1) - 1
        rows = list(itertools.product(range(lo, hi + 1), repeat=channels))
        worst = max(centred_sumsq(r) for r in rows)
        bound = ln.centred_sumsq_bound(bits, channels)
        assert worst <= bound and (channels % 2 or worst == bound)
        for shift in (1, 2):
            mu = [(2 * sum(r) + channels) // (2 * channels) for r in rows]
            shifted = max(sum(((q - m) >> shift) ** 2 for q in r) for r, m in zip(rows, mu))
            assert shifted <= ln.shifted_sumsq_bound(bits, channels, shift)


@pytest.mark.parametrize("name", ["layernorm/ibert", "layernorm/ivit"])
def test_rounded_mean_is_half_up(name):
    """The config's ``mean_numerator(sum) // mean_divisor`` is ``round(sum / C)`` with ties up
    (I-BERT and I-ViT round the row mean), for every row sum, against exact fractions."""
    for options in ({}, {"in_bits": 3, "channels": 5}):
        cfg = get(name).example_config(**options)
        lo, hi = -(1 << cfg.in_bits - 1), (1 << cfg.in_bits - 1) - 1
        totals = np.arange(cfg.channels * lo, cfg.channels * hi + 1)
        want = [math.floor(Fraction(int(t), cfg.channels) + Fraction(1, 2)) for t in totals]
        assert np.array_equal(cfg.mean_numerator(totals) // cfg.mean_divisor, want)


def extreme_rows(cfg):
    """Half the row at each extreme (both orders), all at one extreme, one outlier."""
    lo, hi = -(1 << cfg.in_bits - 1), (1 << cfg.in_bits - 1) - 1
    c = cfg.channels
    rows = [[lo] * c, [hi] * c, [lo, hi] * (c // 2) + [lo] * (c % 2),
            [hi, lo] * (c // 2) + [hi] * (c % 2), [lo] + [hi] * (c - 1), [hi] + [lo] * (c - 1)]
    return rows


@pytest.mark.parametrize("options", [{}, {"in_bits": 16, "channels": 768}, {"in_bits": 3,
                                                                              "channels": 5}])
def test_accumulators_fit_their_stated_widths(options):
    for name in NAMES:
        cfg = get(name).example_config(**options)
        alpha = [int(a) for a in alpha_of(cfg)]
        for row in extreme_rows(cfg):
            aligned = [q << a for q, a in zip(row, alpha)]
            total = sum(aligned)
            assert -(1 << cfg.sum_bits - 1) <= total < 1 << cfg.sum_bits - 1
            if name == "layernorm/fqvit":
                s2 = sum(q * q for q in aligned)
                assert s2.bit_length() <= cfg.sumsq_bits
                assert (cfg.channels * s2).bit_length() <= cfg.var_bits <= 62
                spread = (cfg.channels * s2 - total * total) << 2 * cfg.root_frac
                assert spread < 1 << 62
                recip = cfg.recip_numerator // max(math.isqrt(spread), 1 << cfg.root_frac)
                assert recip.bit_length() <= cfg.recip_bits
            else:
                mu = (2 * total + cfg.channels) // (2 * cfg.channels)
                shift = getattr(cfg, "var_shift", 0)
                v = sum(((q - mu) >> shift) ** 2 for q in row)
                assert v.bit_length() <= cfg.sumsq_bits
                recip = cfg.recip_numerator // (max(math.isqrt(v), 1) << shift)
                assert recip.bit_length() <= cfg.recip_bits
                for q in row:
                    z = ((q - mu) * recip) >> 1
                    assert -(1 << cfg.z_bits - 1) <= z < 1 << cfg.z_bits - 1
        if name == "layernorm/ibert":
            assert cfg.sumsq_bits <= 32                          # I-BERT max_bit


# --- integer-only, input and config errors -----------------------------------------------------

@pytest.mark.parametrize("options", [{}, {"in_bits": 16, "channels": 96}])
def test_run_is_integer_only(options):
    for name in NAMES:
        op = get(name)
        cfg = op.example_config(**options)
        q = op.sweep_inputs(cfg, np.random.default_rng(2), count=32)
        assert np.array_equal(op.run(cfg, trap_floats(q)), op.run(cfg, q))


def one_line(excinfo):
    return "\n" not in str(excinfo.value)


def test_float_input_rejected(case):
    op, cfg = case
    with pytest.raises(IntvitError, match="integer") as excinfo:
        op.run(cfg, np.zeros(cfg.channels))
    assert one_line(excinfo)


def test_row_length_mismatch(case):
    op, cfg = case
    for bad in (np.zeros((2, cfg.channels - 1), dtype=np.int64), np.int64(3)):
        with pytest.raises(IntvitError, match="channels") as excinfo:
            op.run(cfg, bad)
        assert one_line(excinfo)


def test_input_out_of_range(case):
    op, cfg = case
    with pytest.raises(IntvitError, match="8-bit") as excinfo:
        op.run(cfg, np.full(cfg.channels, 128))
    assert one_line(excinfo)


GAMMA, BETA = ln.example_affine(8)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kwargs,field", [
    ({"in_bits": 1}, "in_bits"), ({"in_bits": 17}, "in_bits"), ({"out_bits": 1}, "out_bits"),
    ({"out_bits": 17}, "out_bits"), ({"in_scale": float("nan")}, "in_scale"),
    ({"in_scale": 0.0}, "in_scale"), ({"in_scale": float("inf")}, "in_scale"),
    ({"out_scale": float("nan")}, "out_scale"), ({"out_scale": 0.0}, "out_scale"),
    ({"out_scale": float("inf")}, "out_scale"), ({"gamma": GAMMA[:7]}, "gamma"),
    ({"beta": np.append(BETA, 0.0)}, "gamma"), ({"gamma": np.append(GAMMA[:7], np.nan)}, "finite"),
])
def test_bad_config_is_a_one_line_error(name, kwargs, field):
    arguments = {"in_scale": 0.05, "gamma": GAMMA, "beta": BETA, "out_scale": 0.05}
    arguments.update(kwargs)
    with pytest.raises(ConfigError, match=field) as excinfo:
        CONFIG_TYPES[name].from_scale(**arguments)
    assert one_line(excinfo)


@pytest.mark.parametrize("name", NAMES)
def test_bad_calibration_samples(name):
    calibrate = get(name).calibrate
    samples = ln.example_samples(8, rows=16)
    bad = samples.copy()
    bad[3, 2] = np.nan
    for data, match in ((bad, "NaN"), (samples[:, :7], "channels")):
        with pytest.raises(ConfigError, match=match) as excinfo:
            calibrate(0.05, data, gamma=GAMMA, beta=BETA)
        assert one_line(excinfo)
    with pytest.raises(ConfigError, match="in_bits") as excinfo:
        calibrate(0.05, samples, in_bits=20, gamma=GAMMA, beta=BETA)
    assert one_line(excinfo)


def test_ptf_bad_alpha_and_overflowing_width():
    with pytest.raises(ConfigError, match="alpha") as excinfo:
        ln.PTFLayerNormConfig.from_scale(0.05, GAMMA, BETA, alpha=(0, 1, 2, 3, 4, 0, 0, 0))
    assert one_line(excinfo)
    wide = np.ones(1 << 14)
    with pytest.raises(ConfigError, match="var_bits") as excinfo:
        ln.PTFLayerNormConfig.from_scale(0.05, wide, wide * 0, in_bits=16,
                                         alpha=(3,) * wide.size)
    assert one_line(excinfo)


# --- calibration -------------------------------------------------------------------------------

def test_calibrated_out_scale_covers_the_samples(case):
    op, cfg = case
    samples = ln.example_samples(cfg.channels, seed=0)
    reach = np.abs(ln.reference(cfg, samples)).max()
    assert cfg.out_scale == pytest.approx(reach / 127, rel=1e-12)


def test_ptf_calibration_picks_fqvit_factors():
    """Channel 0 spans the full range (alpha = K), channel 1 is 8x smaller (alpha = 0: the finest
    step loses nothing), channel 2 sits in between; checked against the L2 rule computed here."""
    rng = np.random.default_rng(0)
    spread = np.array([6.0, 0.7, 2.5, 1.0])
    samples = rng.uniform(-1, 1, (500, 4)) * spread
    in_scale = 6.0 / 127
    cfg = ln.PTFLayerNormConfig.calibrate(in_scale, samples, gamma=np.ones(4), beta=np.zeros(4))
    assert cfg.in_scale == pytest.approx(in_scale / 8)
    chosen = []
    for column in samples.T:
        errors = [((column - np.clip(np.round(column / (in_scale / 8 * 2 ** a)), -128, 127)
                    * in_scale / 8 * 2 ** a) ** 2).sum() for a in range(4)]
        chosen.append(int(np.argmin(errors)))
    assert cfg.alpha == tuple(chosen)
    assert cfg.alpha[0] == 3 and cfg.alpha[1] == 0


def test_default_out_scale_never_saturates():
    gamma, beta = ln.example_affine(16)
    cfg = ln.ShiftLayerNormConfig.from_scale(0.1, gamma, beta)
    q = np.zeros((16, 16), dtype=np.int64)
    q[np.arange(16), np.arange(16)] = 127               # |normalized| = sqrt(C - 1) at the spike
    ref = ln.reference(cfg, q * cfg.in_scale) / cfg.out_scale
    assert np.abs(ref).max() <= 127 + 1e-9
