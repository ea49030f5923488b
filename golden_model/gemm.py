"""Integer GEMM with bias and dyadic requantization, its tiling onto an R x C array, and the
array's cycle model.

``y = requantize(a @ w + bias)``: ``a`` is ``M x K`` int8 activations, ``w`` is ``K x N`` signed
int8 or int4 weights, ``bias`` is ``N`` integers on the accumulator scale ``S_a * S_w`` and the
requantizer is :mod:`intvit.golden_model.ops.requant` (HAWQ-V3 dyadic ``(acc * m + 2**(e-1)) >> e``,
I-ViT sec. 3): either one per-tensor ``m, e`` per layer, constants the hardware bakes in
(:class:`~golden_model.ops.requant.RequantConfig`), or, with ``GemmConfig.per_channel``, one
``m, e`` per output channel as the integer ViT uses them
(:class:`~golden_model.ops.requant.ChannelRequant`), streamed to the array with each tile's bias
so that one array serves every layer.

The hardware (``hw/gemm.py``) is output-stationary: processing element ``(r, c)`` owns output
``(m0 + r, n0 + c)`` of an ``R x C`` tile for the whole reduction over ``K``. The functions here
produce the exact streams it consumes and emits (:func:`gemm_beats`), put the output beats back
together (:func:`reassemble`) and predict its cycle count (:func:`predicted_cycles`).
"""
import math
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, IntvitError
from .integer import as_int_array, check_int, signed_range
from .ops.requant import ACC_BITS, ChannelRequant, RequantConfig, requantize

WEIGHT_BITS = (4, 8)
"""Signed weight widths of the model's linear layers (W8A8 and W4A8)."""
MAX_ACT_BITS = 17
"""Widest signed activation operand: the accelerator's array also multiplies softmax
probability codes (unsigned, up to 16 bits) and decoded log2 probabilities by ``v``; a
MULT18X18D still takes 17 x 8 bits."""
MAX_K = 1 << 16
"""Largest supported reduction length: ``2**16 * 2**14 = 2**30``, so W8A8 sums plus a 31-bit
bias stay inside the requantizer's int32."""
REQUANT_LATENCY = 5
"""Cycles through ``intvit.hw.requant.Requantizer`` (its ``latency``): input register, partial
products, their halves, the product ``acc * m``, round/offset/saturate."""
CHANNEL_REQUANT_LATENCY = 7
"""Cycles through ``intvit.hw.requant.ChannelRequantizer`` (its ``latency``): input register,
partial products, halves, product, the variable shift in two steps, round and saturate."""
DEFAULT_REQUANT_LANES = 2
"""Requantizer lanes time-shared by the drain of a tile, when ``cols`` allows (ECP5: each lane's
32 x 31-bit product is 4 MULT18X18D)."""


def requant_latency(config: "GemmConfig") -> int:
    """Cycles through the array's requantizer: per-tensor or per-channel."""
    return CHANNEL_REQUANT_LATENCY if config.per_channel else REQUANT_LATENCY


@dataclass(frozen=True)
class GemmConfig:
    """Geometry and bit widths of the integer GEMM array.

    Parameters
    ----------
    rows, cols : int
        ``R`` and ``C``, 1..64: an output tile is ``R`` rows (tokens) by ``C`` columns (output
        channels); each cycle the array takes ``R`` activations and ``C`` weights and does
        ``R * C`` multiply-accumulates.
    k_max : int
        Longest reduction ``K`` the accumulators hold without overflow, 1..``MAX_K``. The
        default 4096 covers DeiT-Tiny/Small/Base and ViT-L (largest K: ViT-L's FC2, 4096).
    weight_bits : int
        4 or 8, signed. Int4 weights travel two per byte (:func:`pack_int4`), so ``cols`` must be
        even.
    act_bits : int
        8: activations are int8 in both W8A8 and W4A8. Up to :data:`MAX_ACT_BITS` for the
        accelerator's array, whose ``probs @ v`` takes unsigned probability codes.
    bias_bits : int
        Signed bias width, 1..31. The default 31 is the widest bias for which ``acc + bias``
        still fits the requantizer's int32 at every ``K <= MAX_K`` for W8A8 (HAWQ-V3 keeps the
        bias in int32 on the scale ``S_a * S_w``; the top bit is given to the products).
    per_channel : bool
        Requantize per output channel: each tile's ``b`` beat carries, per column, the bias, the
        multiplier ``m`` (``MULTIPLIER_BITS``) and the shift ``e`` (``SHIFT_BITS``) of that
        channel. Off: one per-tensor requantizer whose constants are built into the array.
    out_bits : int
        Signed output width with ``per_channel`` (2..16); per-tensor arrays take it from their
        ``RequantConfig``.
    requant_lanes : int or None
        Requantizer lanes the drain shares (a divisor of ``cols``): a tile's ``R * C`` sums
        leave ``requant_lanes`` per cycle (:func:`drain_cycles`). None:
        ``gcd(cols, DEFAULT_REQUANT_LANES)``, stored so in the config.

    Accumulator width (:attr:`acc_bits`): the largest product magnitude is
    ``(-2**(a-1)) * (-2**(w-1)) = 2**(a+w-2)`` (positive); every other product is smaller in
    magnitude, so a sum of ``K <= k_max`` products lies in ``[-k_max * 2**(a+w-2),
    k_max * 2**(a+w-2)]`` and needs ``bit_length(k_max * 2**(a+w-2)) + 1`` signed bits (the
    positive end is reached, by all ``-2**(a-1)`` times all ``-2**(w-1)``). The bias is added
    after the reduction: ``|acc + bias| <= k_max * 2**(a+w-2) + 2**(bias_bits-1) <= 2**30 +
    2**30``, so with ``k_max <= 2**16``, ``a = 8``, ``w <= 8`` and ``bias_bits <= 31`` the sum
    always fits the requantizer's int32 (the positive end is at most ``2**31 - 1``).
    """

    rows: int = 8
    cols: int = 8
    k_max: int = 4096
    weight_bits: int = 8
    act_bits: int = 8
    bias_bits: int = 31
    per_channel: bool = False
    out_bits: int = 8
    requant_lanes: int | None = None

    def __post_init__(self):
        owner = "GemmConfig"
        check_int(owner, "rows", self.rows, 1, 64)
        check_int(owner, "cols", self.cols, 1, 64)
        check_int(owner, "k_max", self.k_max, 1, MAX_K)
        check_int(owner, "weight_bits", self.weight_bits, 4, 8, "use 8 (W8A8) or 4 (W4A8)")
        if self.weight_bits not in WEIGHT_BITS:
            raise ConfigError(f"{owner}: weight_bits must be 8 (W8A8) or 4 (W4A8) (got "
                              f"{self.weight_bits})")
        check_int(owner, "act_bits", self.act_bits, 8, MAX_ACT_BITS,
                  "activations are int8; the accelerator widens them for probabilities")
        check_int(owner, "bias_bits", self.bias_bits, 1, ACC_BITS - 1)
        if not isinstance(self.per_channel, bool):
            raise ConfigError(f"{owner}: per_channel must be True or False (got "
                              f"{self.per_channel!r})")
        check_int(owner, "out_bits", self.out_bits, 2, 16)
        if self.weight_bits == 4 and self.cols % 2:
            raise ConfigError(f"GemmConfig: cols must be even for int4 weights, which travel two "
                              f"per byte (got cols={self.cols})")
        if self.requant_lanes is None:
            object.__setattr__(self, "requant_lanes", math.gcd(self.cols, DEFAULT_REQUANT_LANES))
        check_int(owner, "requant_lanes", self.requant_lanes, 1, self.cols)
        if self.cols % self.requant_lanes:
            raise ConfigError(f"{owner}: requant_lanes must divide cols (got {self.requant_lanes} "
                              f"lanes for {self.cols} columns)")

    @property
    def max_product_sum(self) -> int:
        """``k_max * 2**(act_bits + weight_bits - 2)``: the largest ``|sum of products|``."""
        return self.k_max << (self.act_bits + self.weight_bits - 2)

    @property
    def acc_bits(self) -> int:
        """Signed width of each accumulator: ``bit_length(max_product_sum) + 1``."""
        return self.max_product_sum.bit_length() + 1


def example_config(rows: int = 8, cols: int = 8, weight_bits: int = 8,
                   k_max: int = 4096, per_channel: bool = False) -> GemmConfig:
    """An ``rows x cols`` array for the CLI and the benchmark."""
    return GemmConfig(rows=rows, cols=cols, k_max=k_max, weight_bits=weight_bits,
                      per_channel=per_channel)


EXAMPLE_RATIO = 0.0042
"""``S_a * S_w / S_out`` of a typical int8 layer (as in ``intvit.golden_model.ops.requant``)."""


def example_requant(ratio: float = EXAMPLE_RATIO, bits: int = 8) -> RequantConfig:
    """A per-tensor requantizer for the example array."""
    return RequantConfig.from_scale(ratio, bits=bits)


def example_channel_requant(n: int, rng: np.random.Generator, bits: int = 8) -> ChannelRequant:
    """Per-channel requantizers for ``n`` channels: ratios spread over a factor 8 around
    :data:`EXAMPLE_RATIO`, as per-channel weight scales spread."""
    return ChannelRequant.from_scales(EXAMPLE_RATIO * 2.0 ** rng.uniform(-1.5, 1.5, n), bits)


def check_requant(config: GemmConfig, requant, n: int):
    """The requantizer the array's mode takes: a ``RequantConfig``, or with ``per_channel`` a
    ``ChannelRequant`` of ``N`` channels and the config's ``out_bits``."""
    if not config.per_channel:
        if not isinstance(requant, RequantConfig):
            raise IntvitError("gemm: a per-tensor array takes a RequantConfig; build the array "
                              "with per_channel=True for per-channel requantizers")
        return requant
    if not isinstance(requant, ChannelRequant):
        raise IntvitError("gemm: a per-channel array takes a ChannelRequant (one m, e per output "
                          "channel)")
    if len(requant.multipliers) != n or requant.out_bits != config.out_bits:
        raise IntvitError(f"gemm: the per-channel requantizer must have N={n} channels of "
                          f"{config.out_bits}-bit output (got {len(requant.multipliers)} of "
                          f"{requant.out_bits} bits)")
    return requant


def check_range(name: str, x: np.ndarray, bits: int) -> None:
    """One-line error unless every element of ``x`` is a signed ``bits``-bit integer."""
    lo, hi = signed_range(bits)
    if x.size and (x.min() < lo or x.max() > hi):
        raise IntvitError(f"gemm: {name} must be signed {bits}-bit integers in {lo}..{hi} "
                          f"(got {x.min()}..{x.max()}); quantize it to the config's widths")


def check_operands(config: GemmConfig, a, w, bias=None):
    """``a`` (M x K), ``w`` (K x N), ``bias`` (N, or None for zeros) as int64, shapes and ranges
    checked against ``config``."""
    a, w = as_int_array(a, "activations"), as_int_array(w, "weights")
    if a.ndim != 2 or w.ndim != 2 or a.shape[1] != w.shape[0]:
        raise IntvitError(f"gemm: need activations M x K and weights K x N (got {a.shape} and "
                          f"{w.shape})")
    (m, k), n = a.shape, w.shape[1]
    if min(m, k, n) < 1:
        raise IntvitError(f"gemm: M, K and N must be at least 1 (got {m}, {k}, {n})")
    if k > config.k_max:
        raise IntvitError(f"gemm: K={k} exceeds the array's k_max={config.k_max}; build the "
                          "config with a larger k_max")
    bias = np.zeros(n, dtype=np.int64) if bias is None else as_int_array(bias, "bias")
    if bias.shape != (n,):
        raise IntvitError(f"gemm: bias must have N={n} elements (got shape {bias.shape})")
    check_range("activations", a, config.act_bits)
    check_range("weights", w, config.weight_bits)
    check_range("bias", bias, config.bias_bits)
    return a, w, bias


def gemm_accumulate(config: GemmConfig, a, w, bias=None) -> np.ndarray:
    """``a @ w + bias`` in int64; by :class:`GemmConfig`'s bound it fits int32."""
    a, w, bias = check_operands(config, a, w, bias)
    return a @ w + bias


def gemm(config: GemmConfig, requant, a, w, bias=None) -> np.ndarray:
    """``requantize(requant, a @ w + bias)``: the layer output, ``M x N`` int64 (``requant``: a
    ``RequantConfig``, or a ``ChannelRequant`` for a per-channel array)."""
    acc = gemm_accumulate(config, a, w, bias)
    requant = check_requant(config, requant, acc.shape[1])
    return requant(acc) if config.per_channel else requantize(requant, acc)


def pack_int4(values) -> np.ndarray:
    """Two signed 4-bit values per byte along the last axis (even length), **low nibble first**:
    byte ``j = (v[2j] & 0xF) | (v[2j+1] & 0xF) << 4``. This is the bit order of the weight
    stream (lane ``c`` at bits ``4c .. 4c+3``), so byte ``j`` of a beat holds lanes ``2j, 2j+1``."""
    values = as_int_array(values, "int4 values")
    if values.shape[-1] % 2:
        raise IntvitError(f"pack_int4: need an even number of values per row (got "
                          f"{values.shape[-1]})")
    check_range("int4 values", values, 4)
    nibbles = values & 0xF
    return (nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)).astype(np.uint8)


def unpack_int4(packed) -> np.ndarray:
    """Inverse of :func:`pack_int4`: each byte gives its low then its high nibble,
    sign-extended by ``(nibble ^ 8) - 8``."""
    packed = as_int_array(packed, "packed bytes")
    nibbles = np.stack([packed & 0xF, (packed >> 4) & 0xF], axis=-1)
    return ((nibbles ^ 8) - 8).reshape(*packed.shape[:-1], 2 * packed.shape[-1])


def weight_bytes(config: GemmConfig, weights) -> np.ndarray:
    """The bytes of weight beats (``beats x C`` weights -> ``beats x C*weight_bits/8`` bytes):
    int8 as two's-complement bytes, int4 by :func:`pack_int4`."""
    weights = as_int_array(weights, "weights")
    if config.weight_bits == 4:
        return pack_int4(weights)
    return (weights & 0xFF).astype(np.uint8)


@dataclass(frozen=True)
class GemmBeats:
    """Every beat of one ``M x K`` by ``K x N`` product on the array, in stream order.

    Tiles are visited row tile outer, column tile inner (:func:`tile_origins`). Tile ``t`` is
    ``K`` input beats and ``R`` output beats; ``M`` and ``N`` are zero-padded up to multiples of
    ``R`` and ``C`` (``K`` is never padded: it is the number of beats).

    Attributes
    ----------
    shape : (M, K, N)
    act : (tiles*K, R) int64
        Beat ``t*K + k`` is column ``k`` of the tile's activation rows: ``a[m0:m0+R, k]``.
    act_last : (tiles*K,) bool
        True on ``k = K-1``: the reduction of the tile ends with this beat.
    weight : (tiles*K, C * weight_bits / 8) uint8
        Beat ``t*K + k`` is ``w[k, n0:n0+C]`` as :func:`weight_bytes` (lane ``c`` at bits
        ``c*wb .. c*wb+wb-1``; byte ``j`` of the beat is bits ``8j .. 8j+7``).
    bias : (tiles, C) int64
        One beat per tile, ``bias[n0:n0+C]``; consumed with the tile's last input beat.
    multiplier, shift : (tiles, C) int64 or None
        Per-channel arrays: the tile's ``m[n0:n0+C]`` and ``e[n0:n0+C]``, in the same ``b`` beat
        (padding columns ``m = e = 0``); None for a per-tensor array.
    out : (tiles*R, C) int64
        Output beat ``t*R + r`` is row ``m0 + r`` of the tile: ``y[m0+r, n0:n0+C]``, computed on
        the padded operands, so padding rows/columns hold exactly what the hardware produces
        (``requantize(bias)`` in padding rows, ``requantize(0)`` in padding columns).
    out_last : (tiles*R,) bool
        True on the tile's last row ``r = R-1``.
    """

    shape: tuple[int, int, int]
    act: np.ndarray
    act_last: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    out: np.ndarray
    out_last: np.ndarray
    multiplier: np.ndarray | None = None
    shift: np.ndarray | None = None

    @property
    def tiles(self) -> int:
        return len(self.bias)


def padded(size: int, step: int) -> int:
    """``size`` rounded up to a multiple of ``step``."""
    return -(-size // step) * step


def tile_origins(config: GemmConfig, m: int, n: int) -> list[tuple[int, int]]:
    """``(m0, n0)`` of every output tile, row tile outer, column tile inner."""
    return [(m0, n0) for m0 in range(0, m, config.rows) for n0 in range(0, n, config.cols)]


def gemm_beats(config: GemmConfig, requant, a, w, bias=None) -> GemmBeats:
    """The streams the array consumes and emits for ``requantize(a @ w + bias)``."""
    a, w, bias = check_operands(config, a, w, bias)
    (m, k), n = a.shape, w.shape[1]
    requant = check_requant(config, requant, n)
    rows, cols = config.rows, config.cols
    a_pad = np.zeros((padded(m, rows), k), dtype=np.int64)
    a_pad[:m] = a
    w_pad = np.zeros((k, padded(n, cols)), dtype=np.int64)
    w_pad[:, :n] = w
    b_pad = np.zeros(padded(n, cols), dtype=np.int64)
    b_pad[:n] = bias
    channels = None
    if config.per_channel:
        channels = np.zeros((2, padded(n, cols)), dtype=np.int64)
        channels[:, :n] = [requant.multipliers, requant.shifts]
        requant = ChannelRequant(tuple(channels[0].tolist()), tuple(channels[1].tolist()),
                                 requant.out_bits)
    y_pad = gemm(config, requant, a_pad, w_pad, b_pad)
    origins = tile_origins(config, m, n)
    act = [a_pad[m0:m0 + rows].T for m0, _ in origins]
    weight = [w_pad[:, n0:n0 + cols] for _, n0 in origins]
    out = [y_pad[m0:m0 + rows, n0:n0 + cols] for m0, n0 in origins]
    act_last = np.zeros(k, dtype=bool)
    act_last[-1] = True
    out_last = np.zeros(rows, dtype=bool)
    out_last[-1] = True
    per_tile = {}
    if channels is not None:
        per_tile = {name: np.stack([row[n0:n0 + cols] for _, n0 in origins])
                    for name, row in zip(("multiplier", "shift"), channels)}
    return GemmBeats(shape=(m, k, n), act=np.concatenate(act),
                     act_last=np.tile(act_last, len(origins)),
                     weight=weight_bytes(config, np.concatenate(weight)),
                     bias=np.stack([b_pad[n0:n0 + cols] for _, n0 in origins]),
                     out=np.concatenate(out), out_last=np.tile(out_last, len(origins)),
                     **per_tile)


def reassemble(config: GemmConfig, m: int, n: int, out_beats) -> np.ndarray:
    """The ``M x N`` result from output beats in stream order (padding dropped)."""
    out_beats = as_int_array(out_beats, "output beats")
    origins = tile_origins(config, m, n)
    if out_beats.shape != (len(origins) * config.rows, config.cols):
        raise IntvitError(f"reassemble: {m} x {n} on a {config.rows} x {config.cols} array takes "
                          f"{len(origins) * config.rows} beats of {config.cols} (got "
                          f"{out_beats.shape})")
    y = np.zeros((padded(m, config.rows), padded(n, config.cols)), dtype=np.int64)
    for tile, (m0, n0) in enumerate(origins):
        y[m0:m0 + config.rows, n0:n0 + config.cols] = out_beats[tile * config.rows:
                                                                (tile + 1) * config.rows]
    return y[:m, :n]


def drain_cycles(config: GemmConfig) -> int:
    """Cycles to drain a tile's ``R * C`` sums through ``requant_lanes`` requantizer lanes."""
    return config.rows * config.cols // config.requant_lanes


ARRAY_STAGES = 3
"""Clock edges from a beat in the input registers to its sum in the drain buffer: the join into
the per-multiplier operand copies, the multiply into the product registers, then the
accumulate."""


def output_latency(config: GemmConfig, steps: int) -> int:
    """Clock edges from a tile's last input beat to the transfer of the output row whose last
    group is drain step ``steps`` (1-based), with no stalls: :data:`ARRAY_STAGES`, the ``steps``
    drain steps into the requantizer's input register, its other ``L - 1`` stages
    (:func:`requant_latency`), the row register and the ``o`` handshake."""
    return ARRAY_STAGES + steps + requant_latency(config) + 1


def tile_period(config: GemmConfig, k: int) -> int:
    """Cycles between consecutive tiles at steady state: ``max(K, D + ARRAY_STAGES)`` with
    ``D =`` :func:`drain_cycles`.

    A tile takes ``K`` input beats at one per cycle. Its last beat joins only once the drain
    buffer is free, and claims it: the accumulate stage fills it ``ARRAY_STAGES - 1`` edges
    later, ``D`` steps empty it and the next last beat can join on the edge after the last
    step."""
    return max(k, drain_cycles(config) + ARRAY_STAGES)


def predicted_cycles(m: int, k: int, n: int, config: GemmConfig) -> int:
    """Cycles from the first input beat accepted to the last output beat delivered, inclusive,
    with inputs always valid and the output always ready:

    ``K + (T - 1) * tile_period + output_latency(D)`` with ``T = ceil(M/R) * ceil(N/C)``
    tiles: the last tile's last beat is accepted at edge ``K - 1 + (T - 1) * tile_period``
    (:func:`tile_period`) and its last row, completed by drain step ``D``
    (:func:`drain_cycles`), leaves :func:`output_latency` edges later; counting edges
    inclusively adds one.
    """
    for name, value in (("M", m), ("K", k), ("N", n)):
        check_int("predicted_cycles", name, value, 1, 1 << 40)
    tiles = -(-m // config.rows) * -(-n // config.cols)
    return (k + (tiles - 1) * tile_period(config, k)
            + output_latency(config, drain_cycles(config)))


def utilization(m: int, k: int, n: int, config: GemmConfig, cycles: int) -> float:
    """Useful MACs over the array's capacity: ``M*K*N / (R*C*cycles)``."""
    return m * k * n / (config.rows * config.cols * cycles)


BUNDLED_SHAPES = {
    "patch_embed": (16, 4, 64), "qkv": (17, 64, 192), "q@kT (per head)": (17, 16, 17),
    "attn@v (per head)": (17, 17, 16), "proj": (17, 64, 64), "fc1": (17, 64, 128),
    "fc2": (17, 128, 64)}
"""``(M, K, N)`` of the bundled digits ViT's matrix products (``intvit.golden_model.vit`` preset
``bundled``: 8x8 images, 2x2 patches -> 16 patches + class token = 17 tokens, dim 64, 4 heads of
16, MLP 128)."""

DEIT_TINY_SHAPES = {
    "patch_embed": (196, 768, 192), "qkv": (197, 192, 576), "proj": (197, 192, 192),
    "fc1": (197, 192, 768), "fc2": (197, 768, 192), "q@kT (per head)": (197, 64, 197),
    "attn@v (per head)": (197, 197, 64)}
"""``(M, K, N)`` of DeiT-Tiny's matrix products (DeiT Table 1: 224x224 images, 16x16 patches ->
196 patches + class token = 197 tokens, dim 192, 3 heads of 64, MLP 768)."""
