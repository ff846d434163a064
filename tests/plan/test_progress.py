"""The live progress line and its ETA: calibration on synthetic timings, and the line under a real terminal."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from tlbench.plan.progress import Calibration, Planned, Progress, eta_seconds

H = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def plan(*trials: tuple[str, str, float, float]) -> list[Planned]:
    return [Planned(*t) for t in trials]


def test_before_any_trial_ends_the_eta_is_the_cost_models_makespan():
    trials = plan(("a", "vgg16", 2 * H, 0.5), ("b", "vgg16", 2 * H, 0.5), ("c", "resnet18", H, 0.5))
    assert eta_seconds(trials, 1, Calibration(), {}, set()) == pytest.approx(3 * H)  # a and b together, then c
    assert eta_seconds(trials, 2, Calibration(), {}, set()) == pytest.approx(2 * H)


def test_a_measured_arch_throughput_gives_the_exact_eta_and_other_archs_take_the_overall_factor():
    calibration = Calibration()
    calibration.record("vgg16", estimated_s=H, measured_s=3 * H)  # vgg16 runs 3x slower than the cost model says
    trials = plan(("v", "vgg16", H, 1.0), ("r", "resnet18", H, 1.0))
    assert calibration.factor("vgg16") == pytest.approx(3.0)
    assert calibration.factor("resnet18") == pytest.approx(3.0)  # no resnet18 measured yet: every finished trial's factor
    calibration.record("resnet18", estimated_s=2 * H, measured_s=H)
    assert calibration.factor("resnet18") == pytest.approx(0.5)
    assert eta_seconds(trials, 1, calibration, {}, set()) == pytest.approx(3 * H + 0.5 * H)
    assert Calibration().factor("vgg16") == 1.0


def test_calibration_moves_from_the_cost_model_toward_what_trials_measure():
    calibration = Calibration()
    factors = []
    for _ in range(4):
        calibration.record("alexnet", estimated_s=100.0, measured_s=200.0)
        factors.append(calibration.factor("alexnet"))
    assert factors == pytest.approx([2.0] * 4)  # measured throughput wins outright: it is what this cluster does
    calibration.record("alexnet", estimated_s=100.0, measured_s=700.0)
    assert calibration.factor("alexnet") == pytest.approx(1500 / 500)


def test_a_running_trial_counts_for_what_is_left_of_its_estimate():
    trials = plan(("a", "vgg16", 4 * H, 1.0), ("b", "vgg16", H, 1.0))
    assert eta_seconds(trials, 1, Calibration(), {"a": 3 * H}, set()) == pytest.approx(2 * H)
    assert eta_seconds(trials, 1, Calibration(), {"a": 9 * H}, set()) == pytest.approx(H)  # overran its estimate
    assert eta_seconds(trials, 1, Calibration(), {}, {"a"}) == pytest.approx(H)


def test_without_a_terminal_each_finished_trial_is_todays_line_plus_the_eta():
    clock, out = Clock(), io.StringIO()
    progress = Progress(plan(("a", "alexnet", 100.0, 1.0), ("b", "alexnet", 100.0, 1.0)), 1, out, live=False, clock=clock)
    progress.started("a")
    clock.now = 300.0  # three times the estimate
    progress.finished_trial({"trial_id": "a", "experiment": "e", "seed": 0, "test_acc": 0.5}, "ok")
    assert out.getvalue() == "[1/2] ok       a e seed=0 test_acc=0.5000 eta=5 min\n"  # b: 100 s x 3
    assert "\r" not in out.getvalue()
    progress.started("b")
    clock.now = 310.0
    progress.finished_trial({"trial_id": "b", "experiment": "e", "seed": 1, "test_acc": 0.5, "resumed_from_epoch": 3}, "ok")
    assert progress.calibration.factor("alexnet") == pytest.approx(3.0)  # a resumed trial's 10 s say nothing of a whole one


def test_on_a_terminal_one_line_is_redrawn_with_the_counts(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    clock, out = Clock(), io.StringIO()
    progress = Progress(plan(("a", "alexnet", 60.0, 0.5), ("b", "alexnet", 60.0, 0.5), ("c", "alexnet", 60.0, 0.5)), 1, out,
                        live=True, clock=clock)  # fmt: skip
    progress.started("a")
    progress.started("b")
    clock.now = 30.0
    progress.finished_trial({"trial_id": "a", "experiment": "e", "seed": 0, "test_acc": 0.5}, "ok")
    progress.finished_trial({"trial_id": "b", "experiment": "e", "seed": 1, "error": "boom"}, "error")
    progress.close()
    frames = out.getvalue().split("\r\x1b[2K")[1:]
    assert frames[0].startswith("0 done, 1 running, 2 pending, 0 failed of 3 | elapsed 0 s | eta 2 min (cost model)")
    assert frames[-2].startswith("1 done, 0 running, 1 pending, 1 failed of 3 | elapsed 30 s | eta 30 s")  # a took half its estimate
    assert out.getvalue().endswith("\n") and out.getvalue().count("\n") == 1


def test_the_live_line_is_cut_to_the_terminal_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    out = io.StringIO()
    Progress(plan(("a", "alexnet", 60.0, 1.0)), 1, out, live=True, clock=Clock()).draw()
    assert out.getvalue() == "\r\x1b[2K" + "0 done, 0 running, 1 pending, 0 failed of 1 | elapsed 0 s"[:39]


GRID = """
defaults:
  seeds: [0, 1]
  epochs: 1
  image_size: 32
experiments:
  - name: tiny
    source: {report: test.txt}
    dataset: {name: synthetic, n_classes: 3, n_train: 64, n_test: 32}
    model: {arch: "tlbench.tiny:small_cnn", weights: none}
    train: {freeze: none, lr: 3.0e-3, batch_size: 32}
"""


@pytest.mark.slow
def test_a_grid_run_on_a_terminal_redraws_its_status_line(write_grid, tmp_path):
    grid = write_grid(GRID)
    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    command = [sys.executable, "-m", "tlbench.grid", "run", "--grid", str(grid), "--results", str(tmp_path / "results"),
               "--data", str(tmp_path / "data"), "--no-tensorboard", "--no-checkpoints"]  # fmt: skip
    process = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=subprocess.DEVNULL, env=env, close_fds=True)
    os.close(follower)
    seen, deadline = b"", time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: the run ended
                break
            if not chunk:
                break
            seen += chunk
        elif process.poll() is not None:
            break
    assert process.wait(timeout=60) == 0, seen.decode(errors="replace")
    os.close(leader)
    line = re.compile(r"(\d+) done, (\d+) running, (\d+) pending, (\d+) failed of 2 \| elapsed .+ \| eta ")
    frames = [line.match(f) for f in seen.decode(errors="replace").split("\r\x1b[2K")[1:]]
    counts = [tuple(map(int, m.groups())) for m in frames if m]
    assert len(counts) >= 3 and counts[-1] == (2, 0, 0, 0) and counts[0][0] == 0
    assert len(set(counts)) >= 2  # the counts changed while the line was redrawn
    assert "[1/2]" not in seen.decode(errors="replace")  # no per-trial lines on a terminal


def test_on_a_gpu_cluster_the_eta_packs_the_trials_gpu_shares_on_its_gpus():
    from helpers import resolved

    from tlbench.on_ray import driver as scheduler
    from tlbench.plan.makespan import gpu_seconds

    configs = [resolved(model={"arch": arch, "weights": "none"}) for arch in ("vgg16", "resnet18", "resnet18")]
    points = [{"trial": {"trial_id": f"t{i}", "config": c}, "gpu": 0.5} for i, c in enumerate(configs)]
    progress = scheduler.progress_of(points, scheduler.RunOptions(results="r", data="d"), cluster_gpus=2.0)
    assert progress.devices == 2 and [t.share for t in progress.plan] == [0.5] * 3
    assert [t.estimated_s for t in progress.plan] == pytest.approx([gpu_seconds(c) for c in configs])
    assert progress.eta() == pytest.approx(max(gpu_seconds(c) for c in configs))  # three halves fit on two GPUs at once
