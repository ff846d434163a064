"""Red-team findings on issue 21's fixes (review21): each a scenario the fixes' own tests left open."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fake_datasets import write_imagefolder, write_pets
from helpers import TINY_GRID, dataset_cfg, typed

from tlbench.grid import Grid, GridError
from tlbench.on_ray import loggers
from tlbench.trial import data, train
from tlbench.trial.pools import DataError


def test_a_network_broken_by_its_last_step_is_diverged_not_a_chance_level_measurement():
    # One batch per epoch: its loss is finite (checked before the step), the step with this lr makes every
    # weight NaN, so each test logit is NaN and argmax says class 0: a 1/3 "accuracy" that measures nothing.
    config = typed(
        epochs=1, dataset={"n_classes": 3, "n_train": 60, "n_test": 30}, train={"optimizer": "sgd", "lr": 1e30, "batch_size": 64}
    )
    outcome = train.run_trial(config, feature_cache=False)
    assert math.isfinite(outcome.epochs[-1]["train_loss"])  # the per-batch check saw nothing
    assert not math.isfinite(outcome.summary["test_loss"])
    assert outcome.status == "diverged"


def load_mine(root, **overrides):
    return data.load(dataset_cfg(name="imagefolder", path="mine", **overrides), 16, root, seed=0)


def test_an_imbalance_minority_naming_no_class_is_a_data_error_not_a_balanced_run(tmp_path):
    write_imagefolder(tmp_path)  # ant, bee, cat: a typo'd minority would drop nothing, silently
    with pytest.raises(DataError, match=r"imbalance.minority 'dgo' names no group or class .*ant, bee, cat"):
        load_mine(tmp_path, imbalance={"minority": "dgo", "keep": 0.5})
    assert len(load_mine(tmp_path, imbalance={"minority": "bee", "keep": 0.5}).train) < len(load_mine(tmp_path).train)


@pytest.mark.parametrize("overrides", [{"imbalance": {"minority": "ant", "keep": 0.01}}, {"train_fraction": 0.1}])
def test_a_class_rounded_to_no_training_image_is_a_data_error_naming_it(tmp_path, overrides):
    write_imagefolder(tmp_path, train=5, test=2)  # 4 train images per class after val: 1% or 10% rounds ant to none
    with pytest.raises(DataError, match=r"no training image of class\(es\) (ant|bee|cat)"):
        load_mine(tmp_path, **overrides)


def test_an_empty_train_class_folder_whose_test_folder_has_images_is_a_data_error(tmp_path):
    base = write_imagefolder(tmp_path, train=5, test=2)
    for image in (base / "train" / "cat").iterdir():
        image.unlink()
    with pytest.raises(DataError, match=r"no training image of class\(es\) cat"):
        load_mine(tmp_path)


@pytest.mark.parametrize("scale", ["1.0e+308", "1.0e+13", "1.0e-320"])
def test_a_scale_that_overflows_or_underflows_a_mean_is_refused_at_load(write_grid, scale):
    # 1e308 passed as "a finite number > 0": every scaled mean was inf, its cell `inf ± inf (3)`, verdict `above`.
    text = TINY_GRID.replace("scale: 100", f"scale: {scale}")
    with pytest.raises(GridError, match=r"scale: got .*expected a finite number > 0, in \[1.0e-12, 1.0e\+12\]"):
        Grid.load(write_grid(text))
    assert Grid.load(write_grid(TINY_GRID.replace("scale: 100", "scale: 1.0e-6"))).tables


def test_a_pets_class_id_in_non_ascii_digits_is_a_data_error_naming_the_line_not_a_valueerror(tmp_path):
    # '²'.isdigit() is True but int('²') raises: the row passed the shape check and crashed with no file named.
    write_pets(tmp_path, trainval_per_breed=1, test_per_breed=1)
    annotations = tmp_path / "oxford-iiit-pet" / "annotations" / "test.txt"
    lines = annotations.read_text().splitlines()
    name, _, species, breed_id = lines[4].split()
    lines[4] = f"{name} \u00b2 {species} {breed_id}"
    annotations.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"test.txt:5: expected 4 columns"):
        data.load(dataset_cfg(name="oxford_pets", target="species"), 16, tmp_path, seed=0)


@pytest.mark.parametrize("axes", [
    {"variant": "v" * 300},  # a variant name: checked as no file name, yet it names the run's folder
    {"train.freeze": {"trainable": [f"features.{i}.block.conv" for i in range(30)]}},  # a long freeze list
])  # fmt: skip
def test_a_run_whose_axes_are_longer_than_a_folder_name_gets_a_folder_tensorboard_can_create(tmp_path, axes):
    # Over 255 bytes, SummaryWriter's makedirs raised 'File name too long' inside Ray's callback: `grid run` ended in
    # a traceback before any trial, every rerun. The name keeps its start and a hash, so two such runs stay apart.
    trial = {"trial_id": "abc", "experiment": "tiny", "report": "t", "seed": 0, "axes": axes}
    other = {**trial, "axes": {**axes, "train.lr": 0.1}}  # another run of the same long axis value
    folders = [tmp_path / loggers.run_name(t) for t in (trial, other)]
    for folder in folders:
        folder.mkdir(parents=True)
    assert folders[0] != folders[1] and all(len(part.encode()) <= 255 for part in folders[0].parts)
    assert loggers.run_name(trial).startswith("tiny/" + next(iter(axes)) + "=")


def test_a_link_planted_at_a_feature_cache_is_rebuilt_not_read_as_features(tmp_path):
    # The decode cache refused a link; the feature cache followed it, so a link to any float32 .npy of the
    # right shape (another network's features, zeros) was used as this prefix's features, silently.
    from helpers import cache_files as _cache_files
    from helpers import editable

    config = editable()
    first = train.run_trial(config, tmp_path)
    cache = _cache_files(tmp_path)[0]
    decoy = tmp_path / "decoy.npy"
    np.save(decoy, np.zeros_like(np.load(cache)))
    cache.unlink()
    cache.symlink_to(decoy)
    with pytest.warns(UserWarning, match=f"rebuilding the feature cache {cache}: .*symbolic link"):
        again = train.run_trial(config, tmp_path)
    assert again.summary["test_loss"] == first.summary["test_loss"]
    assert not cache.is_symlink() and not np.load(decoy).any()  # replaced, its target untouched
