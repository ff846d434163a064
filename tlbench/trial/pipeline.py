"""From uint8 images to the tensors a step eats: order, augment, normalise.

Everything happens on tensors in the trial's own process: no DataLoader
workers competing for the CPUs the trial was granted. On a GPU a trial's pools
go to the card once, as the uint8 they are stored as, where they fit in a part
of its share (`place`); a batch is then gathered, enlarged to image_size,
augmented and normalised there, with nothing read back. Pools too large for the
card are gathered on the host into reused pinned buffers and copied on a stream
of their own, which overlaps the step before.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import torch

from tlbench.registries.augmentations import AUGMENTATIONS
from tlbench.trial.data import ImageSet

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


def batches(n: int, batch_size: int, max_steps: int | None = None, training: bool = False) -> Iterator[slice]:
    """Consecutive slices of an epoch's `n` positions. In training, a last batch of one image is left out:
    BatchNorm cannot normalise a single sample (and it would be one noisy step anyway)."""
    steps = 0
    for start in range(0, n, batch_size):
        if max_steps is not None and steps >= max_steps:
            return
        stop = min(start + batch_size, n)
        if training and stop - start == 1 and n > 1:
            return
        steps += 1
        yield slice(start, stop)


def epoch_rows(images: ImageSet, order: torch.Tensor, rows_on: torch.device, labels_on: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The pool rows and labels of the set's positions `order`, in that order: the rows where the batches are
    gathered from (the card, where the pool or the features are placed, or the host), the labels on the device.
    Each goes in one copy for a whole epoch: a batch then takes slices of them, views that copy nothing, where a
    copy per batch cost every step two index_selects, two pinned buffers and two launches."""
    # index_select, not [order]: the same values at a twentieth of advanced indexing's cost on a small batch
    rows = to_device(images.index.index_select(0, order), rows_on)
    return rows, to_device(images.labels.index_select(0, order), labels_on)


def to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A tensor to the device: from the host pinned (torch caches pinned blocks) and non-blocking, so it never waits;
    one already on a card (features or pools placed there) as it is, since only host tensors can be pinned."""
    if needs_pinning(images.device, device):
        return images.pin_memory().to(device, non_blocking=True)
    return images.to(device)  # the tensor itself where it is already there


def needs_pinning(source: torch.device, target: torch.device) -> bool:
    return source.type == "cpu" and target.type == "cuda"


class PinnedStager:
    """Host-gathered batches to the card through pinned buffers reused batch after batch, copied on a stream of
    their own: the copy of the next batch overlaps the step on this one, and no buffer is allocated per batch."""

    def __init__(self, device: torch.device, slots: int = 2):
        self.device = device
        self.stream = torch.cuda.Stream(device)
        self.buffers: list[torch.Tensor | None] = [None] * slots
        self.copied: list[torch.cuda.Event | None] = [None] * slots
        self.turn = 0

    def gather(self, pool: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """pool[index] on the device, gathered straight into a pinned buffer."""
        slot = self.turn % len(self.buffers)
        self.turn += 1
        buffer = self.buffers[slot]
        if buffer is None or buffer.shape[0] < len(index) or buffer.shape[1:] != pool.shape[1:]:
            buffer = self.buffers[slot] = torch.empty((len(index), *pool.shape[1:]), dtype=pool.dtype, pin_memory=True)
        elif self.copied[slot] is not None:
            self.copied[slot].synchronize()  # the copy out of it, two batches ago, is done (a copy, not a step)
        staged = buffer[: len(index)]
        torch.index_select(pool, 0, index, out=staged)
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.stream):
            out = staged.to(self.device, non_blocking=True)
            self.copied[slot] = self.stream.record_event()
        compute.wait_stream(self.stream)
        out.record_stream(compute)  # allocated on the copy stream, used on the compute one
        return out


def augment(images: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """uint8 [B, 3, S, S] -> augmented uint8, each image its own draw: the word's entry in the augmentation registry."""
    return AUGMENTATIONS[kind].apply(images, generator, to_device)


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
    """Model inputs from pixels: index, copy (or gather on the card), enlarge, augment, normalise, per batch."""

    def __init__(self, device: torch.device, norm: str, channels_last: bool):
        self.device, self.norm, self.channels_last = device, norm, channels_last
        self.on_card: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(host pool) -> (host pool, its copy on the card)
        self.stager: PinnedStager | None = None  # made on first use: only pools that stay on the host need it

    def place(self, sets: list[ImageSet], budget_bytes: int) -> str:
        """Copy the sets' pools to the card once, at their stored size, while they fit in `budget_bytes`: what was done."""
        if self.device.type == "cpu":
            return "host"
        pools = {id(s.pool): s.pool for s in sets}
        needed = sum(p.numel() * p.element_size() for p in pools.values())
        if needed > budget_bytes:
            return f"staged ({needed / 2**20:.0f} MB of pools > {budget_bytes / 2**20:.0f} MB for data on the card)"
        for key, pool in pools.items():
            self.on_card[key] = (pool, pool.to(self.device))
        return f"on card ({needed / 2**20:.0f} MB)"

    def epoch(self, images: ImageSet, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pool rows and labels of `order` (epoch_rows), the rows on the card where the pool is placed there."""
        placed = id(images.pool) in self.on_card
        return epoch_rows(images, order, self.device if placed else torch.device("cpu"), self.device)

    def pixels(self, images: ImageSet, rows: torch.Tensor) -> torch.Tensor:
        """uint8 pixels of these pool rows on the device, at the pool's stored size."""
        placed = self.on_card.get(id(images.pool))
        if placed is not None:
            return placed[1].index_select(0, rows)
        if self.device.type != "cuda":
            return to_device(images.pool.index_select(0, rows), self.device)
        self.stager = self.stager or PinnedStager(self.device)
        return self.stager.gather(images.pool, rows)

    def batch_of(
        self, images: ImageSet, rows: torch.Tensor, labels: torch.Tensor, aug: str, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The inputs of these pool rows (a slice of `epoch`'s), augmented and normalised, and their labels."""
        x = augment(images.resized(self.pixels(images, rows)), aug, gen)
        return normalize(x, self.norm, self.channels_last), labels
