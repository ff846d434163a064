"""Tiny grids and configs that run in seconds on a CPU, for every test module."""

from __future__ import annotations

import copy

from tlbench.grid.config import check_resolved, merge
from tlbench.grid.schema import defaults

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
