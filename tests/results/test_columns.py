"""Every result column declared once (tlbench/results/columns.py): what the trainer writes, what the store, the
tables and Tune's loggers take, are the declarations; a missing, undeclared or mistyped column is named."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest
from helpers import TINY_GRID, resolved

from tlbench.grid import Grid, GridError, TrialSpec
from tlbench.grid import tables as grid_tables
from tlbench.results import columns, store
from tlbench.results.columns import check_row
from tlbench.trial import train
from tlbench.trial.execute import execute

# The result columns' names as the files hold them, in their order: a contract (results written before must read,
# and the results index is one schema). New columns are declared after these; none of these is renamed or moved.
TRIAL_NAMES = """trial_id experiment experiments report variant axes profile status error traceback train_acc train_loss
val_acc val_loss best_val_acc best_epoch test_acc test_loss best_test_acc best_test_epoch precision_macro recall_macro
f1_macro precision_weighted recall_weighted f1_weighted confusion per_class probe_scores lr_chosen misclassified epochs_run
resumed_from_epoch n_train n_val n_test wall_s train_s epoch_s_mean images_per_s peak_mem_mb trainable_params total_params
device precision_used feature_cache compiled node_id hostname torch_version torchvision_version grid_sha256 finished_at
git_commit git_dirty python_version numpy_version pandas_version ray_version cuda_version cudnn_version accelerator
packages_sha256 gpu_ids gpu_memory_mb started_at memory_format_used auto_choice autotune_images_per_s autotune_s
autotune_skipped peak_mem_source gpu_share pid train_acc_at_best_val data_warning""".split()
EPOCH_NAMES = "trial_id experiment seed epoch train_loss train_acc val_loss val_acc lr seconds trainable_params test_loss test_acc".split()


@pytest.fixture(scope="module")
def trial():
    """One real trial through execute (1 epoch, tiny data, fp32: about a second on a CPU), with train.test_every_epoch so
    the columns only it writes are there too: its summary, row, epoch rows and the reports Tune would get."""
    config = resolved(
        epochs=1,
        precision="fp32",
        dataset={"n_classes": 3, "n_train": 60, "n_test": 30},
        train={"batch_size": 16, "test_every_epoch": True},
    )
    outcomes, reports = [], []
    real_run_trial = train.run_trial

    def recording(*args, **kwargs):
        outcomes.append(real_run_trial(*args, **kwargs))
        return outcomes[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train, "run_trial", recording)  # execute imports it from train when it runs
        spec = TrialSpec("0123456789abcdef", "e", "r.txt", 0, {"train.lr": 3e-3}, config, ("e",))
        row, epochs = execute(spec, "unused", {"profile": "test", "node_id": "node-a"}, on_epoch=reports.append)
    assert row["status"] == "ok", row.get("error")
    return {"summary": outcomes[0].summary, "epoch_metrics": outcomes[0].epochs, "row": row, "epochs": epochs, "reports": reports}


# -- (a) what the real trainer writes is what columns.py declares -----------------------------


def test_a_real_trials_summary_row_and_epochs_are_the_declared_columns(trial):
    assert check_row(trial["summary"], "summary") == []
    assert check_row(trial["row"], "trial") == []
    assert len(trial["epochs"]) == len(trial["reports"]) == 1
    assert [check_row(e, "epoch_metrics") for e in trial["epoch_metrics"]] == [[]]
    assert [check_row(e, "epoch") for e in trial["epochs"]] == [[]]
    assert [check_row(r, "epoch_report") for r in trial["reports"]] == [[]]


def test_every_declared_column_is_written_by_a_done_trial(trial):
    """Declared and never written is drift too: a done trial's row holds every column but a failure's."""
    unwritten = {c.name for c in columns.TRIAL_COLUMNS} - set(trial["row"]) - {"error", "traceback"}
    assert not unwritten
    assert {c.name for c in columns.STORED_EPOCH_COLUMNS} == set(trial["epochs"][0])


def test_a_failed_trials_row_is_the_declared_columns_less_the_summary():
    config = resolved(model={"arch": "tlbench.tiny:does_not_exist"})
    row, epochs = execute(TrialSpec("0123456789abcdef", "e", "r.txt", 0, {}, config, ("e",)), "unused", {"profile": "test"})
    assert row["status"] == "error" and epochs == []
    assert check_row(row, "trial") == []


def test_the_real_rows_write_and_read_back_in_the_declared_schema(trial, tmp_path):
    results = store.Store(tmp_path)
    results.write(trial["row"], trial["epochs"])
    table, bad = results.read()
    assert not bad and table.schema == columns.trial_schema() and table.column("test_acc")[0].as_py() == trial["row"]["test_acc"]
    assert results.read_epochs().schema == columns.epoch_schema()


# -- (b) the store, the tables and Tune's loggers take what columns.py declares ---------------------


def test_the_stores_schemas_are_the_declared_columns_in_order():
    expected = [(c.name, columns.ARROW[c.kind]) for c in columns.TRIAL_COLUMNS]
    expected += [(name, columns.ARROW[kind]) for name, kind in columns.config_columns().items()]
    assert store.TRIAL_SCHEMA == pa.schema(expected)
    assert store.EPOCH_SCHEMA == pa.schema([(c.name, columns.ARROW[c.kind]) for c in columns.EPOCH_COLUMNS if c.source != "report"])
    assert store.CONFIG_COLUMNS == columns.config_columns() and "train.lr" in store.CONFIG_COLUMNS


def test_no_result_column_is_renamed_or_moved():
    assert [c.name for c in columns.TRIAL_COLUMNS][: len(TRIAL_NAMES)] == TRIAL_NAMES
    assert [c.name for c in columns.STORED_EPOCH_COLUMNS][: len(EPOCH_NAMES)] == EPOCH_NAMES
    assert all(c.source in columns.SOURCES and c.kind in columns.ARROW for c in (*columns.TRIAL_COLUMNS, *columns.EPOCH_COLUMNS))


def test_a_table_may_name_exactly_the_labelled_columns_with_their_labels(write_grid):
    labelled = {c.name: c.label for c in columns.TRIAL_COLUMNS if c.label}
    assert grid_tables.METRICS == labelled and labelled["test_acc"] == "test acc"
    line = "    metrics: [{key: test_acc, scale: 100, digits: 1}]\n"
    assert line in TINY_GRID

    def with_metric(key: str) -> str:  # the tiny grid's table, showing `key` after test_acc
        return TINY_GRID.replace(line, line.replace("}]", f"}}, {{key: {key}}}]"))

    Grid.load(write_grid(with_metric("f1_macro"), "ok.yaml"))  # a labelled column
    unlabelled = next(c.name for c in columns.TRIAL_COLUMNS if c.kind in ("int", "float") and not c.label)  # a number, not for tables
    with pytest.raises(GridError, match=re.escape(f"metrics[1].key: got '{unlabelled}', expected one of {', '.join(labelled)};")):
        Grid.load(write_grid(with_metric(unlabelled), "bad.yaml"))


def test_tunes_loggers_log_exactly_the_epoch_columns_declared_tune(trial):
    from tlbench.on_ray import loggers

    report = {**trial["reports"][0], "trial_id": "x", "time_total_s": 3.0}  # Tune adds its own keys to a result
    logged = loggers.epoch_metrics(report)
    assert list(logged) == [c.name for c in columns.EPOCH_COLUMNS if c.tune] == list(columns.TUNE_METRICS)
    assert {"lr", "images_per_s", "test_acc"} <= set(logged) and "trainable_params" not in logged


# -- (c) check_row names what is wrong ---------------------------------------------------------------


def test_check_row_names_a_missing_column(trial):
    summary = {k: v for k, v in trial["summary"].items() if k != "test_acc"}
    assert check_row(summary, "summary") == ["missing column 'test_acc' (test accuracy after the last epoch)"]
    row = {k: v for k, v in trial["row"].items() if k != "pid"}
    assert check_row(row, "trial") == ["missing column 'pid' (the worker process (Tune reuses it across trials))"]
    epoch = {k: v for k, v in trial["epochs"][0].items() if k != "lr"}
    assert [p.split(" (")[0] for p in check_row(epoch, "epoch")] == ["missing column 'lr'"]


def test_a_done_trials_row_needs_its_summary_a_failed_ones_does_not(trial):
    row = {k: v for k, v in trial["row"].items() if k != "best_val_acc"}
    assert [p.split(" (")[0] for p in check_row(row, "trial")] == ["missing column 'best_val_acc'"]
    assert check_row({**row, "status": "error", "error": "boom"}, "trial") == []
    optional = {k: v for k, v in trial["summary"].items() if k not in ("best_test_acc", "best_test_epoch")}
    assert check_row(optional, "summary") == []  # only under train.test_every_epoch


def test_check_row_names_an_undeclared_column(trial):
    problems = check_row({**trial["summary"], "test_accuracy": 0.5}, "summary")
    assert problems == ["undeclared column 'test_accuracy': declare it in tlbench/results/columns.py (summary rows)"]
    assert check_row({**trial["epochs"][0], "images_per_s": 10.0}, "epoch")[0].startswith("undeclared column 'images_per_s'")
    assert check_row({**trial["row"], "train.lrr": 0.1}, "trial")[0].startswith("undeclared column 'train.lrr'")


@pytest.mark.parametrize(
    ("kind", "name", "value", "expected"),
    [
        ("summary", "test_acc", "high", "column 'test_acc' holds str 'high', expected float"),
        ("summary", "epochs_run", 1.0, "column 'epochs_run' holds float 1.0, expected int"),
        ("summary", "compiled", "no", "column 'compiled' holds str 'no', expected bool"),
        ("summary", "n_train", True, "column 'n_train' holds bool True, expected int"),
        ("summary", "confusion", "[[1]]", "column 'confusion' holds str '[[1]]', expected json"),
        ("summary", "device", None, "column 'device' is None, and the column is not nullable"),
        ("trial", "train.lr", "fast", "column 'train.lr' holds str 'fast', expected float"),
        ("trial", "train.freeze", ["layer1"], "column 'train.freeze' holds list ['layer1'], expected str"),  # a value, not its cell
        ("epoch", "seed", "0", "column 'seed' holds str '0', expected int"),
    ],
)
def test_check_row_names_a_mistyped_column(trial, kind, name, value, expected):
    row = {"summary": trial["summary"], "trial": trial["row"], "epoch": trial["epochs"][0]}[kind]
    assert check_row({**row, name: value}, kind) == [expected]


def test_nullable_columns_take_none_and_an_unknown_kind_is_named(trial):
    assert check_row({**trial["summary"], "data_warning": None, "probe_scores": None}, "summary") == []
    assert check_row({**trial["row"], "node_id": None, "train.head_lr": None}, "trial") == []
    with pytest.raises(KeyError, match="no row kind 'trials'; valid: summary, trial, epoch_metrics, epoch_report, epoch"):
        check_row({}, "trials")
