"""Results on disk: one Parquet file per trial, written whole or not at all.

    <results>/trials/<trial_id>.parquet   one row: config columns + metrics
    <results>/epochs/<trial_id>.parquet   one row per epoch

Every trial file has the same columns and types (`TRIAL_SCHEMA`), so
`pandas.read_parquet("<results>/trials")` reads them as one table. A file is
written under a hidden temporary name and renamed into place (atomic on one
filesystem), so a crash leaves the old state or the new, never half a file;
the epochs go first and the trial file last, so a trial file means done.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .regular_files import read_regular_text
from .schema import FIELDS, arrow_kind

ARROW = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string(), "json": pa.string()}

# Result columns beside the config, by type. JSON columns hold nested values as text.
RESULT_COLUMNS: dict[str, str] = {
    "trial_id": "str", "experiment": "str", "experiments": "json", "report": "str", "variant": "str", "axes": "json",
    "profile": "str", "status": "str", "error": "str", "traceback": "str",
    "train_acc": "float", "train_loss": "float", "val_acc": "float", "val_loss": "float", "best_val_acc": "float",
    "best_epoch": "int", "test_acc": "float", "test_loss": "float", "best_test_acc": "float", "best_test_epoch": "int",
    "precision_macro": "float", "recall_macro": "float", "f1_macro": "float",
    "precision_weighted": "float", "recall_weighted": "float", "f1_weighted": "float",
    "confusion": "json", "per_class": "json", "probe_scores": "json", "lr_chosen": "float", "misclassified": "json",
    "epochs_run": "int", "resumed_from_epoch": "int", "n_train": "int", "n_val": "int", "n_test": "int",
    "wall_s": "float", "train_s": "float", "epoch_s_mean": "float", "images_per_s": "float", "peak_mem_mb": "float",
    "trainable_params": "int", "total_params": "int", "device": "str", "precision_used": "str", "feature_cache": "str", "compiled": "bool",
    "node_id": "str", "hostname": "str", "torch_version": "str", "torchvision_version": "str",
    "grid_sha256": "str", "finished_at": "str",
}  # fmt: skip
CONFIG_COLUMNS = {key: arrow_kind(field) for key, field in FIELDS.items()}
CONFIG_COLUMNS["seed"] = "int"
TRIAL_SCHEMA = pa.schema([(name, ARROW[kind]) for name, kind in {**RESULT_COLUMNS, **CONFIG_COLUMNS}.items()])

EPOCH_COLUMNS = {
    "trial_id": "str", "experiment": "str", "seed": "int", "epoch": "int", "train_loss": "float", "train_acc": "float",
    "val_loss": "float", "val_acc": "float", "lr": "float", "seconds": "float", "trainable_params": "int",
    "test_loss": "float", "test_acc": "float",  # train.test_every_epoch only; null otherwise
}  # fmt: skip
EPOCH_SCHEMA = pa.schema([(name, ARROW[kind]) for name, kind in EPOCH_COLUMNS.items()])

DONE = ("ok", "diverged")  # statuses a rerun does not redo


def flatten_config(config: dict[str, Any]) -> dict[str, Any]:
    """Resolved nested config -> {dotted key: column value}."""
    out: dict[str, Any] = {"seed": config["seed"]}
    for key, field in FIELDS.items():
        node: Any = config
        for part in key.split("."):
            node = node[part]
        out[key] = _cell(node, arrow_kind(field))
    return out


def _cell(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "json":
        return json.dumps(value, sort_keys=True)
    if kind == "float":
        return float(value)
    return value


def trial_table(row: dict[str, Any]) -> pa.Table:
    kinds = {**RESULT_COLUMNS, **CONFIG_COLUMNS}
    unknown = set(row) - set(kinds)
    if unknown:
        raise KeyError(f"result fields without a column: {sorted(unknown)}")
    cells = {name: [_cell(row.get(name), kind)] for name, kind in kinds.items()}
    return pa.table(cells, schema=TRIAL_SCHEMA)


def epoch_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.table({name: [r.get(name) for r in rows] for name in EPOCH_COLUMNS}, schema=EPOCH_SCHEMA)


def _atomic_write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A leading dot hides the partial file from pyarrow's directory reader.
    tmp = path.parent / f".tmp-{path.stem}-{uuid.uuid4().hex[:8]}.parquet"
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@dataclass
class Store:
    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def trials_dir(self) -> Path:
        return self.root / "trials"

    @property
    def epochs_dir(self) -> Path:
        return self.root / "epochs"

    def unwritable(self) -> str | None:
        """Why results cannot be written here (a read-only or full disk, a file in the way), or None."""
        probe = self.trials_dir / f".probe-{uuid.uuid4().hex[:8]}"
        try:
            self.trials_dir.mkdir(parents=True, exist_ok=True)
            self.epochs_dir.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"\0" * 4096)
            probe.unlink()
        except OSError as exc:
            return f"cannot write to {self.root} ({exc.strerror or exc})"
        return None

    def write(self, row: dict[str, Any], epochs: list[dict[str, Any]]) -> None:
        table = trial_table(row)  # build both first: a bad row writes nothing
        epoch_rows = epoch_table(epochs)
        _atomic_write(epoch_rows, self.epochs_dir / f"{row['trial_id']}.parquet")
        _atomic_write(table, self.trials_dir / f"{row['trial_id']}.parquet")

    def files(self) -> list[Path]:
        if not self.trials_dir.is_dir():
            return []
        return sorted(p for p in self.trials_dir.glob("*.parquet") if not p.name.startswith((".", "_")))

    def read(self) -> tuple[pa.Table, list[tuple[Path, str]]]:
        """Every readable trial row, and (file, problem) for each file that is not one."""
        tables, bad = [], []
        for path in self.files():
            try:
                tables.append(read_trial_file(path))
            except Exception as exc:  # truncated, foreign, empty or not a file at all: report, never crash
                bad.append((path, f"{type(exc).__name__}: {exc}"))
        if not tables:
            return TRIAL_SCHEMA.empty_table(), bad
        return pa.concat_tables(tables, promote_options="default"), bad

    def read_epochs(self, trial_ids: Iterable[str] | None = None) -> pa.Table:
        wanted = None if trial_ids is None else set(trial_ids)
        tables = []
        for path in self.epoch_files():
            if wanted is not None and path.stem not in wanted:
                continue
            try:
                tables.append(read_epoch_file(path))
            except Exception:  # the trial file decides what is done; a bad epoch file only loses a curve (bad_epoch_files names it)
                continue
        return pa.concat_tables(tables) if tables else EPOCH_SCHEMA.empty_table()

    def epoch_files(self) -> list[Path]:
        if not self.epochs_dir.is_dir():
            return []
        return sorted(p for p in self.epochs_dir.glob("*.parquet") if not p.name.startswith((".", "_")))

    def bad_epoch_files(self) -> list[tuple[Path, str]]:
        """(file, problem) for each epoch file that is not a trial's epochs (quarantined like trial files)."""
        bad = []
        for path in self.epoch_files():
            try:
                read_epoch_file(path)
            except Exception as exc:
                bad.append((path, f"{type(exc).__name__}: {exc}"))
        return bad

    def done(self, trial_id: str) -> bool:
        """Whether a trial has a readable row with a status a rerun does not redo."""
        path = self.trials_dir / f"{trial_id}.parquet"
        try:
            return path.exists() and read_trial_file(path).column("status")[0].as_py() in DONE
        except Exception:
            return False

    def statuses(self) -> tuple[dict[str, str], list[tuple[Path, str]]]:
        """trial_id -> status of every readable trial file, and the unreadable files."""
        table, bad = self.read()
        return dict(zip(table.column("trial_id").to_pylist(), table.column("status").to_pylist())), bad

    def quarantine(self, bad: list[tuple[Path, str]]) -> list[tuple[Path, Path, str]]:
        """Move unreadable trial files aside (hidden, so directory readers skip them); their trials rerun.

        Each gets a name of its own, so a second bad copy of one trial never overwrites the first.
        Returns (file, where it went, problem) for each file moved; one already gone is skipped:
        a second driver starting at the same moment moved it first."""
        moved = []
        for path, problem in bad:
            target = path.parent / f".corrupt-{path.stem}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}{path.suffix}"
            try:
                os.replace(path, target)
            except FileNotFoundError:
                continue
            moved.append((path, target, problem))
        return moved

    # -- rows that could not be written --------------------------------------------

    def keep_unwritten(self, row: dict[str, Any], epochs: list[dict[str, Any]]) -> Path:
        """Keep a row that could not be written as JSON beside the results, for a later run to write."""
        path = self.trials_dir / f"{UNWRITTEN_PREFIX}{row['trial_id']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}.json")
        try:
            tmp.write_text(json.dumps({"row": row, "epochs": epochs}, default=str))
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    def unwritten(self) -> list[Path]:
        return sorted(self.trials_dir.glob(f"{UNWRITTEN_PREFIX}*.json")) if self.trials_dir.is_dir() else []

    def write_unwritten(self) -> tuple[list[str], list[tuple[Path, str]]]:
        """Try again to write every row an earlier run kept as JSON: (trial ids written, (file, problem) still not)."""
        written, failed = [], []
        for path in self.unwritten():
            try:
                kept = json.loads(read_regular_text(path))  # a planted FIFO would block a plain read forever
                trial_id = _kept_trial(kept, path)
                self.write(kept["row"], kept["epochs"])
            except FileNotFoundError:  # a second driver starting at the same moment wrote it first
                continue
            except Exception as exc:
                failed.append((path, f"{type(exc).__name__}: {exc}"))
                continue
            path.unlink(missing_ok=True)  # likewise
            written.append(trial_id)
        return written, failed


def _kept_trial(kept: Any, path: Path) -> str:
    """The trial id of a kept row, checked as a trial file's would be; raises where the JSON is not one tlbench kept.

    The id becomes a file name, so it must be the one in the JSON's own name and look like a trial id
    (a planted `"trial_id": "../../x"` would otherwise write outside the results)."""
    if not isinstance(kept, dict) or not isinstance(kept.get("row"), dict) or not isinstance(kept.get("epochs"), list):
        raise ValueError('expected {"row": {...}, "epochs": [...]}: not a row tlbench kept')
    row, expected = kept["row"], path.name.removeprefix(UNWRITTEN_PREFIX).removesuffix(".json")
    if row.get("trial_id") != expected or not TRIAL_ID.fullmatch(expected):
        raise ValueError(f"holds trial {row.get('trial_id')!r}, not {expected!r} (a trial id is 16 hex digits)")
    if not isinstance(row.get("status"), str):
        raise ValueError("no string status: not a tlbench trial row")
    if any(not isinstance(e, dict) or e.get("trial_id") != expected for e in kept["epochs"]):
        raise ValueError(f"epoch rows of other trials than {expected!r}")
    trial_table(row)  # every column of its type, as TRIAL_SCHEMA holds it (raises on unknown fields or wrong types)
    return expected


UNWRITTEN_PREFIX = ".unwritten-"
TRIAL_ID = re.compile(r"[0-9a-f]{16}")  # spec.trial_id: the first 16 hex digits of the config's hash


def read_trial_file(path: Path) -> pa.Table:
    """One trial file as a row of TRIAL_SCHEMA's types (columns it lacks come back null); raises where it is not one."""
    if not path.is_file():  # a FIFO would block the reader forever, a folder would be read as a dataset
        raise ValueError("not a regular file")
    table = pq.read_table(path)
    if table.num_rows != 1:
        raise ValueError(f"{table.num_rows} rows, expected one trial")
    for key in ("trial_id", "status"):
        if key not in table.column_names or not pa.types.is_string(table.schema.field(key).type):
            raise ValueError(f"no string column {key!r}: not a tlbench trial row")
    trial_id = table.column("trial_id")[0].as_py()
    if trial_id != path.stem:
        raise ValueError(f"holds trial {trial_id!r}, not {path.stem!r}")
    present = [c for c in TRIAL_SCHEMA.names if c in table.column_names]
    for name in present:
        found, expected = table.schema.field(name).type, TRIAL_SCHEMA.field(name).type
        if not (found == expected or pa.types.is_null(found) or _same_family(found, expected)):
            raise ValueError(f"column {name!r} is {found}, expected {expected}: not a tlbench trial row")
    columns = [table.column(c).cast(TRIAL_SCHEMA.field(c).type, safe=True) for c in present]
    missing = [c for c in TRIAL_SCHEMA.names if c not in table.column_names]
    columns += [pa.nulls(1, TRIAL_SCHEMA.field(c).type) for c in missing]
    return pa.table(columns, names=present + missing).select(TRIAL_SCHEMA.names)


def read_epoch_file(path: Path) -> pa.Table:
    """One trial's epoch rows in EPOCH_SCHEMA; raises where the file is not that."""
    if not path.is_file():
        raise ValueError("not a regular file")
    table = pq.read_table(path)
    for name in EPOCH_SCHEMA.names:
        if name in table.column_names:
            found, expected = table.schema.field(name).type, EPOCH_SCHEMA.field(name).type
            if not (found == expected or pa.types.is_null(found) or _same_family(found, expected)):
                raise ValueError(f"column {name!r} is {found}, expected {expected}: not a tlbench epochs file")
    if "trial_id" not in table.column_names or set(table.column("trial_id").to_pylist()) - {path.stem}:
        raise ValueError(f"rows of other trials than {path.stem!r}")
    columns = [table.column(c).cast(EPOCH_SCHEMA.field(c).type) if c in table.column_names
               else pa.nulls(table.num_rows, EPOCH_SCHEMA.field(c).type) for c in EPOCH_SCHEMA.names]
    return pa.table(columns, schema=EPOCH_SCHEMA)


def _same_family(found: pa.DataType, expected: pa.DataType) -> bool:
    """Types one column may have been rewritten with (large strings, narrower numbers): safe to cast back."""
    families = (pa.types.is_string, pa.types.is_large_string), (pa.types.is_integer,), (pa.types.is_floating,), (pa.types.is_boolean,)
    return any(any(test(found) for test in family) and any(test(expected) for test in family) for family in families)
