"""The fast exact integer forward (issue 15): the exact matmul equals numpy's int64 product on
random and extreme inputs, on each of its paths (float32, float32 chunks, float64, float64
chunks, int64); table lookups of element-wise operators equal their arithmetic; a DeiT-shaped
integer model's forward equals its int64 reference bit for bit."""
import numpy as np
import pytest

from intvit.golden_model import exact, registry
from intvit.golden_model.errors import IntvitError
from intvit.golden_model.exact import exact_matmul, int64_products
from intvit.golden_model.ops.softmax.common import normalize
from intvit.golden_model.ops.softmax.iptq import bit_exp
from small_deit import small_integer_deit


@pytest.fixture
def paths(monkeypatch):
    """The float GEMMs exact_matmul runs, as ``(dtype name, inner dimension)``."""
    calls = []
    original = exact._float_product

    def spy(a, b, dtype):
        calls.append((np.dtype(dtype).name, a.shape[-1]))
        return original(a, b, dtype)

    monkeypatch.setattr(exact, "_float_product", spy)
    return calls


def check(a, b, **bounds):
    expected = a.astype(np.int64) @ b.astype(np.int64)
    result = exact_matmul(a, b, **bounds)
    assert result.dtype == np.int64 and result.shape == expected.shape
    np.testing.assert_array_equal(result, expected)
    return result


@pytest.mark.parametrize("shapes", [((5, 7), (7, 3)), ((2, 3, 11, 8), (2, 3, 8, 11)),
                                    ((4, 9, 16), (16, 5)), ((16,), (16, 4)), ((3, 16), (16,)),
                                    ((1, 5, 6), (4, 6, 2))])
def test_random_int8_products(shapes, paths):
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, shapes[0])
    b = rng.integers(-128, 128, shapes[1])
    check(a, b)
    assert [dtype for dtype, _ in paths] == ["float32"]


def test_most_negative_codes_at_the_float32_boundary(paths):
    """``K * 128 * 128 < 2**24`` up to K = 1023: one float32 GEMM; K = 1024 reaches 2**24 and
    leaves float32 (two float32 chunks of 1023 and 1 column)."""
    for depth in (1023, 1024):
        a = np.full((3, depth), -128)
        check(a, np.full((depth, 2), -128))
    assert paths == [("float32", 1023), ("float32", 1023), ("float32", 1)]


def test_just_past_the_float32_bound_a_plain_float32_gemm_rounds():
    """``4096 * 4096 + 1 = 2**24 + 1`` is no float32: the naive product loses the 1."""
    a = np.array([[4096, 1]])
    b = np.array([[4096], [1]])
    naive = (a.astype(np.float32) @ b.astype(np.float32)).astype(np.int64)
    assert naive[0, 0] == 1 << 24
    assert check(a, b)[0, 0] == (1 << 24) + 1


def test_unsigned_16_bit_probabilities_times_int8(paths):
    """A 16-bit softmax's probabilities times v: ``197 * 65535 * 128`` needs float64."""
    rng = np.random.default_rng(1)
    probs = rng.integers(0, 1 << 16, (2, 3, 197, 197))
    probs[0, 0, 0] = (1 << 16) - 1
    v = rng.integers(-128, 128, (2, 3, 197, 64))
    v[..., 0, :] = -128
    check(probs, v)
    assert paths == [("float64", 197)]


def test_8_bit_probabilities_stay_in_float32(paths):
    rng = np.random.default_rng(2)
    check(rng.integers(0, 256, (2, 3, 197, 197)), rng.integers(-128, 128, (2, 3, 197, 64)))
    assert paths == [("float32", 197)]


def test_float32_chunks_for_a_wide_fc2(paths):
    """DeiT-Small's FC2: ``1536 * 127 * 127 >= 2**24``, two float32 chunks added in int64."""
    rng = np.random.default_rng(3)
    a = rng.integers(-127, 128, (2, 5, 1536))
    a[0, 0] = 127
    w = rng.integers(-127, 128, (1536, 7))
    w[:, 0] = 127
    check(a, w)
    chunk = ((1 << 24) - 1) // (127 * 127)
    assert paths == [("float32", chunk), ("float32", 1536 - chunk)]


def test_float64_and_float64_chunks(paths):
    """``A * B = 2**40``: float64 up to K = 8191, float64 chunks of 8191 columns beyond."""
    rng = np.random.default_rng(4)
    a = rng.integers(-(1 << 20), 1 << 20, (3, 20000))
    b = rng.integers(-(1 << 20), 1 << 20, (20000, 2))
    a[0, 0] = b[0, 0] = -(1 << 20)
    check(a[:, :8191], b[:8191])
    check(a, b)
    chunk = ((1 << 53) - 1) // (1 << 40)
    assert paths == [("float64", 8191), ("float64", chunk), ("float64", chunk),
                     ("float64", 20000 - 2 * chunk)]


def test_wraparound_equals_numpy_int64(paths):
    """Chunk sums beyond int64 wrap modulo 2**64 exactly as numpy's int64 product does."""
    a = np.full((2, 2100), 1 << 31)
    b = np.full((2100, 3), -(1 << 21))
    check(a, b)
    assert len(paths) == 2100 and {dtype for dtype, _ in paths} == {"float64"}


def test_products_beyond_float64_use_int64(paths):
    a = np.array([[1 << 40, -3]])
    b = np.array([[1 << 20], [5]])
    check(a, b)
    check(np.array([[np.iinfo(np.int64).min, 1]]), np.array([[1], [1]]))
    assert paths == []


def test_stated_bounds_and_zero_operands(paths):
    rng = np.random.default_rng(5)
    a = rng.integers(-100, 100, (4, 300))
    b = rng.integers(-100, 100, (300, 6))
    check(a, b, a_max=128, b_max=127)
    check(np.zeros((2, 3), np.int64), np.full((3, 2), np.iinfo(np.int64).max))
    check(np.zeros((2, 0), np.int64), np.zeros((0, 2), np.int64))
    assert [dtype for dtype, _ in paths] == ["float32"] * 3


def test_subclasses_and_the_int64_context_take_numpy_int64(paths):
    class Tagged(np.ndarray):
        pass

    a = np.arange(12).reshape(3, 4)
    b = np.arange(8).reshape(4, 2)
    result = exact_matmul(a.view(Tagged), b)
    assert type(result) is Tagged
    with int64_products():
        check(a, b)
    assert paths == []
    check(a, b)
    assert len(paths) == 1


def test_refuses_float_operands():
    with pytest.raises(TypeError):
        exact_matmul(np.ones((2, 2)), np.ones((2, 2), np.int64))


@pytest.mark.parametrize("method", ["iptq", "ibert", "fqvit"])
def test_small_deit_forward_equals_the_int64_forward(method):
    qmodel, images_q, _ = small_integer_deit(method, seed=0, images=6, calibration=4)
    fast_taps: dict = {}
    fast = qmodel.forward(images_q, fast_taps)
    reference_taps: dict = {}
    with int64_products():
        reference = qmodel.forward(images_q, reference_taps)
    np.testing.assert_array_equal(fast, reference)
    assert fast_taps.keys() == reference_taps.keys()
    for name, value in reference_taps.items():
        assert fast_taps[name].dtype == value.dtype, name
        np.testing.assert_array_equal(fast_taps[name], value, err_msg=name)


def test_tabulated_operators_equal_their_arithmetic():
    """GELU and Bit-exp's steps 1-4 are element-wise: a large input is looked up in a table of
    the function's own outputs (``integer.elementwise``); the results equal the arithmetic,
    errors included."""
    rng = np.random.default_rng(6)
    codes = rng.integers(-128, 128, (3, 50, 40))
    codes[0, 0, :2] = (-128, 127)
    for name in ("gelu/iptq", "gelu/ibert", "gelu/ivit"):
        operator = registry.get(name)
        cfg = operator.example_config()
        np.testing.assert_array_equal(operator.run(cfg, codes),
                                      operator.run.__wrapped__(cfg, codes))
        with pytest.raises(IntvitError):
            operator.run(cfg, np.where(codes == 127, 128, codes))
    operator = registry.get("softmax/iptq")
    cfg = operator.example_config()
    scores = rng.integers(-128, 128, (2, 3, 40, 40))
    d = scores - scores.max(axis=-1, keepdims=True)
    np.testing.assert_array_equal(operator.run(cfg, scores),
                                  normalize(cfg, bit_exp(cfg, d)))
