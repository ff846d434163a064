"""Tiny copies of the real datasets' on-disk formats, for the real loaders to read offline.

Each image carries its class as a colour, so a loader that mixes up labels and
images is caught by the tests, not only one that crashes.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from tlbench.registries import datasets
from tlbench.trial.pools import ArraysOnly


def class_colour(label: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(label)
    return tuple(int(x) for x in rng.integers(0, 256, 3))


def _image(label: int, size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(class_colour(label)) + rng.normal(0, 8, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def write_cifar10(root: Path, per_class_train: int = 5, per_class_test: int = 2) -> None:
    """cifar-10-batches-py/data_batch_1..5 and test_batch, pickled dicts of data (N x 3072) and labels."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)

    def batch(per_class: int, seed: int) -> dict:
        labels = [c for c in range(10) for _ in range(per_class)]
        data = np.stack([np.asarray(_image(c, (32, 32), seed + i)).transpose(2, 0, 1).reshape(-1) for i, c in enumerate(labels)])
        return {"data": data, "labels": labels, "batch_label": "fake"}

    for i in range(1, 6):
        write_cifar10_batch(base / f"data_batch_{i}", batch(per_class_train, 1000 * i))
    write_cifar10_batch(base / "test_batch", batch(per_class_test, 99))
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}, fh)


def write_cifar10_batch(path: Path, batch: dict) -> None:
    with open(path, "wb") as fh:
        pickle.dump(batch, fh)


def read_cifar10_batch(path: Path) -> dict:
    with open(path, "rb") as fh:
        return ArraysOnly(fh).load()


def write_png16(path: Path, values: np.ndarray) -> None:
    """A 16-bit greyscale PNG (PIL reads it back as mode I;16) holding these uint16 values."""
    Image.fromarray(np.asarray(values, dtype=np.uint16)).save(path)


def write_pets(root: Path, trainval_per_breed: int | dict[str, int] = 4, test_per_breed: int = 2) -> None:
    """oxford-iiit-pet/images/<Breed>_<n>.jpg and annotations/{trainval,test}.txt ('name class species breed_id')."""
    base = root / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations").mkdir()
    for split, per_breed in (("trainval", trainval_per_breed), ("test", test_per_breed)):
        lines = ["#Image CLASS-ID SPECIES BREED ID", "#ID: 1:37 Class ids", "#SPECIES: 1:Cat 2:Dog", "#BREED ID: 1-25:Cat 1:12:Dog"]
        for cls, breed in enumerate(datasets.PET_BREEDS):
            species = 1 if datasets.PET_SPECIES_OF_BREED[cls] == "cat" else 2
            count = per_breed[datasets.PET_SPECIES_OF_BREED[cls]] if isinstance(per_breed, dict) else per_breed
            for n in range(count):
                name = f"{breed}_{split}{n}"
                _image(cls, (40, 30), hash((split, cls, n)) % 2**31).save(base / "images" / f"{name}.jpg")
                lines.append(f"{name} {cls + 1} {species} {n + 1}")
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")


def write_celeba(root: Path, n: int = 40) -> np.ndarray:
    """celeba/img_align_celeba/NNNNNN.jpg and list_attr_celeba.txt; returns the Male column as 0/1."""
    base = root / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    values = rng.choice([-1, 1], size=(n, len(datasets.CELEBA_ATTRIBUTES)))
    male = datasets.CELEBA_ATTRIBUTES.index("Male")
    lines = [str(n), " ".join(datasets.CELEBA_ATTRIBUTES)]
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        _image(int(values[i, male] == 1), (36, 44), i).save(base / "img_align_celeba" / name)
        lines.append(name + " " + " ".join(f"{v:2d}" for v in values[i]))
    (base / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    return (values[:, male] == 1).astype(int)


def write_imagefolder(root: Path, classes: tuple[str, ...] = ("ant", "bee", "cat"), train: int = 6, test: int = 3) -> Path:
    base = root / "mine"
    for split, count in (("train", train), ("test", test)):
        for label, cls in enumerate(classes):
            folder = base / split / cls
            folder.mkdir(parents=True)
            for n in range(count):
                _image(label, (20, 24), 100 * label + n).save(folder / f"{n}.png")
    return base


def write_celeba_hq_folder(root: Path, per_class: int = 10) -> Path:
    base = root / "celeba_hq"
    for label, cls in enumerate(("female", "male")):
        (base / cls).mkdir(parents=True)
        for n in range(per_class):
            _image(label, (32, 32), 7 * n + label).save(base / cls / f"{label}{n:03d}.jpg")
    return base


def write_stl10(root: Path, per_class_train: int = 3, per_class_test: int = 2) -> None:
    """stl10_binary/{train,test}_X.bin (uint8, N x 3 x 96 x 96, each plane column by column) and {train,test}_y.bin (1-10)."""
    base = root / "stl10_binary"
    base.mkdir(parents=True)
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        labels = [c for c in range(10) for _ in range(per_class)]
        hwc = [np.asarray(_image(c, (96, 96), 50 * c + i)) for i, c in enumerate(labels)]
        np.stack([image.transpose(2, 1, 0) for image in hwc]).tofile(base / f"{split}_X.bin")
        np.asarray([c + 1 for c in labels], dtype=np.uint8).tofile(base / f"{split}_y.bin")


# Every registered dataset with real data, and how to fake it: writer, and the dataset config keys
# its loader needs. `tests/registries/test_registries.py` fails for a dataset that has none.
FAKES = {
    "cifar10": (write_cifar10, {}),
    "stl10": (write_stl10, {}),
    "oxford_pets": (write_pets, {}),
    "celeba30k": (write_celeba, {"split": [0.6, 0.2, 0.2]}),
    "celeba_hq": (write_celeba_hq_folder, {"split": [0.6, 0.2, 0.2]}),
    "imagefolder": (write_imagefolder, {"path": "mine"}),
}
