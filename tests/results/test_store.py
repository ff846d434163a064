"""Results on disk: one atomic Parquet file per trial, readable as one table, never crashing on bad files."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import TINY_GRID, fake_row

from tlbench.grid import Grid
from tlbench.results.store import Store


@pytest.fixture
def trials(write_grid):
    return Grid.load(write_grid(TINY_GRID)).expand()


def test_rows_read_back_as_one_table_with_every_config_key(tmp_path, trials):
    store = Store(tmp_path)
    for i, spec in enumerate(trials):
        store.write(fake_row(spec, test_acc=i / 10), [{"trial_id": spec.trial_id, "epoch": 1, "train_loss": 0.5}])
    frame = pd.read_parquet(tmp_path / "trials")
    assert len(frame) == len(trials) and set(frame["trial_id"]) == {t.trial_id for t in trials}
    for column in (
        "trial_id",
        "experiment",
        "seed",
        "status",
        "train_acc",
        "val_acc",
        "test_acc",
        "test_loss",
        "wall_s",
        "node_id",
        "train.lr",
        "dataset.name",
        "model.arch",
        "train.freeze",
        "epochs",
        "image_size",
    ):
        assert column in frame.columns, column
    assert sorted(frame["train.lr"].unique()) == [1e-3, 3e-3]
    assert len(pd.read_parquet(tmp_path / "epochs")) == len(trials)
    assert not [p for p in (tmp_path / "trials").iterdir() if p.name.startswith(".tmp")]


def test_rewriting_a_trial_keeps_one_row(tmp_path, trials):
    store = Store(tmp_path)
    store.write(fake_row(trials[0], test_acc=0.1), [])
    store.write(fake_row(trials[0], test_acc=0.2), [])
    frame = pd.read_parquet(tmp_path / "trials")
    assert frame["test_acc"].tolist() == [0.2]


def test_truncated_file_is_reported_and_its_trial_is_not_done(tmp_path, trials):
    store = Store(tmp_path)
    store.write(fake_row(trials[0]), [])
    store.write(fake_row(trials[1]), [])
    bad = tmp_path / "trials" / f"{trials[1].trial_id}.parquet"
    bad.write_bytes(bad.read_bytes()[:100])
    statuses, unreadable = store.statuses()
    assert statuses == {trials[0].trial_id: "ok"}
    assert [p for p, _ in unreadable] == [bad]
    moved = store.quarantine(unreadable)
    assert moved[0][0] == bad and moved[0][1].name.startswith(".corrupt-") and not bad.exists()
    assert len(pd.read_parquet(tmp_path / "trials")) == 1  # the directory reads cleanly again


def test_a_row_with_an_unknown_field_writes_nothing(tmp_path, trials):
    row = fake_row(trials[0])
    row["surprise"] = 1
    with pytest.raises(KeyError, match="surprise"):
        Store(tmp_path).write(row, [])
    assert not (tmp_path / "trials").exists() or not list((tmp_path / "trials").iterdir())
