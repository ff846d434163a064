"""Datasets: the real loaders on generated copies of the real on-disk formats, and the splits."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
from fake_datasets import class_colour, write_celeba, write_celeba_hq_folder, write_cifar10, write_imagefolder, write_pets, write_stl10
from helpers import dataset_cfg

from tlbench.registries import datasets
from tlbench.trial import data


def colour_matches_label(images: data.ImageSet) -> bool:
    """Each fake image is its class's colour plus noise: the mean colour names the label."""
    means = images.images().float().mean(dim=(2, 3))
    expected = torch.tensor([class_colour(int(label)) for label in images.labels], dtype=torch.float)
    return bool(((means - expected).abs().max(dim=1).values < 12).all())


def test_pets_trainval_splits_2944_736_stratified():
    cfg = dataset_cfg(name="oxford_pets", source="synthetic", n_train=3680, n_test=50)
    splits = data.load(cfg, 16, "unused", seed=0)
    assert (len(splits.train), len(splits.val)) == (2944, 736)
    per_class_val = torch.bincount(splits.val.labels, minlength=37)
    per_class_all = per_class_val + torch.bincount(splits.train.labels, minlength=37)
    assert ((per_class_val - 0.2 * per_class_all).abs() <= 1).all()


@pytest.mark.parametrize("minority", ["cat", "dog"])
@pytest.mark.slow
def test_imbalanced_pets_keep_a_quarter_of_the_minority_species(tmp_path, minority):
    write_pets(tmp_path, trainval_per_breed=10, test_per_breed=1)
    cfg = dataset_cfg(name="oxford_pets", target="breed", imbalance={"minority": minority, "keep": 0.25})
    balanced = data.load(dataset_cfg(name="oxford_pets", target="breed"), 24, tmp_path, seed=3)
    splits = data.load(cfg, 24, tmp_path, seed=3)
    species = np.array(datasets.PET_SPECIES_OF_BREED)
    train_counts = np.bincount(splits.train.labels.numpy(), minlength=37)
    val_counts = np.bincount(splits.val.labels.numpy(), minlength=37)
    assert (val_counts == 2).all()  # val keeps 20% of every class, imbalanced or not
    assert torch.equal(splits.val.labels, balanced.val.labels)
    assert (train_counts[species == minority] == 2).all()  # round(0.25 * 8)
    assert (train_counts[species != minority] == 8).all()
    assert len(splits.test) == 37 and colour_matches_label(splits.train) and colour_matches_label(splits.test)


def test_pets_species_target_reads_the_species_column(tmp_path):
    write_pets(tmp_path, trainval_per_breed=2, test_per_breed=1)
    splits = data.load(dataset_cfg(name="oxford_pets", target="species", val_fraction=0.0), 16, tmp_path, seed=0)
    assert splits.classes == ["cat", "dog"]
    assert int((splits.test.labels == 0).sum()) == 12 and int((splits.test.labels == 1).sum()) == 25


def test_cifar10_python_batches_load_with_stratified_fractions(tmp_path):
    write_cifar10(tmp_path, per_class_train=5, per_class_test=2)  # 5 batches x 50 = 250 train images
    splits = data.load(dataset_cfg(name="cifar10", train_fraction=0.5), 32, tmp_path, seed=1)
    assert len(splits.val) == 50 and len(splits.test) == 20 and len(splits.train) == 100
    assert (torch.bincount(splits.train.labels, minlength=10) == 10).all()
    assert colour_matches_label(splits.train) and colour_matches_label(splits.test)
    assert (tmp_path / data.CACHE_DIR).is_dir()  # decoded once, reused by the next trial
    again = data.load(dataset_cfg(name="cifar10", train_fraction=0.5), 32, tmp_path, seed=1)
    assert torch.equal(again.train.images(), splits.train.images())


def test_celeba_attribute_file_first_n_and_80_10_10(tmp_path):
    male = write_celeba(tmp_path, n=50)
    cfg = dataset_cfg(name="celeba30k", target="Male", limit=40, split=[0.8, 0.1, 0.1])
    splits = data.load(cfg, 24, tmp_path, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (32, 4, 4)
    assert splits.classes == ["female", "male"]
    labels = torch.cat([splits.train.labels, splits.val.labels, splits.test.labels]).sort().values
    assert torch.equal(labels, torch.from_numpy(np.sort(male[:40])))  # the first 40 images, their labels
    assert colour_matches_label(splits.train)


def test_celeba_label_file_with_wrong_columns_is_named(tmp_path):
    write_celeba(tmp_path, n=5)
    attr = tmp_path / "celeba" / "list_attr_celeba.txt"
    lines = attr.read_text().splitlines()
    lines[3] = lines[3].rsplit(" ", 2)[0]  # a row two values short
    attr.write_text("\n".join(lines))
    with pytest.raises(data.DataError, match=r"list_attr_celeba.txt:4: expected an image name and 40 values"):
        data.load(dataset_cfg(name="celeba30k", split=[0.6, 0.2, 0.2]), 16, tmp_path, seed=0)


def test_celeba_hq_from_a_local_folder(tmp_path):
    write_celeba_hq_folder(tmp_path, per_class=10)
    splits = data.load(dataset_cfg(name="celeba_hq", split=[0.8, 0.1, 0.1]), 16, tmp_path, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (16, 2, 2)
    assert splits.classes == ["female", "male"] and colour_matches_label(splits.train)


def test_imagefolder_with_val_carved_from_train(tmp_path):
    write_imagefolder(tmp_path, train=10, test=3)
    splits = data.load(dataset_cfg(name="imagefolder", path="mine", val_fraction=0.2), 16, tmp_path, seed=0)
    assert splits.classes == ["ant", "bee", "cat"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 6, 9)
    assert colour_matches_label(splits.test)


def test_corrupt_images_are_reported_by_path(tmp_path):
    base = write_imagefolder(tmp_path, train=4, test=2)
    (base / "train" / "bee" / "1.png").write_bytes(b"not a png at all")
    (base / "train" / "ant" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(data.DataError, match=r"2 unreadable image\(s\).*ant/3.png.*bee/1.png"):
        data.load(dataset_cfg(name="imagefolder", path="mine"), 16, tmp_path, seed=0)
    assert not list((tmp_path / data.CACHE_DIR).glob("*.npy"))  # nothing half-decoded is kept


def test_missing_dataset_offline_says_what_to_put_where(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    monkeypatch.setattr(torchvision.datasets, "OxfordIIITPet", offline)
    with pytest.raises(data.DatasetMissing, match=r"CIFAR-10 is not under .*cifar-10-batches-py.*data_batch_1\.\.5"):
        data.load(dataset_cfg(name="cifar10"), 32, tmp_path, seed=0)
    with pytest.raises(data.DatasetMissing, match=r"annotations/\{trainval,test\}.txt"):
        data.load(dataset_cfg(name="oxford_pets"), 32, tmp_path, seed=0)
    with pytest.raises(data.DatasetMissing, match=r"no folder .*nothing/train"):
        data.load(dataset_cfg(name="imagefolder", path="nothing"), 32, tmp_path, seed=0)


def test_synthetic_twin_keeps_classes_and_priors():
    cfg = dataset_cfg(name="celeba30k", source="synthetic", split=[0.8, 0.1, 0.1], n_train=900, n_test=100)
    splits = data.load(cfg, 16, "unused", seed=0)
    share_male = float(torch.cat([splits.train.labels, splits.val.labels, splits.test.labels]).float().mean())
    assert share_male == pytest.approx(12680 / 30000, abs=0.01)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (800, 100, 100)


def test_split_depends_on_the_seed_only():
    cfg = dataset_cfg(name="synthetic", n_classes=3, n_train=90, n_test=30)
    a, b, c = (data.load(cfg, 16, "unused", seed=s) for s in (0, 0, 1))
    assert torch.equal(a.val.index, b.val.index) and not torch.equal(a.val.index, c.val.index)


class _FakeHubSplit:
    """The slice of the Hugging Face `datasets` API the CelebA-HQ loader uses."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        return [r[key] for r in self.rows] if isinstance(key, str) else self.rows[key]

    def select(self, indices):
        return _FakeHubSplit([self.rows[i] for i in indices])


def test_celeba_hq_from_the_hub_when_no_local_folder(tmp_path, monkeypatch):
    import sys
    import types

    from PIL import Image

    def image(label: int) -> Image.Image:
        return Image.new("RGB", (24, 24), class_colour(label))

    parts = {
        "train": _FakeHubSplit([{"image": image(i % 2), "label": i % 2} for i in range(16)]),
        "validation": _FakeHubSplit([{"image": image(1), "label": 1} for _ in range(4)]),
    }
    fake = types.SimpleNamespace(
        load_dataset=lambda repo, cache_dir: parts, concatenate_datasets=lambda splits: _FakeHubSplit([r for s in splits for r in s.rows])
    )
    monkeypatch.setitem(sys.modules, "datasets", fake)
    splits = data.load(dataset_cfg(name="celeba_hq", split=[0.8, 0.1, 0.1]), 16, tmp_path, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (16, 2, 2)
    assert colour_matches_label(splits.train)


def test_celeba_hq_without_folder_or_hub_package_says_what_to_do(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails
    with pytest.raises(data.DatasetMissing, match=r"celeba_hq/female and .*male.*pip install -e '\.\[hub\]'"):
        data.load(dataset_cfg(name="celeba_hq", split=[0.8, 0.1, 0.1]), 16, tmp_path, seed=0)


def test_pets_annotation_with_a_bad_row_is_named_with_its_line(tmp_path):
    write_pets(tmp_path, trainval_per_breed=1, test_per_breed=1)
    annotations = tmp_path / "oxford-iiit-pet" / "annotations" / "trainval.txt"
    lines = annotations.read_text().splitlines()
    lines[6] = lines[6].split()[0] + " three 2 1"  # a class id that is no number
    annotations.write_text("\n".join(lines) + "\n")
    with pytest.raises(data.DataError, match=r"trainval.txt:7: expected 4 columns"):
        data.load(dataset_cfg(name="oxford_pets"), 16, tmp_path, seed=0)


def test_both_pets_targets_share_one_decoded_copy(tmp_path):
    write_pets(tmp_path, trainval_per_breed=2, test_per_breed=1)
    data.load(dataset_cfg(name="oxford_pets", target="breed"), 16, tmp_path, seed=0)
    data.load(dataset_cfg(name="oxford_pets", target="species"), 16, tmp_path, seed=0)
    assert len(list((tmp_path / data.CACHE_DIR).glob("*.npy"))) == 2  # trainval and test, once each


def test_stl10_reads_its_column_major_planes(tmp_path):
    """STL-10 stores each plane column by column: an image red on its left half and blue on its right
    must read back that way, not transposed (red on top)."""
    write_stl10(tmp_path, per_class_train=1, per_class_test=1)
    image = np.zeros((96, 96, 3), dtype=np.uint8)
    image[:, :48, 0], image[:, 48:, 2] = 255, 255  # HWC: left half red, right half blue
    raw = np.fromfile(tmp_path / "stl10_binary" / "train_X.bin", dtype=np.uint8).reshape(-1, 3, 96, 96)
    raw[0] = image.transpose(2, 1, 0)  # as the dataset's files hold it
    raw.tofile(tmp_path / "stl10_binary" / "train_X.bin")
    pool = datasets.DATASETS["stl10"].load(tmp_path, dataset_cfg(name="stl10"), "class").train
    read = pool.read(0)
    assert read.shape == (96, 96, 3) and tuple(read[10, 5]) == (255, 0, 0) and tuple(read[10, 90]) == (0, 0, 255)
    assert list(pool.labels[:2]) == [0, 1]
