"""No silent wrong numbers in the report (issue 21): every number in a table is a measurement of the config it names.

Diverged seeds stay out of cells and claims; a row's `where` may not pool configs as seeds; table ids and
experiment names are safe, distinct file names; a table's display keys are checked at load; grid strings
are escaped for Markdown and for matplotlib; a profile may not collapse an axis."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import TINY_GRID
from test_store import fake_row

from tlbench import report
from tlbench.grid import Grid, GridError
from tlbench.store import Store

CLAIM = "    claims: [{claim: fast beats slow, row_a: fast, row_b: slow}]\n"


def run_report(grid_path, results, out) -> int:
    return report.main(["--grid", str(grid_path), "--results", str(results), "--out", str(out)])


def test_diverged_seeds_are_named_beside_the_cell_never_averaged_judged_or_claimed(write_grid, tmp_path):
    grid_path = write_grid(TINY_GRID.replace("    title: tiny\n", "    title: tiny\n" + CLAIM))
    store = Store(tmp_path / "results")
    for spec in Grid.load(grid_path).expand():
        fast = spec.axes["train.lr"] == 3e-3
        if fast and spec.seed == 0:
            store.write(fake_row(spec, test_acc=0.9), [])
        else:  # every logit NaN: each prediction is class 0, a third of 3 balanced classes right
            store.write(fake_row(spec, status="diverged", test_acc=1 / 3, error=None), [])
    out = tmp_path / "report"
    assert run_report(grid_path, store.root, out) == 0
    table = pd.read_csv(out / "tables" / "t-tiny.csv").set_index("row")
    assert table.loc["fast", "reproduced"] == pytest.approx(90.0) and table.loc["fast", "n"] == 1
    assert table.loc["fast", "diverged"] == 1 and table.loc["fast", "verdict"] == "one run"
    assert pd.isna(table.loc["slow", "reproduced"]) and table.loc["slow", "n"] == 0
    assert table.loc["slow", "diverged"] == 2 and table.loc["slow", "verdict"] == "diverged"
    for page in ("index.md", "index.html"):
        text = (out / page).read_text()
        assert "90.0 (1; 1 diverged)" in text and "– (2 diverged)" in text, page
        assert "33.3" not in text, page
    claims = pd.read_csv(out / "tables" / "claims.csv").iloc[0]
    assert claims["n_a"] == 1 and claims["n_b"] == 0 and claims["diverged_a"] == 1 and claims["diverged_b"] == 2
    assert claims["verdict"] == "unresolved: every seed of 'slow' diverged"


POOLING_ROW = "      - {label: pooled, experiment: tiny, reported: {test_acc: 85.0}}\n"


def with_row(row: str) -> str:
    return TINY_GRID.replace("profiles:\n", row + "profiles:\n")


def test_a_row_that_leaves_an_axis_open_is_refused_naming_the_row_and_the_axis(write_grid, tmp_path, capsys):
    text = with_row(POOLING_ROW)
    grid_path = write_grid(text)
    with pytest.raises(GridError, match=r"row 'pooled' leaves axis train\.lr of experiment 'tiny' open: its 2 configs") as caught:
        Grid.load(grid_path)
    assert caught.value.line == text.splitlines().index(POOLING_ROW.rstrip("\n")) + 1 and "averages: [train.lr]" in str(caught.value)
    assert run_report(grid_path, tmp_path / "results", tmp_path / "report") == 2
    assert "rows[2]" in capsys.readouterr().err


def test_a_row_that_averages_an_axis_on_purpose_says_so_beside_its_cell(write_grid, tmp_path):
    grid_path = write_grid(with_row(POOLING_ROW.replace("reported:", "averages: [train.lr], reported:")))
    store = Store(tmp_path / "results")
    for spec in Grid.load(grid_path).expand():
        store.write(fake_row(spec, test_acc=0.8 if spec.axes["train.lr"] == 3e-3 else 0.9), [])
    out = tmp_path / "report"
    assert run_report(grid_path, store.root, out) == 0
    table = pd.read_csv(out / "tables" / "t-tiny.csv").set_index("row")
    assert table.loc["pooled", "n"] == 4 and table.loc["pooled", "averages"] == "train.lr" and pd.isna(table.loc["fast", "averages"])
    for page in ("index.md", "index.html"):
        assert "85.0 ± 5.8 (4; averaged over train.lr)" in (out / page).read_text(), page


@pytest.mark.parametrize("averages, words", [
    ("[model.arch]", "has no axis got 'model.arch', expected one of train.lr"),
    ("train.lr", "expected a non-empty list"),
])  # fmt: skip
def test_averages_names_open_axes_of_the_experiment(write_grid, averages, words):
    with pytest.raises(GridError, match=words):
        Grid.load(write_grid(with_row(POOLING_ROW.replace("reported:", f"averages: {averages}, reported:"))))
    fixed = "      - {label: f, experiment: tiny, where: {train.lr: 3.0e-3}, averages: [train.lr]}\n"
    with pytest.raises(GridError, match="`where` fixes train.lr"):
        Grid.load(write_grid(with_row(fixed)))
