"""Small images stay small in the decode cache and are enlarged where a batch is used (on the card on a GPU),
equal to the PIL resize the cache used to store within one grey level."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tlbench.trial import data, pipeline
from tlbench.trial.pools import Pool
from tlbench.trial.resize import upscale


def small_images(n: int, side: int = 32, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    smooth = rng.integers(0, 256, (n, 4, 4, 3)).repeat(side // 4, 1).repeat(side // 4, 2)  # edges and flat areas
    noise = rng.integers(-40, 40, (n, side, side, 3))
    return list(np.clip(smooth + noise, 0, 255).astype(np.uint8))


def pool_of(images: list[np.ndarray], name: str = "test/small") -> Pool:
    return Pool(name, np.arange(len(images)) % 3, lambda i: images[i], version=name)


@pytest.mark.parametrize("size", [64, 224])
@pytest.mark.parametrize("mode", ["squash", "crop"])
def test_enlarging_on_the_device_is_pil_within_one_grey_level(size, mode):
    images = small_images(6)
    host = np.stack([data.resize_image(img, size, mode) for img in images])
    device = upscale(torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2)), size, mode).numpy()
    assert device.shape == host.shape
    assert np.abs(device.astype(int) - host.astype(int)).max() <= 1


def test_small_images_are_cached_at_their_own_size_and_delivered_at_the_image_size(tmp_path):
    images = small_images(10)
    pool = pool_of(images)
    kept = data.decode_pool(pool, 96, "crop", tmp_path)
    assert kept.pool.shape == (10, 3, 32, 32)  # not 9x the bytes at 96 px
    assert [p.name for p in (tmp_path / data.CACHE_DIR).glob("*.npy")] and all(
        np.load(p, mmap_mode="r").shape[-1] == 32 for p in (tmp_path / data.CACHE_DIR).glob("*.npy")
    )
    old = data.decode(pool, 96, "crop", tmp_path)  # the cache as it was: PIL-resized copies at 96 px
    delivered = kept.images()
    assert delivered.shape == old.pool.shape
    assert (delivered.int() - old.pool.int()).abs().max() <= 1
    assert kept.pool_key != old.pool_key  # caches derived from the pixels (features) tell them apart


def test_a_pool_of_mixed_sizes_is_decoded_at_the_image_size(tmp_path):
    images = small_images(4) + [np.zeros((40, 40, 3), np.uint8)]
    decoded = data.decode_pool(pool_of(images, "test/mixed"), 64, "squash", tmp_path)
    assert decoded.pool.shape == (5, 3, 64, 64) and decoded.images().shape == (5, 3, 64, 64)


def test_large_images_are_cached_at_the_image_size(tmp_path):
    decoded = data.decode_pool(pool_of(small_images(3, side=64), "test/large"), 32, "squash", tmp_path)
    assert decoded.pool.shape == (3, 3, 32, 32) and decoded.size == 0


def test_a_batch_gathered_where_the_pool_lives_equals_the_host_path(tmp_path):
    kept = data.decode_pool(pool_of(small_images(12)), 64, "squash", tmp_path).subset(np.arange(2, 12))
    inputs = pipeline.PixelInputs(torch.device("cpu"), "imagenet", channels_last=False)
    inputs.on_card[id(kept.pool)] = (kept.pool, kept.pool.clone())  # as `place` leaves it on a card
    positions = torch.tensor([4, 0, 7])
    x, y = inputs.batch_of(kept, *inputs.epoch(kept, positions), "none", torch.Generator())
    expected = pipeline.normalize(kept.images(positions), "imagenet", False)
    assert torch.equal(x, expected) and torch.equal(y, kept.labels[positions])
    assert inputs.place([kept], 2**30) == "host"  # on the CPU the host is the device: nothing is copied


def test_only_host_tensors_are_pinned_on_their_way_to_the_card():
    # On an H200, features already placed on the card went through pin_memory() and failed
    # ("cannot pin 'torch.cuda.FloatTensor'"): the head-only ResNet50 case of bench --gpu.
    cpu, cuda, cuda0 = torch.device("cpu"), torch.device("cuda"), torch.device("cuda:0")
    assert pipeline.needs_pinning(cpu, cuda) and pipeline.needs_pinning(cpu, cuda0)
    assert not pipeline.needs_pinning(cuda0, cuda) and not pipeline.needs_pinning(cuda, cuda0)
    assert not pipeline.needs_pinning(cpu, cpu)
    x = torch.arange(4)
    assert pipeline.to_device(x, cpu) is x
