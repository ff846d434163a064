"""Every entry of the augmentation registry gets the same checks, and batches are what they were before it.

`_old_augment` is `pipeline.augment` as it stood before the registry (main at 1d38de7, tlbench/trial/pipeline.py),
copied verbatim: for every word and a fixed generator, a batch through the registry must equal it bit for bit,
and leave the generator where it left it (the next batch's draws depend on that).
"""

from __future__ import annotations

import pytest
import torch
from helpers import typed
from torchvision.transforms import v2

from tlbench.grid.schema import FIELDS
from tlbench.registries.augmentations import AUGMENTATIONS
from tlbench.registries.freezing import FreezePlan
from tlbench.trial import features, pipeline

WORDS = AUGMENTATIONS.names()


# -- the code before the registry, verbatim ------------------------------------------------------------


def _old_augment(images: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """uint8 [B, 3, S, S] -> augmented uint8, each image its own draw."""
    if kind == "none":
        return images
    if kind == "hflip":
        flip = torch.rand(len(images), generator=generator) < 0.5
        return torch.where(pipeline.to_device(flip, images.device)[:, None, None, None], images.flip(-1), images)
    transform = _old_random_transform(kind, images.shape[-1])
    # v2 draws from torch's global generator: fork it from ours so a seed fixes it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        return torch.stack([transform(img) for img in images])


def _old_random_transform(kind: str, size: int) -> v2.Compose:
    crop = [v2.RandomResizedCrop(size, antialias=True)] if kind == "strong" else []
    return v2.Compose([
        *crop,
        v2.RandomHorizontalFlip(),
        v2.RandomRotation(20),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
    ])  # fmt: skip


# -- helpers --------------------------------------------------------------------------------------------


def _images(n: int = 6, side: int = 24, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _after(generator: torch.Generator) -> torch.Tensor:
    """The generator's next draws: equal states give equal draws."""
    return torch.rand(8, generator=generator)


# -- the checks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("word", WORDS)
@pytest.mark.parametrize("seed", [0, 7])
def test_a_batch_through_the_registry_is_the_batch_before_it_bit_for_bit(word, seed):
    old_gen, new_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    for shape in ((6, 24), (1, 32), (5, 17)):  # consecutive batches of one epoch, an odd side among them
        images = _images(*shape, seed=seed)
        expected = _old_augment(images, word, old_gen)
        got = pipeline.augment(images, word, new_gen)
        assert torch.equal(got, expected), f"{word}: batch {shape} differs from the code before the registry"
    assert torch.equal(_after(new_gen), _after(old_gen)), f"{word}: the generator is left elsewhere than before"


@pytest.mark.parametrize("word", WORDS)
def test_every_entry_keeps_shape_and_dtype_and_is_fixed_by_a_seed(word):
    entry = AUGMENTATIONS[word]
    images = _images()
    first = entry.apply(images, torch.Generator().manual_seed(3), pipeline.to_device)
    again = entry.apply(images, torch.Generator().manual_seed(3), pipeline.to_device)
    assert first.shape == images.shape and first.dtype == torch.uint8
    assert torch.equal(first, again), f"{word}: the same seed gave two batches"
    assert torch.equal(images, _images()), f"{word}: the input batch was changed in place"


@pytest.mark.parametrize("word", WORDS)
def test_every_entry_applies_its_transform(word):
    """`none` leaves a batch as it is; every other word changes some image of a batch of twelve, and two seeds give
    two batches (each image its own draw)."""
    entry, images = AUGMENTATIONS[word], _images(n=12)
    outs = [entry.apply(images, torch.Generator().manual_seed(s), pipeline.to_device) for s in (1, 2)]
    if word == "none":
        assert all(torch.equal(out, images) for out in outs)
        return
    assert not torch.equal(outs[0], images), f"{word} changed nothing"
    assert not torch.equal(outs[0], outs[1]), f"{word}: two seeds gave one batch"


def test_hflip_mirrors_exactly_the_images_its_coins_pick():
    images, gen = _images(n=12), torch.Generator().manual_seed(5)
    coins = torch.rand(12, generator=torch.Generator().manual_seed(5)) < 0.5
    out = AUGMENTATIONS["hflip"].apply(images, gen, pipeline.to_device)
    for i in range(12):
        assert torch.equal(out[i], images[i].flip(-1) if coins[i] else images[i])


def test_the_schema_reads_its_words_and_their_meaning_from_the_registry():
    field = FIELDS["train.augment"]
    assert field.choices == WORDS
    assert field.default in WORDS
    for entry in AUGMENTATIONS.entries():
        assert f"{entry.name} ({entry.doc})" in field.doc


def test_per_image_pipelines_build_at_the_batch_side():
    for entry in AUGMENTATIONS.entries():
        if entry.per_image is not None:
            assert isinstance(entry.per_image(40), v2.Compose)
            crops = [t for t in entry.per_image(40).transforms if isinstance(t, v2.RandomResizedCrop)]
            assert all(tuple(t.size) == (40, 40) for t in crops)


@pytest.mark.parametrize("word", WORDS)
def test_the_feature_cache_serves_exactly_the_cacheable_words(word):
    train = typed(train={"augment": word}).train
    reason = features._config_reason(FreezePlan([(0, lambda name: True)]), train)
    assert (reason is None) == AUGMENTATIONS[word].cacheable, f"{word}: {reason}"
