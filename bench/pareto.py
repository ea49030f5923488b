"""The Pareto bench: every selection rule's mix among random mixes, on (cost of the mix, fidelity
to the float model), for both bundled models at W8A8 and W4A8.

Each evaluated mix is one point:

- *cost of the mix* as the hardware sees it (``select.assignment_cost``, a
  :class:`intvit.golden_model.costs.MixCost`): each distinct non-linear unit's area once and the
  cycles per image of the assigned units over the model's non-linear layers, time at the
  slowest unit's Fmax. The front is drawn on one number, ``area x time``
  (:attr:`MixCost.area_time`, LUT-equivalent microseconds); the table also says whether a mix is
  on the front of the three measures (area, cycles, KL) taken separately;
- *fidelity to the float model* on the same evaluation images: the mean logit KL
  ``KL(softmax(z_float) || softmax(z_int))`` with its standard error (primary), the top-1
  agreement with the float model and the logit ASQNR (dB); top-1 accuracy against the labels
  rides alongside with its binomial standard error.

How it stays affordable, and what every point is given:

- stage 1 once per (model, bits): the float model's activations on the calibration split and
  the selection scores (``select.score_layers``) from which the rules' mixes come;
- every point, the rules' mixes included, is the *stage-2* mix: each layer's config calibrated
  on the float model's activations, which is exactly the per-layer config stage 1 scored (a
  config depends only on its layer's float input and its candidate), so that a mix differs
  from another only by which candidate each layer takes. Stage 3 (the recalibration on the
  mix's own integer activations) is not given to the random mixes, so it is not given to the
  rules' mixes on the front either; the rules' stage-3 KL and top-1 are reported beside them
  for reference, off the front;
- building a mix reuses stage 1's activation scales and per-layer configs
  (:class:`CalibrationCache`: the same pure calls on the same float activations are computed
  once), and the integer forward runs its GEMMs as exact floating-point products
  (:class:`ExactLinear`: integers whose partial sums stay below ``2^24`` in float32 or ``2^53``
  in float64 are represented exactly, so the integer results are identical, which
  ``tests/test_pareto.py`` checks against the plain forward);
- random mixes (seeded, the same draws at both bit widths of a model): per operator kind a
  random non-empty subset of its candidates (its size uniform, then the subset uniform), then
  each layer of that kind a uniform pick from the subset, so that the mixes spread over few and
  many distinct units; duplicates and the single-method mixes are drawn again.

Usage: python bench/pareto.py   (the full configuration; ``--help`` for the options)
"""
import os

if __name__ == "__main__":  # one BLAS/OpenMP thread per process: two processes share two cores
    for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import pickle  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import OrderedDict  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import asdict, dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import IMAGES, markdown_table, write_section  # noqa: E402
from intvit.golden_model import qvit, registry  # noqa: E402
from intvit.golden_model.checkpoint import load_bundled  # noqa: E402
from intvit.golden_model.costs import load_cost_table  # noqa: E402
from intvit.golden_model.exact import as_codes, float_codes  # noqa: E402
from intvit.golden_model.dataset import dataset, load_splits  # noqa: E402
from intvit.golden_model.metrics import asqnr, kl_per_image  # noqa: E402
from intvit.golden_model.tapstats import TapStatistics  # noqa: E402
from intvit.golden_model.qvit import (QuantSpec, build_integer_vit,  # noqa: E402
                                      default_assignment, float_taps, integer_taps,
                                      quantize_images)
from intvit.golden_model.select import (METHODS, RULES, assign, assignment_cost,  # noqa: E402
                                        candidates_of, score_layers)
from intvit.golden_model.vit import nonlinear_layers  # noqa: E402
from intvit.report import count, standard_error  # noqa: E402

MODELS = ("digits", "mnist")
BITS = ("w8a8", "w4a8")
RANDOM_MIXES = 200
SEED = 16
"""Seed of the random mixes (``numpy.random.default_rng``), the same for both bit widths."""
EVAL_IMAGES = {"digits": 400, "mnist": 200}
"""Evaluation images per model: the first ones of the model's test split (the split is already
a seeded permutation). Digits: its whole test split; MNIST: 200 of its 1,000, for time."""
WORKERS = 2
CODES = {"iptq": "p", "ivit": "v", "ibert": "b", "fqvit": "f"}
"""One letter per method for the compact form of a mix (:func:`mix_code`)."""
EXACT_FLOAT32 = 2.0 ** 24
EXACT_FLOAT64 = 2.0 ** 53
SMALL_ARRAY = 4096
"""Arrays up to this size key the calibration cache by content, larger ones by identity."""
PROGRESS_SECONDS = 15.0


# --- the Pareto front -----------------------------------------------------------------------

def dominates(a, b) -> bool:
    """Point ``a = (cost, kl)`` dominates ``b``: no costlier, no further from float, and better
    in at least one of the two (equal points do not dominate each other)."""
    return a[0] <= b[0] and a[1] <= b[1] and (a[0] < b[0] or a[1] < b[1])


def dominators(points, index: int) -> list[int]:
    """The indices of the points that dominate ``points[index]``."""
    return [j for j, p in enumerate(points) if dominates(p, points[index])]


def pareto_front(points) -> list[int]:
    """The indices of the points no other point dominates, in order of cost (then KL)."""
    front = [i for i in range(len(points)) if not dominators(points, i)]
    return sorted(front, key=lambda i: (points[i][0], points[i][1], i))


def dominates_nd(a, b) -> bool:
    """:func:`dominates` for any number of measures, all to be minimized."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


# --- an exact, faster integer forward ---------------------------------------------------------

def exact_dtype(bound: float):
    """The floating type in which integer products whose partial sums stay within ``bound``
    (in magnitude) are exact, or None (keep int64)."""
    if bound < EXACT_FLOAT32:
        return np.float32
    if bound < EXACT_FLOAT64:
        return np.float64
    return None


class ExactLinear:
    """An :class:`intvit.golden_model.qvit.IntLinear` whose integer product ``x @ W.T`` runs as a
    floating-point GEMM when every partial sum is exactly representable (``max |x| x max_c
    sum_k |W[c, k]|`` below ``2^24`` for float32, ``2^53`` for float64), else on int64 as the
    original; the bias and the requantizer are the original's. Same integers out."""

    def __init__(self, linear):
        self.weight, self.bias, self.requant = linear.weight, linear.bias, linear.requant
        self.row_sum = float(np.abs(linear.weight).sum(axis=1).max()) if linear.weight.size else 0.0
        self.transposed = {t: np.ascontiguousarray(linear.weight.T, dtype=t)
                           for t in (np.float32, np.float64)}

    def __call__(self, x, a_max=None, codes=None):
        """``IntLinear``'s call: float codes (the integer ViT's fast forward) are read as the
        integers they hold and, as ``codes`` asks, returned (``exact.as_codes``)."""
        codes = float_codes(x) if codes is None else codes
        x = np.asarray(x).astype(np.int64) if float_codes(x) else np.asarray(x)
        acc = self._product(x)
        return acc if self.requant is None else as_codes(self.requant(acc), codes)

    def _product(self, x):
        dtype = exact_dtype(float(np.abs(x).max()) * self.row_sum) if x.size else None
        if dtype is None:
            return x @ self.weight.T + self.bias
        return np.rint(x.astype(dtype) @ self.transposed[dtype]).astype(np.int64) + self.bias


class ExactProbsV:
    """``probs @ v`` of a linear-probability softmax as an exact floating-point product (bound
    ``max probs x keys x max |v|``); anything else (a log2 softmax's shifts) goes to the
    original."""

    def __init__(self, original):
        self.original = original
        self.linear = getattr(original, "top", "unknown") is None

    def __call__(self, probs, v):
        if not self.linear or probs.size == 0 or v.size == 0:
            return self.original(probs, v)
        bound = float(np.abs(probs).max()) * probs.shape[-1] * float(np.abs(v).max())
        dtype = exact_dtype(bound)
        if dtype is None:
            return self.original(probs, v)
        return np.rint(probs.astype(dtype) @ v.astype(dtype)).astype(np.int64)

    def requantized(self, requant, probs, v, v_max=None, p_max=None):
        """``requant(self(probs, v))`` (``_ProbsTimesV.requantized``'s call); float codes in,
        float32 float codes out."""
        codes = float_codes(probs) or float_codes(v)
        if codes:
            probs, v = probs.astype(np.int64), v.astype(np.int64)
        return as_codes(requant(self(probs, v)), codes)

    def scale(self, config):
        return self.original.scale(config)


LINEARS = ("qkv", "proj", "fc1", "fc2")


def accelerated(qmodel):
    """A copy of the integer model whose GEMMs are :class:`ExactLinear` (and linear
    probability products :class:`ExactProbsV`); everything else is shared."""
    blocks = []
    for block in qmodel.blocks:
        fast = {name: ExactLinear(part) if name in LINEARS else part
                for name, part in block.items()}
        if "probs_v" in fast:
            fast["probs_v"] = ExactProbsV(fast["probs_v"])
        blocks.append(fast)
    return replace(qmodel, patch_embed=ExactLinear(qmodel.patch_embed),
                   head=ExactLinear(qmodel.head), blocks=blocks)


# --- stage 1 once: the calibration cache ------------------------------------------------------

def _fingerprint(value, allowed: set):
    """A hashable key for ``value``; large arrays by identity, only if their id is in
    ``allowed`` (arrays the cache holds, so that no other array can take their id), else None:
    the call is not cached."""
    if isinstance(value, np.ndarray):
        if value.size <= SMALL_ARRAY:
            return ("array", value.dtype.str, value.shape, value.tobytes())
        return ("ref", id(value)) if id(value) in allowed else None
    if isinstance(value, (list, tuple)):
        parts = tuple(_fingerprint(v, allowed) for v in value)
        return None if None in parts else (type(value).__name__, parts)
    if isinstance(value, dict):
        parts = tuple((k, _fingerprint(v, allowed)) for k, v in sorted(value.items()))
        return None if any(p is None for _, p in parts) else ("dict", parts)
    try:
        hash(value)
    except TypeError:
        return None
    return ("value", type(value).__name__, value)


class CalibrationCache:
    """Within :meth:`active`, every call of the builder's activation calibrator
    (``qvit.activation_scale``) and of each candidate's ``calibrate`` on the float activations
    ``taps`` (held by identity) is computed once: a mix's build then takes stage 1's scales and
    per-layer configs instead of recomputing them. Calls on other arrays (stage 3's own
    activations) are computed as usual. Both functions are pure, so a build is unchanged
    (``tests/test_pareto.py``)."""

    def __init__(self, taps: TapStatistics):
        self.taps = taps
        self.allowed = {id(taps.sample(name)) for name in taps.taps}
        self.memo: dict = {}
        self.hits = self.misses = 0

    def wrap(self, name: str, function):
        def cached(*args, **kwargs):
            key = _fingerprint((name, args, kwargs), self.allowed)
            if key is None:
                return function(*args, **kwargs)
            if key in self.memo:
                self.hits += 1
                return self.memo[key]
            self.misses += 1
            value = self.memo[key] = function(*args, **kwargs)
            return value
        return cached

    @contextmanager
    def active(self):
        original_scale = qvit.activation_scale
        originals = {name: op for name, op in registry.REGISTRY.items() if op.calibrate}
        qvit.activation_scale = self.wrap("activation_scale", original_scale)
        for name, op in originals.items():
            registry.REGISTRY[name] = replace(op, calibrate=self.wrap(name, op.calibrate))
        try:
            yield self
        finally:
            qvit.activation_scale = original_scale
            registry.REGISTRY.update(originals)


# --- one (model, bits): the context, the mixes, one mix's measures ----------------------------

@dataclass
class Context:
    """Everything a mix's evaluation needs for one (model, bits)."""
    name: str
    bits: str
    model: object
    config: object
    spec: QuantSpec
    calibration: object
    taps: TapStatistics
    images_q: np.ndarray
    labels: np.ndarray
    float_logits: np.ndarray
    table: object
    cache: CalibrationCache


def prepare(name: str, bits: str, images: int) -> Context:
    """Load model ``name``, its splits and the measured cost table; the float activations on
    the calibration split; the first ``images`` test images as int8 codes with the float
    model's logits on them."""
    model, config, meta = load_bundled(name)
    splits = load_splits(meta["split_seed"], name)
    spec = QuantSpec.parse(bits, image_scale=dataset(name).image_scale)
    test = splits["test"]
    images = min(images, len(test))
    x, labels = test.images[:images], test.labels[:images].numpy()
    with torch.no_grad():
        float_logits = model(x).double().numpy()
    taps = TapStatistics.from_arrays(float_taps(model, splits["calibration"].images))
    return Context(name, bits, model, config, spec, splits["calibration"], taps,
                   quantize_images(x.numpy(), spec.image_scale), labels, float_logits,
                   load_cost_table(), CalibrationCache(taps))


def mix_key(config, assignment: dict) -> tuple:
    return tuple(assignment[layer] for layer in nonlinear_layers(config))


def mix_code(config, assignment: dict) -> str:
    """A mix in one line: per block the letters of norm1, softmax, norm2 and GELU, then the
    final norm (``p`` iptq, ``v`` ivit, ``b`` ibert, ``f`` fqvit)."""
    letters = [CODES[assignment[layer].split("/")[1]] for layer in nonlinear_layers(config)]
    blocks = ["".join(letters[4 * i:4 * i + 4]) for i in range(config.depth)]
    return " ".join(blocks) + " / " + letters[-1]


def single_method_mixes(config) -> dict:
    return {f"all-{m}": default_assignment(config, m) for m in METHODS}


def random_mixes(config, count: int, seed: int = SEED, exclude=()) -> list[dict]:
    """``count`` distinct random mixes (module docstring), none equal to one of ``exclude``."""
    rng = np.random.default_rng(seed)
    layers = nonlinear_layers(config)
    pools = {kind: candidates_of(kind) for kind in dict.fromkeys(layers.values())}
    seen = {mix_key(config, a) for a in exclude}
    mixes, attempts = [], 0
    while len(mixes) < count:
        attempts += 1
        if attempts > 100 * count + 1000:
            raise RuntimeError(f"could not draw {count} distinct random mixes")
        subsets = {kind: rng.choice(pool, size=int(rng.integers(1, len(pool) + 1)),
                                    replace=False) for kind, pool in pools.items()}
        assignment = {layer: str(rng.choice(subsets[kind])) for layer, kind in layers.items()}
        key = mix_key(config, assignment)
        if key not in seen:
            seen.add(key)
            mixes.append(assignment)
    return mixes


def rule_assignments(ctx: Context) -> dict:
    """Stage 1 (``select.score_layers`` on the calibration split) and each rule's stage-2
    assignment."""
    scores = score_layers(ctx.model, ctx.calibration.images, ctx.spec, ctx.table)
    return {rule: assign(scores, rule, ctx.config) for rule in RULES}


def build_mix(ctx: Context, assignment: dict, stage3: bool = False):
    """The mix's integer model: stage 2 from the cached stage-1 configs (the same model as
    ``build_integer_vit`` on the float activations), or with ``stage3`` rebuilt on its own
    integer activations of the calibration split (``select.calibrate_mix``)."""
    with ctx.cache.active():
        qmodel = build_integer_vit(ctx.model, None, assignment, ctx.spec, taps=ctx.taps)
        if stage3:
            codes = quantize_images(ctx.calibration.images.numpy(), ctx.spec.image_scale)
            own = integer_taps(accelerated(qmodel), codes)
            qmodel = build_integer_vit(ctx.model, None, assignment, ctx.spec, taps=own)
    return qmodel


def evaluate(ctx: Context, assignment: dict, stage3: bool = False) -> dict:
    """One mix's cost and fidelity on the context's evaluation images: the stage-2 build (the
    cached stage-1 configs), or with ``stage3`` the mix recalibrated on its own integer
    activations as ``select.calibrate_mix`` does."""
    qmodel = build_mix(ctx, assignment, stage3)
    logits = accelerated(qmodel).forward(ctx.images_q)
    z = np.asarray(logits, np.float64) * qmodel.scales["logits"]
    kl = kl_per_image(ctx.float_logits, z)
    predicted = z.argmax(-1)
    cost = assignment_cost(ctx.table, assignment, ctx.config)
    return {"assignment": dict(assignment), "cost": cost, "kl_images": kl,
            "kl": float(np.mean(kl)),
            "kl_se": float(np.std(kl, ddof=1) / math.sqrt(len(kl))) if len(kl) > 1 else 0.0,
            "agreement": float(np.mean(predicted == ctx.float_logits.argmax(-1))),
            "sqnr": asqnr(ctx.float_logits, z),
            "top1": float(np.mean(predicted == ctx.labels))}


# --- running the tasks (in process or on two workers) -----------------------------------------

_CONTEXTS: "OrderedDict[tuple, Context]" = OrderedDict()
CONTEXTS_KEPT = 2


def context(name: str, bits: str, images: int) -> Context:
    """This process's context for (model, bits), built once (the two most recent are kept)."""
    key = (name, bits, images)
    if key not in _CONTEXTS:
        _CONTEXTS[key] = prepare(name, bits, images)
        while len(_CONTEXTS) > CONTEXTS_KEPT:
            _CONTEXTS.popitem(last=False)
    _CONTEXTS.move_to_end(key)
    return _CONTEXTS[key]


def _work(task: tuple):
    kind, name, bits, images, assignment = task
    torch.set_num_threads(1)
    ctx = context(name, bits, images)
    if kind == "score":
        return rule_assignments(ctx)
    return evaluate(ctx, assignment, stage3=kind == "stage3")


class _Inline:
    """The pool's interface, run in this process (``workers=1``)."""

    class _Done:
        def __init__(self, value):
            self.value = value

        def ready(self):
            return True

        def get(self):
            return self.value

    def apply_async(self, function, args):
        return self._Done(function(*args))


@contextmanager
def _pool(workers: int):
    if workers <= 1:
        yield _Inline()
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield pool


class Progress:
    """Done / total tasks, elapsed and an ETA (each task weighted by its model's images x tokens
    x width x depth and its kind, a proxy of its work)."""

    def __init__(self, log):
        self.log, self.start, self.last = log, time.monotonic(), time.monotonic()
        self.total = self.done = 0.0
        self.tasks = self.finished = 0

    def add(self, weight: float):
        self.total += weight
        self.tasks += 1

    def tick(self, weight: float):
        self.done += weight
        self.finished += 1
        now = time.monotonic()
        if now - self.last >= PROGRESS_SECONDS or self.finished == self.tasks:
            self.last = now
            elapsed = now - self.start
            eta = elapsed * (self.total - self.done) / self.done if self.done else float("nan")
            self.log(f"  [{self.finished}/{self.tasks} tasks] {elapsed:.0f} s elapsed, "
                     f"ETA {eta:.0f} s")


def task_weight(config, images: int, kind: str) -> float:
    tokens = (config.img_size // config.patch_size) ** 2 + 1
    work = images * tokens * config.embed_dim * config.depth
    return {"score": 10.0, "stage3": 2.0}.get(kind, 1.0) * work


class Tasks:
    """Tasks submitted to the pool, polled for progress."""

    def __init__(self, pool, progress: Progress):
        self.pool, self.progress, self.pending = pool, progress, []

    def submit(self, kind: str, name: str, bits: str, images: int, config, assignment=None):
        result = self.pool.apply_async(_work, ((kind, name, bits, images, assignment),))
        self.pending.append((result, task_weight(config, images, kind)))
        return result

    def wait(self, until=None) -> None:
        """Poll until ``until`` is ready (None: every task)."""
        while True:
            still = []
            for result, weight in self.pending:
                if result.ready():
                    self.progress.tick(weight)
                else:
                    still.append((result, weight))
            self.pending = still
            if not still or (until is not None and until.ready()):
                return
            time.sleep(0.2)


def run(models=MODELS, bits=BITS, random_count: int = RANDOM_MIXES, images=None,
        workers: int = WORKERS, seed: int = SEED, log=print) -> list[dict]:
    """Every (model, bits): the rules' mixes (stage 2, and stage 3 for reference) and
    ``random_count`` random mixes, each evaluated (:func:`evaluate`). ``images``: evaluation
    images per model (default :data:`EVAL_IMAGES`)."""
    torch.set_num_threads(1)
    images = {**EVAL_IMAGES, **(images or {})}
    groups, progress = [], Progress(log)
    configs = {name: load_bundled(name)[1] for name in models}
    for name in models:  # every task, counted before the first starts
        for _ in bits:
            for kind, times in (("score", 1), ("mix", random_count + len(RULES)),
                                ("stage3", len(RULES))):
                for _ in range(times):
                    progress.add(task_weight(configs[name], images[name], kind))
    with _pool(workers) as pool:
        tasks = Tasks(pool, progress)
        for name in models:
            config = configs[name]
            mixes = random_mixes(config, random_count, seed,
                                 exclude=single_method_mixes(config).values())
            for b in bits:
                n = images[name]
                log(f"{name} {b.upper()}: stage 1, {len(RULES)} rules and {len(mixes)} random "
                    f"mixes on {n} images")
                score = tasks.submit("score", name, b, n, config)
                randoms = [tasks.submit("mix", name, b, n, config, m) for m in mixes]
                tasks.wait(until=score)
                rules = score.get()
                evaluated = {rule: (tasks.submit("mix", name, b, n, config, a),
                                    tasks.submit("stage3", name, b, n, config, a))
                             for rule, a in rules.items()}
                groups.append({"model": name, "bits": b, "config": config, "images": n,
                               "random": randoms, "rules": evaluated})
        tasks.wait()
    log(f"  done in {time.monotonic() - progress.start:.0f} s")
    return [_collect(group) for group in groups]


def _collect(group: dict) -> dict:
    """The evaluated points of one (model, bits): distinct mixes, each with the rules whose
    mix it is (random mixes equal to a rule's mix merge into its point)."""
    config = group["config"]
    points, by_key = [], {}

    def add(result, label):
        key = mix_key(config, result["assignment"])
        if key not in by_key:
            by_key[key] = len(points)
            points.append({**result, "labels": [],
                           "code": mix_code(config, result["assignment"])})
        points[by_key[key]]["labels"].append(label)

    for rule in RULES:
        add(group["rules"][rule][0].get(), rule)
    for index, result in enumerate(group["random"]):
        add(result.get(), f"random #{index + 1}")
    return {"model": group["model"], "bits": group["bits"], "images": group["images"],
            "random": len(group["random"]), "points": points,
            "stage3": {rule: group["rules"][rule][1].get() for rule in RULES},
            "float_top1": float_top1(group["model"], group["images"])}


def float_top1(name: str, images: int) -> float:
    """The float model's top-1 on the first ``images`` test images."""
    model, _, meta = load_bundled(name)
    test = load_splits(meta["split_seed"], name)["test"]
    with torch.no_grad():
        predicted = model(test.images[:images]).argmax(-1).numpy()
    return float(np.mean(predicted == test.labels[:images].numpy()))


# --- analysis: the front and what dominates each rule's mix -----------------------------------

def point_of(label: str, points: list) -> int:
    return next(i for i, p in enumerate(points) if label in p["labels"])


def paired_difference(a: dict, b: dict) -> tuple[float, float]:
    """Mean per-image KL of ``a`` minus ``b`` (same images) and its standard error."""
    d = np.asarray(a["kl_images"]) - np.asarray(b["kl_images"])
    return float(np.mean(d)), (float(np.std(d, ddof=1) / math.sqrt(len(d))) if len(d) > 1
                               else 0.0)


def analyse(result: dict) -> dict:
    """Per rule: its point, whether it is on the (area x time, KL) front and on the (area,
    cycles, KL) front, and if not the dominating mixes, the closest to float first."""
    points = result["points"]
    xy = [(p["cost"].area_time, p["kl"]) for p in points]
    three = [(p["cost"].area, p["cost"].cycles, p["kl"]) for p in points]
    front = pareto_front(xy)
    rules = {}
    for rule in RULES:
        i = point_of(rule, points)
        over = sorted(dominators(xy, i), key=lambda j: (xy[j][1], xy[j][0], j))
        rules[rule] = {"index": i, "on_front": not over, "dominators": over,
                       "on_front_3d": not any(dominates_nd(t, three[i]) for t in three)}
    return {"front": front, "xy": xy, "rules": rules}


def point_name(point: dict) -> str:
    rules = [label for label in point["labels"] if not label.startswith("random")]
    return " = ".join(rules) if rules else point["labels"][0]


# --- rendering ----------------------------------------------------------------------------------

def kl_cell(point: dict) -> str:
    return f"{point['kl']:.2e} ± {point['kl_se']:.1e}"


def top1_cell(p: float, images: int) -> str:
    return f"{100 * p:.2f} ± {100 * standard_error(p, images):.2f}"


def rule_table(result: dict, analysis: dict) -> str:
    points, images = result["points"], result["images"]
    rows = []
    for rule in RULES:
        info = analysis["rules"][rule]
        p = points[info["index"]]
        s3 = result["stage3"][rule]
        if info["on_front"]:
            verdict = "yes"
        else:
            best = points[info["dominators"][0]]
            verdict = f"no ({len(info['dominators'])} dominate; closest: {point_name(best)})"
        rows.append([rule, count(p["cost"].area), count(p["cost"].cycles),
                     count(p["cost"].area_time), kl_cell(p), f"{100 * p['agreement']:.2f}",
                     f"{p['sqnr']:.1f}", top1_cell(p["top1"], images), verdict,
                     "yes" if info["on_front_3d"] else "no",
                     f"{s3['kl']:.2e}", top1_cell(s3["top1"], images)])
    return markdown_table(["rule", "area (LUT-eq)", "cycles / image", "area x time",
                           "logit KL ± s.e.", "agreement %", "logit SQNR dB",
                           "top-1 % ± s.e.", "on (area x time, KL) front",
                           "on (area, cycles, KL) front", "stage-3 KL", "stage-3 top-1 %"],
                          rows)


def dominance_rows(result: dict, analysis: dict) -> list[list]:
    """For each rule off the front: the dominating mix closest to float, with its mix."""
    points, rows = result["points"], []
    for rule in RULES:
        info = analysis["rules"][rule]
        if info["on_front"]:
            continue
        p, best = points[info["index"]], points[info["dominators"][0]]
        diff, se = paired_difference(best, p)
        rows.append([rule, point_name(best), f"`{best['code']}`",
                     f"{len(best['cost'].units)} vs {len(p['cost'].units)}",
                     f"{count(best['cost'].area_time)} vs {count(p['cost'].area_time)}",
                     f"{diff:+.2e} ± {se:.1e}"])
    return rows


def plot(results: list[dict], analyses: list[dict], path) -> Path:
    """Cost vs KL per bit width of one model: random mixes grey, the front a line, the rules'
    mixes labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.2 * len(results), 6.2), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, result, analysis in zip(axes[0], results, analyses):
        points, xy = result["points"], analysis["xy"]
        rule_points = {info["index"] for info in analysis["rules"].values()}
        others = [i for i in range(len(points)) if i not in rule_points]
        ax.scatter([xy[i][0] for i in others], [xy[i][1] for i in others], s=10,
                   color="0.65", label=f"random mixes ({result['random']})", zorder=1)
        front = analysis["front"]
        ax.step([xy[i][0] for i in front], [xy[i][1] for i in front], where="post",
                color="k", lw=1, label="measured front", zorder=2)
        for n, index in enumerate(sorted(rule_points)):
            name = point_name(points[index])
            on = all(analysis["rules"][r]["on_front"] for r in points[index]["labels"]
                     if r in analysis["rules"])
            ax.scatter([xy[index][0]], [xy[index][1]], s=60, color=colours(n % 10),
                       marker="o" if on else "X", edgecolor="k", zorder=3,
                       label=f"{name} ({'on' if on else 'off'} front)")
            ax.annotate(name, xy[index], textcoords="offset points", xytext=(5, 4),
                        fontsize=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("cost of the mix: area x time (LUT-equivalent µs)")
        ax.set_ylabel("logit KL to float (nats, mean over images)")
        ax.set_title(f"{result['model']} {result['bits'].upper()} ({result['images']} test "
                     "images, stage-2 mixes)", fontsize=10)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)
        ax.grid(True, which="both", lw=0.3, alpha=0.5)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def conclusion(results: list[dict], analyses: list[dict]) -> str:
    """The closing sentences, every one chosen and filled from the measured points."""
    on = [(r, a) for r, a in zip(results, analyses) if a["rules"]["unified"]["on_front"]]
    off = [(r, a) for r, a in zip(results, analyses) if not a["rules"]["unified"]["on_front"]]
    label = lambda r: f"{r['model']} {r['bits'].upper()}"  # noqa: E731
    text = (f"The unified rule's mix is on the measured (area x time, KL) front in {len(on)} of "
            f"{len(results)} (model, bits) settings"
            + (f" ({', '.join(label(r) for r, _ in on)})" if on else "") + ".")
    by_area, by_cycles = [], []
    for result, analysis in off:
        info = analysis["rules"]["unified"]
        points = result["points"]
        p, best = points[info["index"]], points[info["dominators"][0]]
        diff, se = paired_difference(best, p)
        significant = se > 0 and -diff > 2 * se
        text += (f" At {label(result)} it is not: {len(info['dominators'])} of the "
                 f"{len(points) - 1} other evaluated mixes are both no costlier and closer to "
                 f"float; the closest, {point_name(best)} (`{best['code']}`), costs "
                 f"{count(best['cost'].area_time)} against {count(p['cost'].area_time)} "
                 f"(area {count(best['cost'].area)} against {count(p['cost'].area)}, "
                 f"{len(best['cost'].units)} distinct units against {len(p['cost'].units)}; "
                 f"cycles {count(best['cost'].cycles)} against {count(p['cost'].cycles)}) and "
                 f"its KL is lower by {-diff:.2e} ± {se:.1e} (paired over the images), "
                 + ("more than two standard errors." if significant else
                    "within two standard errors, so the dominance rests on cost at a KL this "
                    "test set does not tell apart."))
        rivals = sorted({point_name(points[j]) for j in info["dominators"]
                         if not points[j]["labels"][0].startswith("random")})
        if rivals:
            text += f" Among them are the mixes of {', '.join(rivals)}."
        extra = sorted(set(p["cost"].units) - set(best["cost"].units))
        if extra:
            text += (f" The units of the unified mix that {point_name(best)} does without: "
                     f"{', '.join(extra)}.")
        if best["cost"].area < p["cost"].area:
            by_area.append(label(result))
        if best["cost"].cycles < p["cost"].cycles:
            by_cycles.append(label(result))
    if by_area:
        text += (f" Where the closest dominating mix has the smaller area "
                 f"({', '.join(by_area)}), the difference is in the cost of the mix itself: the "
                 "metric's C prices each layer's unit on its own, so it cannot see that a unit "
                 "chosen for one layer adds its whole area to the design, nor that the design "
                 "runs at its slowest unit's clock.")
    if by_cycles:
        text += (" The closest dominating mix also takes fewer cycles per image than the "
                 f"unified mix in {', '.join(by_cycles)}.")
    text += " " + rule_ranks(results, analyses)
    for rule in RULES[1:]:
        wins = [label(r) for r, a in zip(results, analyses) if a["rules"][rule]["on_front"]]
        text += f" {rule}: on the front in {len(wins)} of {len(results)}."
    return text


def rule_ranks(results: list[dict], analyses: list[dict]) -> str:
    """Where the unified mix stands among the rules' mixes, per setting: its distinct units and
    area x time against the others', and its KL against the rules' mix closest to float
    (paired over the images)."""
    parts = []
    for result, analysis in zip(results, analyses):
        points = result["points"]
        own = {rule: points[info["index"]] for rule, info in analysis["rules"].items()}
        unified = own["unified"]
        others = [p for rule, p in own.items() if p is not unified]
        costlier = sum(p["cost"].area_time > unified["cost"].area_time for p in others)
        most_units = max(len(p["cost"].units) for p in others)
        closest = min(others, key=lambda p: p["kl"])
        diff, se = paired_difference(unified, closest)
        parts.append(
            f"{result['model']} {result['bits'].upper()}: {len(unified['cost'].units)} distinct "
            f"units (the other rules' mixes at most {most_units}), area x time above "
            f"{len(others) - costlier} of the {len(others)} other rules' mixes"
            + (f", KL {diff:+.2e} ± {se:.1e} against {point_name(closest)}'s"
               if diff > 0 else f", KL the lowest of the rules' by {-diff:.2e} ± {se:.1e} "
               f"(against {point_name(closest)})"))
    return "Among the rules' mixes (paired KL differences, unified minus the other): " \
        + "; ".join(parts) + "."


def section(results: list[dict], analyses: list[dict], plots: dict, seed: int,
            command: str) -> str:
    first = results[0]
    spec = {k: v for k, v in asdict(QuantSpec.parse(first["bits"])).items()
            if k not in ("weight_bits", "image_scale")}
    sizes = ", ".join(f"{name}: the first {n} test images"
                      for name, n in dict((r["model"], r["images"]) for r in results).items())
    body = (
        "Each point is one mix (one candidate per non-linear layer) at *stage 2*: every layer's "
        "config calibrated on the float model's activations of the calibration split, which is "
        "the config stage 1 scored. The rules' mixes get exactly that treatment too, so the "
        "front compares choices, not calibrations; stage 3 (the recalibration on the mix's own "
        "integer activations, which the random mixes do not get) is reported beside the rules "
        "for reference and is not on the front. Cost of the mix: `select.assignment_cost` "
        "(each distinct non-linear unit's area once, cycles per image over the non-linear "
        "layers, time at the slowest unit's Fmax); the front is drawn on area x time "
        "(LUT-equivalent µs), and the (area, cycles, KL) column repeats the test with the "
        "three measures separately. Fidelity on the evaluation images "
        f"({sizes}): mean logit KL(float || integer) ± its standard error (primary), top-1 "
        "agreement with the float model, logit ASQNR; top-1 accuracy ± its binomial standard "
        f"error alongside. Random mixes: {first['random']} per (model, bits), seed {seed} "
        "(`numpy.random.default_rng`, the same mixes at both bit widths): per kind a random "
        "non-empty subset of its candidates, then per layer a uniform pick from it; repeats "
        "and the single-method mixes drawn again. A rule's mix is *on the front* when no "
        "evaluated mix is both no costlier and no further from float and better in one of the "
        f"two. Quantization options: the defaults ({', '.join(f'{k}={v}' for k, v in spec.items())}"
        ").\n\n"
        "Mix codes: per block the methods of norm1, softmax, norm2, GELU, then the final norm; "
        "p = iptq, v = ivit, b = ibert, f = fqvit.\n")
    for result, analysis in zip(results, analyses):
        body += (f"\n### {result['model']} {result['bits'].upper()}\n\n"
                 f"{len(result['points'])} distinct mixes evaluated; float top-1 on these "
                 f"{result['images']} images {top1_cell(result['float_top1'], result['images'])}"
                 f" %.\n\n" + rule_table(result, analysis) + "\n")
        rows = dominance_rows(result, analysis)
        if rows:
            body += ("\nWhat dominates each rule's mix that is off the front (the dominating "
                     "mix closest to float; KL difference paired over the images, dominator "
                     "minus rule):\n\n"
                     + markdown_table(["rule", "dominated by", "its mix", "distinct units",
                                       "area x time", "KL difference ± s.e."], rows) + "\n")
    for model, path in plots.items():
        body += f"\n![pareto {model}]({path})\n"
    body += "\n" + conclusion(results, analyses)
    return body


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--bits", nargs="+", default=list(BITS), choices=BITS)
    parser.add_argument("--random", type=int, default=RANDOM_MIXES)
    parser.add_argument("--images", type=int, default=None,
                        help="evaluation images per model (default: digits 400, mnist 200)")
    parser.add_argument("--workers", type=int, default=WORKERS, choices=(1, 2))
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--save", type=Path, default=None,
                        help="also pickle the evaluated points to this file")
    parser.add_argument("--load", type=Path, default=None,
                        help="render the points a --save run pickled instead of evaluating")
    parser.add_argument("--no-write", action="store_true",
                        help="print the section instead of writing docs/results.md and plots")
    args = parser.parse_args(argv)
    images = {m: args.images for m in MODELS} if args.images else None
    if args.load:
        with open(args.load, "rb") as file:
            results = pickle.load(file)
    else:
        results = run(args.models, args.bits, args.random, images, args.workers, args.seed)
    if args.save:
        with open(args.save, "wb") as file:
            pickle.dump(results, file)
    analyses = [analyse(r) for r in results]
    shown = list(argv or [])
    for option in ("--save", "--load"):  # storing or reusing the points changes nothing
        if option in shown:
            del shown[shown.index(option):shown.index(option) + 2]
    command = " ".join(["python bench/pareto.py", *shown])
    plots = {}
    for model in dict.fromkeys(r["model"] for r in results):
        mine = [(r, a) for r, a in zip(results, analyses) if r["model"] == model]
        target = (IMAGES if not args.no_write else Path("/tmp")) / f"pareto_{model}.png"
        path = plot([r for r, _ in mine], [a for _, a in mine], target)
        plots[model] = f"img/{path.name}"
    body = section(results, analyses, plots, args.seed, command)
    if args.no_write:
        print(body)
        return 0
    path = write_section("pareto", "Pareto bench: the rules' mixes among random mixes",
                         command, body)
    print(f"wrote {path} and {', '.join(plots.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or None))
