"""Wall time on paper: list scheduling of trials onto devices, checked on cases worked out by hand."""

from __future__ import annotations

import pytest
from helpers import resolved

from tlbench.grid import TrialSpec, cli
from tlbench.plan.makespan import Job, longest_first, makespan

H = 3600.0


def test_four_quarter_shares_share_one_gpu_and_half_shares_take_turns():
    assert makespan([Job(H, 0.25)] * 4, devices=1) == pytest.approx(H)
    assert makespan([Job(H, 0.5)] * 4, devices=1) == pytest.approx(2 * H)
    assert makespan([Job(H, 1.0)] * 4, devices=1) == pytest.approx(4 * H)
    assert makespan([Job(H, 0.5)] * 4, devices=2) == pytest.approx(H)


def test_a_long_trial_dominates_while_short_ones_fill_the_rest_of_its_gpu():
    jobs = [Job(10 * H, 0.5)] + [Job(H, 0.5)] * 4
    assert makespan(jobs, devices=1) == pytest.approx(10 * H)  # the four run one after another beside it
    assert makespan([Job(H, 0.5)] * 4 + [Job(10 * H, 0.5)], devices=1) == pytest.approx(12 * H)  # why longest first


def test_trials_start_in_order_a_later_small_one_does_not_overtake_a_waiting_big_one():
    # Tune holds one waiting trial: the whole-GPU trial waits for both halves to end, the last one waits behind it
    jobs = [Job(H, 0.5), Job(H, 0.5), Job(3 * H, 1.0), Job(H, 0.25)]
    assert makespan(jobs, devices=1) == pytest.approx(5 * H)


def test_shares_above_one_take_whole_devices_and_impossible_ones_are_refused():
    assert makespan([Job(H, 2.0), Job(H, 1.0), Job(H, 1.0)], devices=2) == pytest.approx(2 * H)
    assert makespan([Job(H, 1.5), Job(H, 0.5)], devices=2) == pytest.approx(2 * H)  # 1.5 takes two whole GPUs
    with pytest.raises(ValueError, match="3 devices; there are 2"):
        makespan([Job(H, 3.0)], devices=2)


def test_longest_first_orders_by_estimated_cost():
    small = TrialSpec("a", "tiny", "r", 0, {}, resolved(model={"arch": "resnet18", "weights": "none"}))
    big = TrialSpec("b", "big", "r", 0, {}, resolved(model={"arch": "vgg16", "weights": "none"}))
    assert [t.trial_id for t in longest_first([small, big])] == ["b", "a"]


@pytest.mark.slow
def test_grid_plan_prints_the_wall_time_beside_todays_lines(tiny_grid, capsys):
    assert cli.main(["plan", "--grid", str(tiny_grid), "--gpus", "1", "--cpus", "2", "--gpus-per-trial", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "GPU-hours:" in out and "CPU-hours here:" in out  # today's lines stay
    assert "wall time on 1 GPU(s):" in out and "GPU shares per trial: 0.5" in out
    assert "wall time on 2 CPU(s):" in out and "1 CPU per trial" in out


@pytest.mark.slow
def test_grid_plan_refuses_a_share_larger_than_the_gpus(tiny_grid, capsys):
    assert cli.main(["plan", "--grid", str(tiny_grid), "--gpus", "1", "--gpus-per-trial", "2"]) == 2
    assert "asks for 2 GPUs; --gpus is 1" in capsys.readouterr().err
