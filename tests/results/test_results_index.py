"""The results index (`_index.parquet`) is a cache of data anyone may have copied in: a FIFO there hangs nothing,
and an index that is not one tlbench wrote whole (a row twice, another file's row, other columns or types,
truncated, not Parquet) is rebuilt from the trial files with a warning naming it, never trusted or fatal."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from helpers import TINY_GRID, fake_row, finishes, unblock

from tlbench.grid import Grid, cli
from tlbench.report import build as report
from tlbench.results.store import INDEX_FILE, Store


@pytest.fixture
def results(write_grid, tmp_path):
    """(grid file, results folder with an ok row and epochs for every trial, its trial ids); the index already built."""
    grid_file = write_grid(TINY_GRID)
    store = Store(tmp_path / "results")
    trials = Grid.load(grid_file).expand()
    for i, spec in enumerate(trials):
        store.write(fake_row(spec, test_acc=0.5 + i / 100), [{"trial_id": spec.trial_id, "epoch": 1, "train_loss": 0.5}])
    store.read()
    store.read_epochs()
    assert (store.trials_dir / INDEX_FILE).is_file() and (store.epochs_dir / INDEX_FILE).is_file()
    return grid_file, store, [t.trial_id for t in trials]


def _duplicated_row(index: pa.Table) -> pa.Table:
    return pa.concat_tables([index, index.slice(0, 1)])


def _row_under_another_file(index: pa.Table) -> pa.Table:
    files = index.column("_file").to_pylist()
    return index.set_column(index.schema.get_field_index("_file"), "_file", pa.array([files[1], files[0], *files[2:]]))


def _column_dropped(index: pa.Table) -> pa.Table:
    return index.drop_columns(["test_acc"])


def _column_of_another_type(index: pa.Table) -> pa.Table:
    position = index.schema.get_field_index("test_acc")
    return index.set_column(position, "test_acc", pc.cast(index.column("test_acc"), pa.string()))


def _truncated(path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _not_parquet(path) -> None:
    path.write_text("trial_id,status\n")


REWRITES = {"duplicated row": _duplicated_row, "row under another file": _row_under_another_file,
            "column dropped": _column_dropped, "column of another type": _column_of_another_type}  # fmt: skip
DAMAGES = {"truncated": _truncated, "not parquet": _not_parquet}


def _spoil(path, how: str) -> None:
    """Spoil an index in place, keeping its mtime-independent claim to be up to date (the trial files are unchanged)."""
    if how in REWRITES:
        pq.write_table(REWRITES[how](pq.read_table(path)), path)
    else:
        DAMAGES[how](path)


@pytest.mark.parametrize("how", [*REWRITES, *DAMAGES])
def test_a_malformed_index_is_rebuilt_from_the_files_with_a_warning(results, capsys, how):
    _, store, ids = results
    expected = store.read()[0].sort_by("trial_id")
    index = store.trials_dir / INDEX_FILE
    _spoil(index, how)
    table, bad = store.read()
    assert not bad and table.sort_by("trial_id").equals(expected)  # every row once, each its own file's
    assert f"results index {index} cannot be used" in capsys.readouterr().err
    assert store.read()[0].num_rows == len(ids) and capsys.readouterr().err == ""  # rebuilt: trusted again, no warning


def test_a_duplicated_index_row_does_not_crash_the_report(results, tmp_path, capsys):
    grid_file, store, _ = results
    _spoil(store.trials_dir / INDEX_FILE, "duplicated row")
    out = tmp_path / "report"
    assert report.main(["--grid", str(grid_file), "--results", str(store.root), "--out", str(out)]) == 0
    assert (out / "index.html").is_file()


@pytest.mark.parametrize("how", ["duplicated row", "not parquet"])
def test_a_malformed_epochs_index_is_rebuilt_with_a_warning(results, capsys, how):
    _, store, ids = results
    index = store.epochs_dir / INDEX_FILE
    if how == "duplicated row":  # an epochs index holds several rows a file: a row under another trial's file is what it can tell
        how = "row under another file"
    _spoil(index, how)
    epochs = store.read_epochs()
    assert sorted(epochs.column("trial_id").to_pylist()) == sorted(ids)
    assert f"results index {index} cannot be used" in capsys.readouterr().err


@pytest.mark.parametrize("folder", ["trials", "epochs"])
def test_a_fifo_index_hangs_neither_list_nor_report(results, tmp_path, capsys, folder):
    grid_file, store, ids = results
    fifo = store.root / folder / INDEX_FILE
    fifo.unlink()
    os.mkfifo(fifo)
    try:
        assert finishes(cli.main, ["list", "--grid", str(grid_file), "--results", str(store.root)]) == 0
        assert capsys.readouterr().out.count(" done ") == len(ids)
        args = ["--grid", str(grid_file), "--results", str(store.root), "--out", str(tmp_path / "report")]
        assert finishes(report.main, args) == 0
    finally:
        unblock(fifo)
