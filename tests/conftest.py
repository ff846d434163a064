"""Fixtures: grid files written into the test's temporary folder."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from helpers import TINY_GRID, fake_row

from tlbench.grid import Grid
from tlbench.results.store import Store


@pytest.fixture
def write_grid(tmp_path: Path):
    """write_grid(text) -> path of a grid file holding that YAML (dedented)."""

    def write(text: str, name: str = "grid.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def tiny_grid(write_grid) -> Path:
    return write_grid(TINY_GRID)


@pytest.fixture
def grid_and_results(write_grid, tmp_path):
    grid_path = write_grid(TINY_GRID)
    grid = Grid.load(grid_path)
    trials = grid.expand()
    fast = [t for t in trials if t.axes["train.lr"] == 3e-3]
    slow = [t for t in trials if t.axes["train.lr"] == 1e-3]
    store = Store(tmp_path / "results")
    for spec, acc in zip(fast, (0.80, 0.90)):
        epochs = [
            {
                "trial_id": spec.trial_id,
                "experiment": spec.experiment,
                "seed": spec.seed,
                "epoch": e,
                "train_loss": 1 / e,
                "train_acc": acc - 0.1 / e,
                "val_loss": 1.1 / e,
                "val_acc": acc - 0.2 / e,
            }
            for e in (1, 2)
        ]
        store.write(fake_row(spec, test_acc=acc, device="cpu (test)"), epochs)
    store.write(fake_row(slow[0], test_acc=0.70), [])  # its second seed is still pending
    return grid_path, tmp_path / "results"
