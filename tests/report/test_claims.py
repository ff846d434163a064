"""The reports' claims: validated at load, tested with Welch's t-test on fabricated seeds, written to claims.csv."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest
from helpers import TINY_GRID, fake_row

from tlbench.grid import Grid, GridError
from tlbench.report import build as report
from tlbench.report.verdicts import seeds_to_resolve
from tlbench.results.store import Store

METRICS_LINE = "    metrics: [{key: test_acc, scale: 100, digits: 1}]\n"
CLAIMS = """    metrics: [{key: test_acc, scale: 100, digits: 1}, {key: test_loss, digits: 3}]
    claims:
      - {claim: "fast beats slow", row_a: fast, row_b: slow}
      - {claim: "slow beats fast <b>really</b>", row_a: slow, row_b: fast}
      - {claim: "fast has the lower loss", row_a: fast, row_b: slow, metric: test_loss, better: lower}
"""
CLAIMS_GRID = TINY_GRID.replace("seeds: [0, 1]", "seeds: [0, 1, 2]").replace(METRICS_LINE, CLAIMS)

# Seeds per row: a clear accuracy gap, and losses that overlap (noise).
ACC = {3e-3: (0.90, 0.91, 0.92), 1e-3: (0.70, 0.71, 0.72)}
LOSS = {3e-3: (0.50, 0.70, 0.60), 1e-3: (0.65, 0.76, 0.72)}


def write_results(grid_path, results, rows=None):
    store = Store(results)
    for spec in Grid.load(grid_path).expand():
        lr = spec.axes["train.lr"]
        store.write(fake_row(spec, test_acc=ACC[lr][spec.seed], test_loss=LOSS[lr][spec.seed]), [])


def test_claims_are_supported_reversed_or_unresolved_with_a_seed_count(write_grid, tmp_path):
    grid_path = write_grid(CLAIMS_GRID)
    write_results(grid_path, tmp_path / "results")
    out = tmp_path / "report"
    assert report.main(["--grid", str(grid_path), "--results", str(tmp_path / "results"), "--out", str(out)]) == 0
    claims = pd.read_csv(out / "tables" / "claims.csv")
    assert {"report", "table", "claim", "row_a", "row_b", "diff", "p_value", "n_a", "n_b", "verdict"} <= set(claims.columns)
    by_claim = claims.set_index("claim")
    supported = by_claim.loc["fast beats slow"]
    assert supported["verdict"] == "supported" and supported["diff"] == pytest.approx(20.0) and supported["p_value"] < 0.001
    assert (supported["n_a"], supported["n_b"], supported["report"], supported["table"]) == (3, 3, "test.txt", "t-tiny")
    assert by_claim.loc["slow beats fast <b>really</b>", "verdict"] == "reversed"
    noise = by_claim.loc["fast has the lower loss"]
    assert noise["verdict"] == "unresolved at 3 seeds" and noise["p_value"] > 0.05
    fast, slow = pd.Series(LOSS[3e-3]), pd.Series(LOSS[1e-3])
    assert noise["seeds_to_resolve"] == seeds_to_resolve(abs(fast.mean() - slow.mean()), fast.std(), slow.std()) > 3
    html = (out / "index.html").read_text()
    assert "slow beats fast &lt;b&gt;really&lt;/b&gt;" in html and "<b>really</b>" not in html  # autoescaped
    markdown = (out / "index.md").read_text()
    assert (
        "## Claims" in markdown
        and "unresolved at 3 seeds" in markdown
        and "| test.txt | – | 1 | 0 | 1 | 0 | 0 | 0 | 1 | 1 | 1 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 |" in markdown
    )  # the scoreboard


@pytest.mark.slow
def test_a_claim_is_tested_within_each_reading(write_grid, tmp_path):
    """A table that follows both readings of its report: same labels, one row per reading."""
    rows = """      - {label: fast, experiment: tiny, where: {train.lr: 3.0e-3}, reported: {test_acc: 90.0}, reading: as stated}
      - {label: slow, experiment: tiny, where: {train.lr: 1.0e-3}, reported: {test_acc: 80.0}, reading: as stated}
      - {label: fast, experiment: tiny, where: {train.lr: 1.0e-3}, reported: {test_acc: 90.0}, reading: as run}
      - {label: slow, experiment: tiny, where: {train.lr: 3.0e-3}, reported: {test_acc: 80.0}, reading: as run}
"""
    text = CLAIMS_GRID.split("    rows:\n")[0] + "    rows:\n" + rows + "profiles:" + CLAIMS_GRID.split("profiles:")[1]
    grid_path = write_grid(text)
    write_results(grid_path, tmp_path / "results")
    out = tmp_path / "report"
    report.main(["--grid", str(grid_path), "--results", str(tmp_path / "results"), "--out", str(out)])
    claims = pd.read_csv(out / "tables" / "claims.csv")
    beats = claims[claims["claim"] == "fast beats slow"].set_index("reading")["verdict"]
    assert beats.to_dict() == {"as run": "reversed", "as stated": "supported"}
    table = pd.read_csv(out / "tables" / "t-tiny.csv")
    assert sorted(table["reading"].unique()) == ["as run", "as stated"]
    markdown = (out / "index.md").read_text()
    assert "| test.txt | as run |" in markdown and "| test.txt | as stated |" in markdown  # the scoreboard, side by side


BAD_CLAIMS = [
    (
        "unknown row label",
        CLAIMS_GRID.replace("row_b: slow}", "row_b: slo}", 1),
        ["claim names a row this table lacks", "'slo'", "did you mean 'slow'"],
        "row_b: slo}",
    ),
    ("unknown key", CLAIMS_GRID.replace("row_b: slow}", "row_b: slow, bigger: yes}", 1), ["unknown key 'bigger'"], "bigger"),
    (
        "metric not in the table",
        CLAIMS_GRID.replace("metric: test_loss", "metric: val_acc"),
        ["not a column of this table", "val_acc"],
        "val_acc",
    ),
    ("bad direction", CLAIMS_GRID.replace("better: lower", "better: smaller"), ["smaller", "higher, lower"], "smaller"),
    (
        "a row against itself",
        CLAIMS_GRID.replace("row_a: fast, row_b: slow}", "row_a: fast, row_b: fast}", 1),
        ["two different rows"],
        "fast beats slow",
    ),
    ("no words", CLAIMS_GRID.replace('claim: "fast beats slow", ', "", 1), ["the report's words"], "row_a: fast, row_b: slow}"),
    (
        "bad reading",
        TINY_GRID.replace("reported: {test_acc: 80.0}}", "reported: {test_acc: 80.0}, reading: as told}"),
        ["as told", "as stated, as run"],
        "as told",
    ),
    ("duplicate label", TINY_GRID.replace("label: slow", "label: fast"), ["label 'fast' is also row 0"], ("label: fast", 2)),
]


@pytest.mark.parametrize("case, text, words, line", BAD_CLAIMS, ids=[c[0] for c in BAD_CLAIMS])
def test_bad_claims_are_refused_at_load_with_file_and_line(write_grid, case, text, words, line):
    path = write_grid(text)
    with pytest.raises(GridError) as caught:
        Grid.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:"), message
    for word in words:
        assert word in message, f"{case}: {word!r} not in {message!r}"
    needle, nth = line if isinstance(line, tuple) else (line, 1)
    hits = [n for n, text_line in enumerate(textwrap.dedent(text).splitlines(), 1) if needle in text_line]
    assert caught.value.line == hits[nth - 1], f"{case}: line {caught.value.line}: {message}"


def test_the_shipped_grid_lists_claims_for_the_reports_tables():
    grid = Grid.load("grid/reports.yaml")
    claims = {t["id"]: t.get("claims", []) for t in grid.tables}
    assert sum(map(len, claims.values())) >= 50
    words = [c["claim"] for cs in claims.values() for c in cs]
    for needle in (
        "l=4 is the best depth",
        "AdamW beats SGD at l=0",
        "+0.41",
        "every fraction",
        "ResNet18 outperforms VGG16",
        "highest validation accuracy",
    ):
        assert any(needle in w for w in words), needle
    assert {c["row_b"] for c in claims["r002-s1-layers"] if c.get("row_a") == "l=4" and "untested" not in c} == {"l=1", "l=2", "l=3", "l=5"}
