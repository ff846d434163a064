"""Non-scalar config columns read plainly: `train.freeze` holds `head` or `{"last": 3}`, encoded once, and
results written before (the JSON text encoded again, `"\\"head\\""`) read back in today's form, index and report included."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import fake_row

from tlbench.grid import Grid
from tlbench.report import build as report
from tlbench.results.store import INDEX_FILE, JSON_CONFIG_COLUMNS, Store, config_cell, config_value, trial_table

# Two freeze strategies as a table's rows, and a list-valued key (model.hidden) beside them.
FREEZE_GRID = """
defaults:
  seeds: [0, 1]
  epochs: 1
  image_size: 32
experiments:
  - name: layers
    source: {report: test.txt}
    dataset: {name: synthetic, n_classes: 3, n_train: 120, n_test: 60}
    model: {arch: resnet18, weights: none, hidden: [8]}
    train: {lr: 3.0e-3, batch_size: 16}
    axes:
      train.freeze: [head, {last: 3}]
tables:
  - id: t-layers
    title: layers
    metrics: [{key: test_acc, scale: 100, digits: 1}]
    rows:
      - {label: head only, experiment: layers, where: {train.freeze: head}, reported: {test_acc: 60.0}}
      - {label: last three, experiment: layers, where: {train.freeze: {last: 3}}, reported: {test_acc: 80.0}}
"""

ACCURACY = {"head": 0.6, '{"last": 3}': 0.8}  # by the freeze column's cell


def old_cell(value):
    """How tlbench wrote a non-scalar config value before: flatten_config's JSON text, JSON-encoded again by trial_table."""
    return None if value is None else json.dumps(json.dumps(value, sort_keys=True), sort_keys=True)


def row_of(spec, old: bool = False):
    row = fake_row(spec, test_acc=ACCURACY[config_cell(spec.config["train"]["freeze"])] + spec.seed / 100)
    if old:
        for name in JSON_CONFIG_COLUMNS:
            section, key = name.split(".")
            row[name] = old_cell(spec.config[section][key])
    return row


@pytest.fixture
def grid_path(write_grid):
    return write_grid(FREEZE_GRID)


def write_results(grid_path, results, old: bool = False):
    store = Store(results)
    for spec in Grid.load(grid_path).expand():
        store.write(row_of(spec, old), [])
    return store


def test_config_columns_read_plainly_in_pandas(grid_path, tmp_path):
    write_results(grid_path, tmp_path)
    d = pd.read_parquet(tmp_path / "trials")
    head, last = d[d["train.freeze"] == "head"], d[d["train.freeze"] != "head"]
    assert len(head) == 2 and len(last) == 2
    assert last["train.freeze"].tolist() == ['{"last": 3}'] * 2  # JSON text with sorted keys, json's default separators
    assert [json.loads(cell) for cell in last["train.freeze"]] == [{"last": 3}] * 2
    assert set(d["model.hidden"]) == {"[8]"} and d["dataset.split"].isna().all()
    assert set(d["train.probe_lrs"]) == {"[1e-05, 0.0001, 0.001]"}
    schema = pq.read_schema(next((tmp_path / "trials").glob("*.parquet")))
    assert all(schema.field(name).type == pa.string() for name in JSON_CONFIG_COLUMNS)  # the columns' types are a contract


VALUES = ["head", "none", "bn", {"last": 3}, {"frozen": ["layer1", "layer2"]},
          {"gradual": {"every": 2, "blocks": ["layer4", "layer3"], "first": 0}}, [], [8, 4], [0.7, 0.15, 0.15],
          {"minority": "Male", "keep": 0.5}, None]  # fmt: skip


@pytest.mark.parametrize("value", VALUES, ids=str)
def test_one_encoding_read_back_from_todays_cells_and_older_ones(value):
    cell = config_cell(value)
    assert config_value(cell) == value
    assert config_value(old_cell(value)) == value  # a results folder written before
    assert config_value(None if value is None else json.dumps(value, sort_keys=True)) == value  # an old row kept unwritten
    if isinstance(value, str):
        assert cell == value
    elif value is not None:
        assert json.loads(cell) == value and cell == json.dumps(value, sort_keys=True)


def test_a_word_that_would_read_back_as_json_is_refused_and_a_broken_cell_is_named():
    with pytest.raises(ValueError, match="reads back as JSON"):
        config_cell('{"last": 3}')  # a string, not the mapping: it would come back as a dict
    with pytest.raises(ValueError):
        config_value('"{\\"last\\": 3')


def test_a_row_with_config_values_not_cells_writes_nothing(grid_path, tmp_path):
    row = row_of(Grid.load(grid_path).expand()[0])
    row["train.freeze"] = {"last": 3}
    with pytest.raises(TypeError, match=r"train\.freeze.*flatten_config"):
        trial_table(row)


def test_an_old_results_folder_reads_back_in_todays_form_through_its_index(grid_path, tmp_path):
    store = write_results(grid_path, tmp_path, old=True)
    on_disk = pd.read_parquet(tmp_path / "trials")  # the files stay as they were written: never rewritten
    assert set(on_disk["train.freeze"]) == {'"\\"head\\""', '"{\\"last\\": 3}"'}
    first, _ = store.read()  # builds the index from the files
    assert set(pq.read_table(tmp_path / "trials" / INDEX_FILE).column("train.freeze").to_pylist()) == set(on_disk["train.freeze"])
    second, _ = store.read()  # from the index alone: it holds the old cells
    for table in (first, second):
        d = table.to_pandas()
        assert d.groupby("train.freeze")["test_acc"].mean().round(3).to_dict() == {"head": 0.605, '{"last": 3}': 0.805}
        assert set(d["model.hidden"]) == {"[8]"} and d["dataset.split"].isna().all()
    new = Grid.load(grid_path).expand()[0]  # a new row beside the old ones: one form in the table read
    store.write(row_of(new), [])
    assert sorted(set(store.read()[0].column("train.freeze").to_pylist())) == ["head", '{"last": 3}']


def test_a_report_over_an_old_folder_matches_its_rows(grid_path, tmp_path):
    results = tmp_path / "results"
    write_results(grid_path, results, old=True).read()  # and an index holding the old cells
    out = tmp_path / "report"
    assert report.main(["--grid", str(grid_path), "--results", str(results), "--out", str(out)]) == 0
    table = pd.read_csv(out / "tables" / "t-layers.csv").set_index("row")
    assert table.loc["head only", "reproduced"] == pytest.approx(60.5) and table.loc["head only", "n"] == 2
    assert table.loc["last three", "reproduced"] == pytest.approx(80.5) and table.loc["last three", "n"] == 2
