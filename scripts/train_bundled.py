"""Train a bundled model (``--model digits``, ``mnist`` or ``mnist-swin``) and write its weights and
metadata into ``golden_model/data/`` (``bundled_vit.{pt,json}`` for digits, ``mnist_vit.{pt,json}``,
``mnist_swin.{pt,json}``).

Deterministic on one machine: fixed seeds, CPU, one thread (it fixes the reduction order, and
the machine's cores are shared), deterministic algorithms. Run with
``.venv/bin/python scripts/train_bundled.py --model digits`` (about 2.5 minutes on an idle core)
or ``--model mnist`` (the time it took is in ``mnist_vit.json``).

Recipes (:data:`RECIPES`), both AdamW, one linear warm-up epoch then cosine decay to zero, label
smoothing 0.1; the final epoch's weights are saved, no selection on the calibration or test split:

- ``digits``: 8x8 images, 2x2 patches, 4 blocks of width 64; lr 5e-3, weight decay 0.05, batch
  64, 60 epochs, no augmentation (a one-pixel random shift of these 8x8 images slowed training
  and lowered test accuracy).
- ``mnist``: 28x28 images, 4x4 patches, 6 blocks of width 96 with 3 heads; lr 2e-3, weight decay
  0.05, batch 64, each training image shifted by a random whole number of pixels in
  ``-SHIFT..SHIFT`` on each axis every epoch (background filled in), from a seeded generator.
- ``mnist-swin`` (issue 19): the mnist images and split, a Swin with 2x2 patches (14x14 tokens),
  windows of 7 (four windows, shifted in the second block of stage 0; stage 1 is one 7x7
  window), two stages of widths 32 and 64 with 2 and 4 heads, MLP ratio 2; lr 2e-3, weight decay
  0.05, batch 64, no augmentation, 20 epochs (the time it took is in ``mnist_swin.json``).
"""
import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from intvit.golden_model.dataset import SPLIT_SEED, Split, dataset, load_splits
from intvit.golden_model.files import atomic_output, write_text_atomic
from intvit.golden_model.swin import SwinConfig, SwinTransformer
from intvit.golden_model.vit import PRESETS, ViTConfig, VisionTransformer, parameter_count

DATA = Path(__file__).resolve().parent.parent / "golden_model" / "data"
TRAIN_SEED = 0
LABEL_SMOOTHING = 0.1


@dataclass(frozen=True)
class Recipe:
    """How one bundled model is trained, and the stem of its files in ``golden_model/data``."""

    config: ViTConfig
    preset: str | None
    stem: str
    epochs: int
    batch: int
    lr: float
    weight_decay: float
    shift: int
    """Largest random shift in pixels per axis (0: no augmentation)."""
    dataset: str | None = None
    """The bundled dataset it is trained on (``None``: the recipe's own name)."""

    def model(self):
        """A freshly initialized model of the recipe's config (a ViT or a Swin)."""
        if isinstance(self.config, SwinConfig):
            return SwinTransformer(self.config)
        return VisionTransformer(self.config)


RECIPES = {
    "digits": Recipe(PRESETS["bundled"], "bundled", "bundled_vit", epochs=60, batch=64, lr=5e-3,
                     weight_decay=0.05, shift=0),
    "mnist": Recipe(ViTConfig(img_size=28, patch_size=4, in_chans=1, num_classes=10,
                              embed_dim=96, depth=6, num_heads=3, mlp_ratio=2.0),
                    None, "mnist_vit", epochs=50, batch=64, lr=2e-3, weight_decay=0.05,
                    shift=2),
    "mnist-swin": Recipe(SwinConfig(img_size=28, patch_size=2, in_chans=1, num_classes=10,
                                    embed_dim=32, depths=(2, 2), num_heads=(2, 4),
                                    window_size=7, mlp_ratio=2.0),
                         None, "mnist_swin", epochs=20, batch=64, lr=2e-3, weight_decay=0.05,
                         shift=0, dataset="mnist"),
}


@torch.no_grad()
def accuracy(model: VisionTransformer, split: Split) -> float:
    model.eval()
    correct = sum((model(images).argmax(dim=1) == labels).sum().item()
                  for images, labels in zip(split.images.split(500), split.labels.split(500)))
    return correct / len(split)


def learning_rate(recipe: Recipe, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """Linear warm-up over the first epoch, then cosine decay to zero."""
    if step < steps_per_epoch:
        return recipe.lr * (step + 1) / steps_per_epoch
    progress = (step - steps_per_epoch) / max(1, total_steps - steps_per_epoch)
    return recipe.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def shifted(images: torch.Tensor, shift: int, background: float,
            generator: torch.Generator) -> torch.Tensor:
    """Each image moved by its own random ``(dy, dx)`` in ``-shift..shift`` pixels, the uncovered
    border filled with ``background`` (a whole code: the images stay on the input grid)."""
    count, _, side, _ = images.shape
    padded = F.pad(images, (shift,) * 4, value=background)
    offsets = torch.randint(0, 2 * shift + 1, (2, count), generator=generator)
    span = torch.arange(side)
    rows = (offsets[0, :, None] + span)[:, :, None]
    cols = (offsets[1, :, None] + span)[:, None, :]
    return padded[torch.arange(count)[:, None, None], 0, rows, cols].unsqueeze(1)


def train(name: str, epochs: int) -> tuple[VisionTransformer, dict, float]:
    recipe = RECIPES[name]
    torch.manual_seed(TRAIN_SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    splits = load_splits(SPLIT_SEED, recipe.dataset or name)
    train_split = splits["train"]
    background = float(train_split.images.min())
    model = recipe.model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr,
                                  weight_decay=recipe.weight_decay)
    generator = torch.Generator().manual_seed(TRAIN_SEED)
    shifts = torch.Generator().manual_seed(TRAIN_SEED + 1)
    steps_per_epoch = -(-len(train_split) // recipe.batch)
    total_steps = epochs * steps_per_epoch
    print(f"{name}: {parameter_count(model)} parameters, {len(train_split)} training images")
    start, step = time.perf_counter(), 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_split), generator=generator)
        total_loss = 0.0
        for batch in order.split(recipe.batch):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(recipe, step, steps_per_epoch, total_steps)
            images = train_split.images[batch]
            if recipe.shift:
                images = shifted(images, recipe.shift, background, shifts)
            loss = F.cross_entropy(model(images), train_split.labels[batch],
                                   label_smoothing=LABEL_SMOOTHING)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(batch)
            step += 1
        print(f"epoch {epoch + 1:3d}/{epochs}  loss {total_loss / len(train_split):.4f}  "
              f"calibration acc {accuracy(model, splits['calibration']):.3f}  "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    seconds = time.perf_counter() - start
    accuracies = {split: accuracy(model, images) for split, images in splits.items()}
    return model, accuracies, seconds


def metadata(name: str, model: VisionTransformer, accuracies: dict, seconds: float,
             epochs: int) -> dict:
    """What ``golden_model/data/STEM.json`` records: enough to load, check and retrain."""
    recipe, data = RECIPES[name], dataset(RECIPES[name].dataset or name)
    meta = {
        "config": model.config.to_dict(),
        "preset": recipe.preset,
        "dataset": data.description,
        "split_seed": SPLIT_SEED,
        "split_sizes": data.split_sizes,
        "float_accuracy": accuracies,
        "parameters": parameter_count(model),
        "training": {"seed": TRAIN_SEED, "epochs": epochs, "batch": recipe.batch,
                     "lr": recipe.lr, "weight_decay": recipe.weight_decay,
                     "label_smoothing": LABEL_SMOOTHING, "seconds": round(seconds, 1),
                     "torch": torch.__version__},
    }
    if name != "digits":
        meta.update(model=name, image_scale=data.image_scale)
        if isinstance(model.config, SwinConfig):
            meta.update(architecture="swin", dataset_name=recipe.dataset)
        meta["training"].update(shift=recipe.shift, threads=1,
                                command=f"python scripts/train_bundled.py --model {name}"
                                + ("" if epochs == recipe.epochs else f" --epochs {epochs}"))
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(RECIPES), default="digits",
                        help="which bundled model to train (default digits)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs (default: the recipe's, 60 for digits, 50 for mnist, 20 for "
                             "mnist-swin)")
    parser.add_argument("--out", type=Path, default=DATA, help="output directory")
    args = parser.parse_args()
    recipe = RECIPES[args.model]
    epochs = args.epochs or recipe.epochs
    model, accuracies, seconds = train(args.model, epochs)
    weights = args.out / f"{recipe.stem}.pt"
    state = model.state_dict()
    with atomic_output(weights, "wb") as stream:
        torch.save(state, stream)
    meta = metadata(args.model, model, accuracies, seconds, epochs)
    write_text_atomic(args.out / f"{recipe.stem}.json", json.dumps(meta, indent=2) + "\n")
    print("float accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in accuracies.items()))
    print(f"wrote {weights} ({weights.stat().st_size} bytes) in {seconds:.0f} s of training")


if __name__ == "__main__":
    main()
