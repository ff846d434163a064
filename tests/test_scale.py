"""Large grids stay fast: the results index, row resolution by index, array aggregation, a collapsed page."""

from __future__ import annotations

import os
import random

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers import TINY_GRID
from test_store import fake_row

from tlbench import report
from tlbench.aggregate import build_tables
from tlbench.grid import Grid, TrialSpec
from tlbench.grid.model import VARIANT_AXIS
from tlbench.grid.tables import RowIndex, canonical_value
from tlbench.scale import scale_grid
from tlbench.store import INDEX_FILE, Store


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
