"""A trial's memory: its own peak (not an earlier trial's in a reused worker), its GPU share, and `oom`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import torch
from helpers import resolved

from tlbench.grid import TrialSpec, cli, trial_id
from tlbench.report import aggregate
from tlbench.results import store
from tlbench.trial import execute, memory, train
from tlbench.trial import networks as models

CUDA = torch.device("cuda")


def spec_of(config: dict) -> TrialSpec:
    return TrialSpec(trial_id(config), "e", "r", config["seed"], {}, config, ("e",))


@pytest.mark.skipif(not memory.CLEAR_REFS.exists(), reason="needs Linux's /proc/self/clear_refs")
def test_a_trials_peak_is_its_own_not_the_processes():
    first = memory.PeakMemory(torch.device("cpu"))
    big = torch.ones(400 * 2**20 // 4)  # 400 MB, touched
    big_peak = first.peak_mb()
    del big
    second = memory.PeakMemory(torch.device("cpu"))
    small = torch.ones(20 * 2**20 // 4)
    small_peak = second.peak_mb()
    del small
    assert first.source == second.source == "rss high-water since trial start"
    assert big_peak > small_peak + 300  # ru_maxrss would give the second the first's peak
    assert small_peak >= 20


def test_a_gpu_share_caps_cuda_memory_and_a_reused_worker_is_uncapped_again(monkeypatch):
    calls, devices = [], []
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(
        torch.cuda, "set_per_process_memory_fraction", lambda fraction, device=None: (calls.append(fraction), devices.append(device))
    )
    for share in (0.25, 0.5, 0.0, 1.0):
        memory.cap_gpu_share(CUDA, share)
    memory.cap_gpu_share(torch.device("cuda:1"), 0.25)
    memory.cap_gpu_share(torch.device("cpu"), 0.25)  # no card to cap
    assert calls == [0.25, 0.5, 1.0, 1.0, 0.25]
    # An index, never a bare `cuda` device: torch 2.11 raises "Expected a torch.device with a specified index".
    assert devices == [0, 0, 0, 0, 1]


def test_a_trial_caps_its_share_before_building_anything_and_records_it(monkeypatch, tmp_path):
    calls, order = [], []
    monkeypatch.setattr(train.memory, "cap_gpu_share", lambda device, share: (calls.append((device.type, share)), order.append("cap")))
    build = models.build
    monkeypatch.setattr(train.networks, "build", lambda *a, **k: (order.append("build"), build(*a, **k))[1])
    config = resolved(precision="fp32", image_size=16, dataset={"n_train": 40, "n_test": 20})
    row, _ = execute.execute(spec_of(config), tmp_path, {}, gpu_share=0.25)
    assert row["status"] == "ok" and row["gpu_share"] == 0.25 and row["pid"] == os.getpid()
    assert calls == [("cpu", 0.25)] and order == ["cap", "build"]


def out_of_memory(*args, **kwargs):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.fixture
def fake_card(monkeypatch):
    """A 24 GB card whose trial had allocated 5.5 GB at its peak, for the message."""
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: type("Props", (), {"total_memory": 24 * 2**30})())
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 5.5 * 2**30)
    monkeypatch.setattr(train, "train_steps", out_of_memory)


@pytest.mark.parametrize("share, asks", [(0.25, "0.5"), (0.75, "1")])
def test_a_cuda_oom_is_status_oom_naming_the_share_to_ask_for(fake_card, tmp_path, share, asks):
    config = resolved(precision="fp32", image_size=16, dataset={"n_train": 40, "n_test": 20})
    row, epochs = execute.execute(spec_of(config), tmp_path, {}, gpu_share=share)
    assert row["status"] == "oom" and epochs == [] and row["gpu_share"] == share
    message = row["error"]
    assert f"GPU share of {share:g}" in message and f"{share * 24 * 1024:.0f} of 24576 MB" in message
    assert "peak allocation 5632 MB" in message and f"--gpus-per-trial {asks}" in message
    assert "a rerun gives an oom trial twice its share, up to a whole GPU" in message
    assert "Tried to allocate 2.00 GiB" in message and "OutOfMemoryError" in row["traceback"]

    results = store.Store(tmp_path / "results")
    results.write(row, epochs)  # the row's new columns fit the schema
    assert not results.done(row["trial_id"])  # a rerun retries it
    assert cli.status_of(spec_of(config), results.statuses()[0]) == "failed"
    assert "oom" in store.FAILED and "oom" not in store.DONE


def test_an_oom_on_a_whole_gpu_says_to_shrink_the_trial(fake_card, tmp_path):
    config = resolved(precision="fp32", image_size=16, dataset={"n_train": 40, "n_test": 20})
    row, _ = execute.execute(spec_of(config), tmp_path, {}, gpu_share=1.0)
    assert row["status"] == "oom" and "whole GPU" in row["error"] and "train.batch_size" in row["error"]


def test_an_oom_is_counted_with_the_failures_of_a_table_row():
    row = aggregate.Row("l", "e", ["a", "b", "c"], {"ok": 1, "oom": 1, "pending": 1}, [], [])
    assert row.status_text() == "1 of 3 done, 1 oom, 1 pending"


def test_any_other_error_is_still_an_error(tmp_path):
    config = resolved(model={"arch": "tlbench.tiny:does_not_exist"})
    row, _ = execute.execute(spec_of(config), tmp_path, {}, gpu_share=0.5)
    assert row["status"] == "error" and row["gpu_share"] == 0.5


REUSE_GRID = """
defaults: {seeds: [0], epochs: 1}
experiments:
  - name: big
    source: {report: test.txt}
    dataset: {name: synthetic, n_classes: 2, n_train: 256, n_test: 64, val_fraction: 0}
    model: {arch: "tlbench.tiny:small_cnn", weights: none}
    train: {freeze: none, batch_size: 128}
    image_size: 128
    precision: fp32
  - name: small
    source: {report: test.txt}
    dataset: {name: synthetic, n_classes: 2, n_train: 16, n_test: 8, val_fraction: 0}
    model: {arch: "tlbench.tiny:small_cnn", weights: none}
    train: {freeze: none, batch_size: 8}
    image_size: 16
    precision: fp32
"""


@pytest.mark.slow
@pytest.mark.skipif(not memory.CLEAR_REFS.exists(), reason="needs Linux's /proc/self/clear_refs")
def test_two_trials_in_one_reused_worker_each_report_their_own_peak(tmp_path):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(textwrap.dedent(REUSE_GRID))
    results = tmp_path / "results"
    # Each trial takes every CPU, so one worker runs both (the big one first: the most expensive starts first).
    run = subprocess.run([sys.executable, "-m", "tlbench.grid", "run", "--grid", str(grid_file), "--results", str(results),
                          "--data", str(tmp_path / "data"), "--cpus-per-trial", str(os.cpu_count()), "--no-checkpoints"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    rows = pd.read_parquet(results / "trials").set_index("experiment")
    assert rows.loc["big", "pid"] == rows.loc["small", "pid"]  # the same process ran both
    assert rows.loc["big", "finished_at"] <= rows.loc["small", "finished_at"]
    assert (rows["peak_mem_source"] == "rss high-water since trial start").all()
    big, small = rows.loc["big", "peak_mem_mb"], rows.loc["small", "peak_mem_mb"]
    assert small < big - 150, (big, small)  # the process's lifetime peak would give the small trial the big one's
