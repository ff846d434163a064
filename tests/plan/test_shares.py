"""GPU shares without a GPU: a trial that ran out of memory asks for twice its share on a rerun (at most a whole
GPU), the rerun finds it through the results index, and `grid plan` sets measured peaks beside the shares."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import TINY_GRID

from tlbench.grid import Grid, cli
from tlbench.on_ray import driver as scheduler
from tlbench.plan import shares
from tlbench.results.store import Store
from tlbench.trial.execute import trial_row

CARD_MB = 24_576.0  # a 24 GB card


@pytest.fixture
def trials(write_grid):
    return Grid.load(write_grid(TINY_GRID)).expand()


def row(spec, status="ok", share=0.25, device="NVIDIA A10G", peak_mb=1000.0, card_mb=CARD_MB):
    summary = {"test_acc": 0.5, "device": device, "peak_mem_mb": peak_mb} if status == "ok" else {"error": "CUDA out of memory"}
    out = trial_row(spec, status, summary, {"profile": "full", "node_id": "n", "gpu_share": share})
    out["gpu_memory_mb"] = card_mb if status == "ok" and not device.startswith("cpu") else None  # this machine has no card
    return out


@pytest.mark.parametrize("usual, oom, expected", [
    (0.25, 0.25, 0.5), (0.5, 0.5, 1.0), (0.25, 0.75, 1.0), (1.0, 1.0, 1.0),  # doubled, at most a whole GPU
    (0.25, None, 0.25), (0.25, 0.0, 0.25),  # no share recorded: nothing to double
    (0.75, 0.25, 0.75),  # a larger --gpus-per-trial still wins
    (0.0, 0.25, 0.0),  # a CPU-only cluster or --gpus-per-trial 0: no GPU at all
])  # fmt: skip
def test_a_trial_that_ran_out_of_memory_asks_for_twice_its_share_at_most_a_whole_gpu(usual, oom, expected):
    assert shares.after_oom(usual, oom) == expected


def test_the_scheduler_doubles_the_share_of_an_oom_trial_alone(trials):
    oom, other = trials[0], trials[1]
    options = scheduler.RunOptions(results=Path("r"), data=Path("d"), oom_shares={oom.trial_id: 0.25})
    assert scheduler.gpu_share(oom, options, cluster_gpus=2) == 0.5
    assert scheduler.gpu_share(other, options, cluster_gpus=2) == 0.25  # the custom arch's default
    assert scheduler.gpu_share(oom, options, cluster_gpus=0) == 0.0  # no GPUs on the cluster: it runs on a CPU
    explicit = scheduler.RunOptions(results=Path("r"), data=Path("d"), gpus_per_trial=0.5, oom_shares={oom.trial_id: 0.5})
    assert scheduler.gpu_share(oom, explicit, cluster_gpus=2) == 1.0
    line = shares.oom_line(oom.trial_id, oom.experiment, 0.75, 1.0)
    assert "at 0.75 of a GPU" in line and "asks for 1 of a GPU now (a whole GPU" in line


def test_a_rerun_reads_the_share_of_each_pending_oom_row_from_the_results(tmp_path, trials):
    store = Store(tmp_path)
    store.write(row(trials[0], "oom", share=0.25), [])
    store.write(row(trials[1], "oom", share=0.5), [])
    store.write(row(trials[2], "ok"), [])
    store.write(row(trials[3], "error"), [])
    statuses, _ = store.statuses()
    pending = [t for t in trials if cli.status_of(t, statuses) != "done"]
    assert [t.trial_id for t in pending] == [trials[0].trial_id, trials[1].trial_id, trials[3].trial_id]  # oom reruns
    assert cli.pending_oom_shares(store, statuses, pending) == {trials[0].trial_id: 0.25, trials[1].trial_id: 0.5}
    assert cli.pending_oom_shares(store, statuses, pending[1:]) == {trials[1].trial_id: 0.5}  # pending trials only
    no_oom = {k: v for k, v in statuses.items() if v != "oom"}
    assert cli.pending_oom_shares(store, no_oom, pending) == {}  # no oom row: the results are not read again


def test_plan_shows_the_peak_memory_of_ok_cuda_rows_against_the_share_and_warns_where_it_exceeds_it(tmp_path, trials):
    store = Store(tmp_path)
    store.write(row(trials[0], peak_mb=4000.0), [])
    store.write(row(trials[1], peak_mb=7000.0), [])  # over 0.25 x 24,576 = 6,144 MB
    store.write(row(trials[2], peak_mb=2000.0), [])
    store.write(row(trials[3], device="cpu (x86_64, 2 threads)", peak_mb=90_000.0), [])  # RSS, not GPU memory: left out
    lines = cli.memory_view(store, trials)
    arch = trials[0].config["model"]["arch"]
    line = next(line for line in lines if line.startswith(arch))
    assert line.split()[1:] == ["0.25", "3", "7,000", "4,000", "24,576", "6,144", "0"]  # share, trials, max, median, card, share MB, oom
    warning = [line for line in lines if line.startswith("warning:")]
    assert len(warning) == 1 and "7,000 MB" in warning[0] and "--gpus-per-trial 0.3" in warning[0]  # 7,000 / 24,576 = 0.285


def test_plan_says_when_no_trial_has_run_on_a_gpu_and_does_not_warn_below_the_share(tmp_path, trials):
    store = Store(tmp_path)
    assert cli.memory_view(store, trials) == ["GPU memory: no ok trial of these (tlbench.tiny:small_cnn) has run on a GPU yet."]
    store.write(row(trials[1], "oom"), [])  # an oom row measured nothing, but is counted
    assert cli.memory_view(store, trials)[2].split()[1:] == ["0.25", "0", "-", "-", "?", "?", "1"]
    store.write(row(trials[0], peak_mb=6000.0), [])
    lines = cli.memory_view(store, trials)
    assert not [line for line in lines if line.startswith("warning:")] and lines[2].split()[1:] == [
        "0.25",
        "1",
        "6,000",
        "6,000",
        "24,576",
        "6,144",
        "1",
    ]
    assert cli.memory_view(store, trials[2:])[0].startswith("GPU memory: no ok trial")  # only the plan's own trials count


def test_grid_run_hands_the_oom_shares_to_the_scheduler_and_exits_1_while_a_trial_stays_oom(tiny_grid, tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    trials = Grid.load(tiny_grid).expand()
    Store(results).write(row(trials[0], "oom", share=0.25), [])
    Store(results).write(row(trials[1], "ok"), [])
    handed = []

    def run(pending, options):  # the trial runs out of memory again, at the doubled share
        handed.append((sorted(t.trial_id for t in pending), options.oom_shares))
        Store(results).write(row(trials[0], "oom", share=0.5), [])
        return scheduler.RunOutcome({"oom": 1})

    monkeypatch.setattr("tlbench.grid.cli.preflight", lambda pending: None)
    monkeypatch.setattr("tlbench.on_ray.driver.run", run)
    assert cli.main(["run", "--grid", str(tiny_grid), "--results", str(results)]) == 1  # oom is not done
    pending = sorted(t.trial_id for t in trials if t.trial_id != trials[1].trial_id)
    assert handed == [(pending, {trials[0].trial_id: 0.25})]
    assert f"failed: {trials[0].trial_id} tiny seed=0 (status oom;" in capsys.readouterr().out
    cli.main(["run", "--grid", str(tiny_grid), "--results", str(results)])
    assert handed[1][1] == {trials[0].trial_id: 0.5}  # the next rerun doubles again, from the share the last row ran with
