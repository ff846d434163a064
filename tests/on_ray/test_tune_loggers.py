"""Per-epoch metrics through Tune, and Tune's own loggers fed them: TensorBoard (default), MLflow, W&B."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
from helpers import TINY_GRID, typed
from tensorboard_events import scalars

from tlbench.grid import cli
from tlbench.on_ray import driver as scheduler
from tlbench.on_ray import loggers as tune_loggers
from tlbench.trial import train

TWO_TRIALS = TINY_GRID.replace("seeds: [0, 1]", "seeds: [0]").replace("epochs: 1", "epochs: 2", 1)  # two trials of two epochs
SMALL = {"dataset": {"n_train": 96, "n_test": 32}, "train": {"batch_size": 32}}  # seconds per trial
EPOCH_KEYS = {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s", "seconds"}


@pytest.mark.slow
def test_run_trial_hands_every_epoch_its_metrics_as_it_ends():
    seen: list[dict] = []
    outcome = train.run_trial(typed(epochs=3, **SMALL), on_epoch=seen.append)
    assert [row["epoch"] for row in seen] == [1, 2, 3]
    assert all(EPOCH_KEYS <= set(row) for row in seen)
    assert [row["train_loss"] for row in seen] == [e["train_loss"] for e in outcome.epochs]
    assert all(row["images_per_s"] > 0 and math.isfinite(row["images_per_s"]) for row in seen)


@pytest.mark.slow
def test_with_checkpoints_each_epoch_is_one_report_with_its_checkpoint(monkeypatch):
    reports: list[tuple[dict, bool]] = []
    monkeypatch.setattr(scheduler.tune, "report", lambda metrics, checkpoint=None: reports.append((metrics, checkpoint is not None)))
    checkpointer = scheduler.TuneCheckpointer(None)
    monkeypatch.setattr(checkpointer, "load", lambda: None)
    train.run_trial(typed(epochs=3, **SMALL), checkpointer=checkpointer, on_epoch=checkpointer.hold)
    checkpointer.flush()
    assert [(m["epoch"], saved) for m, saved in reports] == [(1, True), (2, True), (3, False)]  # no checkpoint after the last
    assert all(EPOCH_KEYS <= set(m) for m, _ in reports)


def test_only_epoch_reports_numbers_reach_the_loggers():
    epoch = {"epoch": 2, "train_loss": 0.5, "val_acc": 0.75, "lr": 1e-3, "trainable_params": 10, "time_total_s": 3.0}
    assert tune_loggers.epoch_metrics(epoch) == {"train_loss": 0.5, "val_acc": 0.75, "lr": 1e-3}
    assert tune_loggers.epoch_metrics({"payload": "{}", "epoch": 2}) is None  # the final report carries the row
    assert tune_loggers.epoch_metrics({"training_iteration": 1}) is None


def test_a_run_is_named_by_experiment_axes_and_seed():
    trial = {"trial_id": "abc", "experiment": "r001-a", "report": "001", "seed": 2, "axes": {"train.lr": 0.01, "model.weights": "a/b"}}
    assert tune_loggers.run_name(trial) == "r001-a/model.weights=a_b,train.lr=0.01/seed=2"
    assert tune_loggers.run_name({**trial, "axes": {}}) == "r001-a/no-axes/seed=2"
    frozen = {**trial, "axes": {"train.freeze": {"frozen": ["layer1", "layer2"]}, "variant": "it's b"}}
    assert tune_loggers.run_name(frozen) == "r001-a/train.freeze={frozen:[layer1,layer2]},variant=itsb/seed=2"
    assert tune_loggers.run_tags(trial) == {"trial_id": "abc", "experiment": "r001-a", "report": "001", "seed": "2"}


@pytest.mark.parametrize("flag, package", [("--mlflow", "mlflow"), ("--wandb", "wandb")])
def test_a_missing_logger_package_names_its_extra_before_anything_runs(tiny_grid, tmp_path, monkeypatch, capsys, flag, package):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    results = tmp_path / "results"
    assert cli.main(["run", "--grid", str(tiny_grid), "--results", str(results), flag, "somewhere"]) == 2
    assert f"pip install -e '.[{package}]'" in capsys.readouterr().err
    assert not results.exists()


def has(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


# MLflow's two local stores: a folder (`file:`, in maintenance mode upstream, still supported here) and SQLite, the
# store the docs' examples use (`--mlflow sqlite:///mlflow.db`; it needs SQLAlchemy and Alembic, which the mlflow extra adds).
MLFLOW_STORES = {"file": lambda folder: f"file:{folder / 'mlruns'}", "sqlite": lambda folder: f"sqlite:///{folder / 'mlflow.db'}"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", MLFLOW_STORES)
def test_a_grid_run_leaves_tensorboard_runs_and_one_mlflow_run_per_trial(write_grid, tmp_path, kind):
    """W&B too (offline) where the package is installed: it is not in the test extra."""
    mlflow = pytest.importorskip("mlflow")
    results, store = tmp_path / "results", MLFLOW_STORES[kind](tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    wandb = ["--wandb", "tlbench-test"] if has("wandb") else []
    run = subprocess.run([sys.executable, "-m", "tlbench.grid", "run", "--grid", str(write_grid(TWO_TRIALS)), "--results",
                          str(results), "--data", str(tmp_path / "data"), "--mlflow", store, *wandb],
                         capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr

    for lr in ("0.001", "0.003"):
        found = scalars(results / "tensorboard" / "tiny" / f"train.lr={lr}" / "seed=0")
        assert [step for step, _ in found["ray/tune/train_loss"]] == [1, 2]
        assert [value for _, value in found["ray/tune/lr"]] == pytest.approx([float(lr)] * 2)
        assert {"ray/tune/val_acc", "ray/tune/images_per_s", "ray/tune/seconds"} <= set(found)
        assert not any("payload" in tag for tag in found)

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow.tracking.MlflowClient(tracking_uri=store)
    runs = client.search_runs([client.get_experiment_by_name("tlbench").experiment_id])
    assert len(runs) == 2
    assert {r.data.tags["mlflow.runName"] for r in runs} == {"tiny/train.lr=0.001/seed=0", "tiny/train.lr=0.003/seed=0"}
    for r in runs:
        assert {r.data.tags[k] for k in ("experiment", "report", "seed")} == {"tiny", "test.txt", "0"}
        assert float(r.data.params["train.lr"]) in (1e-3, 3e-3) and r.data.params["model.arch"] == "tlbench.tiny:small_cnn"
        history = client.get_metric_history(r.info.run_id, "val_acc")
        assert sorted(m.step for m in history) == [1, 2]
        assert len(client.get_metric_history(r.info.run_id, "train_loss")) == 2
    assert {r.data.tags["trial_id"] for r in runs} == {p.name for p in (results / ".tune").glob("tlbench-*/*") if p.is_dir()}

    if wandb:  # an offline run per trial; its records are protobuf: look for the run's name and an epoch metric in them
        for trial_id in {r.data.tags["trial_id"] for r in runs}:
            records = sorted((results / "wandb" / "wandb").glob(f"offline-run-*-{trial_id}/run-{trial_id}.wandb"))
            assert records, f"no offline W&B run for {trial_id}"
            data = b"".join(record.read_bytes() for record in records)  # a restarted W&B logging actor starts a second file
            assert b"tiny/train.lr=0.00" in data and data.count(b"val_acc") >= 2 and b"payload" not in data
