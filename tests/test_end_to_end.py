"""grid file -> Ray Tune (a real local Ray) -> Parquet -> report, through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from helpers import TINY_GRID

pytestmark = pytest.mark.slow

BROKEN = """
  - name: broken
    source: {report: test.txt}
    dataset: {name: synthetic, n_classes: 3, n_train: 60, n_test: 30}
    model: {arch: "tlbench.tiny:small_cnn", weights: imagenet}  # passes validation, fails when the worker builds it
    train: {freeze: none}
    seeds: [0]
"""


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_grid_runs_through_ray_into_parquet_and_the_report(write_grid, tmp_path):
    grid = write_grid(TINY_GRID.replace("tables:", BROKEN.lstrip("\n") + "tables:"))
    results = tmp_path / "results"
    first = cli("tlbench.grid", "run", "--grid", str(grid), "--results", str(results), "--data", str(tmp_path / "data"))
    assert first.returncode == 1, first.stdout + first.stderr  # the broken experiment errored
    assert "5 trials, 0 done, 5 to run" in first.stdout and "failed:" in first.stdout

    trials = pd.read_parquet(results / "trials")
    assert len(trials) == 5 and trials["trial_id"].is_unique
    ok = trials[trials["experiment"] == "tiny"]
    assert (ok["status"] == "ok").all() and ok["node_id"].notna().all() and (ok["test_acc"] > 1 / 3).all()
    broken = trials[trials["experiment"] == "broken"].iloc[0]
    assert broken["status"] == "error" and "no pretrained weights" in broken["error"]
    epochs = pd.read_parquet(results / "epochs")
    assert len(epochs) == 4 and set(epochs["trial_id"]) == set(ok["trial_id"])

    listed = [
        json.loads(line)
        for line in cli("tlbench.grid", "list", "--grid", str(grid), "--results", str(results), "--json").stdout.splitlines()
    ]
    assert sorted(r["status"] for r in listed) == ["done"] * 4 + ["failed"]

    again = cli("tlbench.grid", "run", "--grid", str(grid), "--results", str(results), "--only", "tiny", "--data", str(tmp_path / "data"))
    assert again.returncode == 0 and "4 trials, 4 done, 0 to run" in again.stdout
    assert "Ray" not in again.stdout + again.stderr  # nothing pending: Ray is not even started

    out = tmp_path / "report"
    made = cli("tlbench.report", "--grid", str(grid), "--results", str(results), "--out", str(out))
    assert made.returncode == 0, made.stderr
    table = pd.read_csv(out / "tables" / "t-tiny.csv")
    assert table["n"].tolist() == [2, 2] and table["reproduced"].notna().all()
    assert (out / "index.html").exists() and len(list((out / "figures").glob("*.png"))) >= 3


@pytest.mark.filterwarnings("ignore:`get_checkpoint` is meant")  # outside Tune it has no checkpoint to give: as here
def test_an_earlier_runs_truncated_checkpoint_is_skipped_not_fatal(tmp_path, capsys):
    import torch

    from tlbench.on_ray.driver import TuneCheckpointer
    from tlbench.trial.checkpoint import capture, state_of

    whole, truncated = tmp_path / "whole.pt", tmp_path / "truncated.pt"
    module = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    epoch = {
        "epoch": 1,
        "train_loss": 0.5,
        "train_acc": 0.8,
        "val_loss": 0.6,
        "val_acc": 0.7,
        "lr": 0.1,
        "seconds": 1.0,
        "trainable_params": 6,
    }
    progress = {"epochs": [epoch], "images_seen": 10, "train_seconds": 1.0, "lr": 0.1, "probe_scores": None}  # as run_trial keeps it
    torch.save(capture(module, optimizer, torch.Generator(), state_of(progress)), whole)
    truncated.write_bytes(whole.read_bytes()[:40])  # a driver killed while the file was copied
    assert TuneCheckpointer(str(whole)).load()["progress"] == progress
    assert TuneCheckpointer(str(truncated)).load() is None
    assert f"ignoring unreadable checkpoint {truncated}" in capsys.readouterr().err


def test_a_gpu_per_trial_on_a_cpu_only_ray_is_refused_not_waited_for(tiny_grid, tmp_path):
    results = tmp_path / "results"
    run = cli(
        "tlbench.grid",
        "run",
        "--grid",
        str(tiny_grid),
        "--results",
        str(results),
        "--gpus-per-trial",
        "1",
        "--data",
        str(tmp_path / "data"),
        timeout=180,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "asks for 1 CPU and 1 GPU on one node" in run.stderr and "Traceback" not in run.stderr
    assert not list(results.glob("trials/*.parquet")) and not list(results.glob("claims/*.lock"))
