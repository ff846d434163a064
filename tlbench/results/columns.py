"""Every column of a result row, declared once: its name, type, meaning, who writes it, how a table shows it.

    TRIAL_COLUMNS   results/trials/<trial_id>.parquet, beside the config's dotted columns (`config_columns()`)
    EPOCH_COLUMNS   results/epochs/<trial_id>.parquet, and what each epoch reports to Ray Tune

Derived from here: the store's Arrow schemas (`trial_schema()`, `epoch_schema()`), the metric keys a
grid file's table may name with their labels (`TABLE_LABELS`, grid/tables.py), the per-epoch metrics
Tune's loggers log (`TUNE_METRICS`, on_ray/loggers.py), and the typed rows the code passes around:

    TrialSummary   what run_trial returns (trial/train.py): the test metrics, the epochs' summary, timings
    TrialRow       what execute.trial_row makes of it: who the trial is, where it ran, on which software
    EpochMetrics   what one epoch of run_epoch gives;  EpochReport: that plus its images/s, to Tune
    EpochRow       an epoch as the epochs file holds it

`check_row(row, kind)` names a row's missing, undeclared and mistyped columns (tests/results/test_columns.py
runs the real trainer through it). The column names are a contract: rename none, add new ones at the end
(the files' column order is the schemas', and the results index is rebuilt where its schema changes).

Only pyarrow here: the driver (torch-free) reads it. The config's columns have their own home, the grid
schema (grid/schema.py); `config_columns()` reads them from there.
"""

from __future__ import annotations

import functools
import numbers
import types
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, TypedDict

import pyarrow as pa

# A column's kind -> its Arrow type. A JSON column holds a list or mapping, written as JSON text.
ARROW = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string(), "json": pa.string()}

# Who writes a column: which part of the code puts it into a row.
SOURCES = {
    "trial": "who the trial is: execute.trial_row from its TrialSpec (an epoch row: execute.execute)",
    "summary": "what it gave: run_trial's summary (trial/train.py; autotune.Decision.row; memory.PeakMemory)",
    "failure": "why it failed: execute.execute, or the driver where Ray gave up on it (on_ray/driver.py)",
    "worker": "where and when it ran: execute.trial_row, from the driver's context and the worker",
    "provenance": "the code and software behind the number: results/provenance.py, through execute.trial_row",
    "epoch": "one epoch: run_epoch (trial/train.py)",
    "report": "the epoch's report to Ray Tune only (run_trial's on_epoch): not in the epochs file",
}

DONE = ("ok", "diverged")  # statuses a rerun does not redo
FAILED = ("error", "oom")  # statuses that count as failures (an oom trial reruns with twice its GPU share)


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # int | float | bool | str | json
    meaning: str
    source: str  # a key of SOURCES
    _: KW_ONLY
    nullable: bool = False  # whether its writer may leave it None (in the files every column may be null: a failed trial's metrics, an old file's newer columns)
    only: str | None = None  # present only then (absent from the row otherwise)
    label: str | None = None  # a grid file's table may show it (`metrics: [{key: <name>}]`), labelled so by default
    tune: bool = False  # an epoch column Tune's loggers log each epoch (TensorBoard, MLflow, W&B)

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW[self.kind]


# In the files' column order (TRIAL_SCHEMA's, then the config's columns): new columns go at the end.
TRIAL_COLUMNS: tuple[Column, ...] = (
    Column("trial_id", "str", "the trial's id: the first 16 hex digits of its resolved config's hash", "trial"),
    Column("experiment", "str", "the first experiment of the grid that asked for this config", "trial"),
    Column("experiments", "json", "every experiment that shares this config (a list)", "trial"),
    Column("report", "str", "the report the experiment reproduces", "trial"),
    Column("variant", "str", "the name of its variant (the `variant` axis), where the experiment has one", "trial", nullable=True),
    Column("axes", "json", "axis name -> this trial's value of it (variant: its name)", "trial"),
    Column("profile", "str", "the grid profile it ran under (`--profile`)", "worker", nullable=True),
    Column("status", "str", f"{' | '.join(DONE)} (done) or {' | '.join(FAILED)} (failed: a rerun retries it)", "trial"),
    Column("error", "str", "what failed: the exception, or why Ray gave up on it", "failure", only="a failed trial"),
    Column("traceback", "str", "the failing traceback's last lines", "failure", only="a trial whose own code raised"),
    Column("train_acc", "float", "train accuracy of the last epoch (NaN where a step diverged)", "summary", label="train acc"),
    Column("train_loss", "float", "train loss of the last epoch", "summary", label="train loss"),
    Column("val_acc", "float", "val accuracy of the last epoch (NaN without a val split: lr_probe)", "summary", label="val acc"),
    Column("val_loss", "float", "val loss of the last epoch", "summary", label="val loss"),
    Column("best_val_acc", "float", "the highest val accuracy of any epoch", "summary", label="best val acc"),
    Column("best_epoch", "int", "the epoch (from 1) of the highest val accuracy", "summary"),
    Column("test_acc", "float", "test accuracy after the last epoch", "summary", label="test acc"),
    Column("test_loss", "float", "test loss after the last epoch (NaN: the last step broke the network)", "summary", label="test loss"),
    Column("best_test_acc", "float", "the highest per-epoch test accuracy: a selection on the test set, as 003 reported", "summary",
           only="train.test_every_epoch", label="best-epoch test acc"),
    Column("best_test_epoch", "int", "the epoch of best_test_acc", "summary", only="train.test_every_epoch"),
    Column("precision_macro", "float", "test precision, the mean over the classes present", "summary", label="precision (macro)"),
    Column("recall_macro", "float", "test recall, the mean over the classes present", "summary", label="recall (macro)"),
    Column("f1_macro", "float", "test F1, the mean over the classes present", "summary", label="F1 (macro)"),
    Column("precision_weighted", "float", "test precision, weighted by each class's support", "summary", label="precision (weighted)"),
    Column("recall_weighted", "float", "test recall, weighted by each class's support", "summary", label="recall (weighted)"),
    Column("f1_weighted", "float", "test F1, weighted by each class's support", "summary", label="F1 (weighted)"),
    Column("confusion", "json", "the test confusion matrix (rows true, columns predicted)", "summary"),
    Column("per_class", "json", "per-class test precision, recall, f1, support (lists) and the class names", "summary"),
    Column("probe_scores", "json", "001's lr probe: val accuracy per candidate lr (null unless train.protocol lr_probe)", "summary",
           nullable=True),
    Column("lr_chosen", "float", "the lr it trained with (the probe's choice under lr_probe)", "summary"),
    Column("misclassified", "json", "thumbnails of the first misclassified test images, with label and prediction", "summary"),
    Column("epochs_run", "int", "epochs trained (fewer than `epochs` where it diverged)", "summary"),
    Column("resumed_from_epoch", "int", "epochs a saved state had already trained (0: started afresh)", "summary"),
    Column("n_train", "int", "images it trained on (train + val under lr_probe)", "summary"),
    Column("n_val", "int", "images in the val split", "summary"),
    Column("n_test", "int", "images in the test split", "summary"),
    Column("wall_s", "float", "seconds from run_trial's start to its summary (a failed trial: to its failure)", "summary",
           label="wall time (s)"),
    Column("train_s", "float", "seconds of training steps, all epochs", "summary", label="train time (s)"),
    Column("epoch_s_mean", "float", "train_s per epoch", "summary", label="time per epoch (s)"),
    Column("images_per_s", "float", "training images per second, all epochs", "summary", label="images/s"),
    Column("peak_mem_mb", "float", "this trial's own memory peak, MiB (see peak_mem_source)", "summary"),
    Column("trainable_params", "int", "the most parameters any epoch trained", "summary", label="trainable parameters"),
    Column("total_params", "int", "the network's parameters", "summary", label="parameters"),
    Column("device", "str", "the CUDA card's name, or `cpu (<processor>, <n> threads)`", "summary"),
    Column("precision_used", "str", "the precision it trained in (fp32 | bf16 | ...): precision auto's decision", "summary"),
    Column("feature_cache", "str", "the feature cache: built | hit (cut before <layer>) | off | not cacheable: why", "summary"),
    Column("compiled", "bool", "whether the network ran through torch.compile", "summary"),
    Column("node_id", "str", "the Ray node that ran it", "worker", nullable=True),
    Column("hostname", "str", "the host that ran it", "worker"),
    Column("torch_version", "str", "torch's version in the worker", "worker"),
    Column("torchvision_version", "str", "torchvision's version in the worker", "worker"),
    Column("grid_sha256", "str", "the SHA-256 of the grid file it came from", "worker", nullable=True),
    Column("finished_at", "str", "when its row was made (UTC, ISO 8601, ms)", "worker"),
    Column("git_commit", "str", "the commit checked out where the grid file lies (null outside a git repository)", "provenance",
           nullable=True),
    Column("git_dirty", "bool", "whether that repository's tracked files differed from the commit", "provenance", nullable=True),
    Column("python_version", "str", "Python's version in the worker", "provenance"),
    Column("numpy_version", "str", "numpy's version in the worker", "provenance", nullable=True),
    Column("pandas_version", "str", "pandas' version in the worker", "provenance", nullable=True),
    Column("ray_version", "str", "Ray's version in the worker", "provenance", nullable=True),
    Column("cuda_version", "str", "the CUDA torch was built with (null: a CPU build)", "provenance", nullable=True),
    Column("cudnn_version", "str", "the cuDNN torch was built with (null: a CPU build)", "provenance", nullable=True),
    Column("accelerator", "str", "the worker's GPU, else its CPU model", "provenance"),
    Column("packages_sha256", "str", "a hash of every installed distribution and version: equal hashes, equal packages", "provenance"),
    # GPU placement: the ids Ray gave the trial, the card's total memory (CUDA trials), and when this attempt
    # started (ISO, ms, like finished_at): overlaps with its `gpu_share` can be checked.
    Column("gpu_ids", "json", "the GPU ids Ray gave it on its node (a list of strings; [] without GPUs)", "worker", nullable=True),
    Column("gpu_memory_mb", "float", "the total memory of the CUDA card it trained on, MiB (null on a CPU)", "worker", nullable=True),
    Column("started_at", "str", "when this attempt began in its Ray worker (UTC, ISO 8601, ms)", "worker", nullable=True),
    # how the trial ran: precision auto's decision (autotune.py), its own memory peak, the GPU fraction it asked for, its worker
    Column("memory_format_used", "str", "the memory format it trained in (contiguous | channels_last)", "summary"),
    Column("auto_choice", "str", "how the precision was chosen: measured | cached | fixed", "summary"),
    Column("autotune_images_per_s", "json", "training images/s per candidate precision timed, and where a feature cache is built its prefix's as 'build <candidate>' (null: none timed)", "summary", nullable=True),
    Column("autotune_s", "float", "seconds this trial spent timing candidates", "summary"),
    Column("autotune_skipped", "str", "candidates not timed, and why (null: none skipped)", "summary", nullable=True),
    Column("peak_mem_source", "str", "what peak_mem_mb measured: the CUDA allocator's peak, or an RSS high-water mark", "summary"),
    Column("gpu_share", "float", "the fraction of a GPU it asked for (0: none)", "worker"),
    Column("pid", "int", "the worker process (Tune reuses it across trials)", "worker"),
    # the train accuracy of the best-val epoch (000's summary may be best-epoch); the loader's warnings (data.Splits)
    Column("train_acc_at_best_val", "float", "train accuracy of the epoch with the highest val accuracy", "summary",
           label="train acc at the best val epoch"),
    Column("data_warning", "str", "the data loader's warnings, joined by `; ` (null: none)", "summary", nullable=True),
)  # fmt: skip

# In the epochs file's column order; `report` columns (not in the file) anywhere.
EPOCH_COLUMNS: tuple[Column, ...] = (
    Column("trial_id", "str", "the trial's id", "trial"),
    Column("experiment", "str", "the trial's first experiment", "trial"),
    Column("seed", "int", "the trial's seed", "trial"),
    Column("epoch", "int", "the epoch, from 1: Tune's loggers' step", "epoch"),
    Column("train_loss", "float", "mean training loss over the epoch's steps", "epoch", tune=True),
    Column("train_acc", "float", "training accuracy over the epoch's steps (NaN where a step diverged)", "epoch", tune=True),
    Column("val_loss", "float", "val loss after the epoch (NaN without a val split)", "epoch", tune=True),
    Column("val_acc", "float", "val accuracy after the epoch (NaN without a val split)", "epoch", tune=True),
    Column("lr", "float", "the first parameter group's lr in the epoch", "epoch", tune=True),
    Column("seconds", "float", "seconds of the epoch's training steps", "epoch", tune=True),
    Column("trainable_params", "int", "parameters the epoch trained (gradual unfreezing changes it)", "epoch"),
    Column("test_loss", "float", "test loss after the epoch (003's per-epoch test)", "epoch", only="train.test_every_epoch", tune=True),
    Column("test_acc", "float", "test accuracy after the epoch", "epoch", only="train.test_every_epoch", tune=True),
    Column("images_per_s", "float", "training images per second in the epoch", "report", tune=True),
)

STORED_EPOCH_COLUMNS = tuple(c for c in EPOCH_COLUMNS if c.source != "report")
TABLE_LABELS = {c.name: c.label for c in TRIAL_COLUMNS if c.label}  # the metric keys a table may name -> default label
TUNE_METRICS = tuple(c.name for c in EPOCH_COLUMNS if c.tune)  # what Tune's loggers log per epoch, at step `epoch`


@functools.cache
def config_columns() -> dict[str, str]:
    """The config's dotted columns of a trial row -> kind: the grid schema's keys (a list or mapping: JSON text), and `seed`."""
    from tlbench.grid.schema import FIELDS, arrow_kind  # the schema is the config keys' home; imported late, it pulls in the registries

    return {**{key: arrow_kind(field) for key, field in FIELDS.items()}, "seed": "int"}


def trial_schema() -> pa.Schema:
    """A trial file's columns: the result columns, then the config's. Every field nullable (see Column.nullable)."""
    return pa.schema([*((c.name, c.arrow_type) for c in TRIAL_COLUMNS), *((n, ARROW[k]) for n, k in config_columns().items())])


def epoch_schema() -> pa.Schema:
    return pa.schema([(c.name, c.arrow_type) for c in STORED_EPOCH_COLUMNS])


# -- typed rows ------------------------------------------------------------------------

_PYTHON = {"int": int, "float": float, "bool": bool, "str": str, "json": Any}


def _row_type(name: str, doc: str, always: Iterable[Column], sometimes: Iterable[Column] = ()) -> type:
    """A TypedDict of these columns: `always` required, `sometimes` not (a TypedDict of each, then one of both)."""

    def fields(columns: Iterable[Column]) -> dict[str, Any]:
        return {c.name: _PYTHON[c.kind] | None if c.nullable else _PYTHON[c.kind] for c in columns}

    bases = (TypedDict(f"{name}Always", fields(always)), TypedDict(f"{name}Sometimes", fields(sometimes), total=False))
    return types.new_class(name, bases, exec_body=lambda ns: ns.update(__doc__=doc, __module__=__name__))


def _of(columns: Iterable[Column], *sources: str, required: bool | None = None) -> list[Column]:
    return [c for c in columns if c.source in sources and (required is None or (c.only is None) == required)]


TrialSummary = _row_type(
    "TrialSummary",
    "What run_trial returns as its summary (TrialOutcome.summary).",
    _of(TRIAL_COLUMNS, "summary", required=True),
    _of(TRIAL_COLUMNS, "summary", required=False),
)
TrialRow = _row_type(
    "TrialRow",
    "A trial's row (execute.trial_row), less the config's dotted columns (config_columns()): a failed trial's lacks the summary.",
    _of(TRIAL_COLUMNS, "trial", "worker", "provenance"),
    _of(TRIAL_COLUMNS, "summary", "failure"),
)
EpochMetrics = _row_type(
    "EpochMetrics",
    "One epoch as run_epoch gives it.",
    _of(EPOCH_COLUMNS, "epoch", required=True),
    _of(EPOCH_COLUMNS, "epoch", required=False),
)
EpochReport = _row_type(
    "EpochReport",
    "What run_trial's on_epoch gets, and Tune with it: the epoch and its images/s.",
    _of(EPOCH_COLUMNS, "epoch", "report", required=True),
    _of(EPOCH_COLUMNS, "epoch", required=False),
)
EpochRow = _row_type(
    "EpochRow",
    "An epoch as the epochs file holds it: the trial's id, experiment and seed, then run_epoch's row.",
    _of(EPOCH_COLUMNS, "trial", "epoch", required=True),
    _of(EPOCH_COLUMNS, "epoch", required=False),
)
ROW_TYPES: dict[str, type] = {"summary": TrialSummary, "trial": TrialRow, "epoch_metrics": EpochMetrics, "epoch_report": EpochReport,
                              "epoch": EpochRow}  # fmt: skip


# -- checking a row against the declarations ---------------------------------------------------


def declared(kind: str) -> dict[str, Column]:
    """The columns a row of this kind (a key of ROW_TYPES) may hold, by name; a trial row's config columns excluded."""
    if kind not in ROW_TYPES:
        raise KeyError(f"no row kind {kind!r}; valid: {', '.join(ROW_TYPES)}")
    keys = ROW_TYPES[kind].__annotations__
    return {c.name: c for c in (TRIAL_COLUMNS if kind in ("summary", "trial") else EPOCH_COLUMNS) if c.name in keys}


def check_row(row: Mapping[str, Any], kind: str) -> list[str]:
    """What is wrong with a row of this kind (a key of ROW_TYPES), one line per column; empty where nothing is.

    Missing: a column its TypedDict requires (a trial row's summary too where its status is done);
    undeclared: a key no column declares; mistyped: a value not of its column's kind, or None where
    the column is not nullable. A trial row's config columns are checked against the grid schema."""
    columns = declared(kind)
    required = set(ROW_TYPES[kind].__required_keys__)
    if kind == "trial" and row.get("status") in DONE:
        required |= TrialSummary.__required_keys__
    problems = [f"missing column {name!r} ({columns[name].meaning})" for name in sorted(required - set(row))]
    config = config_columns() if kind == "trial" else {}
    for name, value in row.items():
        if name in columns:
            problem = _type_problem(value, columns[name].kind, columns[name].nullable)
        elif name in config:
            problem = _type_problem(value, "str" if config[name] == "json" else config[name], nullable=True)  # a cell (store.config_cell)
        else:
            problems.append(f"undeclared column {name!r}: declare it in tlbench/results/columns.py ({kind} rows)")
            continue
        if problem:
            problems.append(f"column {name!r} {problem}")
    return problems


def _type_problem(value: Any, kind: str, nullable: bool) -> str | None:
    """Why a value cannot be a cell of this kind as the store writes it, or None."""
    if value is None:
        return None if nullable else "is None, and the column is not nullable"
    fits = {
        "int": isinstance(value, numbers.Integral) and not isinstance(value, bool),
        "float": isinstance(value, numbers.Real) and not isinstance(value, bool),
        "bool": isinstance(value, bool) or type(value).__name__ == "bool_",  # numpy's too
        "str": isinstance(value, str),
        "json": isinstance(value, (list, dict)),
    }[kind]
    return None if fits else f"holds {type(value).__name__} {value!r:.60}, expected {kind}"
