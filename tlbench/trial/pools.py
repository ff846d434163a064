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

import os
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlbench.results.regular_files import open_regular

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

    def __post_init__(self) -> None:
        """One label per image, whatever the loader: a label list that is one short shifts every later label."""
        if self.names and len(self.names) != len(self.labels):
            raise DataError(f"{self.identity}: {len(self.labels)} labels for {len(self.names)} images")

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


class ImageTooLarge(ValueError):
    """An image over PIL's decompression-bomb limit (a few KB that decode to gigabytes)."""


def file_pool(identity: str, labels: np.ndarray, files: list[Path]) -> Pool:
    return Pool(
        identity, labels, lambda i: read_image(files[i]), [printable(f.name) for f in files], lambda i: printable(str(files[i])), files
    )


def read_image(path: Path) -> Any:
    """An image file as an RGB PIL image. Only a regular file is opened (a FIFO would block forever); an image over
    PIL's pixel limit raises ImageTooLarge, as PIL's warning for one would otherwise let it decode."""
    from PIL import Image

    with warnings.catch_warnings(), open_regular(path) as fh:
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(fh)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLarge(f"over PIL's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS} pixels ({exc})") from None
        with img:
            return to_rgb(img)


def to_rgb(image: Any) -> Any:
    """A PIL image in RGB. 16-bit greyscale (PNG's I;16, or I) is scaled to 8 bits: PIL's own conversion clips
    every value over 255 to white."""
    from PIL import Image

    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        wide = np.asarray(image).astype(np.int64)  # 16-bit values, whatever their byte order on disk
        image = Image.fromarray((np.clip(wide, 0, 65535) >> 8).astype(np.uint8))
    return image.convert("RGB")


def images_in(folder: Path) -> list[Path]:
    """The image files directly in a folder, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def printable(text: str) -> str:
    """A file name as text any output takes: bytes that are not UTF-8 (kept by Python as lone surrogates, which
    print, JSON and Parquet refuse) written as \\xNN."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def check_labels(labels: Any, n_classes: int, n_images: int, where: object, first: int = 0) -> np.ndarray:
    """`labels` as int64 if there is one per image and each is a class (first..first + n_classes - 1 as stored);
    else a DataError naming `where`. Returns them from 0."""
    values = labels.tolist() if isinstance(labels, np.ndarray) else list(labels)
    if len(values) != n_images:
        raise DataError(f"{where}: {len(values)} labels for {n_images} images: each image needs exactly one")
    bad = [v for v in values if not _is_int(v) or not first <= v < first + n_classes]
    if bad:
        raise DataError(f"{where}: labels must be {first}..{first + n_classes - 1}, found {', '.join(map(repr, bad[:5]))}")
    return np.asarray(values, dtype=np.int64).reshape(-1) - first


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
