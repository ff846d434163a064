"""The dataset registry: everything tlbench knows about a dataset, one entry per name, its loader included.

    @register(name="cifar10", targets={"class": 10}, ...)
    def cifar10(root, cfg, target) -> Pools: ...      # reads the files the real dataset ships

An entry holds the dataset's targets and their classes, whether it ships a test split, the class
priors and groups its synthetic twin and `dataset.imbalance` use, the pool sizes the cost model
counts, and the loader that reads its on-disk format into `pools.Pool`s. Adding a dataset is one
decorated loader here plus its fake in `tests/fake_datasets.py`; `tests/registries/test_registries.py` gives
every entry the same checks. Torch-free (numpy; torchvision only inside a loader, to download), so
the driver validates grid files against it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlbench.registries.registry import Registry
from tlbench.results.regular_files import open_regular, read_regular_text
from tlbench.trial.config import DatasetConfig
from tlbench.trial.pools import ArraysOnly, DataError, DatasetMissing, Pool, check_labels, download_failed, file_pool, images_in, printable


@dataclass(frozen=True)
class Pools:
    """What a loader returns: the train pool, the official test pool (None: `dataset.split` carves one), and
    the class names where only the data knows them."""

    train: Pool
    test: Pool | None
    classes: list[str] | None = None


Loader = Callable[[Path, DatasetConfig, str], Pools]  # (data root, the trial's dataset config, target) -> pools


@dataclass(frozen=True)
class Dataset:
    name: str  # the grid file's `dataset.name`
    targets: dict[str, int]  # target name -> number of classes (0: read from the data)
    default_target: str
    has_test_split: bool  # an official test split; else `dataset.split` carves one
    load: Loader | None  # None: there is no real data (the synthetic dataset)
    # Target -> class names in label order; None: class0, class1, ... (or the data's own, see Pools.classes).
    class_names: Callable[[str], list[str]] | None = None
    # Images in the real (train pool, test pool), for the cost model; None: the config's n_train / n_test.
    pool_sizes: tuple[int, int] | None = None
    # Per target: class priors of the real data, so the synthetic twin has the same imbalance. Absent: uniform.
    priors: dict[str, tuple[float, ...]] = field(default_factory=dict)
    # Per target: group name of each class (pets breeds -> species), used by `dataset.imbalance`. Absent: a
    # class is its own group.
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    needs_path: bool = False  # `dataset.path` must name its folder
    classes_from_config: bool = False  # `dataset.n_classes` / `priors` set its classes (the synthetic dataset)

    def classes(self, target: str, n_classes: int) -> list[str]:
        return self.class_names(target) if self.class_names else [f"class{i}" for i in range(n_classes)]


DATASETS: Registry[Dataset] = Registry("dataset")


def register(**facts: Any) -> Callable[[Loader], Loader]:
    """Register the decorated function as the loader of a dataset with these facts (see `Dataset`)."""

    def add(load: Loader) -> Loader:
        DATASETS.register(Dataset(load=load, **facts))
        return load

    return add


def target_of(name: str, target: str | None) -> str:
    return target if target is not None else DATASETS[name].default_target


# -- CIFAR-10 ---------------------------------------------------------------------------------------

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@register(name="cifar10", targets={"class": 10}, default_target="class", has_test_split=True,
          class_names=lambda target: CIFAR10_CLASSES, pool_sizes=(50_000, 10_000))  # fmt: skip
def cifar10(root: Path, cfg: DatasetConfig, target: str) -> Pools:
    return Pools(_cifar10_pool(root, True), _cifar10_pool(root, False))


def _cifar10_pool(root: Path, train: bool) -> Pool:
    """CIFAR-10's python version: pickled batches of 10,000 rows of 3,072 bytes (RGB planes, 32x32)."""
    base = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    if not all((base / n).exists() for n in names):
        try:
            from torchvision.datasets import CIFAR10

            CIFAR10(str(root), train=train, download=True)
        except Exception as exc:  # offline: URLError, socket errors, bad archives
            raise download_failed(
                "CIFAR-10",
                base,
                "data_batch_1..5 and test_batch (the python version, "
                "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, extracted)",
                exc,
            ) from None
    batches = [_cifar10_batch(base / name) for name in names]
    data = np.concatenate([rows for rows, _ in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # HWC, as images are read
    split = "train" if train else "test"
    return Pool(
        f"cifar10/{split}",
        np.concatenate([labels for _, labels in batches]),
        lambda i: data[i],
        [f"{split}/{i}" for i in range(len(data))],
        lambda i: f"{base} ({split} #{i})",
        [base / n for n in names],
    )


def _cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file: (rows of 3,072 bytes, their labels 0-9), checked per file, so a batch one label short is
    refused rather than shifting every later label onto the wrong image."""
    with open_regular(path) as fh:
        try:
            batch = ArraysOnly(fh, encoding="latin1").load()
            rows, labels = np.asarray(batch["data"]), batch["labels"]
        except Exception as exc:
            raise DataError(f"{path}: not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from None
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: expected data of N rows of 3072 bytes (uint8), found {rows.dtype} {rows.shape}")
    return rows, check_labels(labels, 10, len(rows), path)


# -- STL-10 (the labelled splits: 5,000 train and 8,000 test images of 96x96, 10 classes) ----------------

STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]  # class_names.txt


@register(name="stl10", targets={"class": 10}, default_target="class", has_test_split=True,
          class_names=lambda target: STL10_CLASSES, pool_sizes=(5_000, 8_000))  # fmt: skip
def stl10(root: Path, cfg: DatasetConfig, target: str) -> Pools:
    return Pools(_stl10_pool(root, "train"), _stl10_pool(root, "test"))


def _stl10_pool(root: Path, split: str) -> Pool:
    """STL-10's binary version: `<split>_X.bin`, uint8 images of 3 x 96 x 96 with each plane stored column by
    column, and `<split>_y.bin`, one byte per image, labels 1-10."""
    base = root / "stl10_binary"
    images_file, labels_file = base / f"{split}_X.bin", base / f"{split}_y.bin"
    if not images_file.exists() or not labels_file.exists():
        try:
            from torchvision.datasets import STL10

            STL10(str(root), split=split, download=True)
        except Exception as exc:
            raise download_failed("STL-10", base, "train_X.bin, train_y.bin, test_X.bin and test_y.bin (stl10_binary.tar.gz "
                                  "from https://cs.stanford.edu/~acoates/stl10/, extracted)", exc) from None  # fmt: skip
    image_bytes = 3 * 96 * 96
    with open_regular(images_file) as fh:
        n_bytes = os.fstat(fh.fileno()).st_size
        if n_bytes % image_bytes:
            raise DataError(f"{images_file}: {n_bytes} bytes, not a whole number of 3 x 96 x 96 images")
        images = np.memmap(fh, dtype=np.uint8, mode="r") if n_bytes else np.zeros(0, np.uint8)  # the map outlives the file
    with open_regular(labels_file) as fh:
        labels = check_labels(np.fromfile(fh, dtype=np.uint8), 10, n_bytes // image_bytes, f"{labels_file} (for {images_file})", first=1)
    planes = images.reshape(-1, 3, 96, 96)  # (image, channel, column, row)
    return Pool(f"stl10/{split}", labels, lambda i: np.ascontiguousarray(planes[i].transpose(2, 1, 0)),  # HWC, as images are read
                [f"{split}/{i}" for i in range(len(labels))], lambda i: f"{images_file} #{i}", [images_file, labels_file])  # fmt: skip


# -- Oxford-IIIT Pet --------------------------------------------------------------------------------

# Breeds in torchvision's label order (alphabetical, case-insensitive); capitalised names are cats,
# as in the dataset's own convention.
PET_BREEDS = (
    "Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle", "Bengal",
    "Birman", "Bombay", "boxer", "British_Shorthair", "chihuahua", "Egyptian_Mau", "english_cocker_spaniel",
    "english_setter", "german_shorthaired", "great_pyrenees", "havanese", "japanese_chin", "keeshond",
    "leonberger", "Maine_Coon", "miniature_pinscher", "newfoundland", "Persian", "pomeranian", "pug",
    "Ragdoll", "Russian_Blue", "saint_bernard", "samoyed", "scottish_terrier", "shiba_inu",
    "Siamese", "Sphynx", "staffordshire_bull_terrier", "wheaten_terrier", "yorkshire_terrier",
)  # fmt: skip
PET_SPECIES_OF_BREED = tuple("cat" if b[0].isupper() else "dog" for b in PET_BREEDS)


@register(name="oxford_pets", targets={"species": 2, "breed": 37}, default_target="breed", has_test_split=True,
          class_names=lambda target: list(PET_BREEDS) if target == "breed" else ["cat", "dog"],
          pool_sizes=(3_680, 3_669),
          priors={"species": (1188 / 3680, 2492 / 3680)},  # trainval: 1,188 cat and 2,492 dog images (~100 per breed)
          groups={"breed": PET_SPECIES_OF_BREED, "species": ("cat", "dog")})  # fmt: skip
def oxford_pets(root: Path, cfg: DatasetConfig, target: str) -> Pools:
    return Pools(_pets_pool(root, "trainval", target), _pets_pool(root, "test", target))


def _pets_pool(root: Path, split: str, target: str) -> Pool:
    base = root / "oxford-iiit-pet"
    if not (base / "annotations" / f"{split}.txt").exists() or not (base / "images").is_dir():
        try:
            from torchvision.datasets import OxfordIIITPet

            OxfordIIITPet(str(root), split=split, download=True)
        except Exception as exc:
            raise download_failed(
                "Oxford-IIIT Pet",
                base,
                "images/*.jpg and annotations/{trainval,test}.txt "
                "(images.tar.gz and annotations.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/)",
                exc,
            ) from None
    names, breeds, species = [], [], []
    list_file = base / "annotations" / f"{split}.txt"
    for n, line in enumerate(read_regular_text(list_file).splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if (
            len(parts) != 4
            or not all(p.isascii() and p.isdigit() for p in parts[1:])
            or not 1 <= int(parts[1]) <= 37
            or parts[2] not in ("1", "2")
        ):
            raise DataError(f"{list_file}:{n}: expected 4 columns 'image class_id(1-37) species(1-2) breed_id', got {line!r}")
        if PET_SPECIES_OF_BREED[int(parts[1]) - 1] != ("cat", "dog")[int(parts[2]) - 1]:  # the two targets must agree
            raise DataError(f"{list_file}:{n}: class {parts[1]} is {PET_BREEDS[int(parts[1]) - 1]}, not species {parts[2]}: {line!r}")
        names.append(parts[0] + ".jpg")
        breeds.append(int(parts[1]) - 1)
        species.append(int(parts[2]) - 1)  # 1 cat, 2 dog -> 0 cat, 1 dog
    labels = np.asarray(species if target == "species" else breeds, dtype=np.int64)
    # The pixels do not depend on the target: both targets share one decode cache.
    return file_pool(f"oxford_pets/{split}", labels, [base / "images" / n for n in names])


# -- CelebA (the aligned 202,599 images; 000 uses the first 30k) --------------------------------------

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby",
    "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male",
    "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)  # fmt: skip


@register(name="celeba30k", targets=dict.fromkeys(CELEBA_ATTRIBUTES, 2), default_target="Male", has_test_split=False,
          class_names=lambda target: ["female", "male"] if target == "Male" else [f"not {target}", target],
          pool_sizes=(202_599, 0),
          priors={"Male": (17320 / 30000, 12680 / 30000)})  # 000 states 17,320 female / 12,680 male in its 30k images  # fmt: skip
def celeba30k(root: Path, cfg: DatasetConfig, target: str) -> Pools:
    base = root / "celeba"
    attr_file, image_dir = base / "list_attr_celeba.txt", base / "img_align_celeba"
    if not attr_file.exists() or not image_dir.is_dir():
        try:
            from torchvision.datasets import CelebA

            CelebA(str(root), split="all", target_type="attr", download=True)
        except Exception as exc:
            raise download_failed(
                "CelebA",
                base,
                "img_align_celeba/*.jpg and list_attr_celeba.txt (from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html)",
                exc,
            ) from None
    lines = read_regular_text(attr_file).splitlines()
    if len(lines) < 3:
        raise DataError(f"{attr_file}: expected a count line, a header of attribute names, then one row per image")
    n_rows = sum(1 for line in lines[2:] if line.strip())
    if lines[0].strip() != str(n_rows):  # a row lost or doubled is seen here, not as labels off by one
        raise DataError(f"{attr_file}: its first line says {lines[0].strip()!r} images, it has {n_rows} rows")
    header = lines[1].split()
    if target not in header:
        raise DataError(f"{attr_file}: no column {target!r}; the header names {', '.join(header)}")
    column = header.index(target)
    limit = cfg.limit
    names, labels = [], []
    for n, line in enumerate(lines[2:], 3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(header) + 1 or parts[1 + column] not in ("-1", "1"):
            raise DataError(f"{attr_file}:{n}: expected an image name and {len(header)} values of -1/1, got {line[:80]!r}")
        names.append(parts[0])
        labels.append(1 if parts[1 + column] == "1" else 0)
        if limit and len(names) == limit:
            break
    return Pools(file_pool(f"celeba/{limit}", np.asarray(labels, dtype=np.int64), [image_dir / n for n in names]), None)


# -- CelebA-HQ (gender), a local folder or the Hugging Face hub ---------------------------------------

HF_CELEBA_HQ = os.environ.get("TLBENCH_CELEBA_HQ_REPO", "korexyz/celeba-hq-256x256")


@register(name="celeba_hq", targets={"gender": 2}, default_target="gender", has_test_split=False,
          class_names=lambda target: ["female", "male"], pool_sizes=(30_000, 0),
          # CelebA-HQ is ~63% female (18,943 / 30,000): open, recorded in the grid notes.
          priors={"gender": (0.63, 0.37)})  # fmt: skip
def celeba_hq(root: Path, cfg: DatasetConfig, target: str) -> Pools:
    """A local folder `female/` + `male/` (default data/celeba_hq), else the Hugging Face hub."""
    base, limit = root / (cfg.path or "celeba_hq"), cfg.limit
    if (base / "female").is_dir() and (base / "male").is_dir():
        files, labels = [], []
        for label, cls in enumerate(("female", "male")):
            found = images_in(base / cls)
            files += found
            labels += [label] * len(found)
        order = np.argsort([p.name for p in files], kind="stable")[:limit]  # limit takes the first N by name
        return Pools(file_pool(f"celeba_hq/local/{limit}", np.asarray(labels)[order], [files[i] for i in order]), None)
    return Pools(_celeba_hq_hub(base, limit), None)


def _celeba_hq_hub(base: Path, limit: int | None) -> Pool:
    try:
        import datasets  # the optional extra tlbench[hub] (Hugging Face's, not this module)
    except ImportError:
        raise DatasetMissing(
            f"CelebA-HQ: no folder {base}/female and {base}/male, and the Hugging Face `datasets` "
            f"package is not installed (pip install -e '.[hub]'). Put the images in those two folders."
        ) from None
    try:
        parts = datasets.load_dataset(HF_CELEBA_HQ, cache_dir=str(base.parent / "hf"))
    except Exception as exc:
        raise download_failed(f"CelebA-HQ ({HF_CELEBA_HQ})", base, "female/*.jpg and male/*.jpg", exc) from None
    rows = datasets.concatenate_datasets([parts[k] for k in sorted(parts)])
    if limit:
        rows = rows.select(range(min(limit, len(rows))))
    labels = check_labels(rows["label"], 2, len(rows), f"{HF_CELEBA_HQ} (its label column)")
    return Pool(
        f"celeba_hq/hub/{limit}",
        labels,
        lambda i: rows[int(i)]["image"],
        [f"hub/{i}" for i in range(len(labels))],
        lambda i: f"{HF_CELEBA_HQ} row {i}",
        version=str(getattr(rows, "_fingerprint", "")),
    )


# -- Any image folder tree: <path>/{train,test}/<class>/*.jpg ------------------------------------------


@register(name="imagefolder", targets={"class": 0}, default_target="class", has_test_split=True, needs_path=True)
def imagefolder(root: Path, cfg: DatasetConfig, target: str) -> Pools:
    train, classes = _folder_pool(root, cfg.path, "train")
    test, test_classes = _folder_pool(root, cfg.path, "test")
    if test_classes != classes:
        raise DataError(f"imagefolder {root / cfg.path}: train classes {classes} differ from test classes {test_classes}")
    return Pools(train, test, classes)


def _folder_pool(root: Path, path: str, split: str) -> tuple[Pool, list[str]]:
    base = root / path / split
    if not base.is_dir():
        raise DatasetMissing(
            f"imagefolder: no folder {base}; expected {root / path}/train/<class>/*.jpg and {root / path}/test/<class>/*.jpg"
        )
    folders = sorted(d for d in base.iterdir() if d.is_dir())
    if not folders:
        raise DatasetMissing(f"imagefolder: {base} has no class folders; expected {base}/<class>/*.jpg")
    files, labels = [], []
    for label, folder in enumerate(folders):
        found = images_in(folder)
        files += found
        labels += [label] * len(found)
    identity = f"imagefolder/{printable(str((root / path).resolve()))}/{base.name}"
    return file_pool(identity, np.asarray(labels, dtype=np.int64), files), [printable(d.name) for d in folders]


# -- Synthetic: no real data; its classes and priors come from the config --------------------------------

DATASETS.register(Dataset("synthetic", targets={"class": 0}, default_target="class", has_test_split=True, load=None,
                          classes_from_config=True))  # fmt: skip
