"""Synthetic images that a small network can learn: the smoke profile's data.

Each class has a prototype, a smooth random colour pattern; an image is its
class's prototype at a random brightness plus noise. The class signal sits in
colour and low spatial frequency, so even a random-init CNN picks it up in one
epoch, and a twin of a real dataset keeps that dataset's classes, priors and
grouping (pets breeds -> species) so every split and loss runs as on the real one.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F


def stable_seed(*parts: object) -> int:
    """A seed from names, equal in every process (Python's hash() is salted)."""
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:4], "little")


def exact_counts(n: int, priors: np.ndarray) -> np.ndarray:
    """n split by priors, rounding by largest remainder so the counts sum to n."""
    raw = n * priors / priors.sum()
    counts = np.floor(raw).astype(int)
    counts[np.argsort(counts - raw)[: n - counts.sum()]] += 1
    return counts


def synthetic_pool(n: int, priors: list[float] | np.ndarray, size: int, identity: str, sample_seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """n images [n, 3, size, size] uint8 and their labels, classes in proportion to priors.

    `identity` fixes the class prototypes (train and test pools of one dataset
    share them); `sample_seed` draws the images.
    """
    priors = np.asarray(priors, dtype=float)
    n_classes = len(priors)
    proto_gen = torch.Generator().manual_seed(stable_seed("prototypes", identity))
    coarse = torch.rand(n_classes, 3, 4, 4, generator=proto_gen)
    prototypes = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)

    rng = np.random.default_rng(stable_seed("samples", identity, sample_seed))
    labels = np.repeat(np.arange(n_classes), exact_counts(n, priors))
    rng.shuffle(labels)
    gen = torch.Generator().manual_seed(stable_seed("noise", identity, sample_seed))
    brightness = 0.75 + 0.5 * torch.rand(n, 1, 1, 1, generator=gen)
    noise = 0.12 * torch.randn(n, 3, size, size, generator=gen)
    images = prototypes[torch.from_numpy(labels)] * brightness + noise
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels.astype(np.int64)
