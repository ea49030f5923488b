"""ADFQ-ViT end to end on a model: calibrate the quantizers of :mod:`intvit.golden_model.adfq`,
reconstruct with :mod:`intvit.golden_model.reconstruct` (AMO), evaluate against the float model."""
import time

from .adfq import (ALPHA_FC1, ALPHA_QKV, COMPONENTS, AdfqSettings, build_adfq, logit_kl,
                   logit_sqnr_db, logits_of, outlier_ratios, parse_components, single_thread)
from .reconstruct import reconstruct_model

DEFAULT_ITERATIONS = 500
"""Reconstruction iterations per module for the bundled model (the paper: 3000 on DeiT/ViT);
the whole run stays well under two minutes on two cores (bench/adfq.py measures it)."""


def quantize_adfq(model, splits: dict, bits: str = "w4a4", components=COMPONENTS,
                  iterations: int = DEFAULT_ITERATIONS, *, alpha_qkv: float = ALPHA_QKV,
                  alpha_fc1: float = ALPHA_FC1, outliers: str = "float",
                  log_base: str = "sqrt2", align_zero: bool = True, seed: int = 0,
                  progress=None) -> dict:
    """ADFQ-ViT on ``model``: calibrate on ``splits["calibration"]``, reconstruct (``amo``),
    evaluate on ``splits["test"]``.

    ``components``: names from :data:`COMPONENTS` (an iterable, ``"all"``, ``"none"`` or
    ``"poq,amo"``); none gives plain uniform PTQ. ``progress(done, total, module)`` is called
    after each reconstructed module. Returns a JSON-ready dict: settings, test accuracy (float
    and quantized), fidelity to the float model (share of equal predictions, logit SQNR in dB),
    outlier ratio per POQ layer on the test images, reconstruction seconds.
    """
    settings = AdfqSettings(bits=str(bits).lower(), components=parse_components(components),
                            alpha_qkv=alpha_qkv, alpha_fc1=alpha_fc1, outliers=outliers,
                            iterations=iterations, log_base=str(log_base),
                            align_zero=align_zero)
    calibration, test = splits["calibration"], splits["test"]
    model.eval()
    with single_thread():
        qmodel = build_adfq(model, calibration.images, settings)
        seconds = 0.0
        if "amo" in settings.components:
            start = time.perf_counter()
            reconstruct_model(qmodel, model, calibration.images,
                              iterations=settings.iterations, seed=seed, progress=progress)
            seconds = time.perf_counter() - start
        return _report(settings, model, qmodel, calibration, test, seconds)


def _report(settings, model, qmodel, calibration, test, seconds) -> dict:
    reference, approx = logits_of(model, test.images), logits_of(qmodel, test.images)
    return {"method": "adfq", "bits": settings.bits,
            "components": [c for c in COMPONENTS if c in settings.components],
            "alpha": {"qkv": settings.alpha_qkv, "fc1": settings.alpha_fc1},
            "outliers": settings.outliers, "log_base": settings.log_base,
            "align_zero": settings.align_zero,
            "iterations": settings.iterations if "amo" in settings.components else 0,
            "calibration_images": len(calibration),
            "accuracy": {"float": float((reference.argmax(-1) == test.labels).double().mean()),
                         "quantized": float((approx.argmax(-1) == test.labels).double().mean())},
            "fidelity": {"agreement": float((approx.argmax(-1) == reference.argmax(-1))
                                            .double().mean()),
                         "logit_sqnr_db": logit_sqnr_db(reference, approx),
                         "logit_kl": logit_kl(reference, approx)},
            "outlier_ratio": outlier_ratios(qmodel, test.images),
            "reconstruction_seconds": seconds}
