r"""Results on disk: one Parquet file per trial, written whole or not at all.

    <results>/trials/<trial_id>.parquet   one row: config columns + metrics
    <results>/epochs/<trial_id>.parquet   one row per epoch

Every trial file has the same columns and types (`TRIAL_SCHEMA`, from the
declarations in columns.py), so `pandas.read_parquet("<results>/trials")`
reads them as one table.

Each folder also keeps `_index.parquet`: the rows of every readable file with
the file's name, size and mtime, so that a command reads one file, not
thousands. It is a cache: the files stay the truth. Every read lists the folder
and stats each file; a file the index lacks or holds at another size or mtime
(new, rewritten) is read anew, a file gone is dropped, and the index is
rewritten (atomically). A missing index is rebuilt from the files; one that is
not a regular file or not one this version wrote whole (a row twice, another
file's row, other columns, truncated) is rebuilt too, with a warning naming it.
The leading underscore hides it from pyarrow's directory reader. A file is
written under a hidden temporary name and renamed into place (atomic on one
filesystem), so a crash leaves the old state or the new, never half a file;
the epochs go first and the trial file last, so a trial file means done.

A config key that is not a scalar (`train.freeze`, `model.hidden`, ...) is a
string column holding its value encoded once (`config_cell`): a word as itself
(`head`), a list or mapping as JSON text with sorted keys (`{"last": 3}`), so
`frame["train.freeze"] == "head"` works in plain pandas. Results written before
held that JSON text encoded again (`"\"head\""`); `Store.read` hands them back
in today's form, and `config_value` decodes either.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tlbench.grid.schema import FIELDS, arrow_kind
from tlbench.results import columns
from tlbench.results.columns import DONE as DONE  # the statuses live with the status column; imported from here too
from tlbench.results.columns import FAILED as FAILED
from tlbench.results.regular_files import folder_problem, open_regular, read_regular_text

# The columns and their types: one home, columns.py. Result columns (kind by name), then the config's.
RESULT_COLUMNS: dict[str, str] = {c.name: c.kind for c in columns.TRIAL_COLUMNS}
CONFIG_COLUMNS = columns.config_columns()
JSON_CONFIG_COLUMNS = tuple(name for name, kind in CONFIG_COLUMNS.items() if kind == "json")  # config_cell's
TRIAL_SCHEMA = columns.trial_schema()
EPOCH_COLUMNS = {c.name: c.kind for c in columns.STORED_EPOCH_COLUMNS}
EPOCH_SCHEMA = columns.epoch_schema()

INDEX_FILE = "_index.parquet"
# The index's own columns beside the rows: which file a row came from, and that file's size and mtime then.
FILE_FIELDS = [pa.field("_file", pa.string()), pa.field("_size", pa.int64()), pa.field("_mtime_ns", pa.int64())]


def flatten_config(config: dict[str, Any]) -> dict[str, Any]:
    """Resolved nested config -> {dotted key: column value}: the one place config values become cells."""
    out: dict[str, Any] = {"seed": config["seed"]}
    for key, field in FIELDS.items():
        node: Any = config
        for part in key.split("."):
            node = node[part]
        kind = arrow_kind(field)
        out[key] = config_cell(node) if kind == "json" else _cell(node, kind)
    return out


_JSON_STARTS = ('"', "{", "[")  # of a cell's text, only in JSON (old cells: a JSON string literal)


def config_cell(value: Any) -> str | None:
    """A non-scalar config key's value as its column holds it: a word as itself (`head`), a list or mapping
    as JSON text with sorted keys (`{"last": 3}`), None as null. `config_value` reads it back."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.startswith(_JSON_STARTS):  # it would read back as another value (no key of the schema takes one)
            raise ValueError(f"config value {value!r}: a word starting with a quote, {{ or [ reads back as JSON")
        return value
    return json.dumps(value, sort_keys=True)


def config_value(cell: str | None) -> Any:
    r"""A non-scalar config column's cell -> the config's value: `config_cell`'s inverse.

    Also reads the cells of results written before: the JSON text encoded again as a JSON string
    (`"\"head\""`, `"{\"last\": 3}"`; a row kept unwritten then and written since, `"head"`): each
    layer of quotes is taken off first. Raises ValueError on a cell that is neither form."""
    text = cell
    while isinstance(text, str) and text.startswith('"'):
        text = json.loads(text)  # a JSON string literal: one layer of the old encoding
    if isinstance(text, str) and text.startswith(("{", "[")):
        return json.loads(text)
    return text


def current_config_cells(table: pa.Table) -> pa.Table:
    """`table` with every non-scalar config cell in today's form (`config_cell`): older results are read, never rewritten.

    A cell that decodes as neither form is left as it is: `config_value` raises on it for whoever needs its value."""
    for name in JSON_CONFIG_COLUMNS:
        if name not in table.column_names or not pc.any(pc.starts_with(table.column(name), '"')).as_py():
            continue
        # Each distinct cell decoded once: a grid's thousands of rows hold a few values of a key.
        encoded = pc.dictionary_encode(table.column(name).combine_chunks())
        current = pa.array([_current_cell(cell) for cell in encoded.dictionary.to_pylist()], pa.string())
        table = table.set_column(table.column_names.index(name), name, pc.take(current, encoded.indices))
    return table


def _current_cell(cell: str | None) -> str | None:
    try:
        return config_cell(config_value(cell))
    except ValueError:
        return cell


def _cell(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "json":
        return json.dumps(value, sort_keys=True)
    if kind == "float":
        return float(value)
    return value


def trial_table(row: dict[str, Any]) -> pa.Table:
    """One result row as TRIAL_SCHEMA's one-row table. Result values are encoded here; the config columns
    come as `flatten_config` made them, encoded there, once."""
    kinds = {**RESULT_COLUMNS, **CONFIG_COLUMNS}
    unknown = set(row) - set(kinds)
    if unknown:
        raise KeyError(f"result fields without a column: {sorted(unknown)}")
    raw = [name for name in JSON_CONFIG_COLUMNS if not isinstance(row.get(name), (str, type(None)))]
    if raw:
        raise TypeError(f"config columns {raw} hold values, not cells: build the row's config with flatten_config")
    cells = {name: [row.get(name) if name in JSON_CONFIG_COLUMNS else _cell(row.get(name), kind)] for name, kind in kinds.items()}
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

    def not_a_folder(self) -> str | None:
        """Why this path cannot hold results (something other than a folder there or in the place of trials/,
        epochs/ or claims/), or None: read as empty, every trial would look pending."""
        for place in (self.root, self.trials_dir, self.epochs_dir, self.root / "claims"):
            problem = folder_problem(place)
            if problem:
                return problem
        return None

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

    def read(self, columns: list[str] | None = None) -> tuple[pa.Table, list[tuple[Path, str]]]:
        """Every readable trial row (`columns` of it, default all), and (file, problem) for each unreadable one."""
        table, bad = read_folder(self.files(), TRIAL_SCHEMA, read_trial_file, one_row=True, columns=columns)
        return current_config_cells(table), bad  # the index keeps the files' cells as written, old ones too

    def epoch_files(self) -> list[Path]:
        if not self.epochs_dir.is_dir():
            return []
        return sorted(p for p in self.epochs_dir.glob("*.parquet") if not p.name.startswith((".", "_")))

    def read_epochs(self, trial_ids: Iterable[str] | None = None) -> pa.Table:
        # The trial file decides what is done; a bad epoch file only loses a curve.
        table, _ = read_folder(self.epoch_files(), EPOCH_SCHEMA, read_epoch_file, one_row=False)
        if trial_ids is None:
            return table
        return table.filter(pc.is_in(table.column("trial_id"), pa.array(list(set(trial_ids)), pa.string())))

    def bad_epoch_files(self) -> list[tuple[Path, str]]:
        """(file, problem) for each epoch file that is not a trial's epochs (quarantined like trial files)."""
        return read_folder(self.epoch_files(), EPOCH_SCHEMA, read_epoch_file, one_row=False, columns=["trial_id"])[1]

    def done(self, trial_id: str) -> bool:
        """Whether a trial has a readable row with a status a rerun does not redo."""
        path = self.trials_dir / f"{trial_id}.parquet"
        try:
            return path.exists() and read_trial_file(path).column("status")[0].as_py() in DONE
        except Exception:
            return False

    def statuses(self) -> tuple[dict[str, str], list[tuple[Path, str]]]:
        """trial_id -> status of every readable trial file, and the unreadable files."""
        table, bad = self.read(columns=["trial_id", "status"])  # from the index, only these columns are read
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
    table = _read_parquet(path)
    if table.num_rows != 1:
        raise ValueError(f"{table.num_rows} rows, expected one trial")
    for key in TRIAL_KEYS:
        if key not in table.column_names or not pa.types.is_string(table.schema.field(key).type):
            raise ValueError(f"no string column {key!r}: not a tlbench trial row")
    trial_id = table.column("trial_id")[0].as_py()
    if trial_id != path.stem:
        raise ValueError(f"holds trial {trial_id!r}, not {path.stem!r}")
    problem = _type_problem(table.schema, TRIAL_SCHEMA)
    if problem:
        raise ValueError(f"{problem}: not a tlbench trial row")
    return _conformed(table, TRIAL_SCHEMA)


def read_epoch_file(path: Path) -> pa.Table:
    """One trial's epoch rows in EPOCH_SCHEMA; raises where the file is not that."""
    table = _read_parquet(path)
    problem = _type_problem(table.schema, EPOCH_SCHEMA)
    if problem:
        raise ValueError(f"{problem}: not a tlbench epochs file")
    if "trial_id" not in table.column_names or set(table.column("trial_id").to_pylist()) - {path.stem}:
        raise ValueError(f"rows of other trials than {path.stem!r}")
    return _conformed(table, EPOCH_SCHEMA)


TRIAL_KEYS = ("trial_id", "status")  # string columns every trial row has


def _read_parquet(path: Path) -> pa.Table:
    """A Parquet file's table, opened as a regular file only: a planted FIFO would block the reader forever."""
    with open_regular(path) as fh:
        data = fh.read()  # whole (a row: kilobytes), so Parquet decodes from memory without taking the GIL per read
    return pq.ParquetFile(pa.BufferReader(data)).read()


def _type_problem(found: pa.Schema, expected: pa.Schema) -> str | None:
    """Why a file's columns cannot be read as `expected`'s (one of another type), or None."""
    for name in expected.names:
        if name in found.names:
            have, want = found.field(name).type, expected.field(name).type
            if not (have == want or pa.types.is_null(have) or _same_family(have, want)):
                return f"column {name!r} is {have}, expected {want}"
    return None


def _conformed(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A table whose columns `_type_problem` accepts, in `schema`'s columns and types (those it lacks: null)."""
    columns = [
        table.column(name).cast(schema.field(name).type, safe=True)
        if name in table.column_names
        else pa.nulls(table.num_rows, schema.field(name).type)
        for name in schema.names
    ]
    return pa.table(columns, schema=schema)


def _same_family(found: pa.DataType, expected: pa.DataType) -> bool:
    """Types one column may have been rewritten with (large strings, narrower numbers): safe to cast back."""
    families = (pa.types.is_string, pa.types.is_large_string), (pa.types.is_integer,), (pa.types.is_floating,), (pa.types.is_boolean,)
    return any(any(test(found) for test in family) and any(test(expected) for test in family) for family in families)


# -- many files read as one table, through the folder's index ----------------------


def read_folder(paths: list[Path], schema: pa.Schema, read_file: Callable[[Path], pa.Table], one_row: bool,
                columns: list[str] | None = None) -> tuple[pa.Table, list[tuple[Path, str]]]:  # fmt: skip
    """The rows of every file of one folder (`schema`, or its `columns`), and (file, problem) for each unreadable one.

    Files unchanged since the index was written are not opened; new and changed
    ones are read on threads and checked together (`_read_new`); a file those
    checks doubt is read again alone with `read_file`, which names its problem."""
    columns = columns or schema.names
    if not paths:
        return schema.empty_table().select(columns), []
    folder = paths[0].parent
    stats: dict[str, tuple[int, int]] = {}
    irregular: list[Path] = []  # not even opened in bulk: read_file alone decides on those (and names them)
    for path in paths:
        try:
            info = path.stat()  # before reading: a file rewritten meanwhile is seen as changed next time
        except OSError:
            continue  # gone since the listing (quarantined, or moved aside by another driver)
        if stat.S_ISREG(info.st_mode):
            stats[path.name] = (info.st_size, info.st_mtime_ns)
        else:
            irregular.append(path)
    indexed = schema.append(FILE_FIELDS[0]).append(FILE_FIELDS[1]).append(FILE_FIELDS[2])
    index_path = folder / INDEX_FILE
    up_to_date = _up_to_date(index_path, indexed, stats, [*columns, *(f.name for f in FILE_FIELDS)], one_row)
    if up_to_date is not None and not irregular:  # nothing new, changed or gone: the index's columns are the answer
        return up_to_date.select(columns), []
    cached = _load_index(index_path, indexed, one_row, warn=True)
    kept = indexed.empty_table()
    if cached is not None:
        kept = cached.filter(_unchanged(cached, stats))
    fresh = sorted(set(stats) - set(kept.column("_file").to_pylist()))
    parts, bad = [kept], _read_each(irregular, read_file)[1]
    tables, problems = _read_new([folder / name for name in fresh], schema, read_file, one_row)
    bad += problems
    parts += [_with_file_columns(t, stats) for t in tables]
    table = pa.concat_tables(parts).combine_chunks().sort_by("_file")
    if cached is None or fresh or kept.num_rows != cached.num_rows:
        try:
            _atomic_write(table, index_path)
        except OSError:  # a read-only results folder still reads, only not faster next time
            pass
    return table.select(columns), bad


def _load_index(path: Path, indexed: pa.Schema, one_row: bool, columns: list[str] | None = None,
                warn: bool = False) -> pa.Table | None:  # fmt: skip
    """The folder's index (`columns` of it), or None where it is missing or not one this version wrote whole (rebuilt then).

    It is a cache read from a folder anyone may have copied into: it is opened as a regular file only (a FIFO
    would block), and its rows are checked (`_index_problem`) before any is trusted; `warn` says why one is not."""
    wanted = None if columns is None else sorted({*columns, "trial_id", "_file"}, key=indexed.names.index)
    try:
        with open_regular(path) as fh:
            index = pq.ParquetFile(fh)
            if not index.schema_arrow.equals(indexed):
                raise ValueError("its columns are not this version's")
            table = index.read(columns=wanted)
        problem = _index_problem(table, one_row)
    except FileNotFoundError:
        return None
    except Exception as exc:  # truncated, not Parquet, a FIFO, another version's columns
        problem = f"{type(exc).__name__}: {exc}"
    if problem is None:
        return table if columns is None else table.select(columns)
    if warn:
        print(f"warning: results index {path} cannot be used ({problem}): rebuilt from the files beside it", file=sys.stderr)
    return None


def _index_problem(index: pa.Table, one_row: bool) -> str | None:
    """Why an index's rows are not one file's own each (a row copied twice, a row under another file's name), or None."""
    files = index.column("_file")
    if pc.any(pc.is_null(files)).as_py() or pc.any(pc.is_null(index.column("trial_id"))).as_py():
        return "rows without a file or trial id"
    if not pc.all(pc.equal(pc.utf8_slice_codeunits(files, 0, -len(".parquet")), index.column("trial_id"))).as_py():
        return "rows under another trial's file name"
    if one_row and pc.count_distinct(files).as_py() != index.num_rows:
        return "a file's row listed twice"
    return None


def _unchanged(index: pa.Table, stats: dict[str, tuple[int, int]]) -> pa.Array:
    """Per index row: its file is still there at the size and mtime it was read at."""
    files, sizes, mtimes = (index.column(f.name).to_pylist() for f in FILE_FIELDS)
    return pa.array([stats.get(f) == (s, m) for f, s, m in zip(files, sizes, mtimes)], pa.bool_())


def _up_to_date(path: Path, indexed: pa.Schema, stats: dict[str, tuple[int, int]], columns: list[str],
                one_row: bool) -> pa.Table | None:  # fmt: skip
    """The index's `columns` where it holds every file as it is now and no other, else None."""
    index = _load_index(path, indexed, one_row, columns)
    if index is None or not pc.all(_unchanged(index, stats)).as_py():
        return None
    return index if set(index.column("_file").to_pylist()) == set(stats) else None


READ_THREADS = 4  # files read at once: Parquet decodes without the GIL, and a network disk answers in parallel


def _read_new(paths: list[Path], schema: pa.Schema, read_file: Callable[[Path], pa.Table],
              one_row: bool) -> tuple[list[pa.Table], list[tuple[Path, str]]]:  # fmt: skip
    """New files' rows (with `_file`), and (file, problem) for each bad one.

    Each file is opened as a regular file and read on a thread; files of one set of
    columns are checked once for that set and row by row together (each row its
    file's trial; `one_row`: one a file). A file that fails to read or any check
    is read again by `read_file`, whose error names what is wrong with it."""
    if not paths:
        return [], []
    with ThreadPoolExecutor(READ_THREADS) as pool:
        read = list(pool.map(_try_read, paths))
    by_columns: dict[pa.Schema, list[tuple[Path, pa.Table]]] = defaultdict(list)
    doubtful = [path for path, table in zip(paths, read) if table is None]
    for path, table in zip(paths, read):
        if table is not None:
            by_columns[table.schema].append((path, table))
    tables = []
    for found, members in by_columns.items():
        if not _columns_fit(found, schema, one_row):
            doubtful += [path for path, _ in members]
            continue
        table, wrong = _own_rows(members, one_row)
        doubtful += wrong
        if table.num_rows:
            tables.append(_conformed(table, schema).append_column("_file", table.column("_file")))
    more, bad = _read_each(sorted(doubtful), read_file)
    return tables + more, bad


def _try_read(path: Path) -> pa.Table | None:
    try:
        return _read_parquet(path)
    except Exception:  # read_file reads it again and says why
        return None


def _columns_fit(found: pa.Schema, schema: pa.Schema, one_row: bool) -> bool:
    """Whether files of these columns can be rows of `schema` (the checks read_trial_file / read_epoch_file make)."""
    keys = TRIAL_KEYS if one_row else ("trial_id",)
    try:
        strings = all(key in found.names and pa.types.is_string(found.field(key).type) for key in keys)
        return strings and _type_problem(found, schema) is None
    except KeyError:  # a column name twice
        return False


def _own_rows(members: list[tuple[Path, pa.Table]], one_row: bool) -> tuple[pa.Table, list[Path]]:
    """Files of one set of columns as one table with `_file`, keeping only files whose every row is their trial's
    (and, `one_row`, only one); the others' paths."""
    counts = np.array([table.num_rows for _, table in members])
    names = np.repeat([path.name for path, _ in members], counts)
    stems = np.repeat([path.stem for path, _ in members], counts)
    table = pa.concat_tables([table for _, table in members]).combine_chunks()  # one chunk: thousands make compute slow
    table = table.append_column("_file", pa.array(names, pa.string()))
    own = pc.fill_null(pc.equal(table.column("trial_id"), pa.array(stems, pa.string())), False).to_numpy(zero_copy_only=False)
    file_of_row = np.repeat(np.arange(len(members)), counts)
    all_own = np.bincount(file_of_row[own], minlength=len(members)) == counts
    good = all_own & (counts == 1) if one_row else all_own
    keep = good[file_of_row]
    return table.filter(pa.array(keep)), [path for (path, _), ok in zip(members, good) if not ok]


def _read_each(paths: list[Path], read_file: Callable[[Path], pa.Table]) -> tuple[list[pa.Table], list[tuple[Path, str]]]:
    tables, bad = [], []
    for path in paths:
        try:
            table = read_file(path)
            tables.append(table.append_column("_file", pa.array([path.name] * table.num_rows, pa.string())))
        except Exception as exc:  # truncated, foreign or empty files: report, never crash
            bad.append((path, f"{type(exc).__name__}: {exc}"))
    return tables, bad


def _with_file_columns(table: pa.Table, stats: dict[str, tuple[int, int]]) -> pa.Table:
    """A table with `_file` -> the same with that file's size and mtime as read, the index's layout."""
    files = table.column("_file").to_pylist()
    table = table.drop_columns("_file")
    return (table.append_column(FILE_FIELDS[0], pa.array(files, pa.string()))
                 .append_column(FILE_FIELDS[1], pa.array([stats[f][0] for f in files], pa.int64()))
                 .append_column(FILE_FIELDS[2], pa.array([stats[f][1] for f in files], pa.int64())))  # fmt: skip
