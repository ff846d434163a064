"""The augmentation registry: what `train.augment` may say, and what each word does to a batch.

    AUGMENTATIONS["hflip"].apply(images, generator, to_device)   # uint8 [B, 3, S, S] -> uint8, each image its own draw

An entry holds the word, what it does in words (the schema's doc and docs/grid-file.md read it), the batch
transform itself, and whether the frozen-feature cache can serve it. Every draw comes from the trial's generator,
so a seed fixes the batch. The transforms import torch inside them: the driver validates grid files against this
registry on machines without torch. `trial/pipeline.py` applies an entry to each training batch.

Adding an augmentation is one `AUGMENTATIONS.register(Augmentation(...))` here (or `_torchvision(...)` for a
per-image torchvision v2 pipeline); `tests/registries/test_augmentations.py` checks every entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tlbench.registries.registry import Registry

if TYPE_CHECKING:
    import torch
    from torchvision.transforms import v2

# (a tensor on the host, a device) -> it on that device without waiting: `pipeline.to_device`, handed in so a
# draw made on the host (the trial's generator lives there) reaches a batch on the card without a sync.
ToDevice = Callable[["torch.Tensor", "torch.device"], "torch.Tensor"]


@dataclass(frozen=True)
class Augmentation:
    name: str  # the grid file's `train.augment`
    doc: str  # what it does, for the schema's doc and docs/grid-file.md
    # (uint8 images [B, 3, S, S] on any device, the trial's generator, to_device) -> augmented uint8, same shape.
    apply: Callable[[torch.Tensor, torch.Generator, ToDevice], torch.Tensor]
    # The frozen-feature cache can serve it: its outputs are views of an image fixed in advance (the image, its
    # mirror), so features computed once stand for every epoch. False: the input changes every epoch. The cache
    # (trial/features.py) builds a plain view and, for hflip, a mirrored one: a new cacheable word needs its views there.
    cacheable: bool = False
    # The torchvision v2 pipeline applied to each image, by input side in px (None: the batch is handled whole).
    per_image: Callable[[int], v2.Compose] | None = None


AUGMENTATIONS: Registry[Augmentation] = Registry("augmentation")


def described() -> str:
    """Every word with what it does: `none (...) | hflip (...) | ...`, for the schema's doc."""
    return " | ".join(f"{a.name} ({a.doc})" for a in AUGMENTATIONS.entries())


def _unchanged(images: torch.Tensor, generator: torch.Generator, to_device: ToDevice) -> torch.Tensor:
    return images


def _hflip(images: torch.Tensor, generator: torch.Generator, to_device: ToDevice) -> torch.Tensor:
    import torch

    flip = torch.rand(len(images), generator=generator) < 0.5
    return torch.where(to_device(flip, images.device)[:, None, None, None], images.flip(-1), images)


def _each_image(build: Callable[[int], v2.Compose]) -> Callable[[torch.Tensor, torch.Generator, ToDevice], torch.Tensor]:
    """A batch transform applying `build(side)` to each image, its random draws seeded from the trial's generator."""

    def apply(images: torch.Tensor, generator: torch.Generator, to_device: ToDevice) -> torch.Tensor:
        import torch

        transform = build(images.shape[-1])
        # v2 draws from torch's global generator: fork it from ours so a seed fixes it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
            return torch.stack([transform(img) for img in images])

    return apply


def _torchvision(name: str, doc: str, build: Callable[[int], v2.Compose]) -> None:
    AUGMENTATIONS.register(Augmentation(name, doc, _each_image(build), per_image=build))


def _flip_rotate_jitter(crop: bool) -> Callable[[int], v2.Compose]:
    """002's code (new_main.py:18-25): RandomResizedCrop, then flip, rotation 20, colour jitter 0.2; without the
    crop, what 002's text names."""

    def build(size: int) -> v2.Compose:
        from torchvision.transforms import v2

        return v2.Compose([
            *([v2.RandomResizedCrop(size, antialias=True)] if crop else []),
            v2.RandomHorizontalFlip(),
            v2.RandomRotation(20),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
        ])  # fmt: skip

    return build


AUGMENTATIONS.register(Augmentation("none", "the images as they are", _unchanged, cacheable=True))
AUGMENTATIONS.register(
    Augmentation("hflip", "a horizontal flip of each image with probability 0.5", _hflip, cacheable=True)  # the cache keeps a mirrored view
)
_torchvision(
    "strong",
    "RandomResizedCrop(size) scale 0.08-1, flip, rotation 20, colour jitter 0.2: 002 new_main.py:18-25",
    _flip_rotate_jitter(crop=True),
)
_torchvision("flip_rotate_jitter", "strong without the crop: what 002's text names", _flip_rotate_jitter(crop=False))
