"""No silent wrong numbers in the report (issue 21): every number in a table is a measurement of the config it names.

Diverged seeds stay out of cells and claims; a row's `where` may not pool configs as seeds; table ids and
experiment names are safe, distinct file names; a table's display keys are checked at load; grid strings
are escaped for Markdown and for matplotlib; a profile may not collapse an axis."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from helpers import TINY_GRID, fake_row

from tlbench.grid import Grid, GridError
from tlbench.report import build as report
from tlbench.results.store import Store

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


SECOND_TABLE = """  - id: {id}
    metrics: [{{key: test_acc}}]
    rows: [{{label: fast, experiment: tiny, where: {{train.lr: 3.0e-3}}}}]
"""


@pytest.mark.parametrize("table_id, words", [
    ("../../../escaped", "table id '../../../escaped' becomes a file name: expected a letter or digit"),
    ("/tmp/abs", "table id '/tmp/abs' becomes a file name"),
    ("t tiny", r"table id 't tiny' becomes a file name: .* e\.g\. 't-tiny'"),
    ("..", "table id '..' becomes a file name"),
    ("-rf", "table id '-rf' becomes a file name"),
    ("claims", r"would overwrite the report's tables/claims\.csv"),
    ("Claims", r"would overwrite the report's tables/claims\.csv"),
])  # fmt: skip
def test_a_table_id_that_is_no_safe_file_name_is_refused_before_anything_is_written(write_grid, tmp_path, capsys, table_id, words):
    grid_path = write_grid(TINY_GRID.replace("  - id: t-tiny", f"  - id: {table_id!r}".replace("'", '"')))
    with pytest.raises(GridError, match=words) as caught:
        Grid.load(grid_path)
    assert caught.value.path == ("tables", 0, "id")
    out = tmp_path / "deep" / "er" / "report"
    assert run_report(grid_path, tmp_path / "results", out) == 2 and "tables[0].id" in capsys.readouterr().err
    assert not (tmp_path / "escaped.csv").exists() and not out.exists()


@pytest.mark.parametrize("first, second", [("t-tiny", "T-tiny"), ("t-tiny", "t-tiny")])
def test_two_table_ids_that_name_one_file_are_refused(write_grid, first, second):
    text = TINY_GRID.replace("profiles:\n", SECOND_TABLE.format(id=second) + "profiles:\n").replace("id: t-tiny", f"id: {first}", 1)
    with pytest.raises(GridError, match="duplicate table id|name one file where case does not count") as caught:
        Grid.load(write_grid(text))
    assert caught.value.path == ("tables", 1, "id")


@pytest.mark.parametrize("name, words", [
    ("../../../x", "experiment name '../../../x' becomes a file name"),
    ("/abs", "experiment name '/abs' becomes a file name"),
    ("a b", r"experiment name 'a b' becomes a file name: .* e\.g\. 'a-b'"),
])  # fmt: skip
def test_an_experiment_name_that_is_no_safe_file_name_is_refused(write_grid, name, words):
    text = TINY_GRID.replace("  - name: tiny", f"  - name: {name!r}".replace("'", '"')).replace(
        "experiment: tiny", f"experiment: {name!r}".replace("'", '"')
    )
    with pytest.raises(GridError, match=words) as caught:
        Grid.load(write_grid(text))
    assert caught.value.path == ("experiments", 0, "name")


def test_two_experiment_names_that_are_one_folder_where_case_does_not_count_are_refused(write_grid):
    twin = TINY_GRID.split("experiments:\n")[1].split("tables:\n")[0].replace("name: tiny", "name: Tiny")
    text = TINY_GRID.replace("tables:\n", twin + "tables:\n")
    with pytest.raises(GridError, match=r"experiment name 'Tiny' \(first at experiments\[0\]: 'tiny', the same file name") as caught:
        Grid.load(write_grid(text))
    assert caught.value.path == ("experiments", 1, "name")


@pytest.mark.slow
def test_an_unsafe_experiment_name_read_from_results_draws_its_curve_inside_the_figures_folder(write_grid, tmp_path):
    """Results are data, maybe another grid's: their experiment names still name files inside the report."""
    grid_path = write_grid(TINY_GRID)
    store = Store(tmp_path / "results")
    spec = Grid.load(grid_path).expand()[0]
    for experiment in ("../../../escaped", "a b", "a-b"):
        row = fake_row(spec, test_acc=0.9)
        row["experiment"], row["trial_id"] = experiment, f"{abs(hash(experiment)):016x}"[:16]
        store.write(row, [{"trial_id": row["trial_id"], "experiment": experiment, "seed": 0, "epoch": 1,
                           "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.5}])  # fmt: skip
    out = tmp_path / "report"
    assert run_report(grid_path, store.root, out) == 0
    curves = sorted(p.name for p in (out / "figures").glob("curves-*.png"))
    assert len(curves) == 3 and "curves-a-b.png" in curves, curves
    assert not list(tmp_path.rglob("escaped*")) and all(p.parent == out / "figures" for p in out.rglob("curves-*.png"))


METRIC = "metrics: [{key: test_acc, scale: 100, digits: 1}]"


@pytest.mark.parametrize("edit, key, words", [
    ((METRIC, "metrics: [{key: test_acc, scale: 0, digits: 1}]"), "scale", "got 0, expected a finite number > 0"),
    ((METRIC, "metrics: [{key: test_acc, scale: -100, digits: 1}]"), "scale", "got -100, expected a finite number > 0"),
    ((METRIC, "metrics: [{key: test_acc, scale: x, digits: 1}]"), "scale", "got 'x', expected a finite number > 0"),
    ((METRIC, "metrics: [{key: test_acc, scale: .nan, digits: 1}]"), "scale", "got nan, expected a finite number > 0"),
    ((METRIC, "metrics: [{key: test_acc, scale: 100, digits: -1}]"), "digits", "got -1, expected a whole number"),
    ((METRIC, "metrics: [{key: test_acc, scale: 100, digits: 2.5}]"), "digits", "got 2.5, expected a whole number"),
    ((METRIC, "metrics: [{key: test_acc, scale: 100, digits: 1, label: [1]}]"), "label", "got [1], expected a non-empty string"),
    ((METRIC, "metrics: [{key: [1]}]"), "key", "got [1], expected one of"),
    (("    title: tiny\n", "    title: null\n"), "title", "got None, expected a string"),
    (("    title: tiny\n", "    title: 123\n"), "title", "got 123, expected a string"),
    (("    title: tiny\n", "    title: tiny\n    notes: [1]\n"), "notes", "expected a list of strings"),
])  # fmt: skip
def test_a_tables_display_keys_are_checked_at_load_naming_file_line_and_key(write_grid, tmp_path, capsys, edit, key, words):
    text = TINY_GRID.replace(*edit)
    grid_path = write_grid(text)
    with pytest.raises(GridError, match=re.escape(words)) as caught:
        Grid.load(grid_path)
    assert caught.value.path[-1] == key and caught.value.file == str(grid_path)
    assert caught.value.line == next(i for i, line in enumerate(text.splitlines(), 1) if edit[1].splitlines()[-1] in line)
    assert run_report(grid_path, tmp_path / "results", tmp_path / "report") == 2
    assert f"{grid_path}:{caught.value.line}: tables[0]" in capsys.readouterr().err


@pytest.mark.slow
def test_matplotlib_math_in_a_grid_string_is_drawn_as_written(write_grid, tmp_path):
    text = TINY_GRID.replace("title: tiny", 'title: "$a_b_c$ tiny"').replace("digits: 1}]", 'digits: 1, label: "$x_y_z$"}]')
    text = text.replace("label: fast,", 'label: "$f_a_st$",')
    grid_path = write_grid(text)
    store = Store(tmp_path / "results")
    for spec in Grid.load(grid_path).expand():
        store.write(fake_row(spec, test_acc=0.8 + spec.seed / 10), [])
    out = tmp_path / "report"
    assert run_report(grid_path, store.root, out) == 0
    assert {"intervals-t-tiny.png", "table-t-tiny.png"} <= {p.name for p in (out / "figures").iterdir()}


def test_index_md_escapes_grid_strings_for_markdown_as_index_html_escapes_them_for_html(write_grid, tmp_path):
    text = TINY_GRID.replace("title: tiny", 'title: "<script>alert(1)</script> t|x"\n    notes: ["*not bold* <b>x</b>"]')
    text = text.replace("source: {report: test.txt}", 'source: {report: "r<img src=x>.txt"}')
    text = text.replace("label: fast,", 'label: "a|b <b>x</b>", note: "first\\n# not a heading\\n| not | a | row |",')
    grid_path = write_grid(text)
    store = Store(tmp_path / "results")
    for spec in Grid.load(grid_path).expand():
        store.write(fake_row(spec, test_acc=0.8 + spec.seed / 10, error="boom `x` | <i>y</i>\nnext"), [])
    out = tmp_path / "report"
    assert run_report(grid_path, store.root, out) == 0
    md = (out / "index.md").read_text()
    for raw in ("<script>", "<img", "<b>"):
        assert not re.search(rf"(?<!\\){re.escape(raw)}", md), raw  # written as text (\<b\>), never as raw HTML
    assert r"\<script\>alert(1)\</script\> t\|x" in md and r"\*not bold\*" in md and r"r\<img src=x\>.txt" in md
    row = next(line for line in md.splitlines() if line.startswith(r"| a\|b"))
    header = next(line for line in md.splitlines() if line.startswith("| row |"))
    unescaped = re.compile(r"(?<!\\)\|")
    assert len(unescaped.findall(row)) == len(unescaped.findall(header))  # one cell per column: `|` in a label stays in it
    assert not any(line.startswith(("# not a heading", "| not |")) for line in md.splitlines())  # a newline ends no block
    assert "`` boom `x` | <i>y</i> next ``" in md  # an error is a code span, whatever backticks it holds
    html = (out / "index.html").read_text()
    assert "&lt;script&gt;" in html and "<script>" not in html


@pytest.mark.parametrize("profile", ["{train: {lr: 0.01}}", "{train.lr: 0.01, epochs: 1}"])
def test_a_profile_that_sets_an_axis_key_is_refused_naming_profile_and_axis(write_grid, tmp_path, capsys, profile):
    text = TINY_GRID.replace("  quick: {seeds: [0], epochs: 1}", f"  quick: {{seeds: [0], epochs: 1}}\n  flat: {profile}")
    grid_path = write_grid(text)
    words = "profile 'flat' sets train.lr, which axis train.lr of experiment 'tiny' sets: train.lr=0.003 and train.lr=0.001 would run as one config"
    with pytest.raises(GridError, match=re.escape(words)) as caught:
        Grid.load(grid_path)
    assert caught.value.path[:2] == ("profiles", "flat") and caught.value.line == len(text.splitlines())
    assert run_report(grid_path, tmp_path / "results", tmp_path / "report") == 2 and "profile 'flat'" in capsys.readouterr().err


VARIANTS = """    axes:
      variant:
        - {name: plain}
        - {name: decayed, set: {train.weight_decay: 0.1}}
        - {name: sgd, set: {train.optimizer: sgd, train.lr: 0.1}}
tables:
  - id: t-v
    metrics: [{key: test_acc}]
    rows: [{label: plain, experiment: tiny, where: {variant: plain}}]
profiles:
"""


def test_a_profile_that_merges_two_variants_is_refused_one_that_keeps_them_apart_is_not(write_grid):
    base = TINY_GRID.split("    axes:\n")[0] + VARIANTS
    with pytest.raises(
        GridError, match=r"profile 'nodecay' sets train\.weight_decay, which axis variant .* variant=plain and variant=decayed"
    ):
        Grid.load(write_grid(base + "  nodecay: {train: {weight_decay: 0.0}}\n"))
    grid = Grid.load(write_grid(base + "  sgd: {train: {optimizer: sgd}}\n"))  # sets what variant sgd sets; each stays its own config
    assert len({t.trial_id for t in grid.expand(profile="sgd")}) == 3 * 2
