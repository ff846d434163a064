"""Where images come from: each dataset's on-disk format, read into a `Pool`.

A pool is one official split of a dataset (train, test, or everything where
there is no test split): its labels, known before any image is decoded, and a
reader for image i. Decoding and resizing happen once, in `data.py`.

Real datasets are never faked: a loader reads the files the real dataset ships
(CIFAR-10's pickled batches, the pets `annotations/` and `images/`, CelebA's
attribute file and image folder, an image folder tree), downloading through
torchvision where it can, and a dataset that is missing offline raises
`DatasetMissing` saying which files to put where.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import catalog

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


class _ArraysOnly(pickle.Unpickler):
    """Unpickles what a CIFAR-10 batch holds (dicts, lists, bytes, numpy arrays) and nothing that runs code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: a CIFAR-10 batch holds only arrays and lists")
        return super().find_class(module, name)


def _download_failed(name: str, root: Path, files: str, exc: BaseException) -> DatasetMissing:
    return DatasetMissing(
        f"{name} is not under {root} and could not be downloaded ({type(exc).__name__}: {exc}). "
        f"Put {files} there (or pass --data DIR pointing at a folder that has them)."
    )


def cifar10(root: Path, train: bool) -> Pool:
    """CIFAR-10's python version: pickled batches of 10,000 rows of 3,072 bytes (RGB planes, 32x32)."""
    base = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    if not all((base / n).exists() for n in names):
        try:
            from torchvision.datasets import CIFAR10

            CIFAR10(str(root), train=train, download=True)
        except Exception as exc:  # offline: URLError, socket errors, bad archives
            raise _download_failed("CIFAR-10", base, "data_batch_1..5 and test_batch (the python version, "
                                   "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, extracted)", exc) from None
    arrays, labels = [], []
    for name in names:
        with open(base / name, "rb") as fh:
            try:
                batch = _ArraysOnly(fh, encoding="latin1").load()
                arrays.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                labels += list(batch["labels"])
            except Exception as exc:
                raise DataError(f"{base / name}: not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from None
    data = np.concatenate(arrays).transpose(0, 2, 3, 1)  # HWC, as images are read
    split = "train" if train else "test"
    return Pool(f"cifar10/{split}", np.asarray(labels, dtype=np.int64), lambda i: data[i],
                [f"{split}/{i}" for i in range(len(data))], lambda i: f"{base} ({split} #{i})", [base / n for n in names])


def oxford_pets(root: Path, train: bool, target: str) -> Pool:
    from torchvision.datasets import OxfordIIITPet

    split = "trainval" if train else "test"
    base = root / "oxford-iiit-pet"
    if not (base / "annotations" / f"{split}.txt").exists() or not (base / "images").is_dir():
        try:
            OxfordIIITPet(str(root), split=split, download=True)
        except Exception as exc:
            raise _download_failed("Oxford-IIIT Pet", base, "images/*.jpg and annotations/{trainval,test}.txt "
                                   "(images.tar.gz and annotations.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/)", exc) from None
    names, breeds, species = [], [], []
    list_file = base / "annotations" / f"{split}.txt"
    for n, line in enumerate(list_file.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 4 or not all(p.isdigit() for p in parts[1:]) or not 1 <= int(parts[1]) <= 37 or parts[2] not in ("1", "2"):
            raise DataError(f"{list_file}:{n}: expected 4 columns 'image class_id(1-37) species(1-2) breed_id', got {line!r}")
        names.append(parts[0] + ".jpg")
        breeds.append(int(parts[1]) - 1)
        species.append(int(parts[2]) - 1)  # 1 cat, 2 dog -> 0 cat, 1 dog
    labels = np.asarray(species if target == "species" else breeds, dtype=np.int64)
    # The pixels do not depend on the target: both targets share one decode cache.
    return _file_pool(f"oxford_pets/{split}", labels, [base / "images" / n for n in names])


def celeba30k(root: Path, target: str, limit: int | None) -> Pool:
    base = root / "celeba"
    attr_file, image_dir = base / "list_attr_celeba.txt", base / "img_align_celeba"
    if not attr_file.exists() or not image_dir.is_dir():
        try:
            from torchvision.datasets import CelebA

            CelebA(str(root), split="all", target_type="attr", download=True)
        except Exception as exc:
            raise _download_failed("CelebA", base, "img_align_celeba/*.jpg and list_attr_celeba.txt "
                                   "(from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html)", exc) from None
    lines = attr_file.read_text().splitlines()
    if len(lines) < 3:
        raise DataError(f"{attr_file}: expected a count line, a header of attribute names, then one row per image")
    header = lines[1].split()
    if target not in header:
        raise DataError(f"{attr_file}: no column {target!r}; the header names {', '.join(header)}")
    column = header.index(target)
    names, labels = [], []
    for n, line in enumerate(lines[2:], 3):
        parts = line.split()
        if len(parts) != len(header) + 1 or parts[1 + column] not in ("-1", "1"):
            raise DataError(f"{attr_file}:{n}: expected an image name and {len(header)} values of -1/1, got {line[:80]!r}")
        names.append(parts[0])
        labels.append(1 if parts[1 + column] == "1" else 0)
        if limit and len(names) == limit:
            break
    return _file_pool(f"celeba/{limit}", np.asarray(labels, dtype=np.int64), [image_dir / n for n in names])


def celeba_hq(root: Path, path: str | None, limit: int | None) -> Pool:
    """A local folder `female/` + `male/` (default data/celeba_hq), else the Hugging Face hub."""
    base = root / (path or "celeba_hq")
    if (base / "female").is_dir() and (base / "male").is_dir():
        files, labels = [], []
        for label, cls in enumerate(("female", "male")):
            found = sorted(p for p in (base / cls).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            files += found
            labels += [label] * len(found)
        order = np.argsort([p.name for p in files], kind="stable")[:limit]  # limit takes the first N by name
        return _file_pool(f"celeba_hq/local/{limit}", np.asarray(labels)[order], [files[i] for i in order])
    return _celeba_hq_hub(base, limit)


HF_CELEBA_HQ = os.environ.get("TLBENCH_CELEBA_HQ_REPO", "korexyz/celeba-hq-256x256")


def _celeba_hq_hub(base: Path, limit: int | None) -> Pool:
    try:
        import datasets  # the optional extra tlbench[hub]
    except ImportError:
        raise DatasetMissing(f"CelebA-HQ: no folder {base}/female and {base}/male, and the Hugging Face `datasets` "
                             f"package is not installed (pip install -e '.[hub]'). Put the images in those two folders.") from None
    try:
        parts = datasets.load_dataset(HF_CELEBA_HQ, cache_dir=str(base.parent / "hf"))
    except Exception as exc:
        raise _download_failed(f"CelebA-HQ ({HF_CELEBA_HQ})", base, "female/*.jpg and male/*.jpg", exc) from None
    rows = datasets.concatenate_datasets([parts[k] for k in sorted(parts)])
    if limit:
        rows = rows.select(range(min(limit, len(rows))))
    labels = np.asarray(rows["label"], dtype=np.int64)
    return Pool(f"celeba_hq/hub/{limit}", labels, lambda i: rows[int(i)]["image"], [f"hub/{i}" for i in range(len(labels))],
                lambda i: f"{HF_CELEBA_HQ} row {i}", version=str(getattr(rows, "_fingerprint", "")))


def imagefolder(root: Path, path: str, train: bool) -> tuple[Pool, list[str]]:
    base = root / path / ("train" if train else "test")
    if not base.is_dir():
        raise DatasetMissing(f"imagefolder: no folder {base}; expected {root / path}/train/<class>/*.jpg and {root / path}/test/<class>/*.jpg")
    classes = sorted(d.name for d in base.iterdir() if d.is_dir())
    if not classes:
        raise DatasetMissing(f"imagefolder: {base} has no class folders; expected {base}/<class>/*.jpg")
    files, labels = [], []
    for label, cls in enumerate(classes):
        found = sorted(p for p in (base / cls).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [label] * len(found)
    return _file_pool(f"imagefolder/{(root / path).resolve()}/{base.name}", np.asarray(labels, dtype=np.int64), files), classes


def _file_pool(identity: str, labels: np.ndarray, files: list[Path]) -> Pool:
    def read(i: int) -> Any:
        from PIL import Image

        with Image.open(files[i]) as img:
            return img.convert("RGB")

    return Pool(identity, labels, read, [f.name for f in files], lambda i: str(files[i]), files)


def class_names(name: str, target: str, n_classes: int) -> list[str]:
    if name == "oxford_pets":
        return list(catalog.PET_BREEDS) if target == "breed" else ["cat", "dog"]
    if name == "cifar10":
        return ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    if name == "celeba30k":
        return [f"not {target}", target] if target != "Male" else ["female", "male"]
    if name == "celeba_hq":
        return ["female", "male"]
    return [f"class{i}" for i in range(n_classes)]
