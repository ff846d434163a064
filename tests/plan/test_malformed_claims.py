"""A claim file no driver wrote (a pid that is no process id) is stale with a warning naming it: never a crash of
`run` or `status`, on this run or any rerun."""

from __future__ import annotations

import json

import pytest
from helpers import TINY_GRID, plant

from tlbench.grid import Grid, cli
from tlbench.plan.leases import Leases

MALFORMED_PIDS = [2**70, -(2**70), -1, 0, True, "1234", 12.5, None, [1]]


@pytest.mark.parametrize("pid", MALFORMED_PIDS)
def test_a_claim_with_a_malformed_pid_is_stale_with_a_warning(tmp_path, capsys, pid):
    claims = Leases(tmp_path)
    plant(claims, "t1", 0, pid=pid)  # fresh: only its pid says no driver wrote it
    assert claims.live() == {}
    assert claims.take("t1") is True and claims.holder("t1")["driver"] == claims.me["driver"]
    claims.release_all()
    err = capsys.readouterr().err
    assert f"claim file {claims.path('t1')} is malformed (pid {pid!r}" in err


def test_a_claim_without_a_pid_is_stale_with_a_warning(tmp_path, capsys):
    claims = Leases(tmp_path)
    claims.folder.mkdir(parents=True)
    claims.path("t1").write_text(json.dumps({"host": claims.me["host"], "driver": "x"}))
    assert claims.take("t1") is True
    claims.release_all()
    assert "is malformed (pid None" in capsys.readouterr().err


def test_status_goes_on_past_a_claim_of_pid_2_70_on_every_rerun(write_grid, tmp_path, capsys):
    grid_file = write_grid(TINY_GRID)
    trials = Grid.load(grid_file).expand()
    results = tmp_path / "results"
    claims = Leases(results)
    for spec in trials:
        plant(claims, spec.trial_id, 0, pid=2**70)
    for _ in range(2):  # every rerun, not only the first
        assert cli.main(["status", "--grid", str(grid_file), "--results", str(results)]) == 0
        out, err = capsys.readouterr()
        assert f"{len(trials)} trials: 0 done, 0 diverged, 0 errored, 0 running, {len(trials)} pending" in out
        assert "is malformed (pid 1180591620717411303424" in err
