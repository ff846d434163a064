"""What the benches share: the image folder they train on, the trial config they start from, the FLOPs of an
image, and how a bench line is printed (`name value`, one per line: the contract bench line names keep)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def emit(name: str, value: float | str) -> None:
    print(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}", flush=True)


def write_jpegs(root: Path, n_per_class: int, classes: int, side: int) -> Path:
    """An image folder of JPEGs (train/ and test/), the format the reports' loaders read."""
    from PIL import Image

    from tlbench.trial.synthetic import synthetic_pool

    for split, n, seed in (("train", n_per_class * classes, 0), ("test", max(classes, n_per_class * classes // 4), 1)):
        images, labels = synthetic_pool(n, [1 / classes] * classes, side, "bench", seed)
        for i, (img, label) in enumerate(zip(images, labels)):
            folder = root / "bench" / split / f"c{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i}.jpg", quality=90)
    return root


def trial_config(size: int, epochs: int, freeze: Any, batch: int, **overrides: Any) -> dict[str, Any]:
    from tlbench.grid.config import merge
    from tlbench.grid.schema import defaults

    config = merge(defaults(), {
        "epochs": epochs, "image_size": size, "seed": 0,
        "dataset": {"name": "imagefolder", "path": "bench", "val_fraction": 0.2},
        "model": {"arch": "resnet18", "weights": "none"},
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": batch, "freeze": freeze},
    })  # fmt: skip
    return merge(config, overrides)


def training_flops_per_image(size: int) -> float:
    """Forward + backward FLOPs of one ResNet18 image at `size`, counted by torch (2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision import models

    model = models.resnet18(num_classes=10)
    with FlopCounterMode(display=False) as counter:  # two images: BatchNorm cannot train on one
        model(torch.randn(2, 3, size, size)).sum().backward()
    return counter.get_total_flops() / 2
