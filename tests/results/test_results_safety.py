"""What the results folder and the data caches hold is read defensively: foreign files are quarantined, a row
that cannot be written is kept and the grid goes on, claims split the work, changed images rebuild the caches."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import TINY_GRID, callback, fake_row, plant, tune_result
from PIL import Image

from tlbench.grid import Grid
from tlbench.grid import cli as grid_cli
from tlbench.plan.leases import Leases
from tlbench.report import build as report
from tlbench.results.store import TRIAL_SCHEMA, Store


@pytest.fixture
def trials(write_grid):
    return Grid.load(write_grid(TINY_GRID)).expand()


def foreign_files(trials_dir: Path, ids: list[str]) -> dict[str, str]:
    """Files that are not tlbench rows, each named as one of the grid's trials: -> what is wrong with it."""
    trials_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"trial_id": [123], "status": ["ok"]}), trials_dir / f"{ids[0]}.parquet")
    pq.write_table(pa.table({"trial_id": [ids[1]], "test_acc": [0.9]}), trials_dir / f"{ids[1]}.parquet")
    pq.write_table(pa.table({"trial_id": [ids[2]], "status": ["ok"], "test_acc": ["high"]}), trials_dir / f"{ids[2]}.parquet")
    os.mkfifo(trials_dir / f"{ids[3]}.parquet")  # reading a FIFO would block forever
    return {
        ids[0]: "no string column 'trial_id'",
        ids[1]: "no string column 'status'",
        ids[2]: "column 'test_acc' is string",
        ids[3]: "not a regular file",
    }


def test_files_of_another_schema_are_reported_never_read_as_rows(tmp_path, trials):
    ids = [t.trial_id for t in trials]
    problems = foreign_files(tmp_path / "trials", ids)
    store = Store(tmp_path)
    statuses, bad = store.statuses()
    assert statuses == {}
    assert {p.stem: problem for p, problem in bad}.keys() == problems.keys()
    for path, problem in bad:
        assert problems[path.stem] in problem, problem


def test_a_row_filed_under_another_trials_name_is_refused(tmp_path, trials):
    store = Store(tmp_path)
    store.write(fake_row(trials[0]), [])
    os.replace(tmp_path / "trials" / f"{trials[0].trial_id}.parquet", tmp_path / "trials" / f"{trials[1].trial_id}.parquet")
    statuses, bad = store.statuses()
    assert statuses == {} and "holds trial" in bad[0][1]


def test_older_files_lacking_new_columns_still_read(tmp_path, trials):
    store = Store(tmp_path)
    store.write(fake_row(trials[0]), [])
    path = tmp_path / "trials" / f"{trials[0].trial_id}.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["f1_macro", "peak_mem_mb"]), path)
    table, bad = store.read()
    assert not bad and table.schema == TRIAL_SCHEMA and table.column("f1_macro").to_pylist() == [None]


def test_list_run_and_report_name_foreign_files_and_run_quarantines_them_uniquely(tiny_grid, tmp_path, trials, capsys, monkeypatch):
    results = tmp_path / "results"
    ids = [t.trial_id for t in trials]
    foreign_files(results / "trials", ids)
    common = ["--grid", str(tiny_grid), "--results", str(results)]
    assert grid_cli.main(["list", *common]) == 0
    err = capsys.readouterr().err
    assert all(f"unreadable result {results / 'trials' / i}.parquet" in err for i in ids)
    assert report.main([*common, "--out", str(tmp_path / "out")]) == 0
    assert all(f"{i}.parquet" in (tmp_path / "out" / "index.md").read_text() for i in ids)
    monkeypatch.setattr("tlbench.grid.cli.preflight", lambda pending: None)
    assert grid_cli.main(["run", *common, "--dry-run"]) == 0  # a dry run moves nothing
    assert len(list((results / "trials").glob("[0-9a-f]*.parquet"))) == 4
    first = (results / "trials" / f"{ids[1]}.parquet").read_bytes()
    runs = []
    monkeypatch.setattr("tlbench.on_ray.driver.run", lambda pending, options: runs.append(pending) or _outcome({}))
    capsys.readouterr()
    grid_cli.main(["run", *common])
    err = capsys.readouterr().err
    assert all(f"unreadable result {results / 'trials' / i}.parquet" in err and "moved to .corrupt-" in err for i in ids)
    assert len(runs[0]) == 4  # their trials run again
    pq.write_table(pa.table({"trial_id": [ids[1]], "other": [1]}), results / "trials" / f"{ids[1]}.parquet")
    grid_cli.main(["run", *common])
    copies = sorted((results / "trials").glob(f".corrupt-{ids[1]}*"))
    assert len(copies) == 2 and first in [c.read_bytes() for c in copies]  # the second quarantine kept the first copy


def _outcome(counts, stopped=None):
    from tlbench.on_ray.driver import RunOutcome

    return RunOutcome(counts, 0, stopped)


# -- rows that cannot be written ------------------------------------------------------


def test_a_row_no_column_can_hold_is_kept_as_json_and_the_grid_goes_on(tmp_path, trials, capsys):
    results, counts = callback(tmp_path)
    huge = {**fake_row(trials[0]), "seed": 2**63}  # past int64: an earlier tlbench allowed such seeds
    results.on_trial_result(1, [], SimpleNamespace(trial_id="t0"), tune_result(huge))  # must not raise
    results.on_trial_result(2, [], SimpleNamespace(trial_id="t1"), tune_result(fake_row(trials[1])))
    err = capsys.readouterr().err
    kept = tmp_path / "trials" / f".unwritten-{trials[0].trial_id}.json"
    assert f"error: trial {trials[0].trial_id}: its result could not be written" in err and str(kept) in err
    assert json.loads(kept.read_text())["row"]["seed"] == 2**63
    assert counts == {"unwritten": 1, "ok": 1} and results.disk_error is None
    assert set(Store(tmp_path).statuses()[0]) == {trials[1].trial_id}


def test_a_garbled_result_is_reported_not_raised(tmp_path, capsys):
    results, counts = callback(tmp_path)
    results.on_trial_result(1, [], SimpleNamespace(trial_id="t0"), {"payload": "{not json"})
    results.on_trial_error(1, [], SimpleNamespace(trial_id="t1", config={}))
    assert counts == {"unwritten": 2} and "could not handle the result of Tune trial t0" in capsys.readouterr().err


def test_a_full_disk_stops_new_trials_keeps_the_row_and_a_later_run_writes_it(tmp_path, trials, capsys, monkeypatch):
    from tlbench.on_ray.driver import ClaimingSearcher, Searcher

    results, counts = callback(tmp_path)
    searcher = ClaimingSearcher([{"trial": {"trial_id": t.trial_id}} for t in trials], results.claims, results.store, results)
    assert searcher.suggest("a") == {"point": {"trial": {"trial_id": trials[0].trial_id}}}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("tlbench.results.store.pq.write_table", full)
    results.on_trial_result(1, [], SimpleNamespace(trial_id="a"), tune_result(fake_row(trials[0])))
    assert "No space left on device" in results.disk_error and counts == {"unwritten": 1}
    assert searcher.suggest("b") == Searcher.FINISHED  # the trials in flight finish; no new one starts
    assert not (tmp_path / "claims" / f"{trials[0].trial_id}.lock").exists()
    monkeypatch.undo()
    written, failed = Store(tmp_path).write_unwritten()
    assert written == [trials[0].trial_id] and not failed and not Store(tmp_path).unwritten()
    assert Store(tmp_path).statuses()[0] == {trials[0].trial_id: "ok"}


def test_a_run_stopped_by_the_disk_exits_1_with_a_message(tiny_grid, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("tlbench.grid.cli.preflight", lambda pending: None)
    stopped = _outcome({"ok": 1}, "cannot write to r (No space left on device)")
    monkeypatch.setattr("tlbench.on_ray.driver.run", lambda pending, options: stopped)
    assert grid_cli.main(["run", "--grid", str(tiny_grid), "--results", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "error: stopped early: cannot write to r (No space left on device)" in err and "Traceback" not in err


# -- claims ---------------------------------------------------------------------


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_claim_is_held_by_one_driver_until_freed(tmp_path):
    first, second = Leases(tmp_path), Leases(tmp_path)
    assert first.take("t1") and not second.take("t1")  # this process is alive: its claim stands
    assert first.holder("t1")["driver"] == first.me["driver"]
    first.release("t1")
    assert second.take("t1")
    first.release("t1")  # not its claim any more: left alone
    assert second.holder("t1")["driver"] == second.me["driver"]
    second.release_all()
    assert not list((tmp_path / "claims").iterdir())


@pytest.mark.parametrize("holder, age_s, stale", [
    ({"pid": "dead"}, 0, True),  # same host, process gone
    ({"started": "1"}, 0, True),  # same host, pid reused by a process started at another time
    ({}, 0, False),  # same host, alive
    ({"host": "elsewhere"}, 0, False),  # another host, touched recently
    ({"host": "elsewhere"}, 3600, True),  # another host, silent for an hour
])  # fmt: skip
def test_a_stale_claim_is_taken_over_a_live_one_is_not(tmp_path, holder, age_s, stale):
    claims = Leases(tmp_path)
    if holder.get("pid") == "dead":
        holder = {"pid": dead_pid()}
    plant(claims, "t1", age_s, **holder)
    assert claims.take("t1") is stale
    assert (claims.holder("t1")["driver"] == claims.me["driver"]) is stale


def test_a_live_driver_keeps_its_claims_fresh(tmp_path):
    claims = Leases(tmp_path, heartbeat_s=0.05)
    assert claims.take("t1")
    os.utime(claims.path("t1"), (0, 0))
    time.sleep(0.5)
    assert time.time() - claims.path("t1").stat().st_mtime < 5
    claims.release_all()


# -- caches keyed on content ------------------------------------------------------------


def test_replaced_images_of_the_same_count_give_new_pixels(tmp_path):
    from helpers import dataset_cfg

    from tlbench.trial import data

    def write(colour: tuple[int, int, int]) -> None:
        for split in ("train", "test"):
            for cls in ("a", "b"):
                folder = tmp_path / "mine" / split / cls
                folder.mkdir(parents=True, exist_ok=True)
                for n in range(4):
                    Image.fromarray(np.full((20, 20, 3), colour, dtype=np.uint8)).save(folder / f"{n}.png")

    cfg = dataset_cfg(name="imagefolder", path="mine", val_fraction=0.25)
    write((10, 20, 30))
    before = data.load(cfg, 16, tmp_path, seed=0)
    assert (before.test.images()[:, :, 0, 0] == np.array([10, 20, 30])).all()
    write((200, 100, 50))  # the same names and count, other pixels
    after = data.load(cfg, 16, tmp_path, seed=0)
    assert (after.test.images()[:, :, 0, 0] == np.array([200, 100, 50])).all()
    assert after.test.pool_key != before.test.pool_key  # the frozen-feature cache is keyed on it too


def test_results_that_cannot_be_written_stop_the_run_before_ray_starts(tiny_grid, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    monkeypatch.setattr("tlbench.grid.cli.preflight", lambda pending: None)
    monkeypatch.setattr("tlbench.on_ray.driver.run", lambda pending, options: pytest.fail("Ray must not start"))
    assert grid_cli.main(["run", "--grid", str(tiny_grid), "--results", str(blocker / "results")]) == 2  # bad input: before anything
    err = capsys.readouterr().err
    assert f"error: --results: {blocker} is a file, not a folder" in err and "Traceback" not in err


def test_a_claim_the_disk_refuses_stops_handing_out_trials(tmp_path, trials):
    from tlbench.on_ray.driver import ClaimingSearcher, Searcher

    results, _ = callback(tmp_path / "a-file" / "results")
    (tmp_path / "a-file").write_text("in the way")
    searcher = ClaimingSearcher([{"trial": {"trial_id": t.trial_id}} for t in trials], results.claims, results.store, results)
    assert searcher.suggest("a") == Searcher.FINISHED and "cannot write to" in results.disk_error


def test_a_foreign_epochs_file_loses_only_a_curve_and_is_named_and_moved(tiny_grid, tmp_path, trials, capsys, monkeypatch):
    results = tmp_path / "results"
    store = Store(results)
    for spec in trials:
        store.write(fake_row(spec), [{"trial_id": spec.trial_id, "epoch": 1, "train_loss": 0.5}])
    ids = [t.trial_id for t in trials]
    pq.write_table(pa.table({"trial_id": [ids[0]], "epoch": ["one"]}), results / "epochs" / f"{ids[0]}.parquet")
    pq.write_table(pa.table({"trial_id": ["someone-else"], "epoch": [1]}), results / "epochs" / f"{ids[1]}.parquet")
    (results / "epochs" / f"{ids[2]}.parquet").unlink()
    os.mkfifo(results / "epochs" / f"{ids[2]}.parquet")
    assert set(store.read_epochs().column("trial_id").to_pylist()) == {ids[3]}  # and no hang on the FIFO
    assert {p.stem for p, _ in store.bad_epoch_files()} == set(ids[:3])
    common = ["--grid", str(tiny_grid), "--results", str(results)]
    assert grid_cli.main(["list", *common]) == 0
    assert all(f"unreadable epochs {results / 'epochs' / i}.parquet" in capsys.readouterr().err for i in ids[:1])
    assert grid_cli.main(["run", *common]) == 0  # every trial is done: nothing runs
    err = capsys.readouterr().err
    assert all(f"unreadable epochs {results / 'epochs' / i}.parquet" in err and "moved to .corrupt-" in err for i in ids[:3])
    assert not store.bad_epoch_files() and len(store.read_epochs()) == 1


def test_trials_no_node_can_place_are_refused_naming_the_nodes(trials, monkeypatch):
    from tlbench.grid import GridError
    from tlbench.on_ray import driver as scheduler

    monkeypatch.setattr(
        scheduler.ray,
        "nodes",
        lambda: [{"Alive": True, "Resources": {"CPU": 4.0}}, {"Alive": False, "Resources": {"CPU": 8.0, "GPU": 1.0}}],
    )
    fits = scheduler.RunOptions(results=Path("r"), data=Path("d"), cpus_per_trial=4)
    scheduler.check_resources(trials, fits, cluster_gpus=0)
    for options in (
        scheduler.RunOptions(results=Path("r"), data=Path("d"), gpus_per_trial=1.0),
        scheduler.RunOptions(results=Path("r"), data=Path("d"), cpus_per_trial=6),
    ):
        with pytest.raises(GridError, match="the cluster's nodes have 4 CPU/0 GPU"):
            scheduler.check_resources(trials, options, cluster_gpus=0)


def test_a_read_only_results_disk_is_a_message_and_exit_1_not_a_traceback(tiny_grid, tmp_path, trials, capsys, monkeypatch):
    results = tmp_path / "results"
    foreign_files(results / "trials", [t.trial_id for t in trials])

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("tlbench.results.store.os.replace", read_only)
    monkeypatch.setattr("tlbench.on_ray.driver.run", lambda pending, options: pytest.fail("Ray must not start"))
    assert grid_cli.main(["run", "--grid", str(tiny_grid), "--results", str(results)]) == 1
    assert f"error: cannot write to {results} (Read-only file system)" in capsys.readouterr().err
