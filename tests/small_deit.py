"""A DeiT-shaped integer model small enough for quick tests of the fast forward (shared by
tests/test_exact_matmul.py and tests/test_exact_requant.py)."""
import torch

from intvit.golden_model.qvit import (QuantSpec, build_integer_vit, default_assignment,
                                      image_scale_for, quantize_images)
from intvit.golden_model.vit import ViTConfig, VisionTransformer

SMALL_DEIT = ViTConfig(img_size=32, patch_size=8, in_chans=3, num_classes=10, embed_dim=48,
                       depth=2, num_heads=3, mlp_ratio=24.0)
"""DeiT-shaped (class token, pre-norm blocks, 3 heads) but small: 17 tokens, width 48, and an
MLP of 1152 so that FC2 (``1152 * 127 * 127 >= 2**24``) leaves the single float32 GEMM."""


def small_integer_deit(method: str, seed: int, images: int, calibration: int, **options):
    """``(integer model, int8 images, assignment)``: :data:`SMALL_DEIT` with timm's
    initialisation under ``seed``, every layer on ``method``, calibrated on the first
    ``calibration`` of ``images`` random normal images (``options`` go to the QuantSpec)."""
    torch.manual_seed(seed)
    model = VisionTransformer(SMALL_DEIT).eval()
    x = torch.randn(images, 3, 32, 32)
    spec = QuantSpec(image_scale=image_scale_for(x), **options)
    assignment = default_assignment(SMALL_DEIT, method)
    qmodel = build_integer_vit(model, x[:calibration], assignment, spec)
    return qmodel, quantize_images(x.numpy(), spec.image_scale), assignment
