"""Files a hostile neighbour or a second driver leaves in results/ or --storage: never a hang, a crash or a write elsewhere."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import TINY_GRID, fake_row, finishes, unblock

from tlbench.grid import Grid
from tlbench.plan.leases import Leases
from tlbench.results.store import Store
from tlbench.trial import checkpoint


@pytest.fixture
def trials(write_grid):
    return Grid.load(write_grid(TINY_GRID)).expand()


# -- 1: a FIFO is never read -----------------------------------------------------------


def test_a_fifo_kept_row_is_reported_not_read(tmp_path, trials):
    store = Store(tmp_path)
    store.trials_dir.mkdir(parents=True)
    fifo = store.trials_dir / f".unwritten-{trials[0].trial_id}.json"
    os.mkfifo(fifo)
    try:
        written, failed = finishes(store.write_unwritten)
    finally:
        unblock(fifo)
    assert written == [] and [(p, "not a regular file" in why) for p, why in failed] == [(fifo, True)]


def test_a_fifo_claim_is_no_holder_and_does_not_block_taking(tmp_path):
    claims = Leases(tmp_path)
    claims.folder.mkdir(parents=True)
    os.mkfifo(claims.path("t1"))
    try:
        assert finishes(claims.holder, "t1") is None
        assert finishes(claims.take, "t1") is True  # no holder to wait for: moved aside without being read, and taken
    finally:
        unblock(claims.path("t1"))
    assert claims.holder("t1")["driver"] == claims.me["driver"]
    claims.release_all()


def test_a_fifo_state_file_is_ignored_by_the_reader_and_the_driver(tmp_path, capsys):
    from tlbench.on_ray.driver import STATE_FILE, earlier_checkpoints

    folder = tmp_path / "tlbench-1" / "0123456789abcdef" / "checkpoint_000001"
    folder.mkdir(parents=True)
    os.mkfifo(folder / STATE_FILE)
    try:
        assert finishes(checkpoint.read, folder / STATE_FILE) is None
        assert "ignoring unreadable checkpoint" in capsys.readouterr().err
        assert finishes(earlier_checkpoints, str(tmp_path)) == {}
    finally:
        unblock(folder / STATE_FILE)
    assert "not a regular file" in capsys.readouterr().err


# -- 2: two drivers tidying at once -------------------------------------------------------


def test_files_another_driver_moved_or_wrote_first_are_skipped(tmp_path, trials, monkeypatch, capsys):
    """Both drivers listed the same files; this one finds them gone: no error, no exit 1."""
    from tlbench.grid import cli as grid_cli

    store = Store(tmp_path)
    store.keep_unwritten(fake_row(trials[0]), [])
    store.trials_dir.joinpath(f"{trials[1].trial_id}.parquet").write_bytes(b"not parquet")
    listed_bad = store.statuses()[1]
    listed_kept = store.unwritten()

    # The other driver: writes the kept row and moves the bad file aside, between our listing and our acting.
    Store(tmp_path).write_unwritten()
    Store(tmp_path).quarantine(listed_bad)
    assert store.quarantine(listed_bad) == []
    monkeypatch.setattr(Store, "unwritten", lambda self: listed_kept)
    monkeypatch.setattr(Store, "statuses", lambda self: ({}, listed_bad))
    assert store.write_unwritten() == ([], [])
    grid_cli.tidy(store)  # raised FileNotFoundError before: grid.py said "cannot write" and exited 1
    assert "warning" not in capsys.readouterr().err


def test_a_kept_row_another_driver_removed_after_we_wrote_it_is_no_error(tmp_path, trials, monkeypatch):
    store = Store(tmp_path)
    kept = store.keep_unwritten(fake_row(trials[0]), [])
    real_write = Store.write

    def write_then_other_driver_unlinks(self, row, epochs):
        real_write(self, row, epochs)
        kept.unlink()  # the other driver finished the same kept row a moment earlier

    monkeypatch.setattr(Store, "write", write_then_other_driver_unlinks)
    assert store.write_unwritten() == ([trials[0].trial_id], [])


# -- 3: a kept row is checked before it names a file ---------------------------------------


@pytest.mark.parametrize("change, why", [
    ({"trial_id": "../../escaped"}, "holds trial '../../escaped'"),
    ({"trial_id": "0123456789abcdef"}, "holds trial '0123456789abcdef'"),  # another trial's name
    ({"status": None}, "no string status"),
    ({"test_acc": "high"}, "could not convert"),  # a column's type, as TRIAL_SCHEMA holds it
    ({"epochs_run": "3"}, "Arrow"),
    ({"surprise": 1}, "surprise"),
])  # fmt: skip
def test_a_planted_kept_row_is_refused_and_writes_nothing(tmp_path, trials, change, why):
    store = Store(tmp_path / "results")  # a trial id "../../x" names tmp_path/x
    path = store.trials_dir / f".unwritten-{trials[0].trial_id}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"row": {**fake_row(trials[0]), **change}, "epochs": []}))
    written, failed = store.write_unwritten()
    assert written == [] and len(failed) == 1 and failed[0][0] == path and why in failed[0][1]
    assert not list(tmp_path.rglob("*.parquet"))


def test_a_kept_row_named_other_than_a_trial_id_is_refused(tmp_path, trials):
    store = Store(tmp_path)
    path = store.trials_dir / ".unwritten-x.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"row": {**fake_row(trials[0]), "trial_id": "x"}, "epochs": []}))
    written, failed = store.write_unwritten()
    assert written == [] and "16 hex digits" in failed[0][1] and not list(store.trials_dir.glob("*.parquet"))


# -- 5: freeing a claim, and a closed stderr, never replace a row's outcome -------------------


def test_a_claim_that_cannot_be_freed_leaves_the_written_row_counted(tmp_path, trials, monkeypatch, capsys):
    from helpers import callback, tune_result

    results, counts = callback(tmp_path)
    assert results.claims.take(trials[0].trial_id)
    real_unlink = Path.unlink

    def read_only(self, missing_ok=False):
        if self.suffix == ".lock":
            raise OSError(30, "Read-only file system")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", read_only)
    results.on_trial_result(1, [], None, tune_result(fake_row(trials[0])))
    assert counts == {"ok": 1} and Store(tmp_path).statuses()[0] == {trials[0].trial_id: "ok"}
    assert "cannot free the claim" in capsys.readouterr().err


def test_a_closed_stderr_does_not_raise_into_tune(tmp_path, monkeypatch):
    import io

    from helpers import callback

    results, counts = callback(tmp_path)
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr("sys.stderr", closed)
    results.on_trial_result(1, [], None, {"payload": "{not json"})  # raised ValueError (I/O on a closed file) before
    assert counts == {"unwritten": 1}


# -- 6: a claim no driver can hold is not waited on forever ----------------------------------


def test_a_claim_of_pid_1_goes_stale_by_age(tmp_path):
    from helpers import plant

    claims = Leases(tmp_path)
    plant(claims, "t1", 0, pid=1)
    assert claims.take("t1") is False  # fresh: a driver that is its container's first process may hold it
    plant(claims, "t1", 3600, pid=1)
    assert claims.take("t1") is True  # pid 1 always runs: before, such a claim was never stale


def test_a_claim_of_a_live_pid_without_its_start_time_goes_stale_by_age(tmp_path):
    from helpers import plant

    claims = Leases(tmp_path)
    plant(claims, "t1", 3600, pid=os.getpid(), started=None)
    assert claims.take("t1") is True


def test_a_driver_says_once_which_trials_it_leaves_to_another(tmp_path, trials, capsys):
    from helpers import callback, plant

    from tlbench.on_ray.driver import ClaimingSearcher, Searcher

    results, _ = callback(tmp_path)
    for spec in trials[:2]:
        plant(results.claims, spec.trial_id, 0, pid=1, driver="abcdef123456")
    searcher = ClaimingSearcher([{"trial": {"trial_id": t.trial_id}} for t in trials[:2]], results.claims, results.store, results)
    # it finishes rather than wait: a waiting Tune would keep the actors the other driver needs
    assert searcher.suggest("a") == Searcher.FINISHED and searcher.suggest("b") == Searcher.FINISHED
    err = capsys.readouterr().err
    assert err.count("left 2 trial(s) to the driver that claimed them") == 1 and "pid 1 driver abcdef" in err
    assert len(searcher.elsewhere) == 2 and searcher.by_others == 0
