"""The bundled Swin's real, masked window rows (issue 19): the softmax input rows of its shifted
block (``layers.0.blocks.1``, whose windows straddle the rolled image edges and mask the
positions that are not neighbours), as test vectors for each softmax candidate's row unit.

Each candidate's config is that layer's in the integer Swin built with every non-linear layer on
that candidate (:func:`~intvit.golden_model.qvit.default_assignment`), its scales calibrated on
the float model's activations over the bundled calibration split; the rows and their ``keep``
masks are the model's own taps on test images (:func:`~intvit.golden_model.vectors.layer_vectors`
checks the golden outputs against the model's)."""
from intvit.golden_model.checkpoint import load_bundled
from intvit.golden_model.dataset import dataset, load_splits
from intvit.golden_model.qswin import build_integer_swin, calibration_tap_names
from intvit.golden_model.qvit import QuantSpec, default_assignment, quantize_images
from intvit.golden_model.tapstats import float_statistics
from intvit.golden_model.vectors import layer_vectors

MODEL = "mnist-swin"
SHIFTED_SOFTMAX = "layers.0.blocks.1.attn.softmax"
WINDOW_ROW = 49
"""Elements per row: a 7 x 7 window's tokens."""


class BundledSwinRows:
    """The bundled Swin, its calibration statistics (computed once) and test images."""

    def __init__(self):
        self.model, self.config, meta = load_bundled(MODEL)
        splits = load_splits(meta["split_seed"], MODEL)
        self.spec = QuantSpec(image_scale=dataset(MODEL).image_scale)
        calibration = splits["calibration"].images
        self.statistics = float_statistics(self.model, calibration,
                                           calibration_tap_names(self.config))
        self.calibration = calibration
        self.test_codes = quantize_images(splits["test"].images.numpy(), self.spec.image_scale)

    def vectors(self, method: str, images: int, row_limit: int):
        """The shifted block's softmax vectors (rows with their masks) under ``method``'s
        candidate, from the first ``images`` test images, at most ``row_limit`` rows."""
        qmodel = build_integer_swin(self.model, self.calibration,
                                    default_assignment(self.config, method), self.spec,
                                    taps=self.statistics)
        return layer_vectors(qmodel, self.test_codes[:images], [SHIFTED_SOFTMAX],
                             row_limit)[SHIFTED_SOFTMAX]
