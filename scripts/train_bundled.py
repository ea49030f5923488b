"""Train the bundled digits ViT and write ``golden_model/data/bundled_vit.{pt,json}``.

Deterministic on one machine: fixed seeds, CPU, one thread (faster than two for this tiny model,
and it fixes the reduction order), deterministic algorithms. Run with
``.venv/bin/python scripts/train_bundled.py`` (about a minute on an idle core).

Recipe: AdamW (lr 5e-3, weight decay 0.05), batch 64, one linear warm-up epoch then cosine decay,
label smoothing 0.1, 60 epochs, no augmentation (a one-pixel random shift of these 8x8 images
slowed training and lowered test accuracy). The final epoch's weights are saved: no selection on
the calibration or test split.
"""
import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from intvit.golden_model.dataset import SPLIT_SEED, SPLIT_SIZES, Split, load_splits
from intvit.golden_model.files import atomic_output, write_text_atomic
from intvit.golden_model.vit import PRESETS, VisionTransformer, parameter_count

DATA = Path(__file__).resolve().parent.parent / "golden_model" / "data"
TRAIN_SEED = 0
EPOCHS = 60
BATCH = 64
LR = 5e-3
WEIGHT_DECAY = 0.05
LABEL_SMOOTHING = 0.1


@torch.no_grad()
def accuracy(model: VisionTransformer, split: Split) -> float:
    model.eval()
    return (model(split.images).argmax(dim=1) == split.labels).double().mean().item()


def learning_rate(step: int, steps_per_epoch: int, total_steps: int) -> float:
    """Linear warm-up over the first epoch, then cosine decay to zero."""
    if step < steps_per_epoch:
        return LR * (step + 1) / steps_per_epoch
    progress = (step - steps_per_epoch) / max(1, total_steps - steps_per_epoch)
    return LR * 0.5 * (1.0 + math.cos(math.pi * progress))


def train(epochs: int) -> tuple[VisionTransformer, dict, float]:
    torch.manual_seed(TRAIN_SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    splits = load_splits(SPLIT_SEED)
    train_split = splits["train"]
    config = PRESETS["bundled"]
    model = VisionTransformer(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    generator = torch.Generator().manual_seed(TRAIN_SEED)
    steps_per_epoch = -(-len(train_split) // BATCH)
    total_steps = epochs * steps_per_epoch
    print(f"bundled ViT: {parameter_count(model)} parameters, {config.num_tokens} tokens, "
          f"{len(train_split)} training images")
    start, step = time.perf_counter(), 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_split), generator=generator)
        total_loss = 0.0
        for batch in order.split(BATCH):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, steps_per_epoch, total_steps)
            loss = F.cross_entropy(model(train_split.images[batch]), train_split.labels[batch],
                                   label_smoothing=LABEL_SMOOTHING)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(batch)
            step += 1
        print(f"epoch {epoch + 1:3d}/{epochs}  loss {total_loss / len(train_split):.4f}  "
              f"calibration acc {accuracy(model, splits['calibration']):.3f}", flush=True)
    seconds = time.perf_counter() - start
    accuracies = {name: accuracy(model, split) for name, split in splits.items()}
    return model, accuracies, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--out", type=Path, default=DATA, help="output directory")
    args = parser.parse_args()
    model, accuracies, seconds = train(args.epochs)
    config = model.config
    weights = args.out / "bundled_vit.pt"
    with atomic_output(weights, "wb") as stream:
        torch.save(model.state_dict(), stream)
    meta = {
        "config": config.to_dict(),
        "preset": "bundled",
        "dataset": "sklearn.datasets.load_digits, x = (pixel - 8) / 8, 8x8x1",
        "split_seed": SPLIT_SEED,
        "split_sizes": SPLIT_SIZES,
        "float_accuracy": accuracies,
        "parameters": parameter_count(model),
        "training": {"seed": TRAIN_SEED, "epochs": args.epochs, "batch": BATCH, "lr": LR,
                     "weight_decay": WEIGHT_DECAY, "label_smoothing": LABEL_SMOOTHING,
                     "seconds": round(seconds, 1), "torch": torch.__version__},
    }
    write_text_atomic(args.out / "bundled_vit.json", json.dumps(meta, indent=2) + "\n")
    print("float accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in accuracies.items()))
    print(f"wrote {weights} ({weights.stat().st_size} bytes) in {seconds:.0f} s of training")


if __name__ == "__main__":
    main()
