"""What a report's code did, as config keys: each as-run behaviour trains as the code did.

002's code (../shared/reports/002-code/new_main.py) calls model.train() once and
model.eval() in every validation (BatchNorm re-estimates in epoch 1 only), builds
a new optimizer every epoch in its gradual unfreezing (momentum restarts, StepLR
never decays), and splits its imbalanced data by a greedy per-breed fill. New
keys must leave every other config's trial id as it was.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import TINY_GRID, resolved, typed

from tlbench.grid import Grid, GridError, trial_id
from tlbench.grid.cli import preflight
from tlbench.trial import data, train
from tlbench.trial import networks as models
from tlbench.trial.config import Imbalance, TrialConfig


def small(epochs: int, **train_keys) -> TrialConfig:
    """A seconds-long trial: 64 train-pool images, two steps per epoch."""
    return typed(epochs=epochs, dataset={"n_train": 64, "n_test": 32}, train={"batch_size": 16, "max_steps": 2, **train_keys})


def _watch_epochs(monkeypatch) -> list[dict]:
    """Wraps train.train_steps: per epoch, the optimizer's state at its start and BN statistics before / after."""
    seen: list[dict] = []
    original = train.train_steps

    def watched(trial, optimizer, images, epoch, max_steps):
        bn = next(m for m in trial.built.module.modules() if isinstance(m, torch.nn.BatchNorm2d))
        before = bn.running_mean.clone()
        state_at_start = sum(len(s) for s in optimizer.state.values())
        out = original(trial, optimizer, images, epoch, max_steps)
        seen.append(
            {
                "epoch": epoch,
                "state_at_start": state_at_start,
                "bn_moved": not torch.equal(before, bn.running_mean),
                "training": trial.built.module.training,
            }
        )
        return out

    monkeypatch.setattr(train, "train_steps", watched)
    return seen


@pytest.mark.slow
def test_batchnorm_reestimates_in_epoch_one_only_when_train_mode_epochs_is_one(monkeypatch):
    """002 as run: a frozen BatchNorm's statistics move in epoch 1 (model.train()), never after (model.eval())."""
    seen = _watch_epochs(monkeypatch)
    train.run_trial(small(3, freeze="head", train_mode_epochs=1), feature_cache=False)
    assert [e["bn_moved"] for e in seen] == [True, False, False]
    assert [e["training"] for e in seen] == [True, False, False]
    seen.clear()
    train.run_trial(small(2, freeze="head"), feature_cache=False)
    assert [e["bn_moved"] for e in seen] == [False, False]  # as stated: a frozen BatchNorm keeps its statistics


@pytest.mark.parametrize("per_epoch", [True, False])
@pytest.mark.slow
def test_optimizer_rebuilt_every_epoch_starts_without_momentum(monkeypatch, per_epoch):
    seen = _watch_epochs(monkeypatch)
    config = small(3, optimizer="sgd", momentum=0.9, nesterov=True, optimizer_per_epoch=per_epoch)
    train.run_trial(config, feature_cache=False)
    states = [e["state_at_start"] for e in seen]
    assert states[0] == 0
    assert (max(states[1:]) == 0) == per_epoch  # rebuilt: empty momentum buffers at every epoch's start


@pytest.mark.slow
def test_step_schedule_never_decays_when_the_optimizer_is_rebuilt_each_epoch():
    base = {"optimizer": "sgd", "lr": 1e-2, "lr_step": 1, "lr_gamma": 0.1}
    rebuilt = train.run_trial(small(3, **base, optimizer_per_epoch=True), feature_cache=False)
    kept = train.run_trial(small(3, **base), feature_cache=False)
    assert [e["lr"] for e in rebuilt.epochs] == [1e-2] * 3
    assert [e["lr"] for e in kept.epochs] == pytest.approx([1e-2, 1e-3, 1e-4])


@pytest.mark.slow
def test_test_every_epoch_reports_the_best_epochs_test_accuracy_and_the_last_test_loss():
    outcome = train.run_trial(small(3, test_every_epoch=True), feature_cache=False)
    per_epoch = [e["test_acc"] for e in outcome.epochs]
    assert len(per_epoch) == 3 and outcome.summary["best_test_acc"] == max(per_epoch)
    assert outcome.epochs[per_epoch.index(max(per_epoch))]["epoch"] == outcome.summary["best_test_epoch"]
    assert outcome.summary["test_loss"] == pytest.approx(outcome.epochs[-1]["test_loss"])
    assert outcome.summary["test_acc"] == per_epoch[-1]


@pytest.mark.slow
def test_validation_is_augmented_only_where_augment_val_says_so():
    plain = train.run_trial(small(1, augment="strong"), feature_cache=False)
    augmented = train.run_trial(small(1, augment="strong", augment_val=True), feature_cache=False)
    assert plain.summary["train_loss"] == augmented.summary["train_loss"]  # the same training draws
    assert plain.summary["val_loss"] != augmented.summary["val_loss"]


def test_greedy_fill_on_a_hand_computed_example():
    """002's split_data: per class, in pool order, to train while under its train share, else to val while under 20%.

    Class 0 (a dog breed, majority, train target 0.8), 6 images at positions 0, 2, 4, 6, 8, 10:
      #0 first -> train (1/1); #2: 1/1 >= .8, val 0/1 < .2 -> val; #4: 1/2 < .8 -> train;
      #6: 2/3 < .8 -> train; #8: 3/4 < .8 -> train; #10: 4/5 = .8, val 1/5 = .2 -> dropped.
    Class 1 (a cat breed, minority keep 0.25 -> train target 0.2), positions 1, 3, 5, 7, 9, 11:
      #1 first -> train; #3: 1/1 >= .2, val 0/1 -> val; #5: 1/2, val 1/2 -> dropped; #7: 1/3, 1/3 -> dropped;
      #9: 1/4, 1/4 -> dropped; #11: 1/5 = .2 not < .2, val 1/5 -> dropped.
    """
    labels = np.array([0, 1] * 6)
    train_idx, val_idx = data.greedy_fill(labels, ["dog", "cat"], 0.2, Imbalance(minority="cat", keep=0.25))
    assert train_idx.tolist() == [0, 1, 4, 6, 8]
    assert val_idx.tolist() == [2, 3]
    balanced_train, balanced_val = data.greedy_fill(labels, ["dog", "cat"], 0.2, None)
    assert balanced_train.tolist() == [0, 1, 4, 5, 6, 7, 8, 9] and balanced_val.tolist() == [2, 3]


def test_random_split_is_unstratified_and_seeded():
    cfg = typed(dataset={"name": "synthetic", "n_classes": 2, "n_train": 400, "split_method": "random", "priors": [0.5, 0.5]}).dataset
    shares = {float(data.load(cfg, 32, "unused", seed=s).val.labels.float().mean()) for s in range(6)}
    assert len(shares) > 1  # stratified, every seed's val would hold exactly half of each class


def test_weights_names_are_checked_against_the_arch():
    assert models.weights_enum("resnet18", "IMAGENET1K_V1").name == "IMAGENET1K_V1"
    assert models.weights_enum("resnet50", "imagenet") == models.weights_enum("resnet50", "DEFAULT")
    assert models.weights_enum("resnet50", "DEFAULT").name == "IMAGENET1K_V2"
    assert models.weights_enum("alexnet", "none") is None
    with pytest.raises(ValueError, match="IMAGENET1K_V1.*IMAGENET1K_V2"):
        models.weights_enum("resnet50", "IMAGENET1K_V3")


def test_a_bad_weights_name_stops_the_grid_before_it_runs(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(TINY_GRID.replace('"tlbench.tiny:small_cnn", weights: none', "resnet18, weights: IMAGENET1K_V2"))
    with pytest.raises(GridError, match="resnet18 has no such weights; valid: none, imagenet, DEFAULT, IMAGENET1K_V1"):
        preflight(Grid.load(path).expand())
    path.write_text(TINY_GRID.replace("weights: none", "weights: imagenet1k"))
    with pytest.raises(GridError, match="torchvision weights name"):
        Grid.load(path)


def test_new_keys_at_their_defaults_keep_every_trial_id(tmp_path):
    """Ids pinned from the code before these keys existed (commit fad592f)."""
    path = tmp_path / "g.yaml"
    path.write_text(TINY_GRID)
    assert [t.trial_id for t in Grid.load(path).expand()] == [
        "fbcbc774695d0dac",
        "20506803729b5bda",
        "a4a9f0d0cbf4b293",
        "e7c5a77929ce6ee2",
    ]
    gradual = TINY_GRID.replace('"tlbench.tiny:small_cnn"', "resnet18").replace("freeze: none,", "freeze: {gradual: {every: 2}},")
    path.write_text(gradual)
    assert [t.trial_id for t in Grid.load(path).expand()] == [
        "be645743a6a93f02",
        "5cb055dfc2d2ea0a",
        "3bbd7d40d4db2abe",
        "a6fcc8c81c0ca84f",
    ]
    # Set away from its default, a new key is a new config.
    config = resolved()
    assert trial_id({**config, "train": {**config["train"], "train_mode_epochs": 1}}) != trial_id(config)


def test_greedy_split_is_the_one_a_trial_loads():
    cfg = typed(dataset={"n_classes": 2, "n_train": 40, "split_method": "greedy"}).dataset
    splits = data.load(cfg, 32, "unused", seed=0)
    labels = torch.zeros(40, dtype=torch.long)
    labels[splits.train.index], labels[splits.val.index] = splits.train.labels, splits.val.labels
    pool = data.load(replace(cfg, val_fraction=0.0, split_method="stratified"), 32, "unused", seed=0).train.labels
    expected_train, expected_val = data.greedy_fill(pool.numpy(), ["class0", "class1"], 0.2, None)
    assert splits.train.index.tolist() == expected_train.tolist() and splits.val.index.tolist() == expected_val.tolist()
    assert torch.equal(data.load(cfg, 32, "unused", seed=1).train.index, splits.train.index)  # no seed in the fill


@pytest.mark.parametrize("rows, words", [
    ("      - {label: fast, reading: as stated, experiment: tiny, where: {train.lr: 3.0e-3}, reported: {test_acc: 90.0}}\n"
     "      - {label: fast, reading: as runn, experiment: tiny, where: {train.lr: 1.0e-3}, reported: {test_acc: 90.0}}\n",
     ["reading", "as runn", "as run"]),
    ("      - {label: fast, reading: as stated, experiment: tiny, where: {train.lr: 3.0e-3}, reported: {test_acc: 90.0}}\n"
     "      - {label: fast, reading: as run, experiment: tiny, where: {train.lr: 1.0e-3}, reported: {test_acc: 80.0}}\n",
     ["same reported number"]),
    ("      - {label: fast, experiment: tiny, where: {train.lr: 3.0e-3}, reported: {test_acc: 90.0}}\n"
     "      - {label: fast, experiment: tiny, where: {train.lr: 1.0e-3}, reported: {test_acc: 90.0}}\n",
     ["share a label only as two readings"]),
])  # fmt: skip
def test_table_rows_name_a_valid_reading_of_one_reported_number(tmp_path, rows, words):
    head, _, _ = TINY_GRID.partition("    rows:\n")
    path = tmp_path / "g.yaml"
    path.write_text(head + "    rows:\n" + rows + "profiles:\n  quick: {seeds: [0], epochs: 1}\n")
    with pytest.raises(GridError) as err:
        Grid.load(path)
    assert all(w in str(err.value) for w in words), str(err.value)
    # and the two readings of one number load
    good = rows.replace("as runn", "as run").replace("test_acc: 80.0", "test_acc: 90.0")
    if "reading" in good:
        path.write_text(head + "    rows:\n" + good + "profiles:\n  quick: {seeds: [0], epochs: 1}\n")
        assert len(Grid.load(path).tables[0]["rows"]) == 2


def test_a_rows_reading_reaches_the_table_csv_frame():
    from tlbench.report.aggregate import Cell, Row, Table, tables_frame
    from tlbench.report.verdicts import summarize

    cell = Cell("test_acc", "test acc", 88.77, summarize([87.8, 88.1, 88.4]), 2, 100)
    rows = [Row("baseline", "e", ["a"], {"ok": 1}, [cell], [], reading=r) for r in ("as stated", "as run")]
    frame = tables_frame([Table("t", "t", [{"key": "test_acc"}], rows, [])])["t"]
    assert frame["reading"].tolist() == ["as stated", "as run"] and frame["row"].tolist() == ["baseline", "baseline"]
    assert [r.title for r in rows] == ["baseline [as stated]", "baseline [as run]"]
