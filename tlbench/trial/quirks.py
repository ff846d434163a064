"""The reports' quirks: where a report's protocol or code trained differently from a plain loop, by name.

Each function below is one such behaviour, switched on by a config key (tlbench/grid/schema.py documents each key;
grid/reports.yaml sets them per experiment and says why in its notes). Its docstring cites the report line, or the
line of 002's code (../shared/reports/002-code/new_main.py, cited as new_main.py:<line>), it mirrors. At a key's
default each is the plain behaviour, so the training loop (train.py) calls them unconditionally, by name, and never
branches on a report itself.

    freeze_plan               004's open choice: frozen BatchNorm keeps its statistics, or re-estimates them
    set_train_mode            002/003 as run: train mode in epoch 1 only; the frozen-BatchNorm mode of freeze_plan
    lr_groups                 002's intent: the head's own lr, one lr per block
    rebuilds_optimizer        002 as run: a new optimizer every epoch
    schedule_epoch            002 as run: the step schedule built with that optimizer never decays
    validation_augment        002 as run: the validation split augmented like train
    tests_every_epoch         003: the test split scored after every epoch
    best_test                 003: the best epoch's test accuracy, a selection on the test set
    probes_lr                 001: the lr chosen by a short probe per candidate
    probe_choice              001: the candidate with the best val accuracy
    training_sets             001: the chosen lr retrains on train + val
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tlbench.trial import data, networks
from tlbench.trial.config import TrainConfig


def freeze_plan(built: networks.Built, train: TrainConfig) -> networks.FreezePlan:
    """What trains from which epoch (train.freeze, registries/freezing.py), with the mode of frozen BatchNorm layers
    `set_train_mode` applies: train.frozen_bn eval (our default) keeps their ImageNet statistics; train, plain PyTorch
    model.train(), re-estimates them on the new data: 004's code is unknown, and the choice can move its "last layer
    only" row (EXPERIMENTS.md, 004 "frozen BatchNorm's mode"; grid/reports.yaml r004-c-freeze-bn-train)."""
    return networks.freeze_plan(train.freeze, built, train.frozen_bn)


def set_train_mode(built: networks.Built, plan: networks.FreezePlan, epoch: int, train: TrainConfig) -> None:
    """The module modes an epoch trains in (networks.set_train_mode).

    train.train_mode_epochs k: the whole network in train mode for the first k epochs, frozen BatchNorm included,
    eval mode after: 002 as run (new_main.py:159 and :240 call model.train() once before the epoch loop, :126
    model.eval() in the per-epoch validation is never undone: k = 1), and 003's approach 2 (its code: model.eval() at
    every epoch's evaluation, 003 report line 276, and no model.train() after it). Otherwise train mode, with frozen
    BatchNorm in the mode `freeze_plan` gave the plan (train.frozen_bn: 004's open choice)."""
    networks.set_train_mode(built, plan, epoch, train.train_mode_epochs)


def lr_groups(built: networks.Built, plan: networks.FreezePlan, train: TrainConfig, lr: float) -> list[dict[str, Any]]:
    """The optimizer's parameter groups (networks.param_groups), of the parameters the plan ever trains. train.head_lr:
    the head at its own lr, the block nearest it at `lr`, each further one times train.block_lr_decay: 002's intent
    for "different lr per layer" (new_main.py:226-227 layer_lrs [1e-2, 1e-3, 1e-4, 1e-5] for layer4..layer1, :252 fc
    at 1e-3)."""
    return networks.param_groups(built, lr, train.block_lr_decay, train.head_lr, plan.ever_trains)


def rebuilds_optimizer(train: TrainConfig) -> bool:
    """A new optimizer at every epoch's start, so momentum and Adam's moments restart (train.optimizer_per_epoch):
    002's gradual unfreezing as run (new_main.py:252-258 builds SGD(model.parameters(), lr=0.001) inside the epoch
    loop)."""
    return train.optimizer_per_epoch


def schedule_epoch(train: TrainConfig, epoch: int) -> int:
    """The epoch the step schedule is at. An optimizer rebuilt every epoch restarts the schedule built with it
    (002 new_main.py:259 StepLR, stepped once at :274): its count is then always 0, and the lr never decays."""
    return 0 if rebuilds_optimizer(train) else epoch


def validation_augment(train: TrainConfig) -> str:
    """The augmentation of the validation split: none, or train's under train.augment_val, 002's augmented run as
    run (new_main.py:80, :94-96: train and val are one random_split of a dataset built with train_transform)."""
    return train.augment if train.augment_val else "none"


def tests_every_epoch(train: TrainConfig) -> bool:
    """The test split scored after every epoch too (train.test_every_epoch): 003's code evaluates on the test loader
    each epoch (003 report lines 117-143: its "Validation phase" iterates test_loader, line 126) and reports the best."""
    return train.test_every_epoch


def best_test(epochs: list[dict[str, Any]], train: TrainConfig) -> dict[str, Any]:
    """The best epoch's test accuracy and its epoch, where the test split was scored every epoch, as 003 reported
    ("The best Test accuracy recorded was 79.69% in Epoch 7", 003 report line 172): a selection on the test set,
    reproduced to compare like with like. Nothing otherwise."""
    if not tests_every_epoch(train):
        return {}
    best = max(epochs, key=lambda e: e["test_acc"])
    return {"best_test_acc": best["test_acc"], "best_test_epoch": best["epoch"]}


def probes_lr(train: TrainConfig) -> bool:
    """The lr is chosen by a probe before training (train.protocol lr_probe): 001 (report lines 66-70: each candidate
    trains 15 steps of 512 on the train set, scored by validation accuracy)."""
    return train.protocol == "lr_probe"


def probe_choice(scores: dict[str, float]) -> float:
    """The probed lr with the best validation accuracy (001 report line 70: "Record the best LR based on validation
    accuracy"); a tie goes to the smaller lr (ours: the report does not say)."""
    return float(max(scores, key=lambda k: (scores[k], -float(k))))


def training_sets(splits: data.Splits, train: TrainConfig) -> tuple[data.ImageSet, data.ImageSet]:
    """(what trains, what validates). After 001's probe the chosen lr retrains on train + val (001 report line 76:
    "we combine train + validation splits into a single training set"): val then trains too, and scoring on it would
    flatter the model, so nothing validates."""
    if probes_lr(train):
        return data.ImageSet.concat(splits.train, splits.val), splits.val.subset(np.arange(0))
    return splits.train, splits.val
