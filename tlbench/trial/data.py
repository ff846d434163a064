"""A trial's data: pools decoded once to uint8 tensors, then split by its seed.

    load(dataset config, image size, data root, seed) -> Splits(train, val, test)

Images are decoded and resized once per (pool, its files' sizes and mtimes, size, resize mode) into a
memory-mapped .npy under `<data>/.tlbench-cache/`, shared by every trial and
rerun on the machine; a trial then only indexes tensors. A cache that does not
read back as exactly that uint8 array (truncated, another dtype or shape, a
link or a FIFO planted there) is rebuilt, with a warning naming it. A split
left empty (no train or test image, or no val image where val is asked for)
is an error naming the counts, never a trial that trains or tests on nothing; so is a class the
test split holds that no training image is of, and an imbalance minority naming no class. Splits are seeded by
the trial's seed and, by default (`split_method: stratified`), stratified:
- val: `val_fraction` of the train pool, every class in proportion;
- train: `train_fraction` of what is left, every class in proportion;
- imbalance: of the minority group's classes, train keeps only `keep`;
- datasets without a test split are first cut by `split` (train/val/test).
`split_method: random` draws the same shares unstratified; `greedy` is 002's
deterministic per-class fill (`greedy_fill`), imbalance included.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tlbench.registries.datasets import DATASETS, target_of
from tlbench.results.regular_files import NotRegularFile, UnusableCache, map_npy, open_lock
from tlbench.trial.config import DatasetConfig, Imbalance
from tlbench.trial.pools import DataError, DatasetMissing, ImageTooLarge, Pool, check_labels, to_rgb  # noqa: F401  (callers catch these from here)
from tlbench.trial.resize import upscale
from tlbench.trial.synthetic import exact_counts, synthetic_pool

CACHE_DIR = ".tlbench-cache"


@dataclass
class ImageSet:
    """Some images of one decoded pool: the pool's tensor stays shared (memory-mapped)."""

    pool: torch.Tensor  # uint8 [P, 3, S, S], every image of the pool, at its stored size
    index: torch.Tensor  # int64 [N], which of them are in this set
    labels: torch.Tensor  # int64 [N]
    names: list[str]
    pool_key: str = ""  # what the pool's pixels are (source, size, resize): keys caches derived from them
    size: int = 0  # the image size it delivers where the pool is stored smaller (small images kept at their own size)
    resize: str = "squash"  # and how it gets there: squash | crop

    @classmethod
    def whole(
        cls, pool: torch.Tensor, labels: torch.Tensor, names: list[str], pool_key: str, size: int = 0, resize: str = "squash"
    ) -> ImageSet:
        return cls(pool, torch.arange(len(labels)), labels, names, pool_key, size, resize)

    def __len__(self) -> int:
        return len(self.labels)

    def images(self, positions: torch.Tensor | slice | None = None) -> torch.Tensor:
        """uint8 images at these positions of the set (all when None), at the image size."""
        index = self.index if positions is None else self.index[positions]
        return self.resized(self.pool[index])

    def resized(self, pixels: torch.Tensor) -> torch.Tensor:
        """Stored pixels of this pool (on any device) at the image size."""
        if self.size and pixels.shape[-1] != self.size:
            return upscale(pixels, self.size, self.resize)
        return pixels

    def subset(self, positions: np.ndarray) -> ImageSet:
        pos = torch.from_numpy(np.asarray(positions, dtype=np.int64))
        return replace(self, index=self.index[pos], labels=self.labels[pos], names=[self.names[i] for i in positions])

    @staticmethod
    def concat(a: ImageSet, b: ImageSet) -> ImageSet:
        if a.pool is not b.pool:
            raise ValueError("only sets of one pool can be joined")
        return replace(a, index=torch.cat([a.index, b.index]), labels=torch.cat([a.labels, b.labels]), names=a.names + b.names)


@dataclass
class Splits:
    train: ImageSet
    val: ImageSet
    test: ImageSet
    classes: list[str]
    groups: list[str]  # group of each class (pets breed -> species); the class itself otherwise
    # What the loader found worth saying about them: a pool whose class counts differ from the
    # report's (dataset.expect_counts). A warning on the trial's row, never an error.
    warnings: list[str] = field(default_factory=list)


def load(cfg: DatasetConfig, image_size: int, root: str | Path, seed: int) -> Splits:
    """The train/val/test splits of a trial's `dataset` config."""
    root = Path(root)
    target = target_of(cfg.name, cfg.target)
    info = DATASETS[cfg.name]
    train_pool, test_pool, classes = _pools(cfg, target, image_size, root)
    rng = np.random.default_rng(seed)
    labels = train_pool.labels.numpy()
    groups = list(info.groups.get(target) or classes)
    take = stratified_take if cfg.split_method != "random" else random_take
    all_idx = np.arange(len(labels))
    if test_pool is None:  # one pool: cut the test split off first
        _, val_share, test_share = cfg.split
        test_idx, rest = take(labels, all_idx, round(test_share * len(all_idx)), rng)
        val_idx, train_idx = take(labels, rest, round(val_share * len(all_idx)), rng)
        test_set = train_pool.subset(np.sort(test_idx))
    elif cfg.split_method == "greedy":
        train_idx, val_idx = greedy_fill(labels, groups, cfg.val_fraction, cfg.imbalance)
        test_set = test_pool
    else:
        val_idx, train_idx = take(labels, all_idx, round(cfg.val_fraction * len(all_idx)), rng)
        test_set = test_pool
    if cfg.train_fraction < 1:
        train_idx, _ = take(labels, train_idx, round(cfg.train_fraction * len(train_idx)), rng)
    if cfg.imbalance is not None:
        require_minority(cfg, groups)
    if cfg.imbalance is not None and cfg.split_method != "greedy":
        train_idx = _drop_minority(labels, train_idx, groups, cfg.imbalance, rng)
    if cfg.imbalance is not None:
        print(f"{cfg.name}: {split_counts(labels, groups, train_idx, val_idx)}", flush=True)
    warnings = [] if cfg.source == "synthetic" else count_warnings(cfg, labels, classes)
    splits = Splits(train_pool.subset(np.sort(train_idx)), train_pool.subset(np.sort(val_idx)), test_set, classes, groups, warnings)
    val_share = cfg.split[1] if test_pool is None else cfg.val_fraction
    require_images(splits, cfg, val_share > 0, (len(train_pool), None if test_pool is None else len(test_pool)))
    require_every_tested_class_trained(splits, cfg)
    return splits


def require_minority(cfg: DatasetConfig, groups: list[str]) -> None:
    """A DataError where `imbalance.minority` names no group or class of the data: nothing would be dropped, and
    a balanced run would stand in the table as the imbalanced one (the grid checks it only where groups are known)."""
    if cfg.imbalance.minority not in groups:
        raise DataError(
            f"dataset {cfg.name}" + (f" ({cfg.path})" if cfg.path else "") + f": dataset.imbalance.minority "
            f"{cfg.imbalance.minority!r} names no group or class of it (one of {', '.join(sorted(set(groups)))})"
        )


def require_every_tested_class_trained(splits: Splits, cfg: DatasetConfig) -> None:
    """A DataError naming the classes the test split holds but the train split has no image of (an empty
    train/<class>/ folder, or an imbalance.keep or train_fraction that rounds a class to none): its test
    images could only ever be wrong, a number of the data's gap rather than of the config."""
    trained = set(splits.train.labels.tolist())
    untrained = sorted({label for label in splits.test.labels.tolist() if label not in trained})
    if not untrained:
        return
    names = ", ".join(splits.classes[label] for label in untrained)
    raise DataError(
        f"dataset {cfg.name}" + (f" ({cfg.path})" if cfg.path else "") + f": no training image of class(es) {names}, "
        f"which the test split holds (train {len(splits.train)} images; train_fraction {cfg.train_fraction}, "
        f"imbalance {cfg.imbalance})"
    )


def split_counts(labels: np.ndarray, groups: list[str], train_idx: np.ndarray, val_idx: np.ndarray) -> str:
    """Train and val sizes, each by group: 002's text states its imbalanced splits' totals
    (dog majority: train 2,227, val 712), which the greedy fill on the real Pets annotations
    either gives exactly or not; printed so a run says which."""

    def by_group(idx: np.ndarray) -> str:
        found = Counter(groups[label] for label in labels[idx].tolist())
        return ", ".join(f"{name} {found[name]:,}" for name in sorted(found))

    return f"train {len(train_idx):,} ({by_group(train_idx)}), val {len(val_idx):,} ({by_group(val_idx)})"


def count_warnings(cfg: DatasetConfig, labels: np.ndarray, classes: list[str]) -> list[str]:
    """The pool's class counts against the report's (`dataset.expect_counts`): printed, and a warning where they differ."""
    if cfg.expect_counts is None:
        return []
    found = Counter(classes[label] for label in labels.tolist())
    got = ", ".join(f"{name} {found[name]:,}" for name in cfg.expect_counts)
    expected = ", ".join(f"{name} {count:,}" for name, count in cfg.expect_counts.items())
    print(f"{cfg.name}: pool class counts {got} (the report: {expected})", flush=True)
    if all(found[name] == count for name, count in cfg.expect_counts.items()):
        return []
    return [f"the {cfg.name} pool has {got}, the report {expected} (dataset.expect_counts): not the report's images"]


def require_images(splits: Splits, cfg: DatasetConfig, val_asked: bool, pool_sizes: tuple[int, int | None]) -> None:
    """A DataError naming each empty split and every count: a trial with no training image, or none to test
    on, would otherwise finish `ok` with a test accuracy of 0 or of an untrained network."""
    counts = {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)}
    empty = [name for name, n in counts.items() if n == 0 and (name != "val" or val_asked)]
    if not empty:
        return
    train_pool, test_pool = pool_sizes
    pools = f"a pool of {train_pool} images" if test_pool is None else f"a train pool of {train_pool} and a test pool of {test_pool} images"
    where = cfg.name + (f" ({cfg.path})" if cfg.path else "")
    raise DataError(
        f"dataset {where}: the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty "
        f"({', '.join(f'{name} {n}' for name, n in counts.items())} images, from {pools}; "
        f"train_fraction {cfg.train_fraction}, val_fraction {cfg.val_fraction}, split {cfg.split})"
    )


def greedy_fill(labels: np.ndarray, groups: list[str], val_fraction: float, imbalance: Imbalance | None) -> tuple[np.ndarray, np.ndarray]:
    """002's split (new_main.py:43-61 `split_data`): (train, val) positions.

    Image by image in pool order, per class: the first image and any image while
    the class's train share (of the images seen so far) is under its target go to
    train; else to val while its val share is under val_fraction; else the image
    is dropped. The train target is 1 - val_fraction, times imbalance.keep for
    the minority group's classes (the text: val keeps 20% of every class, train
    25% of the rest of each cat breed: 0.25 x 0.8 = 0.2, the code's cat target).

    Cats are the true cat breeds. The code's `target_to_binary` (new_main.py:27-30)
    lists the 1-based breed ids of the cats against torchvision's 0-based labels, so
    as run its 12 "cat" breeds were 4 cats (Birman, Bombay, Russian Blue, Sphynx)
    and 8 dogs. The text and these imbalance tables mean species, and the totals
    (about 100 images a breed, 12 breeds either way) cannot tell the two apart, so
    the fill follows the text."""
    seen: dict[int, list[int]] = {}  # class -> [to train, to val, seen]
    train, val = [], []
    for i, label in enumerate(labels.tolist()):
        counts = seen.setdefault(label, [0, 0, 0])
        keep = imbalance.keep if imbalance is not None and groups[label] == imbalance.minority else 1.0
        if counts[2] == 0 or counts[0] / counts[2] < keep * (1 - val_fraction):
            train.append(i)
            counts[0] += 1
        elif counts[1] / counts[2] < val_fraction:
            val.append(i)
            counts[1] += 1
        counts[2] += 1
    return np.asarray(train, dtype=np.int64), np.asarray(val, dtype=np.int64)


def random_take(labels: np.ndarray, idx: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw n of idx uniformly, whatever their classes (an unstratified split): (taken, rest)."""
    members = rng.permutation(np.asarray(idx))
    return members[:n], members[n:]


def stratified_take(labels: np.ndarray, idx: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw n of idx with every class in proportion (largest remainder): (taken, rest)."""
    idx = np.asarray(idx)
    classes, counts = np.unique(labels[idx], return_counts=True)
    quota = exact_counts(n, counts.astype(float)) if len(idx) else counts * 0
    taken, rest = [], []
    for cls, k in zip(classes, quota):
        members = rng.permutation(idx[labels[idx] == cls])
        taken.append(members[:k])
        rest.append(members[k:])
    return np.concatenate(taken or [idx[:0]]), np.concatenate(rest or [idx[:0]])


def _drop_minority(labels: np.ndarray, idx: np.ndarray, groups: list[str], imbalance: Imbalance, rng: np.random.Generator) -> np.ndarray:
    keep_parts = []
    for cls in np.unique(labels[idx]):
        members = rng.permutation(idx[labels[idx] == cls])
        if groups[cls] == imbalance.minority:
            members = members[: round(imbalance.keep * len(members))]
        keep_parts.append(members)
    return np.concatenate(keep_parts)


def _pools(cfg: DatasetConfig, target: str, size: int, root: Path) -> tuple[ImageSet, ImageSet | None, list[str]]:
    """(train pool, test pool or None, class names), decoded at `size`."""
    name = cfg.name
    if cfg.source == "synthetic" or DATASETS[name].load is None:
        return _synthetic_pools(cfg, target, size)
    with _exclusive(root, name):  # one download and decode at a time per data root, however many trials ask
        return _real_pools(cfg, target, size, root)


@contextlib.contextmanager
def _exclusive(root: Path, name: str) -> Iterator[None]:
    (root / CACHE_DIR).mkdir(parents=True, exist_ok=True)
    with open_lock(root / CACHE_DIR / f"{name}.lock") as lock:  # a planted link is refused, never truncated through
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _real_pools(cfg: DatasetConfig, target: str, size: int, root: Path) -> tuple[ImageSet, ImageSet | None, list[str]]:
    info = DATASETS[cfg.name]
    found = info.load(root, cfg, target)
    classes = found.classes or info.classes(target, info.targets[target])
    for pool in (found.train, found.test):
        if pool is not None:  # every loader's labels index its classes (each loader names the file where it can)
            check_labels(pool.labels, len(classes), len(pool), pool.identity)
    train_set = decode_pool(found.train, size, cfg.train_resize or cfg.resize, root)
    test_set = decode_pool(found.test, size, cfg.resize, root) if found.test is not None else None
    return train_set, test_set, classes


def _synthetic_pools(cfg: DatasetConfig, target: str, size: int) -> tuple[ImageSet, ImageSet | None, list[str]]:
    name, info = cfg.name, DATASETS[cfg.name]
    # imagefolder's twin: its classes are only known from the folders, so it gets 10.
    n_classes = (cfg.n_classes if info.classes_from_config else info.targets[target]) or 10
    # Configured priors as the list they were (they key the pool, and the feature caches built on it).
    configured = list(cfg.priors) if cfg.priors is not None else None
    priors = (configured if info.classes_from_config else info.priors.get(target)) or [1 / n_classes] * n_classes
    identity = f"{name}/{target}/{n_classes}"
    classes = info.classes(target, n_classes)
    n_train, n_test = cfg.n_train, cfg.n_test

    def pool(n: int, sample_seed: int, split: str) -> ImageSet:
        images, labels = synthetic_pool(n, priors, size, identity, sample_seed)
        key = f"synthetic/{identity}/{priors}/{sample_seed}/{n}/{size}"
        return ImageSet.whole(images, torch.from_numpy(labels), _names(n, split), key)

    if not info.has_test_split:  # one pool, cut by `split` like the real one
        return pool(n_train + n_test, 0, "all"), None, classes
    return pool(n_train, 0, "train"), pool(n_test, 1, "test"), classes


def _names(n: int, split: str) -> list[str]:
    return [f"synthetic/{split}/{i}" for i in range(n)]


# -- decoding, once ---------------------------------------------------------------


class NotOneSize(Exception):
    """An image of a pool kept at its own size is not that size: the pool is decoded at the image size instead."""


def decode_pool(pool: Pool, size: int, resize: str, root: Path) -> ImageSet:
    """A pool's images, delivered at `size`. Small square images of one size (CIFAR's 32 px) are cached at that
    size and enlarged per batch where they are used (on the card on a GPU): not 49x larger at 224 px."""
    side = small_side(pool, size)
    if side:
        try:
            stored = decode(pool, side, "native", root)
        except NotOneSize:
            pass
        else:
            return replace(stored, pool_key=f"{stored.pool_key}|{size}|{resize} on use", size=size, resize=resize)
    return decode(pool, size, resize, root)


def small_side(pool: Pool, size: int) -> int:
    """The side of the pool's first image where it is square and smaller than `size`, else 0."""
    if not len(pool):
        return 0
    try:
        first = pool.read(0)
    except Exception:  # an unreadable first image: decode() reads it again and names the file
        return 0
    width, height = (first.shape[1], first.shape[0]) if isinstance(first, np.ndarray) else first.size
    return width if width == height and width < size else 0


def decode(pool: Pool, size: int, resize: str, root: Path) -> ImageSet:
    """All images of a pool at `size`, uint8, from the cache when an earlier trial decoded them."""
    identity = f"{pool.identity}|{len(pool)}|{size}|{resize}|{content_key(pool)}"
    key = hashlib.sha256(identity.encode()).hexdigest()[:20]
    cache = root / CACHE_DIR / f"{key}.npy"
    shape = (len(pool), 3, size, size)
    images = _cached(cache, shape)
    if images is None:
        _write_cache(pool, size, resize, cache)
        try:
            images = map_npy(cache, np.uint8, shape)
        except (OSError, UnusableCache) as exc:  # replaced again since, or a disk that lost it
            raise DataError(f"decode cache {cache}, just written, does not read back: {exc}") from None
    labels = torch.from_numpy(pool.labels.astype(np.int64))
    return ImageSet.whole(torch.from_numpy(images), labels, list(pool.names) or _names(len(pool), "pool"), identity)


def _cached(cache: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """A decoded pool from its cache (uint8, copy-on-write: lazy like a read-only map, but torch.from_numpy accepts
    it); None where there is none yet, or where it is unusable (truncated, another dtype or shape, not a regular
    file): that one is rebuilt, with a warning naming it, never used."""
    try:
        return map_npy(cache, np.uint8, shape)
    except FileNotFoundError:
        return None
    except UnusableCache as exc:
        print(f"warning: rebuilding an unusable decode cache: {exc}", file=sys.stderr, flush=True)
        return None


def content_key(pool: Pool) -> str:
    """A hash of every source file's name, size and mtime (ns): images replaced by others, even as many, rebuild the cache.

    The decoded pool's key, and through ImageSet.pool_key the frozen-feature cache's too."""
    digest = hashlib.sha256(pool.version.encode())
    for path in pool.files:
        stat = os.stat(path)
        # os.fsencode: a name that is not UTF-8 keys by its bytes (str.encode refuses it)
        digest.update(os.fsencode(path.name) + f"\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _write_cache(pool: Pool, size: int, resize: str, cache: Path) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=cache.stem, suffix=".tmp")
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(pool), 3, size, size))
        bad: list[str] = []
        for i in range(len(pool)):
            try:
                out[i] = resize_image(pool.read(i), size, resize)
            except (OSError, ValueError, SyntaxError) as exc:  # what PIL raises on truncated or foreign files
                bad.append(f"{pool.describe(i)} ({exc if isinstance(exc, (NotRegularFile, ImageTooLarge)) else type(exc).__name__})")
        if bad:
            raise DataError(f"{len(bad)} unreadable image(s) in {pool.identity}: {'; '.join(bad[:5])}" + (" ..." if len(bad) > 5 else ""))
        out.flush()
        del out
        os.replace(tmp, cache)  # atomic: a concurrent trial sees the whole cache or none
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def resize_image(image: Any, size: int, mode: str) -> np.ndarray:
    """A PIL image or HWC uint8 array -> CHW uint8 at size x size."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image = to_rgb(image)
    if mode == "native":  # kept at its own size: every image of the pool must have it
        if image.size != (size, size):
            raise NotOneSize(f"{image.size[0]}x{image.size[1]}, not {size}x{size}")
    elif mode == "squash":
        image = image.resize((size, size), Image.BILINEAR)
    else:  # "crop": torchvision's weights transforms, Resize(256) + CenterCrop(224), scaled to size
        short = round(size * 256 / 224)
        w, h = image.size
        scale = short / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
