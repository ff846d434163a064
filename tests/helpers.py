"""Tiny grids and configs that run in seconds on a CPU, and the rows and planted files several test modules share."""

from __future__ import annotations

import copy
import json
import os
import socket
import threading
import time
from pathlib import Path

from tlbench.grid.config import check_resolved, merge
from tlbench.grid.schema import defaults
from tlbench.plan.leases import Leases
from tlbench.results.store import Store
from tlbench.trial.config import DatasetConfig, TrialConfig
from tlbench.trial.execute import trial_row

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


# Shared by several test modules (rows, configs, planted files): one home each.


def fake_row(spec, status="ok", test_acc=0.5, **summary):
    values = {"test_acc": test_acc, "test_loss": 1.0, "train_acc": test_acc, "val_acc": test_acc, "wall_s": 1.0, **summary}
    return trial_row(spec, status, values, {"profile": "full", "node_id": "node-a"})


def dataset_cfg(**overrides) -> DatasetConfig:
    cfg = defaults()["dataset"]
    cfg.update(overrides)
    return DatasetConfig.from_dict(cfg)


def plant(claims: Leases, trial_id: str, age_s: float = 0, **holder) -> None:
    claims.folder.mkdir(parents=True, exist_ok=True)
    path = claims.path(trial_id)
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": None, "driver": "x", **holder}))
    os.utime(path, (time.time() - age_s, time.time() - age_s))


def callback(tmp_path):
    from tlbench.on_ray.driver import StoreResults
    from tlbench.plan.progress import Progress

    counts: dict[str, int] = {}
    return StoreResults(Store(tmp_path), Leases(tmp_path), Progress([], devices=1, live=False), counts), counts


def tune_result(row, epochs=()):
    return {"payload": json.dumps({"row": row, "epochs": list(epochs)})}


def unblock(fifo: Path) -> None:
    """Open a FIFO's write end, so a reader the code under test left blocked on it returns (the suite can exit)."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def cache_files(root) -> list:
    return sorted((root / ".tlbench-cache" / "features").glob("*.npy"))


def editable(**train) -> TrialConfig:
    return typed(
        model={"arch": "traced_models:editable_net", "weights": "none"},
        image_size=16,
        precision="fp32",
        epochs=2,
        train={"freeze": "head", "lr": 1e-2, "batch_size": 16, **train},
        dataset={"n_classes": 3, "n_train": 60, "n_test": 30},
    )
