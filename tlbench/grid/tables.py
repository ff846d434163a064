"""A grid file's tables: what a table, a row and a claim may say, their checks, and which trials feed a row.

    check_tables(grid, doc)            # at load: every table, metric, row (`where` names real axis values) and claim
    RowIndex(grid, profile).trial_ids(row)   # a row's trials, all seeds: what the report aggregates

The report (`aggregate.py`) reads tables through these; the table ids and metric keys are a contract.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tlbench.grid.config import get_path
from tlbench.grid.document import KeyPath, YamlDoc
from tlbench.grid.trials import VARIANT_AXIS, TrialSpec, file_name_twins, name_problem, show_value
from tlbench.registries import freezing
from tlbench.registries.registry import expected_one_of, suggest
from tlbench.results.columns import TABLE_LABELS
from tlbench.values import is_int, is_number

if TYPE_CHECKING:  # the model only as a type: grid_file.py calls check_tables at load
    from tlbench.grid.grid_file import Grid

# Result fields a table may show, with the words a reader sees: the columns declared with a `label`.
METRICS = TABLE_LABELS
TABLE_KEYS = ("id", "title", "metrics", "rows", "notes", "extras", "claims")
TABLE_EXTRAS = ("per_class", "confusion", "misclassified")
# Files the report writes beside tables/<id>.csv: no table id may name them.
REPORT_FILES = ("claims",)
# `compare: false`: the reported number is shown beside ours but never judged (a wall time on the
# authors' hardware says nothing about whether we reproduced their experiment).
METRIC_KEYS = ("key", "label", "scale", "digits", "compare")
# `reported_runs`: the row's reported numbers are each the mean of that many of the authors' runs (002's
# averages over depths), so our prediction interval is for a mean of that many runs.
# `averages: [axis, ...]`: the row leaves these axes of its experiment open on purpose, so its cell is the mean
# over their configs (and seeds), and the report says so beside it. Without it, an open axis whose values
# are different configs is refused at load: its configs would pool as if they were seeds.
ROW_KEYS = ("label", "experiment", "where", "reported", "reading", "note", "reported_per_class", "reported_confusion", "reported_runs",
            "averages")  # fmt: skip
PER_CLASS_KEYS = ("precision", "recall", "f1", "support")
# Which reading of a report a row reproduces: its text, or the code that produced its numbers.
# alternative: another reading of a choice the report leaves open where no code of it is known (004's frozen
# BatchNorm mode); the row's note and the experiment's notes say which.
READINGS = ("as stated", "as run", "alternative")
# A claim of the report about its table: "row_a is better than row_b" on one metric (default the first),
# higher or lower being better. Tested with Welch's t-test on our seeds (tlbench/report/verdicts.py).
# `untested: <why>`: a statement of no difference, listed and never tested (its rows are then optional).
CLAIM_KEYS = ("claim", "row_a", "row_b", "metric", "better", "untested")
CLAIM_BETTER = ("higher", "lower")


def check_tables(grid: Grid, doc: YamlDoc) -> None:
    names = [e.name for e in grid.experiments]
    index = RowIndex(grid)  # the rows' trials under the grid itself: where configs pool, they pool under any profile
    for i, table in enumerate(grid.tables):
        path: KeyPath = ("tables", i)
        if not isinstance(table, dict):
            raise doc.error("expected a mapping with id, title, metrics, rows", path)
        for key in table:
            if key not in TABLE_KEYS:
                raise doc.error(f"unknown key {key!r}; valid keys: {', '.join(TABLE_KEYS)}{suggest(key, TABLE_KEYS)}", (*path, key))
        table_id = table.get("id")
        if not isinstance(table_id, str) or not table_id:
            raise doc.error("every table needs a string `id`", (*path, "id"))
        _check_table_id(doc, table_id, [t["id"] for t in grid.tables[:i]], (*path, "id"))
        for key in ("title",):
            if key in table and not isinstance(table[key], str):
                raise doc.error(f"got {table[key]!r}, expected a string", (*path, key))
        notes = table.get("notes", [])
        if not (isinstance(notes, list) and all(isinstance(n, str) for n in notes)):
            raise doc.error(f"expected a list of strings, got {notes!r}", (*path, "notes"))
        for extra in table.get("extras", []):
            if extra not in TABLE_EXTRAS:
                raise doc.error(expected_one_of(extra, TABLE_EXTRAS), (*path, "extras"))
        metrics = table.get("metrics")
        if not isinstance(metrics, list) or not metrics:
            raise doc.error("expected a non-empty list of {key: <result field>, label, scale, digits}", (*path, "metrics"))
        keys = []
        for j, metric in enumerate(metrics):
            mpath = (*path, "metrics", j)
            if not isinstance(metric, dict) or "key" not in metric:
                raise doc.error("expected {key: <result field>, label, scale, digits}", mpath)
            for key in metric:
                if key not in METRIC_KEYS:
                    raise doc.error(f"unknown key {key!r}; valid keys: {', '.join(METRIC_KEYS)}", (*mpath, key))
            if not isinstance(metric["key"], str) or metric["key"] not in METRICS:  # a list is no key (and unhashable)
                raise doc.error(expected_one_of(metric["key"], METRICS), (*mpath, "key"))
            if not isinstance(metric.get("compare", True), bool):
                raise doc.error(f"expected true or false, got {metric['compare']!r}", (*mpath, "compare"))
            _check_display(doc, metric, mpath)
            keys.append(metric["key"])
        rows = table.get("rows")
        if not isinstance(rows, list) or not rows:
            raise doc.error("expected a non-empty list of rows", (*path, "rows"))
        for j, row in enumerate(rows):
            _check_row(grid, doc, row, (*path, "rows", j), names, keys, table.get("extras", []))
            _check_open_axes(grid, doc, row, (*path, "rows", j), index)
        _check_readings(doc, rows, path)
        _check_claims(doc, table.get("claims"), (*path, "claims"), [r["label"] for r in rows], keys)


MAX_DIGITS = 12  # a double has about 16 significant digits; more after the point only prints noise
MAX_SCALE = 1e12  # a unit's factor (percent, millions): one past 1e12 or below 1e-12 overflows a mean (inf, `above`)


def _check_display(doc: YamlDoc, metric: dict[str, Any], path: KeyPath) -> None:
    """How a metric is shown: scale (a factor in [1e-12, 1e12]: 100 for percent, 1e-6 for millions), digits after
    the point (a whole number in [0, MAX_DIGITS]), label (a string). Each reaches arithmetic or a format."""
    scale = metric.get("scale", 1)
    if not is_number(scale) or not 1 / MAX_SCALE <= scale <= MAX_SCALE:
        raise doc.error(
            f"got {scale!r}, expected a finite number > 0, in [1.0e-12, 1.0e+12] (100: percent, 1.0e-6: millions)", (*path, "scale")
        )
    digits = metric.get("digits", 4)
    if not is_int(digits) or not 0 <= digits <= MAX_DIGITS:
        raise doc.error(f"got {digits!r}, expected a whole number of digits after the point in [0, {MAX_DIGITS}]", (*path, "digits"))
    if "label" in metric and not (isinstance(metric["label"], str) and metric["label"]):
        raise doc.error(f"got {metric['label']!r}, expected a non-empty string", (*path, "label"))


def _check_table_id(doc: YamlDoc, table_id: str, earlier: list[str], path: KeyPath) -> None:
    """A table id names tables/<id>.csv and its figures: a safe file name, distinct from the others and the report's own."""
    problem = name_problem("table id", table_id)
    if problem:
        raise doc.error(problem, path)
    if table_id.casefold() in REPORT_FILES:
        raise doc.error(f"table id {table_id!r} would overwrite the report's tables/{table_id.casefold()}.csv; choose another id", path)
    twins = file_name_twins([*earlier, table_id])
    if twins:
        other = earlier[twins[0]]
        same = "duplicate table id" if other == table_id else f"table id {table_id!r} and {other!r} (tables[{twins[0]}]) name one file"
        raise doc.error(f"{same} {table_id!r}" if other == table_id else f"{same} where case does not count (macOS, Windows)", path)


def _check_claims(doc: YamlDoc, claims: Any, path: KeyPath, labels: list[str], metric_keys: list[str]) -> None:
    if claims is None:
        return
    if not isinstance(claims, list):
        raise doc.error("expected a list of {claim: <the report's words>, row_a: <label>, row_b: <label>, metric, better}", path)
    for k, claim in enumerate(claims):
        cpath = (*path, k)
        if not isinstance(claim, dict):
            raise doc.error("expected {claim: <the report's words>, row_a: <label>, row_b: <label>, metric, better}", cpath)
        for key in claim:
            if key not in CLAIM_KEYS:
                raise doc.error(f"unknown key {key!r}; valid keys: {', '.join(CLAIM_KEYS)}{suggest(key, CLAIM_KEYS)}", (*cpath, key))
        if not isinstance(claim.get("claim"), str) or not claim["claim"]:
            raise doc.error("every claim needs the report's words as a string `claim`", (*cpath, "claim"))
        untested = "untested" in claim
        if untested and (not isinstance(claim["untested"], str) or not claim["untested"]):
            raise doc.error("expected why the claim is not tested, as a string", (*cpath, "untested"))
        for side in ("row_a", "row_b"):
            if untested and side not in claim:
                continue
            if claim.get(side) not in labels:
                raise doc.error(
                    f"claim names a row this table lacks: {expected_one_of(claim.get(side), dict.fromkeys(labels))}", (*cpath, side)
                )
        if "row_a" in claim and claim["row_a"] == claim.get("row_b"):
            raise doc.error(f"a claim compares two different rows; both are {claim['row_a']!r}", (*cpath, "row_b"))
        if "metric" in claim and claim["metric"] not in metric_keys:
            raise doc.error(
                f"claim metric is not a column of this table: {expected_one_of(claim['metric'], metric_keys)}", (*cpath, "metric")
            )
        if "better" in claim and claim["better"] not in CLAIM_BETTER:
            raise doc.error(expected_one_of(claim["better"], CLAIM_BETTER), (*cpath, "better"))


def _check_readings(doc: YamlDoc, rows: list[dict[str, Any]], path: KeyPath) -> None:
    """Rows of one label are one reported number under its readings: distinct readings, the same number."""
    first: dict[str, tuple[int, dict[str, Any]]] = {}
    for j, row in enumerate(rows):
        label = row["label"]
        if label not in first:
            first[label] = (j, row)
            continue
        k, other = first[label]
        if not (row.get("reading") and other.get("reading")) or row["reading"] == other["reading"]:
            raise doc.error(
                f"label {label!r} is also row {k}: rows may share a label only as two readings "
                f"(reading: {' | '.join(READINGS)}) of one reported number",
                (*path, "rows", j, "label"),
            )
        if (row.get("reported") or {}) != (other.get("reported") or {}):
            raise doc.error(
                f"row {label!r} ({row['reading']}) reports {row.get('reported')}, its {other['reading']} row {k} "
                f"{other.get('reported')}: both readings sit beside the same reported number",
                (*path, "rows", j, "reported"),
            )


def _check_reported_extras(doc: YamlDoc, row: dict[str, Any], path: KeyPath, extras: list[str]) -> None:
    """A row's reported per-class metrics ({class: {precision, recall, f1, support}}) and confusion counts ([[int]])."""
    if "reported_per_class" in row:
        if "per_class" not in extras:
            raise doc.error("reported_per_class needs `extras: [per_class]` on its table", (*path, "reported_per_class"))
        value = row["reported_per_class"]
        ok = (
            isinstance(value, dict)
            and value
            and all(isinstance(m, dict) and set(m) <= set(PER_CLASS_KEYS) and all(is_number(v) for v in m.values()) for m in value.values())
        )
        if not ok:
            raise doc.error(f"expected {{class name: {{{', '.join(PER_CLASS_KEYS)}: number}}}}", (*path, "reported_per_class"))
    if "reported_confusion" in row:
        if "confusion" not in extras:
            raise doc.error("reported_confusion needs `extras: [confusion]` on its table", (*path, "reported_confusion"))
        value = row["reported_confusion"]
        ok = (
            isinstance(value, list)
            and value
            and all(isinstance(r, list) and len(r) == len(value) and all(is_int(c) and c >= 0 for c in r) for r in value)
        )
        if not ok:
            raise doc.error("expected a square matrix of counts (rows true, columns predicted)", (*path, "reported_confusion"))


def _check_row(grid: Grid, doc: YamlDoc, row: Any, path: KeyPath, names: list[str], metric_keys: list[str], extras: list[str] = ()) -> None:
    if not isinstance(row, dict):
        raise doc.error("expected {label, experiment, where, reported}", path)
    for key in row:
        if key not in ROW_KEYS:
            raise doc.error(f"unknown key {key!r}; valid keys: {', '.join(ROW_KEYS)}{suggest(key, ROW_KEYS)}", (*path, key))
    if not isinstance(row.get("label"), str):
        raise doc.error("every row needs a string `label`", (*path, "label"))
    if "reading" in row and row["reading"] not in READINGS:
        raise doc.error(f"reading: {expected_one_of(row['reading'], READINGS)}", (*path, "reading"))
    if "note" in row and not isinstance(row["note"], str):
        raise doc.error("expected a string", (*path, "note"))
    _check_reported_extras(doc, row, path, extras)
    runs = row.get("reported_runs", 1)
    if not is_int(runs) or runs < 1:
        raise doc.error(f"expected a whole number of the authors' runs >= 1, got {runs!r}", (*path, "reported_runs"))
    name = row.get("experiment")
    if name not in names:
        raise doc.error(f"table row names a missing experiment: {expected_one_of(name, names)}", (*path, "experiment"))
    exp = grid.experiment(name)
    where = row.get("where") or {}
    if not isinstance(where, dict):
        raise doc.error("expected a mapping of axis -> value", (*path, "where"))
    for axis, value in where.items():
        if axis not in exp.axes:
            raise doc.error(f"experiment {name!r} has no axis {expected_one_of(axis, exp.axes)}", (*path, "where", axis))
        values = [v["name"] for v in exp.axes[axis]] if axis == VARIANT_AXIS else exp.axes[axis]
        if value not in values:
            raise doc.error(
                f"axis {axis} of {name!r} has no value {show_value(value)}; values: {', '.join(map(show_value, values))}",
                (*path, "where", axis),
            )
    if "reading" in row and row["reading"] not in READINGS:
        raise doc.error(expected_one_of(row["reading"], READINGS), (*path, "reading"))
    reported = row.get("reported") or {}
    if not isinstance(reported, dict):
        raise doc.error("expected a mapping of metric key -> reported number", (*path, "reported"))
    for key, value in reported.items():
        if key not in metric_keys:
            raise doc.error(f"reported metric is not a column of this table: {expected_one_of(key, metric_keys)}", (*path, "reported", key))
        if value is not None and not is_number(value):
            raise doc.error(f"got {value!r}, expected a number or null", (*path, "reported", key))


def _check_open_axes(grid: Grid, doc: YamlDoc, row: dict[str, Any], path: KeyPath, index: RowIndex) -> None:
    """A row's trials are seeds of one config, unless its `averages` names the open axes it pools on purpose."""
    exp, where = grid.experiment(row["experiment"]), row.get("where") or {}
    averages = row.get("averages", [])
    if not (isinstance(averages, list) and averages and all(isinstance(a, str) for a in averages)) and "averages" in row:
        raise doc.error("expected a non-empty list of the experiment's axes the row averages over", (*path, "averages"))
    for axis in averages:
        if axis not in exp.axes or axis in where:
            fixed = f"`where` fixes {axis}" if axis in where else f"experiment {exp.name!r} has no axis {expected_one_of(axis, exp.axes)}"
            raise doc.error(f"averages names an open axis of the experiment; {fixed}", (*path, "averages"))
    configs = _configs_of(index.trials(row))
    if len(configs) < 2:
        return
    open_axes = [a for a in exp.axes if a not in where]
    varying = [a for a in open_axes if len({_axis_value_of(a, c) for c in configs}) > 1] or open_axes
    unmeant = [a for a in varying if a not in averages]
    if unmeant:
        raise doc.error(
            f"row {row['label']!r} leaves axis {', '.join(unmeant)} of experiment {exp.name!r} open: its {len(configs)} configs "
            f"would pool as if they were seeds of one; fix {'it' if len(unmeant) == 1 else 'them'} in `where`, or say "
            f"`averages: [{', '.join(varying)}]` to average over {'it' if len(varying) == 1 else 'them'} on purpose",
            (*path, "where") if "where" in row else path,
        )


def _configs_of(trials: list[TrialSpec]) -> list[TrialSpec]:
    """One trial per distinct config (the seeds of a config are one): the trials of the first seed."""
    return [t for t in trials if t.seed == trials[0].seed] if trials else []


def _axis_value_of(axis: str, trial: TrialSpec) -> str:
    """What a trial's config holds at an axis (a variant: its name), comparable across trials."""
    value = trial.axes.get(axis) if axis == VARIANT_AXIS else get_path(trial.config, axis)
    return json.dumps(value, sort_keys=True, default=str)


def row_trial_ids(grid: Grid, row: dict[str, Any], profile: str | None = None, overrides: list[str] | None = None) -> list[str]:
    """The trial ids (all seeds) of a table row: its experiment's own trials, matching `where`."""
    return RowIndex(grid, profile, overrides).trial_ids(row)


def table_rows_of_trials(grid: Grid, profile: str | None = None, overrides: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """trial id -> every table row it feeds, as {table, row (its label), reading (null where the table has one)}."""
    index = RowIndex(grid, profile, overrides)  # built once: rows x trials work would make `grid list` slow at scale
    out: dict[str, list[dict[str, Any]]] = {}
    for table in grid.tables:
        for row in table["rows"]:
            for tid in index.trial_ids(row):
                out.setdefault(tid, []).append({"table": table["id"], "row": row["label"], "reading": row.get("reading")})
    return out


class RowIndex:
    """Table rows -> their trials' ids, through an index (experiment, axis, value) -> trials.

    Each experiment's axis points are expanded once, before deduplication: that keeps each
    point's own axis values even where a trial is shared (with another experiment, or with
    another point of this one that resolves to the same config). A row then costs a few
    set intersections, not a pass over every trial."""

    def __init__(self, grid: Grid, profile: str | None = None, overrides: list[str] | None = None):
        self.grid, self.profile, self.overrides = grid, profile, overrides
        self._trials: dict[str, list[TrialSpec]] = {}
        # (experiment, axis) -> {(context, canonical value): positions in the experiment's trials}
        self._by_value: dict[tuple[str, str], dict[tuple[str, str], set[int]]] = {}
        self._contexts: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}  # a config per context seen

    def trial_ids(self, row: dict[str, Any]) -> list[str]:
        return [t.trial_id for t in self.trials(row)]

    def trials(self, row: dict[str, Any]) -> list[TrialSpec]:
        """The row's trials, one per trial id, in the experiment's order."""
        name = row["experiment"]
        trials = self._experiment(name)
        chosen: set[int] | None = None
        for axis, value in (row.get("where") or {}).items():
            matching = self._matching(name, axis, value)
            chosen = matching if chosen is None else chosen & matching
        positions = range(len(trials)) if chosen is None else sorted(chosen)
        unique: dict[str, TrialSpec] = {}
        for i in positions:
            unique.setdefault(trials[i].trial_id, trials[i])
        return list(unique.values())

    def _experiment(self, name: str) -> list[TrialSpec]:
        if name not in self._trials:
            self._trials[name] = self.grid.points(self.grid.experiment(name), self.profile, self.overrides)
        return self._trials[name]

    def _matching(self, name: str, axis: str, value: Any) -> set[int]:
        if (name, axis) not in self._by_value:
            index: dict[tuple[str, str], set[int]] = {}
            contexts: dict[str, dict[str, Any]] = {}
            for i, trial in enumerate(self._experiment(name)):
                context = canonical_context(axis, trial.config)
                contexts.setdefault(context, trial.config)
                index.setdefault((context, _value_key(axis, trial.axes.get(axis), trial.config)), set()).add(i)
            self._by_value[(name, axis)], self._contexts[(name, axis)] = index, contexts
        index = self._by_value[(name, axis)]
        found: set[int] = set()
        for context, config in self._contexts[(name, axis)].items():
            found |= index.get((context, _value_key(axis, value, config)), set())
        return found


def _value_key(axis: str, value: Any, config: dict[str, Any]) -> str:
    """What a row's `where` value and a trial's axis value are compared by: the variant's name, or the canonical value."""
    canonical = value if axis == VARIANT_AXIS else canonical_value(axis, value, config)
    return json.dumps(canonical, sort_keys=True, default=str)


def canonical_value(key: str, value: Any, config: dict[str, Any]) -> Any:
    return freezing.canonical_in(value, config) if key == freezing.KEY else value


def canonical_context(key: str, config: dict[str, Any]) -> str:
    """What of a config `canonical_value(key, ...)` reads besides the value: equal contexts, equal canonical forms."""
    return freezing.spelling_context(config) if key == freezing.KEY else ""
