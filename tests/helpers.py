"""Tiny grids and configs that run in seconds on a CPU, for every test module."""

from __future__ import annotations

import copy
import threading

from tlbench.grid.config import check_resolved, merge
from tlbench.grid.schema import defaults
from tlbench.trial_config import TrialConfig

TINY_GRID = """
defaults:
  seeds: [0, 1]
  epochs: 1
  image_size: 32
experiments:
  - name: tiny
    source: {report: test.txt}
    dataset: {name: synthetic, n_classes: 3, n_train: 120, n_test: 60}
    model: {arch: "tlbench.tiny:small_cnn", weights: none}
    train: {freeze: none, lr: 3.0e-3, batch_size: 16}
    axes:
      train.lr: [3.0e-3, 1.0e-3]
tables:
  - id: t-tiny
    title: tiny
    metrics: [{key: test_acc, scale: 100, digits: 1}]
    rows:
      - {label: fast, experiment: tiny, where: {train.lr: 3.0e-3}, reported: {test_acc: 90.0}}
      - {label: slow, experiment: tiny, where: {train.lr: 1.0e-3}, reported: {test_acc: 80.0}}
profiles:
  quick: {seeds: [0], epochs: 1}
"""


def resolved(**sections) -> dict:
    """A fully resolved config: defaults, then nested overrides, seed 0."""
    base = {
        "epochs": 1,
        "image_size": 32,
        "dataset": {"name": "synthetic", "n_classes": 4, "n_train": 400, "n_test": 200},
        "model": {"arch": "tlbench.tiny:small_cnn", "weights": "none"},
        "train": {"freeze": "none", "lr": 3e-3, "batch_size": 32},
    }
    config = merge(defaults(), base)
    config = merge(config, copy.deepcopy(sections))
    config.setdefault("seed", 0)
    problems = check_resolved(config)
    assert not problems, problems
    return config


def typed(**sections) -> TrialConfig:
    """`resolved(...)` as a worker takes it (run_trial): the typed, frozen config."""
    return TrialConfig.from_dict(resolved(**sections))


def changed(config: TrialConfig, **sections) -> TrialConfig:
    """A typed config with nested overrides, as `resolved` takes them: changed(config, train={"lr": 1e-2})."""
    return TrialConfig.from_dict(merge(config.to_dict(), copy.deepcopy(sections)))


def finishes(call, *args, timeout_s: float = 20.0):
    """call(*args) in a thread: its result, or a failure (not a hang of the whole suite) where it blocks."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = call(*args)
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"{getattr(call, '__name__', call)} blocked on a FIFO"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
