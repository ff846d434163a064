"""From uint8 images to the tensors a step eats: order, augment, normalise.

Everything happens on tensors in the trial's own process: no DataLoader
workers competing for the CPUs the trial was granted, and on a GPU the
augmentation runs there, after one non-blocking copy of uint8 pixels.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import torch
from torchvision.transforms import v2

from .data import ImageSet

MEAN_STD = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def epoch_order(labels: torch.Tensor, sampler: str, generator: torch.Generator) -> torch.Tensor:
    """Positions for one epoch: a permutation, or (oversample) as many draws with
    replacement where every class is equally likely, as over-sampling the minority does."""
    n = len(labels)
    if sampler == "uniform":
        return torch.randperm(n, generator=generator)
    counts = torch.bincount(labels).float()
    weights = (1.0 / counts)[labels]
    return torch.multinomial(weights, n, replacement=True, generator=generator)


def batches(order: torch.Tensor, batch_size: int, max_steps: int | None = None, training: bool = False) -> Iterator[torch.Tensor]:
    """Consecutive slices of `order`. In training, a last batch of one image is left out:
    BatchNorm cannot normalise a single sample (and it would be one noisy step anyway)."""
    steps = 0
    for start in range(0, len(order), batch_size):
        if max_steps is not None and steps >= max_steps:
            return
        batch = order[start : start + batch_size]
        if training and len(batch) == 1 and len(order) > 1:
            return
        steps += 1
        yield batch


def to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 pixels to the device: pinned and non-blocking on CUDA, so the copy overlaps compute."""
    if device.type == "cuda":
        return images.pin_memory().to(device, non_blocking=True)
    return images


def augment(images: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """uint8 [B, 3, S, S] -> augmented uint8, each image its own draw."""
    if kind == "none":
        return images
    if kind == "hflip":
        flip = torch.rand(len(images), generator=generator) < 0.5
        return torch.where(flip.to(images.device)[:, None, None, None], images.flip(-1), images)
    transform = random_transform(kind, images.shape[-1])
    # v2 draws from torch's global generator: fork it from ours so a seed fixes it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        return torch.stack([transform(img) for img in images])


def random_transform(kind: str, size: int) -> v2.Compose:
    """strong: 002's code (new_main.py:18-25), RandomResizedCrop then flip, rotation 20, colour jitter 0.2;
    flip_rotate_jitter: the same without the crop, what 002's text names."""
    crop = [v2.RandomResizedCrop(size, antialias=True)] if kind == "strong" else []
    return v2.Compose([
        *crop,
        v2.RandomHorizontalFlip(),
        v2.RandomRotation(20),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
    ])  # fmt: skip


@functools.cache
def _scale_shift(kind: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(x / 255 - mean) / std as one multiply-add: x * scale + shift, made once per device."""
    mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in MEAN_STD[kind])
    return 1 / (255 * std), -mean / std


def normalize(images: torch.Tensor, kind: str, channels_last: bool) -> torch.Tensor:
    scale, shift = _scale_shift(kind, images.device)
    out = torch.addcmul(shift, images.float(), scale)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


class PixelInputs:
    """Model inputs from pixels: index, copy, augment, normalise, per batch."""

    def __init__(self, device: torch.device, norm: str, channels_last: bool):
        self.device, self.norm, self.channels_last = device, norm, channels_last

    def batch(self, images: ImageSet, positions: torch.Tensor, aug: str, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = augment(to_device(images.images(positions), self.device), aug, gen)
        y = images.labels[positions].to(self.device, non_blocking=True)
        return normalize(x, self.norm, self.channels_last), y
