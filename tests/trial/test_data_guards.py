"""Data that would give a wrong number or a hang, in the real on-disk formats: refused naming the file, or rebuilt.

Empty splits, label lists that do not match their images, planted links and FIFOs under --data, damaged decode
caches, file names that are not UTF-8, decompression bombs and 16-bit PNGs (issue 21, items 2, 5, 7, 8, 13, 14).
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from fake_datasets import (
    class_colour,
    read_cifar10_batch,
    write_celeba,
    write_cifar10,
    write_cifar10_batch,
    write_imagefolder,
    write_pets,
    write_png16,
    write_stl10,
)
from helpers import dataset_cfg, finishes, resolved
from test_data import colour_matches_label

from tlbench.grid import TrialSpec
from tlbench.results import regular_files
from tlbench.trial import data
from tlbench.trial.execute import execute


def unblock(fifo) -> None:
    """Open a FIFO's write end, so a reader left blocked on it returns (the suite can exit)."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def load_imagefolder(root, **overrides) -> data.Splits:
    return data.load(dataset_cfg(name="imagefolder", path="mine", **overrides), 16, root, seed=0)


def decode_caches(root) -> list:
    return sorted((root / data.CACHE_DIR).glob("*.npy"))


# -- 2: an empty split is an error naming it and the counts --------------------------------------------


def test_an_image_folder_with_empty_test_class_folders_is_a_trial_error(tmp_path):
    write_imagefolder(tmp_path, train=4, test=0)  # test/ant, test/bee, test/cat exist, empty
    config = resolved(dataset={"name": "imagefolder", "path": "mine", "n_classes": None, "val_fraction": 0.25})
    row, epochs = execute(TrialSpec("abc", "e", "r.txt", 0, {}, config, ("e",)), tmp_path, {"profile": "test"})
    assert row["status"] == "error" and epochs == []
    assert "DataError" in row["error"] and "the test split is empty (train 9, val 3, test 0 images" in row["error"]
    assert "a train pool of 12 and a test pool of 0 images" in row["error"]


def test_a_train_fraction_leaving_no_training_image_is_refused(tmp_path):
    write_cifar10(tmp_path, per_class_train=1, per_class_test=1)  # 50 train images: 40 after val, 0.01 of 40 rounds to 0
    with pytest.raises(data.DataError, match=r"cifar10: the train split is empty \(train 0, val 10, test 10 images.*train_fraction 0.01"):
        data.load(dataset_cfg(name="cifar10", train_fraction=0.01), 32, tmp_path, seed=0)


def test_an_empty_val_split_is_refused_only_where_one_is_asked_for(tmp_path):
    write_imagefolder(tmp_path, train=1, test=1)  # 3 train images: 10% of them rounds to none
    with pytest.raises(data.DataError, match=r"the val split is empty \(train 3, val 0, test 3 images"):
        load_imagefolder(tmp_path, val_fraction=0.1)
    assert len(load_imagefolder(tmp_path, val_fraction=0.0).val) == 0  # none asked for: fine


def test_a_pool_too_small_to_cut_names_every_empty_split(tmp_path):
    write_celeba(tmp_path, n=4)
    with pytest.raises(
        data.DataError, match=r"celeba30k: the val and test splits are empty \(train 4, val 0, test 0 images, from a pool of 4"
    ):
        data.load(dataset_cfg(name="celeba30k", split=[0.8, 0.1, 0.1]), 16, tmp_path, seed=0)


# -- 5: as many labels as images, each a class, per file -----------------------------------------------


def test_a_cifar10_batch_one_label_short_is_refused_naming_the_file(tmp_path):
    write_cifar10(tmp_path, per_class_train=2, per_class_test=1)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch = read_cifar10_batch(path)
    write_cifar10_batch(path, {**batch, "labels": batch["labels"][1:]})  # 19 labels for 20 rows
    with pytest.raises(data.DataError, match=r"data_batch_2: 19 labels for 20 images"):
        data.load(dataset_cfg(name="cifar10"), 32, tmp_path, seed=0)


@pytest.mark.parametrize("label", [10, -1, "3", True])
def test_a_cifar10_label_that_is_no_class_is_refused_naming_the_file(tmp_path, label):
    write_cifar10(tmp_path, per_class_train=1, per_class_test=1)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch = read_cifar10_batch(path)
    write_cifar10_batch(path, {**batch, "labels": [*batch["labels"][:-1], label]})
    with pytest.raises(data.DataError, match=rf"test_batch: labels must be 0\.\.9, found {label!r}"):
        data.load(dataset_cfg(name="cifar10"), 32, tmp_path, seed=0)


def test_cifar10_rows_that_are_no_images_are_refused_naming_the_file(tmp_path):
    write_cifar10(tmp_path, per_class_train=1, per_class_test=1)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch = read_cifar10_batch(path)
    write_cifar10_batch(path, {**batch, "data": batch["data"][:, :3000]})
    with pytest.raises(data.DataError, match=r"data_batch_3: expected data of N rows of 3072 bytes"):
        data.load(dataset_cfg(name="cifar10"), 32, tmp_path, seed=0)


@pytest.mark.parametrize(
    ("labels", "why"), [(lambda y: y[:-1], "19 labels for 20 images"), (lambda y: np.r_[y[:-1], 11], "labels must be 1..10, found 11")]
)
def test_stl10_labels_that_do_not_match_the_images_are_refused(tmp_path, labels, why):
    write_stl10(tmp_path, per_class_train=2, per_class_test=1)
    path = tmp_path / "stl10_binary" / "train_y.bin"
    labels(np.fromfile(path, dtype=np.uint8)).astype(np.uint8).tofile(path)
    with pytest.raises(data.DataError, match=rf"train_y.bin \(for .*train_X.bin\): {why}"):
        data.load(dataset_cfg(name="stl10"), 16, tmp_path, seed=0)


def test_stl10_images_file_that_is_no_whole_number_of_images_is_refused(tmp_path):
    write_stl10(tmp_path, per_class_train=1, per_class_test=1)
    with open(tmp_path / "stl10_binary" / "test_X.bin", "ab") as fh:
        fh.write(b"\0" * 100)
    with pytest.raises(data.DataError, match=r"test_X.bin: \d+ bytes, not a whole number of 3 x 96 x 96 images"):
        data.load(dataset_cfg(name="stl10"), 16, tmp_path, seed=0)


def test_a_pets_row_whose_species_is_not_its_breeds_is_refused_naming_the_line(tmp_path):
    write_pets(tmp_path, trainval_per_breed=1, test_per_breed=1)
    annotations = tmp_path / "oxford-iiit-pet" / "annotations" / "test.txt"
    lines = annotations.read_text().splitlines()
    name, cls, _, breed_id = lines[4].split()  # Abyssinian, a cat
    lines[4] = f"{name} {cls} 2 {breed_id}"  # said to be a dog
    annotations.write_text("\n".join(lines) + "\n")
    with pytest.raises(data.DataError, match=r"test.txt:5: class 1 is Abyssinian, not species 2"):
        data.load(dataset_cfg(name="oxford_pets", target="species"), 16, tmp_path, seed=0)


def test_a_celeba_attribute_file_missing_a_row_is_refused(tmp_path):
    write_celeba(tmp_path, n=10)
    attr = tmp_path / "celeba" / "list_attr_celeba.txt"
    lines = attr.read_text().splitlines()
    attr.write_text("\n".join(lines[:5] + lines[6:]) + "\n")  # row 4 lost: each later image would take the next label
    with pytest.raises(data.DataError, match=r"list_attr_celeba.txt: its first line says '10' images, it has 9 rows"):
        data.load(dataset_cfg(name="celeba30k", split=[0.6, 0.2, 0.2]), 16, tmp_path, seed=0)


def test_celeba_hq_hub_labels_that_are_no_class_are_refused(tmp_path, monkeypatch):
    import sys
    import types

    from PIL import Image
    from test_data import _FakeHubSplit

    rows = [{"image": Image.new("RGB", (8, 8), class_colour(0)), "label": label} for label in (0, 1, 2, 1)]
    fake = types.SimpleNamespace(load_dataset=lambda repo, cache_dir: {"train": _FakeHubSplit(rows)}, concatenate_datasets=lambda s: s[0])
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(data.DataError, match=r"celeba-hq.*label column\): labels must be 0..1, found 2"):
        data.load(dataset_cfg(name="celeba_hq", split=[0.5, 0.25, 0.25]), 16, tmp_path, seed=0)


# -- 7: nothing is written through a link planted under --data ------------------------------------------


def test_a_link_planted_at_the_dataset_lock_is_refused_and_its_target_kept(tmp_path):
    write_imagefolder(tmp_path, train=2, test=1)
    precious = tmp_path / "thesis.tex"
    precious.write_text("four years of work")
    (tmp_path / data.CACHE_DIR).mkdir()
    (tmp_path / data.CACHE_DIR / "imagefolder.lock").symlink_to(precious)
    with pytest.raises(regular_files.NotRegularFile, match=r"imagefolder.lock is a symbolic link"):
        load_imagefolder(tmp_path, val_fraction=0.0)
    assert precious.read_text() == "four years of work"


def test_a_dataset_lock_is_shared_not_truncated(tmp_path):
    write_imagefolder(tmp_path, train=2, test=1)
    lock = tmp_path / data.CACHE_DIR / "imagefolder.lock"
    lock.parent.mkdir()
    lock.write_text("held by another trial")
    load_imagefolder(tmp_path, val_fraction=0.0)
    assert lock.read_text() == "held by another trial"


def test_replace_file_replaces_a_planted_link_not_its_target(tmp_path):
    precious = tmp_path / "precious"
    precious.write_text("keep")
    (tmp_path / "index.md").symlink_to(precious)
    regular_files.replace_file(tmp_path / "index.md", "the report")
    regular_files.replace_file(tmp_path / "figure.png", lambda fh: fh.write(b"\x89PNG"))
    assert precious.read_text() == "keep" and not (tmp_path / "index.md").is_symlink()
    assert (tmp_path / "index.md").read_text() == "the report" and (tmp_path / "figure.png").read_bytes() == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png", "index.md", "precious"]  # no temp file left


# -- 8 and 13: FIFOs and damaged decode caches -------------------------------------------------------------


def test_a_fifo_as_an_image_fails_naming_it_without_a_hang(tmp_path):
    base = write_imagefolder(tmp_path, train=2, test=1)
    fifo = base / "train" / "bee" / "9.png"
    os.mkfifo(fifo)
    try:
        with pytest.raises(data.DataError, match=r"1 unreadable image\(s\).*bee/9.png.*is not a regular file \(a FIFO\)"):
            finishes(lambda: load_imagefolder(tmp_path, val_fraction=0.0))
    finally:
        unblock(fifo)


def damage_first(root, damage) -> tuple:
    """Decode the image folder, damage one decode cache, decode again: (first images, then train and test,
    again, the damaged file). Copies first: the damage changes the file the first decode maps."""
    write_imagefolder(root, train=2, test=1)
    first = load_imagefolder(root, val_fraction=0.0)
    first_images = (first.train.images().clone(), first.test.images().clone())
    cache = decode_caches(root)[0]
    damage(cache)
    return first_images, finishes(lambda: load_imagefolder(root, val_fraction=0.0)), cache


def truncate(cache) -> None:
    os.truncate(cache, cache.stat().st_size - 100)


def as_float32(cache) -> None:
    np.save(cache, np.load(cache).astype(np.float32))  # right shape, wrong dtype


def as_fifo(cache) -> None:
    cache.unlink()
    os.mkfifo(cache)


def as_link(cache) -> None:
    elsewhere = cache.parent.parent / "elsewhere.npy"
    np.save(elsewhere, np.zeros(np.load(cache).shape, dtype=np.uint8))  # the right array, but planted
    cache.unlink()
    cache.symlink_to(elsewhere)


@pytest.mark.parametrize(("damage", "why"), [
    (truncate, r"has \d+ bytes, expected \d+ \(truncated"),
    (as_float32, r"holds float32 \(\d+, 3, 16, 16\), expected uint8"),
    (as_fifo, r"is not a regular file \(a FIFO\)"),
    (as_link, r"is a symbolic link"),
])  # fmt: skip
def test_a_damaged_decode_cache_is_rebuilt_with_a_warning_naming_it(tmp_path, capsys, damage, why):
    first, again, cache = damage_first(tmp_path, damage)
    unblock(cache)
    warning = capsys.readouterr().err
    assert "warning: rebuilding an unusable decode cache" in warning and str(cache) in warning
    assert re.search(why, warning)
    assert cache.is_file() and not cache.is_symlink() and np.load(cache).dtype == np.uint8
    assert again.train.images().dtype == first[0].dtype and (again.train.images() == first[0]).all()
    assert (again.test.images() == first[1]).all() and colour_matches_label(again.train)
    load_imagefolder(tmp_path, val_fraction=0.0)
    assert "warning" not in capsys.readouterr().err  # rebuilt once, then used


# -- 14: odd file names, decompression bombs, 16-bit PNGs --------------------------------------------------


def test_a_file_name_that_is_not_utf8_is_read_and_reported_printably(tmp_path):
    base = write_imagefolder(tmp_path, train=2, test=1)
    odd = os.path.join(os.fsencode(base / "train" / "ant"), b"caf\xe9.png")  # Latin-1, not UTF-8
    os.rename(base / "train" / "ant" / "1.png", odd)
    splits = load_imagefolder(tmp_path, val_fraction=0.0)
    assert "caf\\xe9.png" in splits.train.names and len(splits.train) == 6
    assert all(name.encode("utf-8") for name in splits.train.names)  # printable: no lone surrogates
    assert colour_matches_label(splits.train)


@pytest.mark.parametrize("limit", [100, 300])  # 480-pixel images: over twice the limit (PIL's error), or over it (its warning)
def test_a_decompression_bomb_fails_naming_the_file(tmp_path, monkeypatch, limit):
    from PIL import Image

    base = write_imagefolder(tmp_path, train=1, test=1)
    Image.new("RGB", (24, 20)).save(base / "train" / "cat" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(data.DataError, match=r"cat/bomb.png \(over PIL's decompression-bomb limit"):
        load_imagefolder(tmp_path, val_fraction=0.0)


def test_16bit_pngs_are_scaled_to_8_bits_not_clipped(tmp_path):
    base = write_imagefolder(tmp_path, train=1, test=1)
    write_png16(base / "train" / "ant" / "0.png", np.full((24, 20), 128 * 257))  # mid grey in 16 bits
    write_png16(base / "train" / "bee" / "0.png", np.full((24, 20), 40000))
    splits = load_imagefolder(tmp_path, val_fraction=0.0)
    by_class = {int(label): splits.train.images()[i] for i, label in enumerate(splits.train.labels)}
    assert (by_class[0] == 128).all() and (by_class[1] == 40000 >> 8).all()  # clipped, both would read 255


def test_map_npy_takes_any_length_where_the_shape_says_none(tmp_path):
    np.save(tmp_path / "f.npy", np.arange(24, dtype=np.float32).reshape(4, 3, 2))
    mapped = regular_files.map_npy(tmp_path / "f.npy", np.float32, (4, None, None))
    assert mapped.shape == (4, 3, 2) and float(mapped[3, 2, 1]) == 23.0
    with pytest.raises(regular_files.UnusableCache, match=r"holds float32 \(4, 3, 2\), expected float32 \(5, 'any', 'any'\)"):
        regular_files.map_npy(tmp_path / "f.npy", np.float32, (5, None, None))


def test_a_pool_with_fewer_labels_than_images_is_refused_whatever_its_loader():
    from tlbench.trial.pools import Pool

    with pytest.raises(data.DataError, match=r"some/pool: 2 labels for 3 images"):
        Pool("some/pool", np.array([0, 1]), lambda i: None, ["a.png", "b.png", "c.png"])
