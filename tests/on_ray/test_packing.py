"""GPU packing on a real Ray cluster whose node declares one GPU (this machine has none: the trials train on its
CPU, with the GPU ids and shares Ray gave them). From the rows alone: no GPU was ever more than whole in use,
trials did share a GPU at once, and trials that ran out of GPU memory last run asked for twice their share."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
from ray_cluster import Cluster, cluster_env

from tlbench.grid import Grid
from tlbench.results.store import Store
from tlbench.trial.execute import trial_row

GRID = """
defaults: {seeds: [0], epochs: 1, image_size: 32}
experiments:
  - name: pack
    source: {report: test.txt}
    dataset: {name: synthetic, n_classes: 3, n_train: 300, n_test: 60}
    model: {arch: "tlbench.tiny:small_cnn", weights: none}
    train: {freeze: none, batch_size: 16}
    axes: {train.lr: [1.0e-3, 2.0e-3, 3.0e-3, 4.0e-3]}
"""


@pytest.fixture(scope="module")
def gpu_cluster():
    root = Path(tempfile.mkdtemp(prefix="tlgpu-", dir="/tmp"))  # short: Ray's socket paths must stay below 108 characters
    cluster = Cluster(root)
    try:
        # One node, one GPU, CPUs for every trial: the shares asked (0.25 + 0.25 + 0.5 + 0.5) exceed the GPU,
        # so Ray must hold a trial back for the GPU alone.
        cluster.start_head(cpus=4, gpus=1)
        cluster.wait_for(1)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def peak_use(frame: pd.DataFrame) -> tuple[dict[tuple[str, str], float], list[tuple[str, str]]]:
    """Per (node, GPU id): the largest sum of shares of trials running at one instant; and the pairs of trials that ran
    on one GPU at the same time."""
    intervals: dict[tuple[str, str], list[tuple[pd.Timestamp, pd.Timestamp, float, str]]] = defaultdict(list)
    for trial in frame.itertuples():
        for gpu in json.loads(trial.gpu_ids):
            intervals[(trial.node_id, gpu)].append(
                (pd.Timestamp(trial.started_at), pd.Timestamp(trial.finished_at), trial.gpu_share, trial.trial_id)
            )
    peaks, together = {}, []
    for gpu, spans in intervals.items():
        events = sorted([(start, 1, share) for start, _, share, _ in spans] + [(end, 0, -share) for _, end, share, _ in spans])
        in_use = peak = 0.0
        for _, _, change in events:  # at one instant an end (0) comes before a start (1): a freed share is reusable
            in_use += change
            peak = max(peak, in_use)
        peaks[gpu] = peak
        together += [(a[3], b[3]) for i, a in enumerate(spans) for b in spans[i + 1 :] if a[0] < b[1] and b[0] < a[1]]
    return peaks, together


def test_the_overlap_check_sees_an_overpacked_gpu_and_trials_that_share_one():
    def trial(trial_id, gpu, share, start, end):
        return {
            "trial_id": trial_id,
            "node_id": "n",
            "gpu_ids": json.dumps([gpu]),
            "gpu_share": share,
            "started_at": f"2026-01-01T00:00:{start:06.3f}+00:00",
            "finished_at": f"2026-01-01T00:00:{end:06.3f}+00:00",
        }

    frame = pd.DataFrame(
        [
            trial("a", "0", 0.5, 0, 10),
            trial("b", "0", 0.5, 5, 15),
            trial("c", "0", 0.25, 9.999, 12),
            trial("d", "1", 0.75, 0, 5),
            trial("e", "1", 0.75, 5, 9),
        ]
    )  # d ends the instant e starts
    peaks, together = peak_use(frame)
    assert peaks == {("n", "0"): 1.25, ("n", "1"): 0.75}
    assert sorted(together) == [("a", "b"), ("a", "c"), ("b", "c")]


@pytest.mark.slow
def test_trials_pack_onto_shared_gpus_without_ever_using_more_than_a_whole_one(gpu_cluster, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent(GRID))
    results = tmp_path / "results"
    trials = Grid.load(grid).expand()
    # As if their last run had ended `oom` at the custom arch's 0.25: this run gives them 0.5. The last two: the
    # trials cost the same and start in grid order, so the 0.25 trials go first and the 0.5 ones wait for room.
    ran_out = trials[2:]
    for spec in ran_out:
        Store(results).write(trial_row(spec, "oom", {"error": "CUDA out of memory"}, {"gpu_share": 0.25}), [])
    command = [sys.executable, "-m", "tlbench.grid", "run", "--grid", str(grid), "--results", str(results),
               "--data", str(tmp_path / "data"), "--address", gpu_cluster.address, "--no-checkpoints"]  # fmt: skip
    proc = subprocess.run(command, env=cluster_env(), capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for spec in ran_out:
        assert f"trial {spec.trial_id} (pack) ran out of GPU memory at 0.25 of a GPU last run; it asks for 0.5 of a GPU now" in out
    frame = pd.read_parquet(results / "trials")
    assert len(frame) == 4 and (frame["status"] == "ok").all(), frame[["status", "error"]]
    shares = frame.set_index("trial_id")["gpu_share"]
    assert {t.trial_id for t in ran_out} == set(shares[shares == 0.5].index) and (shares.drop([t.trial_id for t in ran_out]) == 0.25).all()
    gpu_ids = frame["gpu_ids"].map(json.loads)
    assert (gpu_ids.map(len) == 1).all() and set(gpu_ids.sum()) == {"0"}, gpu_ids  # the node's one GPU, Ray's id for it
    peaks, together = peak_use(frame)
    assert max(peaks.values()) <= 1.0 + 1e-9, peaks  # never more than a whole GPU in use
    assert together, frame[["trial_id", "gpu_ids", "gpu_share", "started_at", "finished_at"]]  # and trials did share one
