"""What every dataset loader reads into: a `Pool`, its errors, and helpers for on-disk formats.

A pool is one official split of a dataset (train, test, or everything where
there is no test split): its labels, known before any image is decoded, and a
reader for image i. The loaders themselves are the entries of `datasets.py`;
decoding and resizing happen once, in `data.py`.

Real datasets are never faked: a loader reads the files the real dataset ships,
downloading through torchvision where it can, and a dataset that is missing
offline raises `DatasetMissing` saying which files to put where.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class DatasetMissing(RuntimeError):
    """A dataset is not on disk and could not be downloaded; the message says what to put where."""


class DataError(RuntimeError):
    """A dataset is on disk but unusable (unreadable images, a label file with wrong columns)."""


@dataclass
class Pool:
    identity: str  # what the images are, for the decode cache (not their location)
    labels: np.ndarray  # int64, one per image
    read: Callable[[int], Any]  # i -> PIL image or HWC uint8 array
    names: list[str] = field(default_factory=list)  # file name per image, for reports
    describe: Callable[[int], str] = str  # i -> where image i lives, for error messages
    files: list[Path] = field(default_factory=list)  # the files the pixels come from: their sizes and mtimes key the decode cache
    version: str = ""  # for pools not read from files (the hub): what changes when their images do

    def __len__(self) -> int:
        return len(self.labels)


class ArraysOnly(pickle.Unpickler):
    """Unpickles what a CIFAR-10 batch holds (dicts, lists, bytes, numpy arrays) and nothing that runs code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: a CIFAR-10 batch holds only arrays and lists")
        return super().find_class(module, name)


def download_failed(name: str, root: Path, files: str, exc: BaseException) -> DatasetMissing:
    return DatasetMissing(
        f"{name} is not under {root} and could not be downloaded ({type(exc).__name__}: {exc}). "
        f"Put {files} there (or pass --data DIR pointing at a folder that has them)."
    )


def file_pool(identity: str, labels: np.ndarray, files: list[Path]) -> Pool:
    def read(i: int) -> Any:
        from PIL import Image

        with Image.open(files[i]) as img:
            return img.convert("RGB")

    return Pool(identity, labels, read, [f.name for f in files], lambda i: str(files[i]), files)


def images_in(folder: Path) -> list[Path]:
    """The image files directly in a folder, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
