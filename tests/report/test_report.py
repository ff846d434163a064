"""The report on results with known numbers: means, stds, intervals, verdicts, pending, figures, the page."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from helpers import TINY_GRID, fake_row
from scipy import stats

from tlbench.grid import Grid
from tlbench.report import build as report
from tlbench.results.store import Store


def test_known_numbers_give_known_means_stds_and_differences(grid_and_results, tmp_path):
    grid_path, results = grid_and_results
    out = tmp_path / "report"
    assert report.main(["--grid", str(grid_path), "--results", str(results), "--out", str(out)]) == 0
    table = pd.read_csv(out / "tables" / "t-tiny.csv").set_index("row")
    columns = ["reported", "reproduced", "std", "n", "ci_low", "ci_high", "pi_low", "pi_high", "verdict"]
    assert set(columns) <= set(table.columns)
    fast, slow = table.loc["fast"], table.loc["slow"]
    assert fast["reproduced"] == pytest.approx(85.0)
    assert fast["std"] == pytest.approx(7.0710678)  # sample std of 80 and 90
    assert fast["n"] == 2 and fast["diff"] == pytest.approx(-5.0)
    t = stats.t.ppf(0.975, 1)
    assert fast["ci_high"] - 85.0 == pytest.approx(t * 7.0710678 / 2**0.5)
    assert fast["pi_low"] == pytest.approx(85.0 - t * 7.0710678 * 1.5**0.5)
    assert fast["verdict"] == "consistent" and not fast["flag"]  # 90 lies in the prediction interval
    assert slow["reproduced"] == pytest.approx(70.0) and slow["n"] == 1
    assert slow["verdict"] == "one run" and pd.isna(slow["pi_low"]) and not slow["flag"]  # one seed: no interval, no guess
    assert slow["status"] == "1 of 2 done, 1 pending"
    markdown = (out / "index.md").read_text()
    assert "85.0 ± 7.1 (2)" in markdown and "-5.0" in markdown and "1 of 2 done, 1 pending" in markdown
    assert "| test.txt | – | 1 | 0 | 0 | 1 | 0 |" in markdown  # scoreboard: one consistent, one run


def test_no_results_are_pending(grid_and_results, tmp_path):
    grid_path, _ = grid_and_results
    out = tmp_path / "report"
    assert report.main(["--grid", str(grid_path), "--results", str(tmp_path / "empty"), "--out", str(out)]) == 0
    table = pd.read_csv(out / "tables" / "t-tiny.csv")
    assert table["verdict"].tolist() == ["pending", "pending"] and table["n"].tolist() == [0, 0]


def test_a_reported_number_outside_the_prediction_interval_is_below(write_grid, tmp_path):
    grid_path = write_grid(TINY_GRID.replace("reported: {test_acc: 90.0}", "reported: {test_acc: 99.0}"))
    store = Store(tmp_path / "results")
    for spec in Grid.load(grid_path).expand():  # fast: 84.9 and 85.1, so the interval is 85 +- 2.2, far below 99
        store.write(fake_row(spec, test_acc=(0.849, 0.851)[spec.seed] if spec.axes["train.lr"] == 3e-3 else 0.8), [])
    out = tmp_path / "report"
    report.main(["--grid", str(grid_path), "--results", str(tmp_path / "results"), "--out", str(out)])
    fast = pd.read_csv(out / "tables" / "t-tiny.csv").set_index("row").loc["fast"]
    assert fast["verdict"] == "below" and fast["flag"] and fast["pi_high"] < 99.0


def test_figures_and_a_self_contained_html(grid_and_results, tmp_path):
    grid_path, results = grid_and_results
    out = tmp_path / "report"
    report.main(["--grid", str(grid_path), "--results", str(results), "--out", str(out)])
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figures == ["curves-tiny.png", "intervals-t-tiny.png", "reported-vs-reproduced.png", "table-t-tiny.png"]
    html = (out / "index.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "src='figures/" not in html and 'src="figures/' not in html
    assert "<style>" in html and "<link" not in html  # CSS inline: one file to mail around


def test_the_page_has_scoreboard_contents_tables_with_their_figures_and_claims(grid_and_results, tmp_path):
    grid_path, results = grid_and_results
    out = tmp_path / "report"
    report.main(["--grid", str(grid_path), "--results", str(results), "--out", str(out)])
    html = (out / "index.html").read_text()
    order = [html.index(marker) for marker in ('id="scoreboard"', 'id="contents"', 'id="table-t-tiny"', 'id="claims"', 'id="figures"')]
    assert order == sorted(order)
    assert 'href="#table-t-tiny"' in html and 'href="#claims"' in html
    section = html[html.index('id="table-t-tiny"') : html.index('id="claims"')]
    assert section.count("<img") == 2 and 'alt="intervals-t-tiny"' in section  # the table's own figures sit with it
    assert re.search(r"<td class=\"v-consistent\">consistent", section) and "one run" in section


@pytest.mark.parametrize("status", ["error", "oom"])  # oom: out of its GPU share's memory
@pytest.mark.slow
def test_errored_trials_are_marked_not_dropped(grid_and_results, tmp_path, status):
    grid_path, results = grid_and_results
    grid = Grid.load(grid_path)
    slow_pending = [t for t in grid.expand() if t.axes["train.lr"] == 1e-3][1]
    Store(results).write(fake_row(slow_pending, status=status, test_acc=None, error="ValueError: boom"), [])
    out = tmp_path / "report"
    report.main(["--grid", str(grid_path), "--results", str(results), "--out", str(out)])
    table = pd.read_csv(out / "tables" / "t-tiny.csv").set_index("row")
    assert table.loc["slow", "status"] == f"1 of 2 done, 1 {status}"
    assert "ValueError: boom" in (out / "index.md").read_text()


def test_unreadable_result_is_reported_not_fatal(grid_and_results, tmp_path):
    grid_path, results = grid_and_results
    (results / "trials" / "0000000000000000.parquet").write_bytes(b"garbage")
    out = tmp_path / "report"
    assert report.main(["--grid", str(grid_path), "--results", str(results), "--out", str(out)]) == 0
    page = (out / "index.md").read_text()
    assert "unreadable result" in page and "0000000000000000.parquet" in page


def report_with_extras(write_grid, tmp_path, extras: str, **row_fields):
    """The report of the tiny grid whose table asks for `extras`, each trial's row carrying `row_fields`."""
    grid_path = write_grid(TINY_GRID.replace("    title: tiny\n", f"    title: tiny\n    extras: [{extras}]\n"))
    store = Store(tmp_path / "results")
    for spec in Grid.load(grid_path).expand():
        store.write(fake_row(spec, test_acc=0.9 if spec.axes["train.lr"] == 3e-3 else 0.5, **row_fields), [])
    out = tmp_path / "report"
    report.main(["--grid", str(grid_path), "--results", str(tmp_path / "results"), "--out", str(out)])
    return out


@pytest.mark.slow
def test_misclassified_figure_for_a_table_that_asks_for_it(write_grid, tmp_path):
    thumbnail = {
        "name": "x.png",
        "label": "class0",
        "pred": "class1",
        "png": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==",
    }
    out = report_with_extras(write_grid, tmp_path, "misclassified", misclassified=[thumbnail])
    assert (out / "figures" / "misclassified-t-tiny.png").exists()
    assert "misclassified-t-tiny" in (out / "index.html").read_text()


@pytest.mark.slow
def test_html_carries_what_markdown_shows_under_a_table(write_grid, tmp_path):
    per_class = {
        "precision": [1.0, 0.5, 0.0],
        "recall": [0.5, 1.0, 0.0],
        "f1": [0.67, 0.67, 0.0],
        "support": [2, 1, 1],
        "classes": ["ant", "bee", "cat"],
    }
    out = report_with_extras(write_grid, tmp_path, "per_class, confusion", per_class=per_class, confusion=[[1, 1, 0], [0, 1, 0], [0, 1, 0]])
    for page in ("index.md", "index.html"):
        text = (out / page).read_text()
        assert "Per class, fast" in text and "bee" in text and "Confusion matrix, slow" in text, page


def test_a_metric_not_compared_is_shown_unjudged_and_a_reported_mean_of_runs_narrows_the_interval(write_grid, tmp_path):
    """A wall time on the authors' machine is shown beside ours with no verdict and no scoreboard count;
    a row whose reported numbers are means of two runs gets the interval of a mean of two."""
    text = TINY_GRID.replace(
        "metrics: [{key: test_acc, scale: 100, digits: 1}]",
        "metrics: [{key: test_acc, scale: 100, digits: 1}, {key: train_s, digits: 0, compare: false}]",
    )
    text = text.replace("reported: {test_acc: 90.0}}", "reported: {test_acc: 90.0, train_s: 100}, reported_runs: 2}")
    grid_path = write_grid(text)
    store = Store(tmp_path / "results")
    for spec in Grid.load(grid_path).expand():
        store.write(fake_row(spec, test_acc={0: 0.80, 1: 0.90}[spec.seed], train_s=5.0 + spec.seed), [])
    out = tmp_path / "report"
    assert report.main(["--grid", str(grid_path), "--results", str(store.root), "--out", str(out)]) == 0
    table = pd.read_csv(out / "tables" / "t-tiny.csv").set_index(["row", "metric"])
    assert table.loc[("fast", "train_s"), "verdict"] == "not compared" and not table.loc[("fast", "train_s"), "flag"]
    t = stats.t.ppf(0.975, 1)
    assert table.loc[("fast", "test_acc"), "pi_low"] == pytest.approx(85.0 - t * 7.0710678 * (1 / 2 + 1 / 2) ** 0.5)
    assert table.loc[("slow", "test_acc"), "pi_low"] == pytest.approx(85.0 - t * 7.0710678 * (1 + 1 / 2) ** 0.5)
    # scoreboard: two numbers judged (both consistent), the time not counted anywhere
    assert "| test.txt | – | 2 | 0 | 0 | 0 | 0 |" in (out / "index.md").read_text()


@pytest.mark.parametrize("edit, words", [
    (("digits: 1}]", "digits: 1, compare: maybe}]"), "expected true or false"),
    (("reported: {test_acc: 90.0}}", "reported: {test_acc: 90.0}, reported_runs: 0}"), "runs >= 1"),
])  # fmt: skip
def test_compare_and_reported_runs_are_validated(write_grid, edit, words):
    from tlbench.grid import GridError

    with pytest.raises(GridError, match=words):
        Grid.load(write_grid(TINY_GRID.replace(*edit)))
