"""A training step never waits on the device: nothing is read back per step, only once per epoch.

Counted on the CPU by `HostReads` (every `.item()`, `bool()`/`int()` of a tensor, `.tolist()`, `.cpu()`,
data-dependent shape...), which on a GPU would each stall the host until the card caught up."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from helpers import typed

from tlbench.trial import train
from tlbench.trial.host_reads import HostReads


def build_trial(tmp_path, **sections):
    config = typed(precision="fp32", train={"augment": "hflip", **sections.pop("train", {})}, **sections)
    trial = train.build(config, tmp_path, torch.device("cpu"), feature_cache=False, compile=False, memory_format=None)
    optimizer = train.make_optimizer(trial.built, trial.plan, config.train, config.train.lr)
    return trial, optimizer


def train_epoch(trial, optimizer, steps: int) -> dict:
    """An epoch's steps and their stats, as run_epoch trains them (without its validation)."""
    return train.epoch_stats(trial.criterion, train.train_steps(trial, optimizer, trial.splits.train, 0, steps))


def reads_in_epoch(trial, optimizer, steps: int) -> HostReads:
    with HostReads() as reads:
        train_epoch(trial, optimizer, steps)
    return reads


@pytest.mark.parametrize("train_section", [{}, {"loss": "bce", "class_weights": "balanced", "sampler": "oversample"}])
def test_an_epoch_reads_the_device_once_whatever_its_steps(tmp_path, train_section):
    dataset = {"n_classes": 2} if train_section else {}
    trial, optimizer = build_trial(tmp_path, train=train_section, dataset=dataset)
    few, many = reads_in_epoch(trial, optimizer, 2), reads_in_epoch(trial, optimizer, 6)
    assert few.count == many.count == 1, many.where  # the epoch's totals, in one read


def test_the_step_loop_reads_nothing_and_the_counter_sees_a_read_added_back(tmp_path, monkeypatch):
    trial, optimizer = build_trial(tmp_path)
    with HostReads() as reads:
        steps = train.train_steps(trial, optimizer, trial.splits.train, 0, 4)
    assert reads.count == 0, reads.where
    assert steps.sizes == [trial.config.train.batch_size] * 4
    # A step that checks its loss on the host, as the trainer once did, is caught.
    loss = trial.criterion.loss

    def checked(logits, y):
        value = loss(logits, y)
        if not torch.isfinite(value):
            raise AssertionError("unreachable: the loss is finite")
        return value

    monkeypatch.setattr(trial, "criterion", replace(trial.criterion, loss=checked))
    with HostReads() as reads:
        train.train_steps(trial, optimizer, trial.splits.train, 0, 3)
    assert reads.count == 3


def test_evaluation_reads_back_once_per_split(tmp_path):
    trial, _ = build_trial(tmp_path, dataset={"n_test": 600})  # three evaluation batches of 256
    with HostReads() as reads:
        loss, preds = train.evaluate(trial, trial.splits.test)
    # the loss (.item), the predictions (.cpu().numpy()): not one per batch
    assert reads.count == 3 and len(preds) == 600 and loss > 0, reads.where


def test_an_epoch_with_no_step_has_no_loss_rather_than_zero(tmp_path):
    trial, optimizer = build_trial(tmp_path)
    stats = train_epoch(trial, optimizer, 0)
    assert stats["images"] == 0 and stats["loss"] != stats["loss"] and not stats["diverged"]


def test_a_non_finite_loss_read_at_the_epochs_end_still_makes_it_diverged(tmp_path):
    trial, _ = build_trial(tmp_path)
    steps = train.Steps()
    logits, labels = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0]]), torch.tensor([0, 0])
    steps.add(torch.tensor(0.5), logits, labels)
    assert train.epoch_stats(trial.criterion, steps) == {"loss": 0.5, "acc": 0.5, "images": 2, "diverged": False}
    steps.add(torch.tensor(float("inf")), logits, labels)
    stats = train.epoch_stats(trial.criterion, steps)
    assert stats["diverged"] and stats["images"] == 4 and stats["loss"] == float("inf") and stats["acc"] != stats["acc"]


def test_an_epoch_moves_its_rows_and_labels_once_and_a_step_takes_slices(tmp_path, monkeypatch):
    """On a card each move is a pinned buffer and a launch: once per epoch, not once per step (or per batch of an
    evaluation); a split with nothing in it moves nothing."""
    from tlbench.trial import pipeline

    trial, optimizer = build_trial(tmp_path, dataset={"n_test": 600})
    moved = []
    epoch_rows = pipeline.epoch_rows

    def counted(images, order, rows_on, labels_on):
        moved.append(len(order))
        return epoch_rows(images, order, rows_on, labels_on)

    monkeypatch.setattr(pipeline, "epoch_rows", counted)
    steps = train.train_steps(trial, optimizer, trial.splits.train, 0, 4)
    assert moved == [len(trial.splits.train)] and len(steps.sizes) == 4
    train.evaluate(trial, trial.splits.test)  # three batches of 256
    assert moved[1:] == [600]
    empty = trial.splits.test.subset([])
    loss, preds = train.evaluate(trial, empty)
    assert moved[2:] == [] and loss != loss and len(preds) == 0
