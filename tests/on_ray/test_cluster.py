"""On a real multi-node Ray cluster started on this machine (a head with no CPUs and two
one-CPU workers): trials spread over nodes, survive a dead worker node, a killed
driver and Ctrl-C, and no result is ever lost or duplicated."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from ray_cluster import Cluster, cluster_env

pytestmark = pytest.mark.slow

GRID = """
defaults: {{seeds: [0], epochs: {epochs}, image_size: 32}}
experiments:
  - name: c
    source: {{report: test.txt}}
    dataset: {{name: synthetic, n_classes: 3, n_train: {n_train}, n_test: 60}}
    model: {{arch: "tlbench.tiny:small_cnn", weights: none}}
    train: {{freeze: none, batch_size: 16}}
    axes: {{train.lr: {lrs}}}
"""


@pytest.fixture(scope="module")
def cluster():
    # A short root: Ray's unix socket paths live under it and must stay below 108 characters.
    root = Path(tempfile.mkdtemp(prefix="tlray-", dir="/tmp"))
    cluster = Cluster(root)
    try:
        cluster.start_head(cpus=0)
        cluster.add_worker("w1", cpus=1)
        cluster.add_worker("w2", cpus=1)
        cluster.wait_for(3)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def grid_file(tmp_path: Path, trials: int, epochs: int, n_train: int) -> Path:
    lrs = [round(1e-3 * (1 + i), 6) for i in range(trials)]
    path = tmp_path / "grid.yaml"
    path.write_text(textwrap.dedent(GRID.format(epochs=epochs, n_train=n_train, lrs=lrs)))
    return path


def driver(cluster: Cluster, grid: Path | str, results: Path, *extra: str, via_env: bool = False) -> subprocess.Popen:
    """A `grid run` against the cluster, addressed by --address or (via_env) by RAY_ADDRESS."""
    if "--data" not in extra:  # keep caches out of the checkout
        extra = (*extra, "--data", str(results.parent / "data"))
    address = [] if via_env else ["--address", cluster.address]
    env = {**cluster_env(), "RAY_ADDRESS": cluster.address} if via_env else cluster_env()
    command = [sys.executable, "-m", "tlbench.grid", "run", "--grid", str(grid), "--results", str(results), *address, *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: int = 300) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def wait_until(condition, timeout_s: float = 180, what: str = "") -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise TimeoutError(f"waited {timeout_s} s for {what}")


def done_files(results: Path) -> list[Path]:
    folder = results / "trials"
    return [p for p in folder.glob("*.parquet") if not p.name.startswith((".", "_"))] if folder.is_dir() else []


def checkpointed_unfinished(results: Path) -> set[str]:
    """Trial ids with a checkpoint in Tune's storage and no result yet: trials caught mid-way."""
    finished = {p.stem for p in done_files(results)}
    return {p.parent.parent.name for p in (results / ".tune").glob("tlbench-*/*/checkpoint_*/state.pt")} - finished


def registered_checkpoints(results: Path) -> set[str]:
    """Unfinished trials whose checkpoint the driver has surely taken in, not just found on disk.

    A checkpoint's files land in storage before the driver registers it. With one checkpoint
    kept, Tune deletes the first (checkpoint_000000) only after registering the second: a trial
    whose first is gone has one the driver will restore from."""
    trials: dict[str, set[str]] = {}
    for state in (results / ".tune").glob("tlbench-*/*/checkpoint_*/state.pt"):
        trials.setdefault(state.parent.parent.name, set()).add(state.parent.name)
    registered = {trial for trial, names in trials.items() if "checkpoint_000000" not in names}
    return registered - {p.stem for p in done_files(results)}


def read_trials(results: Path) -> pd.DataFrame:
    frame = pd.read_parquet(results / "trials")
    assert frame["trial_id"].is_unique  # never a duplicate
    return frame


def test_smoke_experiment_lands_on_both_worker_nodes(cluster, tmp_path):
    results = tmp_path / "results"
    code, out = finish(
        driver(cluster, "grid/reports.yaml", results, "--profile", "smoke", "--only", "r002-s1-layers", "--data", str(tmp_path / "data"))
    )
    assert code == 0, out
    frame = read_trials(results)
    ids = cluster.node_ids()
    assert len(frame) == 5 and (frame["status"] == "ok").all()
    assert set(frame["node_id"]) == {ids["w1"], ids["w2"]}  # the head has no CPUs: nothing runs there


def test_driver_killed_mid_grid_a_rerun_completes_without_redoing_finished_trials(cluster, tmp_path):
    grid, results = grid_file(tmp_path, trials=6, epochs=6, n_train=600), tmp_path / "results"
    process = driver(cluster, grid, results)
    wait_until(lambda: len(done_files(results)) >= 2 and checkpointed_unfinished(results), what="2 results and a trial mid-way")
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = read_trials(results).set_index("trial_id")["finished_at"]
    code, out = finish(driver(cluster, grid, results))
    assert code == 0, out
    assert f"6 trials, {len(before)} done, {6 - len(before)} to run" in out
    after = read_trials(results).set_index("trial_id")
    assert len(after) == 6 and (after["status"] == "ok").all()
    assert (after.loc[before.index, "finished_at"] == before).all()  # finished trials were not redone
    assert after["resumed_from_epoch"].max() >= 1  # a trial caught mid-way went on from its checkpoint


def test_sigint_stops_cleanly_with_every_finished_result_kept(cluster, tmp_path):
    grid, results = grid_file(tmp_path, trials=6, epochs=3, n_train=600), tmp_path / "results"
    process = driver(cluster, grid, results)
    wait_until(lambda: len(done_files(results)) >= 1, what="a first result")
    process.send_signal(signal.SIGINT)
    code, out = finish(process, timeout=120)
    assert code == 130, out
    kept = read_trials(results)
    assert 1 <= len(kept) < 6 and (kept["status"] == "ok").all()
    code, out = finish(driver(cluster, grid, results))
    assert code == 0 and f"{len(kept)} done" in out
    assert len(read_trials(results)) == 6


CIFAR_GRID = """
defaults: {seeds: [0, 1], epochs: 1, image_size: 32}
experiments:
  - name: cifar
    source: {report: test.txt}
    dataset: {name: cifar10}
    model: {arch: "tlbench.tiny:small_cnn", weights: none}
    train: {freeze: none, batch_size: 16}
"""


def test_real_dataset_is_prepared_once_per_node_before_trials(cluster, tmp_path):
    from fake_datasets import write_cifar10

    data = tmp_path / "data"
    write_cifar10(data, per_class_train=4, per_class_test=2)
    grid = tmp_path / "grid.yaml"
    grid.write_text(CIFAR_GRID)
    code, out = finish(driver(cluster, grid, tmp_path / "results", "--data", str(data)))
    assert code == 0, out
    frame = read_trials(tmp_path / "results")
    assert len(frame) == 2 and (frame["status"] == "ok").all() and (frame["n_test"] == 20).all()
    cache = sorted(p.name for p in (data / ".tlbench-cache").iterdir())
    assert len([c for c in cache if c.endswith(".npy")]) == 2  # train and test pools, decoded once, shared
    assert "cifar10.lock" in cache and not [c for c in cache if c.endswith(".tmp")]


def ran_here(out: str) -> list[str]:
    """The trial ids a driver ran, from its progress lines `[k/N] status trial_id ...`."""
    return re.findall(r"^\[\d+/\d+\] \S+\s+([0-9a-f]{16}) ", out, flags=re.MULTILINE)


def test_two_drivers_on_one_results_directory_split_the_work_and_run_every_trial_once(cluster, tmp_path):
    grid, results = grid_file(tmp_path, trials=6, epochs=2, n_train=300), tmp_path / "results"
    first = driver(cluster, grid, results)
    time.sleep(3)  # the second starts while the first is under way, as a user would
    second = driver(cluster, grid, results, via_env=True)
    (code1, out1), (code2, out2) = finish(first), finish(second)
    assert code1 == 0 and code2 == 0, out1 + out2
    mine, theirs = ran_here(out1), ran_here(out2)
    assert mine and theirs, out1 + out2  # both did some of the work
    assert len(mine) + len(theirs) == 6 and not set(mine) & set(theirs)  # and no trial ran twice
    frame = read_trials(results)
    assert len(frame) == 6 and (frame["status"] == "ok").all() and set(frame["trial_id"]) == set(mine) | set(theirs)
    assert set(frame["node_id"]) <= set(cluster.node_ids().values())  # RAY_ADDRESS reached the same cluster
    assert len(list((results / "epochs").glob("[0-9a-f]*.parquet"))) == 6
    assert not [p for p in (results / "trials").iterdir() if p.name.startswith(".tmp")]
    assert not list((results / "claims").glob("*.lock"))  # every claim freed


def test_worker_node_killed_mid_trial_the_trial_reruns_elsewhere(cluster, tmp_path):
    # Trials long enough (seconds an epoch on a slow core) that both are caught mid-way at once.
    grid, results = grid_file(tmp_path, trials=2, epochs=6, n_train=3200), tmp_path / "results"
    ids = cluster.node_ids()
    process = driver(cluster, grid, results, "--max-failures", "3")
    wait_until(lambda: len(registered_checkpoints(results)) == 2, what="both trials mid-way, checkpoints registered")
    victim = next(n for n in cluster.nodes if n.name == "w1")
    victim.kill(grace_s=0.5)
    code, out = finish(process)
    assert code == 0, out
    frame = read_trials(results)
    assert len(frame) == 2 and (frame["status"] == "ok").all()
    assert set(frame["node_id"]) == {ids["w2"]}  # both finished on the node that survived
    assert frame["resumed_from_epoch"].max() >= 1  # the interrupted one went on from its checkpoint
    cluster.add_worker("w3", cpus=1)  # leave the cluster as big as it was
