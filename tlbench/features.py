"""The frozen-feature cache: compute a frozen prefix of the network once, train the rest on it.

Most trials of the reports train only the last part of a network, yet would
recompute the same frozen features every epoch. Where what trains is a suffix
of the network's forward chain, and nothing before the cut is random, the
prefix's output is computed once per (arch, weights, cut, pool, size, resize,
normalisation, precision) and kept under `<data>/.tlbench-cache/features/`,
shared by every trial and rerun that needs the same features.

- The cut sits before the first layer that trains or is random (Dropout), so
  stochastic layers after it still run live.
- A horizontal flip is cached as both views; the step picks one per image with
  the same random draw the pixel path would use, so results match.
- Random crops, rotations and colour jitter change the input every epoch, and
  gradual unfreezing moves the cut: those trials run uncached and say why.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import pipeline
from .data import CACHE_DIR, ImageSet
from .models import Built, FreezePlan

Stage = tuple[str, nn.Module]


def forward_chain(built: Built) -> list[Stage] | None:
    """The network as the sequence of modules its forward() runs, or None where it is not one."""
    module = built.module
    if built.arch.startswith("resnet"):
        names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"]
        return [(n, module.get_submodule(n)) for n in names] + [("flatten", nn.Flatten(1)), ("fc", module.fc)]
    if built.arch in ("alexnet", "vgg16"):
        stages = [(f"features.{i}", m) for i, m in enumerate(module.features)]
        stages += [("avgpool", module.avgpool), ("flatten", nn.Flatten(1))]
        return stages + [(f"classifier.{i}", m) for i, m in enumerate(module.classifier)]
    if isinstance(module, nn.Sequential):  # a custom arch built as one Sequential
        return list(module.named_children())
    return None


@dataclass
class Cut:
    index: int  # stages[:index] are the cached prefix
    stages: list[Stage]

    @property
    def prefix(self) -> nn.Sequential:
        return nn.Sequential(*(m for _, m in self.stages[: self.index]))

    @property
    def suffix(self) -> nn.Sequential:
        return nn.Sequential(*(m for _, m in self.stages[self.index :]))


def find_cut(built: Built, plan: FreezePlan, train: dict[str, Any], image_size: int) -> Cut | str:
    """Where to cut, or why this trial cannot use the cache."""
    if len(plan.stages) > 1:
        return "gradual unfreezing moves the cut every stage"
    if train["augment"] == "strong":
        return "random crops, rotations and colour jitter change the input every epoch"
    if train["train_mode_epochs"] is not None:
        return "frozen BatchNorm layers re-estimate their statistics (train.train_mode_epochs)"
    if train["augment_val"]:
        return "the validation split is augmented (train.augment_val)"
    stages = forward_chain(built)
    if stages is None:
        return f"{built.arch} is not a plain chain of modules"
    trains = plan.trains(0)
    names = dict(built.module.named_parameters())
    for index, (path, module) in enumerate(stages):
        owns = [n for n in names if n == path or n.startswith(path + ".")]
        random = any(isinstance(m, nn.Dropout) for m in module.modules())
        if any(trains(n) for n in owns) or random:
            break
    else:
        return "nothing trains"
    if index == 0:
        return "the first layer trains"
    with torch.no_grad():  # features bigger than the image would cost more to cache than to recompute
        probe = torch.zeros(1, 3, image_size, image_size, device=next(built.module.parameters()).device)
        out = nn.Sequential(*(m for _, m in stages[:index])).eval()(probe)
    if out[0].numel() > probe[0].numel():
        return f"the features at the cut ({stages[index][0]}) are larger than the image"
    return Cut(index, stages)


class FeatureInputs:
    """Model inputs from cached features: a drop-in for the pixel path in Runner."""

    def __init__(self, cut: Cut, sets: list[ImageSet], cfg: dict[str, Any], root: Path, device: torch.device,
                 precision: str, autocast: Any, channels_last: bool):
        self.device = device
        train = cfg["train"]
        views = ("plain", "flip") if train["augment"] == "hflip" else ("plain",)
        identity = {
            "arch": cfg["model"]["arch"], "weights": cfg["model"]["weights"], "hidden": cfg["model"]["hidden"],
            # random weights differ per seed; pretrained ones do not
            "seed": cfg["seed"] if cfg["model"]["weights"] == "none" else None,
            "cut": [p for p, _ in cut.stages[: cut.index]], "normalize": train["normalize"],
            # the precision actually used, and where: bf16 features from a GPU are not a CPU's fp32 ones
            "precision": precision, "device": device.type, "channels_last": channels_last, "torch": torch.__version__,
        }  # fmt: skip
        self.features: dict[str, dict[str, torch.Tensor]] = {}
        self.built_now = False
        prefix = cut.prefix.eval()
        for images in sets:
            if images.pool_key in self.features:
                continue
            self.features[images.pool_key] = {}
            for view in views:
                key = hashlib.sha256(json.dumps({**identity, "pool": images.pool_key, "view": view}, sort_keys=True).encode()).hexdigest()[:24]
                path = root / CACHE_DIR / "features" / f"{key}.npy"
                if not path.exists():
                    _build(prefix, images, view, train["normalize"], path, device, autocast, channels_last)
                    self.built_now = True
                self.features[images.pool_key][view] = torch.from_numpy(np.load(path, mmap_mode="c"))

    def batch(self, images: ImageSet, positions: torch.Tensor, aug: str, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        views = self.features[images.pool_key]
        index = images.index[positions]
        x = views["plain"][index]
        if aug == "hflip":  # the same draw as pipeline.augment's, so the pixel path and this one agree
            flip = torch.rand(len(index), generator=gen) < 0.5
            x = torch.where(flip.view(-1, *[1] * (x.dim() - 1)), views["flip"][index], x)
        return x.to(self.device, non_blocking=True), images.labels[positions].to(self.device, non_blocking=True)


@torch.no_grad()
def _build(prefix: nn.Module, images: ImageSet, view: str, normalize: str, path: Path, device: torch.device,
           autocast: Any, channels_last: bool) -> None:
    """The prefix's output for every image of the pool, written atomically."""
    pool = images.pool
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        out = None
        for start in range(0, len(pool), 256):
            x = pipeline.to_device(pool[start : start + 256], device)
            if view == "flip":
                x = x.flip(-1)
            with autocast():
                f = prefix(pipeline.normalize(x, normalize, channels_last)).float().cpu()
            if out is None:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(pool), *f.shape[1:]))
            out[start : start + len(f)] = f.contiguous().numpy()
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
