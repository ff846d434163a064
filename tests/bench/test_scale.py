"""Large grids stay fast: the results index, row resolution by index, array aggregation, a collapsed page."""

from __future__ import annotations

import os
import random

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import TINY_GRID, fake_row

from tlbench.bench.scale import bench_first_read, scale_grid
from tlbench.grid import Grid, TrialSpec
from tlbench.grid.tables import RowIndex, canonical_value
from tlbench.grid.trials import VARIANT_AXIS
from tlbench.report import build as report
from tlbench.report.aggregate import build_tables
from tlbench.results import store as store_module
from tlbench.results.store import INDEX_FILE, Store


@pytest.fixture
def trials(write_grid):
    return Grid.load(write_grid(TINY_GRID)).expand()


def slow_statuses(store: Store) -> dict[str, str]:
    """The finished set the slow way: every trial file opened on its own."""
    out = {}
    for path in store.files():
        try:
            table = pq.read_table(path)
            if table.num_rows == 1:
                out[table.column("trial_id")[0].as_py()] = table.column("status")[0].as_py()
        except Exception:
            continue
    return out


def test_index_is_rebuilt_when_missing_stale_or_broken(tmp_path, trials):
    store = Store(tmp_path)
    for spec in trials[:3]:
        store.write(fake_row(spec), [{"trial_id": spec.trial_id, "epoch": 1, "train_loss": 0.5}])
    assert set(store.statuses()[0]) == {t.trial_id for t in trials[:3]}
    index = store.trials_dir / INDEX_FILE
    assert index.exists() and pq.read_table(index).num_rows == 3
    # A file added behind its back, one removed, one rewritten (another status, another size and mtime).
    store.write(fake_row(trials[3]), [])
    (store.trials_dir / f"{trials[0].trial_id}.parquet").unlink()
    store.write(fake_row(trials[1], status="error", error="boom"), [])
    rewritten = store.trials_dir / f"{trials[1].trial_id}.parquet"
    os.utime(rewritten, ns=(1, 1))  # a different mtime even on a coarse-clock filesystem
    expected = {trials[1].trial_id: "error", trials[2].trial_id: "ok", trials[3].trial_id: "ok"}
    assert store.statuses()[0] == expected == slow_statuses(store)
    assert set(pq.read_table(index).column("trial_id").to_pylist()) == set(expected)
    for broken in (None, b"not parquet"):
        if broken is None:
            index.unlink()
        else:
            index.write_bytes(broken)
        assert store.statuses()[0] == expected
        assert pq.read_table(index).num_rows == 3
    # The epochs folder has its own index, kept the same way: trial 1's epochs were rewritten empty.
    assert set(store.read_epochs().column("trial_id").to_pylist()) == {trials[0].trial_id, trials[2].trial_id}
    assert store.read_epochs([trials[2].trial_id]).num_rows == 1


def test_fast_finished_set_equals_the_slow_one_and_names_bad_files(tmp_path, trials):
    store = Store(tmp_path)
    for spec, status in zip(trials, ("ok", "diverged", "error", "ok")):
        store.write(fake_row(spec, status=status), [])
    store.statuses()  # index built
    bad = store.trials_dir / f"{trials[3].trial_id}.parquet"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated after indexing: seen as changed, read, found bad
    foreign = store.trials_dir / "0000000000000000.parquet"
    pd.DataFrame({"x": [1, 2]}).to_parquet(foreign)
    statuses, unreadable = store.statuses()
    assert statuses == slow_statuses(store) == {t.trial_id: s for t, s in zip(trials[:3], ("ok", "diverged", "error"))}
    assert sorted(p for p, _ in unreadable) == sorted([bad, foreign])
    table, _ = store.read()
    assert table.column("trial_id").to_pylist() == sorted(t.trial_id for t in trials[:3])  # file order, as before


def old_row_trial_ids(grid: Grid, row: dict) -> list[str]:
    """Row resolution as it was: the experiment's points, every one compared with `where`."""

    def matches(trial: TrialSpec, axis: str, value) -> bool:
        if axis == VARIANT_AXIS:
            return trial.axes.get(axis) == value
        return canonical_value(axis, trial.axes.get(axis), trial.config) == canonical_value(axis, value, trial.config)

    trials = grid.points(grid.experiment(row["experiment"]))
    return list(dict.fromkeys(t.trial_id for t in trials if all(matches(t, k, v) for k, v in (row.get("where") or {}).items())))


def test_row_index_resolves_every_reports_row_as_the_full_comparison_does():
    grid = Grid.load("grid/reports.yaml")
    index = RowIndex(grid)
    rows = [row for table in grid.tables for row in table["rows"]]
    assert rows
    for row in rows:
        assert index.trial_ids(row) == old_row_trial_ids(grid, row), row["label"]


@pytest.mark.slow
def test_array_aggregation_gives_the_per_row_lookup_numbers(tmp_path):
    """On the reports' grid, with results of every status and some missing: each cell equals a plain
    per-row filter of the results frame."""
    grid = Grid.load("grid/reports.yaml")
    rng = random.Random(1)
    store = Store(tmp_path)
    for spec in grid.expand():
        draw = rng.random()
        if draw < 0.15:
            continue  # pending
        status = "error" if draw < 0.25 else "diverged" if draw < 0.3 else "ok"
        store.write(fake_row(spec, status=status, test_acc=rng.random(), f1_macro=rng.random(), device=f"cpu {draw < 0.6}",
                             error="boom" if status == "error" else None), [])  # fmt: skip
    frame = store.read()[0].to_pandas()
    checked = 0
    for spec, table in zip(grid.tables, build_tables(grid, frame, "full")):
        for row_spec, row in zip(spec["rows"], table.rows):
            mine = frame[frame["trial_id"].isin(old_row_trial_ids(grid, row_spec))]
            usable = mine[mine["status"] == "ok"]  # a diverged trial is no measurement
            assert row.statuses.get("pending", 0) == len(row.trial_ids) - len(mine)
            assert row.statuses.get("error", 0) == int((mine["status"] == "error").sum())
            assert row.errors == mine["error"].dropna().tolist()
            assert row.devices == sorted(set(usable["device"].dropna()))
            for metric, cell in zip(spec["metrics"], row.cells):
                values = usable[metric["key"]].astype(float).to_numpy() * metric.get("scale", 1)
                finite = values[np.isfinite(values)]
                assert cell.n == len(finite)
                if len(finite):
                    assert cell.mean == pytest.approx(finite.mean())
                checked += 1
    assert checked > 50


@pytest.mark.slow
def test_a_table_of_many_rows_is_collapsed_on_the_page_and_whole_in_its_csv(tmp_path):
    grid_path = tmp_path / "grid.yaml"
    grid_path.write_text(scale_grid(120))
    out = tmp_path / "report"
    assert report.main(["--grid", str(grid_path), "--results", str(tmp_path / "results"), "--out", str(out)]) == 0
    html, md = (out / "index.html").read_text(), (out / "index.md").read_text()
    labels = [row["label"] for row in Grid.load(grid_path).tables[0]["rows"]]
    for page in (html, md):
        assert "The first 100 rows of 120: the other 20 are in" in page and "tables/t-scale.csv" in page
        assert f">{labels[99]}<" in page or f"| {labels[99]} |" in page
        assert labels[100] not in page
    assert pd.read_csv(out / "tables" / "t-scale.csv")["row"].nunique() == 120


def test_a_fifo_among_the_trial_files_is_named_not_read_as_part_of_a_batch(tmp_path, trials):
    store = Store(tmp_path)
    store.write(fake_row(trials[0]), [])
    fifo = store.trials_dir / f"{trials[1].trial_id}.parquet"
    os.mkfifo(fifo)
    statuses, unreadable = store.statuses()  # returns: nothing opens the FIFO in bulk
    assert statuses == {trials[0].trial_id: "ok"}
    assert [p for p, _ in unreadable] == [fifo]


def test_new_files_read_together_keep_every_per_file_check(tmp_path, trials):
    """A folder no command indexed yet: good rows of two sets of columns (an older file lacks some) are read, and
    each file that is no trial row of its own (two rows, another trial's row, a null id, another type) is named."""
    store = Store(tmp_path)
    for spec in trials:
        store.write(fake_row(spec), [{"trial_id": spec.trial_id, "epoch": 1, "train_loss": 0.5}])
    older = store.trials_dir / f"{trials[1].trial_id}.parquet"
    pq.write_table(pq.read_table(older).drop_columns(["wall_s"]), older)
    row = pq.read_table(store.trials_dir / f"{trials[0].trial_id}.parquet")
    planted = {
        "aaaaaaaaaaaaaaaa": pa.concat_tables([row, row]).set_column(0, "trial_id", pa.array(["aaaaaaaaaaaaaaaa"] * 2)),
        "bbbbbbbbbbbbbbbb": row,  # trial 0's row under another name
        "cccccccccccccccc": row.set_column(0, "trial_id", pa.nulls(1, pa.string())),
        "dddddddddddddddd": row.set_column(0, "trial_id", pa.array(["dddddddddddddddd"])).set_column(
            row.schema.get_field_index("test_acc"), "test_acc", pa.array(["high"])),
    }  # fmt: skip
    for name, table in planted.items():
        pq.write_table(table, store.trials_dir / f"{name}.parquet")
    pq.write_table(pa.table({"trial_id": [trials[0].trial_id], "epoch": [1]}), store.epochs_dir / f"{trials[2].trial_id}.parquet")
    table, bad = store.read()
    assert sorted(table.column("trial_id").to_pylist()) == sorted(t.trial_id for t in trials)
    assert table.column("wall_s").to_pylist().count(None) == 1  # the older file's, filled in
    problems = {path.stem: problem for path, problem in bad}
    assert problems.keys() == planted.keys()
    assert "2 rows" in problems["aaaaaaaaaaaaaaaa"] and "holds trial" in problems["bbbbbbbbbbbbbbbb"]
    assert "holds trial None" in problems["cccccccccccccccc"] and "column 'test_acc' is string" in problems["dddddddddddddddd"]
    epochs_bad = store.bad_epoch_files()
    assert [(p.stem, "rows of other trials" in why) for p, why in epochs_bad] == [(trials[2].trial_id, True)]
    assert sorted(store.read_epochs().column("trial_id").to_pylist()) == sorted(t.trial_id for t in trials if t != trials[2])


@pytest.mark.slow
def test_the_first_read_bench_times_a_list_over_unindexed_results(tmp_path, trials):
    spec = trials[0]
    lines = {}
    template = (fake_row(spec), [{"trial_id": spec.trial_id, "epoch": 1, "train_loss": 0.5}])
    seconds = bench_first_read(tmp_path, template, 20, lambda name, value: lines.__setitem__(name, value))
    assert lines == {"scale_first_read_20_s": seconds, "scale_first_read_files_per_s": pytest.approx(20 / seconds)}
    assert pq.read_table(tmp_path / "results-first-read-20" / "trials" / INDEX_FILE).num_rows == 20  # it read them all


def test_good_new_files_are_read_together_not_one_by_one(tmp_path, trials, monkeypatch):
    """The per-file reader is for files the checks together doubt: before, every new file went through it (22 ms each)."""
    store = Store(tmp_path)
    for spec in trials:
        store.write(fake_row(spec), [{"trial_id": spec.trial_id, "epoch": 1, "train_loss": 0.5}])
    alone = []
    for name in ("read_trial_file", "read_epoch_file"):
        reader = getattr(store_module, name)
        monkeypatch.setattr(store_module, name, lambda path, reader=reader: alone.append(path) or reader(path))
    assert len(store.read()[0]) == len(trials) and store.read_epochs().num_rows == len(trials)
    assert alone == []
