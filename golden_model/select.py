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

from . import registry
from .costs import CostTable, LayerShape, MixCost, mix_cost
from .errors import IntvitError
from .calibration import input_scale, quantize_input
from .metrics import OmegaWeights, Terms, asqnr, choose, kl_mean_and_se, omega
from .qvit import (QuantSpec, build_integer_vit, default_assignment, float_taps, integer_taps,
                   quantize_images)
from .vit import nonlinear_layers

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
    """The candidate as a float -> float function (quantize, integer run, dequantize)."""
    operator = registry.get(op_name)

    def apply(x: torch.Tensor) -> torch.Tensor:
        y = operator.run(config, quantize_input(config, x.double().numpy()))
        return torch.from_numpy(config.dequantize_output(y)).to(x.dtype)
    return apply


def candidates_of(kind: str) -> list[str]:
    return [op.name for op in registry.by_kind(kind)]


def layer_shapes(model_config) -> dict:
    """``{layer: LayerShape}``: the rows one image sends through each non-linear layer's unit.
    ``N`` tokens (patches + class token): softmax ``heads x N`` rows of ``N``; LayerNorm ``N``
    rows of the width; GELU ``N x hidden`` elements (as ``N`` rows of ``hidden``)."""
    tokens = (model_config.img_size // model_config.patch_size) ** 2 + 1
    hidden = int(model_config.embed_dim * model_config.mlp_ratio)
    rows = {"softmax": LayerShape(tokens, model_config.num_heads * tokens),
            "layernorm": LayerShape(model_config.embed_dim, tokens),
            "gelu": LayerShape(hidden, tokens)}
    return {layer: rows[kind] for layer, kind in nonlinear_layers(model_config).items()}


def assignment_cost(cost_table: CostTable, assignment: dict, model_config) -> MixCost:
    """The cost of a mix as the hardware sees it (:class:`intvit.golden_model.costs.MixCost`:
    each distinct unit's area once, and the cycles per image over the non-linear layers; the
    stand-in until the accelerator model of issue #18 exists)."""
    return mix_cost(cost_table, assignment, layer_shapes(model_config))


def score_layers(model, calibration_images, spec: QuantSpec, cost_table: CostTable,
                 weights: OmegaWeights = OmegaWeights(), progress=None) -> dict:
    """Stage 1: ``{layer: {op: CandidateScore}}`` for every non-linear layer and candidate.
    The cost table must have every candidate (checked first: a one-line error)."""
    config = model.config
    layers = nonlinear_layers(config)
    cost_table.require(op for kind in set(layers.values()) for op in candidates_of(kind))
    ftaps = float_taps(model, calibration_images)
    builds = {m: build_integer_vit(model, None, default_assignment(config, m), spec, ftaps)
              for m in METHODS}
    base = builds[BASE_METHOD]
    btaps = integer_taps(base, quantize_images(calibration_images.numpy(), spec.image_scale))
    scores = {}
    for index, (layer, kind) in enumerate(layers.items()):
        x_float = ftaps[layer]
        x_base = btaps[layer]
        shape = LayerShape.of(x_float.shape[1:])
        block = int(layer.split(".")[1]) if layer.startswith("blocks.") else config.depth
        entry = torch.from_numpy(ftaps[f"blocks.{block}.norm1" if block < config.depth
                                       else "norm"]).float()
        terms, rows = {}, {}
        for op_name in candidates_of(kind):
            method = op_name.split("/")[1]
            cfg = builds[method].plans[layer].config if method in builds else None
            if cfg is None or builds[method].plans[layer].op != op_name:
                continue
            operator = registry.get(op_name)
            q_in = quantize_input(cfg, x_base)
            y_out = cfg.dequantize_output(operator.run(cfg, q_in))
            sqnr_in = asqnr(x_float, q_in * input_scale(cfg))
            sqnr_out = asqnr(operator.reference(cfg, x_float), y_out)
            with torch.no_grad():  # from the layer's block input onward (cached)
                z = model.forward_from(block, entry, replace={layer: candidate_function(op_name,
                                                                                          cfg)})
            p, p_se = kl_mean_and_se(ftaps["logits"], z.double().numpy())
            c = cost_table.layer_cost(op_name, shape)
            terms[op_name] = Terms(sqnr_out, p, c, p_se)
            rows[op_name] = CandidateScore(op_name, sqnr_in, sqnr_out, sqnr_out - sqnr_in, p, c,
                                           perturbation_se=p_se,
                                           cycles=cost_table.cycles(op_name, shape),
                                           area=cost_table.entry(op_name)["lut_equivalent"])
        omegas = omega(terms, weights)
        scores[layer] = {name: CandidateScore(**{**asdict(row), "omega": omegas[name]})
                         for name, row in rows.items()}
        if progress:
            progress(index + 1, len(layers), layer)
    return scores


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


def calibrate_mix(model, calibration_images, assignment: dict, spec: QuantSpec):
    """Stage 3: build the mix on float activations, then rebuild it calibrated on its own
    integer activations (dequantized)."""
    first = build_integer_vit(model, calibration_images, assignment, spec)
    own = integer_taps(first, quantize_images(calibration_images.numpy(), spec.image_scale))
    return build_integer_vit(model, calibration_images, assignment, spec, taps=own)


def accuracy(qmodel, images, labels) -> float:
    """Top-1 accuracy of the integer model on float images of the bundled dataset."""
    predictions = qmodel.predict(quantize_images(images.numpy(), qmodel.spec.image_scale))
    return float(np.mean(predictions == labels.numpy()))


@dataclass
class QuantizationResult:
    """What ``intvit quantize`` computes and writes to ``quant.json``."""
    spec: QuantSpec
    rule: str
    assignment: dict
    scores: dict
    accuracy: dict
    model: object = None
    cost: MixCost | None = None

    def to_json(self) -> dict:
        cost = None if self.cost is None else {**asdict(self.cost), "units": list(self.cost.units)}
        return {"spec": asdict(self.spec), "rule": self.rule, "assignment": self.assignment,
                "accuracy": self.accuracy, "cost": cost,
                "scores": {layer: {op: asdict(s) for op, s in c.items()}
                           for layer, c in self.scores.items()}}


def quantize_model(model, splits: dict, spec: QuantSpec, rule: str = "unified",
                   weights: OmegaWeights = OmegaWeights(), cost_table: CostTable | None = None,
                   scores: dict | None = None, progress=None) -> QuantizationResult:
    """The three stages on ``splits["calibration"]``, evaluated on ``splits["test"]``:
    accuracy of the float model, of the stage-2 mix and of the stage-3 (recalibrated) mix, and
    the cost of the mix (:func:`assignment_cost`, from ``cost_table``, default the measured
    one); the stage-3 model is kept."""
    from .costs import load_cost_table

    calibration, test = splits["calibration"], splits["test"]
    cost_table = cost_table or load_cost_table()
    if scores is None:
        scores = score_layers(model, calibration.images, spec, cost_table, weights, progress)
    assignment = assign(scores, rule, model.config, weights)
    cost = assignment_cost(cost_table, assignment, model.config)
    stage2 = build_integer_vit(model, calibration.images, assignment, spec)
    stage3 = calibrate_mix(model, calibration.images, assignment, spec)
    with torch.no_grad():
        float_acc = float((model(test.images).argmax(-1) == test.labels).float().mean())
    return QuantizationResult(spec, rule, assignment, scores,
                              {"float": float_acc,
                               "stage2": accuracy(stage2, test.images, test.labels),
                               "stage3": accuracy(stage3, test.images, test.labels)},
                              stage3, cost)
