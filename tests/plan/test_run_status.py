"""`grid status`: per experiment, what is done, diverged, errored, running (claimed by a live driver) or
pending, the errors' first lines and the newest finished trial; it reads the folder a run is writing."""

from __future__ import annotations

import datetime
import json
import os

from helpers import TINY_GRID, fake_row

from tlbench.grid import Grid, cli
from tlbench.plan.leases import Leases, process_start
from tlbench.plan.status import _when
from tlbench.results.store import Store

TWO_EXPERIMENTS = TINY_GRID.replace(
    """tables:""",
    """  - name: other
    source: {report: test.txt}
    dataset: {name: synthetic, n_classes: 3, n_train: 120, n_test: 60}
    model: {arch: "tlbench.tiny:small_cnn", weights: none}
    train: {freeze: head, lr: 3.0e-3, batch_size: 16}
tables:""",
)


def test_counts_errors_claims_and_the_newest_finished_trial_per_experiment(write_grid, tmp_path, capsys):
    grid_file = write_grid(TWO_EXPERIMENTS)
    trials = Grid.load(grid_file).expand()
    tiny = [t for t in trials if t.experiment == "tiny"]
    other = [t for t in trials if t.experiment == "other"]
    assert len(tiny) == 4 and len(other) == 2
    results = tmp_path / "results"
    store = Store(results)
    for spec, status, when in [
        (tiny[0], "ok", "2026-01-01T10:00:00+00:00"),
        (tiny[1], "diverged", "2026-01-01T11:00:00+00:00"),
        (other[0], "ok", "2026-01-01T09:00:00+00:00"),
    ]:
        row = fake_row(spec, status=status)
        row["finished_at"] = when
        store.write(row, [])
    failed = fake_row(tiny[2], status="error", test_acc=None, error="RuntimeError: out of patience\nTraceback line 2")
    failed["finished_at"] = "2026-01-01T08:00:00+00:00"
    store.write(failed, [])
    claims = results / "claims"
    claims.mkdir()
    me = {"host": Leases(results).me["host"], "pid": os.getpid(), "started": process_start(os.getpid()), "driver": "d" * 32}
    (claims / f"{tiny[3].trial_id}.lock").write_text(json.dumps(me))  # a live driver runs it
    (claims / f"{other[1].trial_id}.lock").write_text(json.dumps({**me, "pid": 2**22 + 7, "started": "1"}))  # its driver is gone

    assert cli.main(["status", "--grid", str(grid_file), "--results", str(results)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("6 trials: 2 done, 1 diverged, 1 errored, 1 running, 1 pending; newest finished: 2026-01-01T11:00:00+00:00")
    tiny_line = next(line for line in out if line.startswith("tiny "))
    assert tiny_line.split()[1:7] == ["4", "1", "1", "1", "1", "0"] and "2026-01-01T11:00:00+00:00" in tiny_line
    assert out[out.index(tiny_line) + 1].strip() == "1 x RuntimeError: out of patience"
    other_line = next(line for line in out if line.startswith("other "))
    assert other_line.split()[1:7] == ["2", "1", "0", "0", "0", "1"] and "2026-01-01T09:00:00+00:00" in other_line
    assert not any("Traceback line 2" in line for line in out)
    assert sorted(p.name for p in claims.iterdir()) == sorted([f"{tiny[3].trial_id}.lock", f"{other[1].trial_id}.lock"])  # nothing moved


def test_an_empty_results_folder_is_all_pending(write_grid, tmp_path, capsys):
    grid_file = write_grid(TINY_GRID)
    assert cli.main(["status", "--grid", str(grid_file), "--results", str(tmp_path / "nothing")]) == 0
    out = capsys.readouterr().out
    assert "4 trials: 0 done, 0 diverged, 0 errored, 0 running, 4 pending; newest finished: -" in out


def test_times_read_as_ago():
    now = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)
    assert _when("2026-01-01T11:59:30+00:00", now) == "2026-01-01T11:59:30+00:00 (30 s ago)"
    assert _when("2026-01-01T11:00:00+00:00", now).endswith("(60 min ago)")
    assert _when("2025-12-31T12:00:00+00:00", now).endswith("(24.0 h ago)")
    assert _when("not a time", now) == "not a time" and _when(None, now) == "-"
