"""Choosing one integer candidate per non-linear layer: IPTQ-ViT's three stages and the rules we
compare it with.

Stage 1 (score): every layer, every candidate of its kind, on the calibration images:
  - ``Q`` = ASQNR (dB) of the layer's output against the float model's output of that layer, the
    candidate fed with the layer's input as the *base* integer model (all-IPTQ candidates)
    computes it, quantized by the candidate's own input quantizer;
  - ``sqnr_diff`` = ``Q`` minus the ASQNR of that quantized input (Mixed-NLQ eq. 11);
  - ``P`` = mean KL between the float model's output and the float model's output with only this
    layer replaced by the candidate (quantize, integer run, dequantize), re-run from the cached
    input of the layer's block onward, with its standard error over the images;
  - ``C`` = the candidate's cost at the layer's shape: LUT-equivalents x the time its unit takes
    for one image's rows of this layer at the unit's Fmax
    (:meth:`intvit.golden_model.costs.CostTable.layer_cost`);
  - ``Omega`` from the three (:func:`intvit.golden_model.metrics.omega`).
Stage 2 (assign): the rule picks one candidate per layer; the unified rule takes the highest
Omega, a tie within the noise of ``P`` going to the cheaper (:func:`intvit.golden_model.metrics.
choose`).
Stage 3 (calibrate the mix): the chosen mix is rebuilt with every activation scale and
non-linear config calibrated on the mixed integer model's own (dequantized) activations instead
of the float model's.

Rules: ``unified`` (IPTQ-ViT: highest Omega), ``sqnr-diff`` (Mixed-NLQ: lowest SQNR diff among I-BERT,
FQ-ViT and I-ViT, the paper's wording), ``sqnr-output`` (highest output ASQNR among those three)
and the single-method baselines ``all-iptq``, ``all-ivit``, ``all-ibert``, ``all-fqvit``.
"""
from dataclasses import asdict, dataclass

import numpy as np
import torch

from . import qswin, registry, swin
from .costs import CostTable, LayerShape, MixCost, mix_cost
from .errors import IntvitError
from .calibration import input_scale, quantize_input
from .metrics import (OmegaWeights, Terms, asqnr, asqnr_of, choose, kl_per_image, mean_and_se,
                      omega, signal_to_noise)
from .qvit import (QuantSpec, build_integer_vit, calibration_tap_names, default_assignment,
                   float_taps, integer_statistics, integer_taps, model_layers, quantize_images)
from .tapstats import batch_size, batches, float_statistics

METHODS = ("iptq", "ivit", "ibert", "fqvit")
MIXED_NLQ_METHODS = ("ibert", "fqvit", "ivit")
"""Mixed Non-linear Quantization chooses among these three (its Sec. 3)."""
RULES = ("unified", "sqnr-diff", "sqnr-output") + tuple(f"all-{m}" for m in METHODS)
BASE_METHOD = "iptq"


@dataclass(frozen=True)
class CandidateScore:
    op: str
    sqnr_in: float
    sqnr_out: float
    sqnr_diff: float
    perturbation: float
    cost: float
    omega: float = 0.0
    perturbation_se: float = 0.0
    cycles: int = 0
    area: float = 0.0

    @property
    def terms(self) -> Terms:
        return Terms(self.sqnr_out, self.perturbation, self.cost, self.perturbation_se)


def candidate_function(op_name: str, config):
    """The candidate as a float -> float function (quantize, integer run, dequantize); a
    softmax also takes the mask ``keep`` of a shifted Swin window."""
    operator = registry.get(op_name)

    def apply(x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        q = quantize_input(config, x.double().numpy())
        y = operator.run(config, q) if keep is None else operator.run(config, q,
                                                                     keep=keep.numpy())
        return torch.from_numpy(config.dequantize_output(y)).to(x.dtype)
    return apply


def build_integer(model, calibration_images, assignment: dict, spec: QuantSpec, taps=None):
    """The integer model of a ViT (:func:`~.qvit.build_integer_vit`) or a Swin
    (:func:`~.qswin.build_integer_swin`)."""
    if isinstance(model, swin.SwinTransformer):
        return qswin.build_integer_swin(model, calibration_images, assignment, spec, taps)
    return build_integer_vit(model, calibration_images, assignment, spec, taps)


def calibration_taps(model_config) -> set:
    """The taps a ViT's or a Swin's integer build calibrates on."""
    if isinstance(model_config, swin.SwinConfig):
        return qswin.calibration_tap_names(model_config)
    return calibration_tap_names(model_config)


def candidates_of(kind: str) -> list[str]:
    return [op.name for op in registry.by_kind(kind)]


def layer_shapes(model_config) -> dict:
    """``{layer: LayerShape}``: the rows one image sends through each non-linear layer's unit.
    ``N`` tokens (patches + class token): softmax ``heads x N`` rows of ``N``; LayerNorm ``N``
    rows of the width; GELU ``N x hidden`` elements (as ``N`` rows of ``hidden``). A Swin's
    windows: :func:`~.qswin.layer_shapes`."""
    if isinstance(model_config, swin.SwinConfig):
        return qswin.layer_shapes(model_config, LayerShape)
    tokens = (model_config.img_size // model_config.patch_size) ** 2 + 1
    hidden = int(model_config.embed_dim * model_config.mlp_ratio)
    rows = {"softmax": LayerShape(tokens, model_config.num_heads * tokens),
            "layernorm": LayerShape(model_config.embed_dim, tokens),
            "gelu": LayerShape(hidden, tokens)}
    return {layer: rows[kind] for layer, kind in model_layers(model_config).items()}


def assignment_cost(cost_table: CostTable, assignment: dict, model_config) -> MixCost:
    """The cost of a mix as the hardware sees it (:class:`intvit.golden_model.costs.MixCost`:
    each distinct unit's area once, and the cycles per image over the non-linear layers; the
    stand-in until the accelerator model of issue #18 exists)."""
    return mix_cost(cost_table, assignment, layer_shapes(model_config))


def score_layers(model, calibration_images, spec: QuantSpec, cost_table: CostTable,
                 weights: OmegaWeights = OmegaWeights(), progress=None, stats=None,
                 score_images=None, batch: int | None = None) -> dict:
    """Stage 1: ``{layer: {op: CandidateScore}}`` for every non-linear layer and candidate.

    The candidates are calibrated on ``stats`` (the float model's
    :class:`~intvit.golden_model.tapstats.TapStatistics` on ``calibration_images``, gathered
    when omitted); the terms are measured on ``score_images`` (default: the calibration images)
    batch by batch, each batch's float and base-model activations held only while it is scored.
    ``progress(done, total, layer)`` after each layer of each batch. The cost table must have
    every candidate (checked first: a one-line error)."""
    config = model.config
    layers = model_layers(config)
    cost_table.require(op for kind in set(layers.values()) for op in candidates_of(kind))
    if stats is None:
        stats = float_statistics(model, calibration_images, calibration_taps(config), batch)
    builds = {m: build_integer(model, None, default_assignment(config, m), spec, stats)
              for m in METHODS}
    images = calibration_images if score_images is None else score_images
    terms = _TermSums()
    size = max(1, batch_size(config, batch) // 2)  # float and integer taps of a batch
    steps = -(-len(images) // size) * len(layers)
    if progress:
        progress(0, steps, "")
    for number, (start, stop) in enumerate(batches(len(images), size)):
        part = images[start:stop]
        ftaps = float_taps(model, part)
        btaps = integer_taps(builds[BASE_METHOD], quantize_images(part.numpy(), spec.image_scale))
        for index, layer in enumerate(layers):
            for op_name, plan in _candidate_plans(builds, layer, layers[layer]):
                terms.add(layer, op_name, _batch_terms(model, op_name, plan.config, layer,
                                                       ftaps, btaps))
            if progress:
                progress(number * len(layers) + index + 1, steps, layer)
    return {layer: _layer_scores(terms, layer, cost_table, weights, shape)
            for layer, shape in layer_shapes(config).items()}


def _candidate_plans(builds: dict, layer: str, kind: str):
    """``(op, LayerPlan)`` of each candidate of ``kind`` that a single-method build assigns to
    ``layer`` (FQ-ViT has no GELU of its own: its build takes I-BERT's)."""
    for op_name in candidates_of(kind):
        build = builds.get(op_name.split("/")[1])
        if build is not None and build.plans[layer].op == op_name:
            yield op_name, build.plans[layer]


def _batch_terms(model, op_name: str, cfg, layer: str, ftaps: dict, btaps: dict) -> dict:
    """One batch's per-image terms of one candidate at one layer: input and output
    signal-to-noise ratios (for ASQNR) and the KL of the logits with only this layer replaced,
    re-run from the cached input of the layer's block onward."""
    operator = registry.get(op_name)
    x_float = ftaps[layer]
    q_in = quantize_input(cfg, btaps[layer])
    keep = ftaps.get(layer.replace(".softmax", ".keep")) if layer.endswith(".softmax") else None
    if keep is None:
        y_out, x_reference = operator.run(cfg, q_in), x_float
    else:  # a shifted Swin window: masked positions out of the row, as the models run it
        keep = keep > 0
        y_out, x_reference = operator.run(cfg, q_in, keep=keep), np.where(keep, x_float, -np.inf)
    y_out = cfg.dequantize_output(y_out)
    with torch.no_grad():
        z = _rerun(model, layer, ftaps, {layer: candidate_function(op_name, cfg)})
    return {"in": signal_to_noise(x_float, q_in * input_scale(cfg)),
            "out": signal_to_noise(operator.reference(cfg, x_reference), y_out),
            "kl": kl_per_image(ftaps["logits"], z.double().numpy())}


def _rerun(model, layer: str, ftaps: dict, replace: dict) -> torch.Tensor:
    """The float model's logits with ``replace`` swapped in, re-run from the cached input of
    ``layer``'s block (a Swin: of its block, merging or embedding, :func:`~.swin.entry_tap`)."""
    if isinstance(model, swin.SwinTransformer):
        entry = swin.entry_tap(layer)
        return model.forward_from(entry, torch.from_numpy(ftaps[entry]).float(), replace=replace)
    depth = model.config.depth
    block = int(layer.split(".")[1]) if layer.startswith("blocks.") else depth
    entry = torch.from_numpy(ftaps[f"blocks.{block}.norm1" if block < depth else "norm"]).float()
    return model.forward_from(block, entry, replace=replace)


class _TermSums:
    """Per-image terms of every (layer, candidate), gathered over the batches."""

    def __init__(self):
        self.parts: dict = {}

    def add(self, layer: str, op_name: str, terms: dict) -> None:
        entry = self.parts.setdefault((layer, op_name), {key: [] for key in terms})
        for key, values in terms.items():
            entry[key].append(values)

    def candidates(self, layer: str) -> dict:
        return {op: {key: np.concatenate(values) for key, values in entry.items()}
                for (name, op), entry in self.parts.items() if name == layer}


def _layer_scores(terms: _TermSums, layer: str, cost_table: CostTable,
                  weights: OmegaWeights, shape: LayerShape) -> dict:
    """The :class:`CandidateScore` of each candidate at ``layer``, Omega included."""
    rows = {}
    for op_name, values in terms.candidates(layer).items():
        sqnr_in, sqnr_out = asqnr_of(values["in"]), asqnr_of(values["out"])
        p, p_se = mean_and_se(values["kl"])
        rows[op_name] = CandidateScore(op_name, sqnr_in, sqnr_out, sqnr_out - sqnr_in, p,
                                       cost_table.layer_cost(op_name, shape),
                                       perturbation_se=p_se,
                                       cycles=cost_table.cycles(op_name, shape),
                                       area=cost_table.entry(op_name)["lut_equivalent"])
    omegas = omega({name: row.terms for name, row in rows.items()}, weights)
    return {name: CandidateScore(**{**asdict(row), "omega": omegas[name]})
            for name, row in rows.items()}


def assign(scores: dict, rule: str, model_config,
           weights: OmegaWeights = OmegaWeights()) -> dict:
    """Stage 2: one candidate per layer by ``rule``; ``unified`` recomputes Omega under
    ``weights`` from the stored terms and applies the tie rule (:func:`intvit.golden_model.
    metrics.choose`)."""
    if rule not in RULES:
        raise IntvitError(f"unknown selection rule {rule!r}; use one of {', '.join(RULES)}")
    if rule.startswith("all-"):
        return default_assignment(model_config, rule[4:])
    chosen = {}
    for layer, candidates in scores.items():
        if rule == "unified":
            chosen[layer] = choose({op: s.terms for op, s in candidates.items()}, weights).name
            continue
        pool = [s for s in candidates.values() if s.op.split("/")[1] in MIXED_NLQ_METHODS]
        if rule == "sqnr-diff":
            chosen[layer] = min(pool, key=lambda s: s.sqnr_diff).op
        else:
            chosen[layer] = max(pool, key=lambda s: s.sqnr_out).op
    return chosen


def calibrate_mix(model, calibration_images, assignment: dict, spec: QuantSpec, stats=None,
                  batch: int | None = None, progress=None):
    """Stage 3: build the mix on float activations (``stats``, gathered when omitted), then
    rebuild it calibrated on its own integer activations (dequantized), gathered batch by
    batch."""
    names = calibration_taps(model.config)
    if stats is None:
        stats = float_statistics(model, calibration_images, names, batch)
    first = build_integer(model, None, assignment, spec, stats)
    codes = quantize_images(calibration_images.numpy(), spec.image_scale)
    own = integer_statistics(first, codes, names, integer_batch(model.config, batch), progress)
    return build_integer(model, None, assignment, spec, taps=own)


INTEGER_BATCH = 8
"""Images per batch through the integer model for its logits alone."""


def integer_batch(config, batch: int | None = None) -> int:
    """Images per batch through the integer model when its activations are gathered: half the
    float model's batch (the int64 codes and their float64 values of every tap)."""
    return max(1, batch_size(config, batch) // 2)


def integer_logits(qmodel, images) -> np.ndarray:
    """The integer model's int logits on float ``images`` (quantized at its input scale),
    :data:`INTEGER_BATCH` images at a time."""
    codes = quantize_images(np.asarray(images), qmodel.spec.image_scale)
    return np.concatenate([qmodel.forward(codes[start:stop])
                           for start, stop in batches(len(codes), INTEGER_BATCH)])


def accuracy(qmodel, images, labels) -> float:
    """Top-1 accuracy of the integer model on float images."""
    predictions = integer_logits(qmodel, images.numpy()).argmax(-1)
    return float(np.mean(predictions == np.asarray(labels)))


def fidelity(float_logits, logits, labels=None) -> dict:
    """How close an integer model's dequantized ``logits`` are to the float model's: logit
    ASQNR (dB), mean KL of the output distributions with its standard error, top-1 agreement
    and, with ``labels``, top-1 accuracy of both."""
    z_float, z_int = np.asarray(float_logits, np.float64), np.asarray(logits, np.float64)
    kl, kl_se = mean_and_se(kl_per_image(z_float, z_int))
    result = {"images": len(z_float), "logit_sqnr_db": asqnr(z_float, z_int), "kl": kl,
              "kl_se": kl_se,
              "agreement": float(np.mean(z_float.argmax(-1) == z_int.argmax(-1)))}
    if labels is not None:
        labels = np.asarray(labels)
        result["float_accuracy"] = float(np.mean(z_float.argmax(-1) == labels))
        result["accuracy"] = float(np.mean(z_int.argmax(-1) == labels))
    return result


def float_logits(model, images, batch: int | None = None) -> np.ndarray:
    """The float model's logits, batch by batch."""
    size = batch_size(model.config, batch)
    with torch.no_grad():
        return np.concatenate([model(images[start:stop]).double().numpy()
                               for start, stop in batches(len(images), size)])


@dataclass
class QuantizationResult:
    """What ``intvit quantize`` computes and writes to ``quant.json``: ``accuracy`` holds top-1
    of the float model, the stage-2 and the stage-3 mix on the evaluation images (against their
    labels; for a user's checkpoint without labels, against the float model's predictions),
    ``fidelity`` the stage-3 mix's logits against float (:func:`fidelity`)."""
    spec: QuantSpec
    rule: str
    assignment: dict
    scores: dict
    accuracy: dict
    model: object = None
    cost: MixCost | None = None
    fidelity: dict | None = None
    images: dict | None = None

    def to_json(self) -> dict:
        cost = None if self.cost is None else {**asdict(self.cost), "units": list(self.cost.units)}
        return {"spec": asdict(self.spec), "rule": self.rule, "assignment": self.assignment,
                "accuracy": self.accuracy, "fidelity": self.fidelity, "images": self.images,
                "cost": cost,
                "scores": {layer: {op: asdict(s) for op, s in c.items()}
                           for layer, c in self.scores.items()}}


def quantize_model(model, splits: dict, spec: QuantSpec, rule: str = "unified",
                   weights: OmegaWeights = OmegaWeights(), cost_table: CostTable | None = None,
                   scores: dict | None = None, progress=None, batch: int | None = None,
                   stage_progress=None) -> QuantizationResult:
    """The three stages, calibrated on ``splits["calibration"]``, scored on ``splits["score"]``
    (default: the calibration images) and evaluated on ``splits["test"]`` (its ``labels`` may
    be ``None``: then top-1 is agreement with float): accuracy of the float model, of the
    stage-2 and of the stage-3 mix, the stage-3 mix's fidelity to float, and the cost of the
    mix (:func:`assignment_cost`, from ``cost_table``, default the measured one); the stage-3
    model is kept. Activations are gathered batch by batch (memory does not grow with the
    number of images); ``stage_progress(stage, done, total)`` reports the long passes."""
    from .costs import load_cost_table

    calibration, test = splits["calibration"], splits["test"]
    score = splits.get("score", calibration)
    report = stage_progress or (lambda stage, done, total: None)
    cost_table = cost_table or load_cost_table()
    names = calibration_taps(model.config)
    stats = float_statistics(model, calibration.images, names, batch,
                             lambda done, total: report("float calibration", done, total))
    if scores is None:
        scores = score_layers(model, calibration.images, spec, cost_table, weights, progress,
                              stats=stats, score_images=score.images, batch=batch)
    assignment = assign(scores, rule, model.config, weights)
    cost = assignment_cost(cost_table, assignment, model.config)
    stage2 = build_integer(model, None, assignment, spec, stats)
    stage3 = calibrate_mix(model, calibration.images, assignment, spec, stats, batch,
                           lambda done, total: report("stage 3 calibration", done, total))
    logits = float_logits(model, test.images, batch)
    given = None if test.labels is None else test.labels.numpy()
    labels = logits.argmax(-1) if given is None else given
    z3 = integer_logits(stage3, test.images.numpy())
    accuracies = {"float": float(np.mean(logits.argmax(-1) == labels)),
                  "stage2": accuracy(stage2, test.images, labels),
                  "stage3": float(np.mean(z3.argmax(-1) == labels))}
    stage3_fidelity = fidelity(logits, z3 * stage3.scales["logits"], given)
    counts = {"calibration": len(calibration.images), "score": len(score.images),
              "test": len(test.images)}
    return QuantizationResult(spec, rule, assignment, scores, accuracies, stage3, cost,
                              stage3_fidelity, counts)
