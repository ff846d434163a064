"""The grid: load and validate a grid file, expand it into trials, name each trial.

    Grid.load(path) -> Grid --expand(profile, only, overrides)--> [TrialSpec]

Pure Python: no torch, no Ray. Precedence, lowest first:
defaults < experiment < axis value < profile < --set.
A trial's id is a hash of its fully resolved config (seed included), not of its
name, so two experiments that resolve to the same config share one trial.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import Checker, canonical_freeze, check_resolved, merge, set_path, undot
from .gridfile import GridError, KeyPath, YamlDoc, expected_one_of, format_path, suggest
from .schema import EXPERIMENT_KEYS, FIELDS, SEED_MAX, defaults, hashed_items, is_int, is_number

TOP_LEVEL_KEYS = ("defaults", "experiments", "tables", "profiles")
SOURCE_KEYS = ("report", "tables", "section")
VARIANT_AXIS = "variant"  # an axis of named override sets: [{name: ..., set: {...}}]

# Result fields a table may show, with the words a reader sees.
METRICS = {
    "train_acc": "train acc", "val_acc": "val acc", "test_acc": "test acc", "best_val_acc": "best val acc",
    "best_test_acc": "best-epoch test acc",
    "train_loss": "train loss", "val_loss": "val loss", "test_loss": "test loss",
    "precision_weighted": "precision (weighted)", "recall_weighted": "recall (weighted)",
    "f1_weighted": "F1 (weighted)", "precision_macro": "precision (macro)", "recall_macro": "recall (macro)",
    "f1_macro": "F1 (macro)", "wall_s": "wall time (s)", "train_s": "train time (s)",
    "epoch_s_mean": "time per epoch (s)", "images_per_s": "images/s",
    "total_params": "parameters", "trainable_params": "trainable parameters",
}  # fmt: skip
TABLE_KEYS = ("id", "title", "metrics", "rows", "notes", "extras", "claims")
TABLE_EXTRAS = ("per_class", "confusion", "misclassified")
# `compare: false`: the reported number is shown beside ours but never judged (a wall time on the
# authors' hardware says nothing about whether we reproduced their experiment).
METRIC_KEYS = ("key", "label", "scale", "digits", "compare")
# `reported_runs`: the row's reported numbers are each the mean of that many of the authors' runs (002's
# averages over depths), so our prediction interval is for a mean of that many runs.
ROW_KEYS = ("label", "experiment", "where", "reported", "reading", "note", "reported_per_class", "reported_confusion", "reported_runs")
PER_CLASS_KEYS = ("precision", "recall", "f1", "support")
# Which reading of a report a row reproduces: its text, or the code that produced its numbers.
READINGS = ("as stated", "as run")
# A claim of the report about its table: "row_a is better than row_b" on one metric (default the first),
# higher or lower being better. Tested with Welch's t-test on our seeds (tlbench/verdicts.py).
CLAIM_KEYS = ("claim", "row_a", "row_b", "metric", "better")
CLAIM_BETTER = ("higher", "lower")
DEFAULT_SEEDS = [0]


@dataclass(frozen=True)
class TrialSpec:
    """One trial: a fully resolved config and where it came from."""

    trial_id: str
    experiment: str  # the first experiment that asked for this config
    report: str
    seed: int
    axes: dict[str, Any]  # axis name -> its value for this trial (variant: its name)
    config: dict[str, Any]  # every key of the schema, resolved; `seed` included
    experiments: tuple[str, ...] = ()  # every experiment that shares this config


@dataclass
class Experiment:
    name: str
    index: int  # position in the grid file, for error messages
    source: dict[str, Any]
    config: dict[str, Any]  # nested overrides of the defaults
    axes: dict[str, list[Any]]
    seeds: list[int] | None
    notes: list[str] = field(default_factory=list)

    @property
    def report(self) -> str:
        return self.source["report"]


def trial_id(config: dict[str, Any]) -> str:
    canonical = json.dumps(hashed_items(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# -- the grid -------------------------------------------------------------------


@dataclass
class Grid:
    file: str
    defaults: dict[str, Any]
    default_seeds: list[int]
    experiments: list[Experiment]
    tables: list[dict[str, Any]]
    profiles: dict[str, dict[str, Any]]
    doc: YamlDoc | None = None
    sha256: str = ""
    # Expansions already made, by (profile, only, overrides): loading expands every profile to check it,
    # and a command then asks again for one of them; a grid of thousands of trials feels each pass.
    _expanded: dict[tuple[Any, ...], list[TrialSpec]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, path: str | Path) -> Grid:
        doc = YamlDoc(path)
        grid = _parse(doc)
        grid.sha256 = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
        # Expanding every experiment once, under every profile, surfaces
        # cross-key errors (an arch too small for a profile's image size) at load.
        for profile in [None, *grid.profiles]:
            grid.expand(profile=profile)
        _check_tables(grid, doc)
        return grid

    def experiment(self, name: str) -> Experiment:
        for exp in self.experiments:
            if exp.name == name:
                return exp
        raise KeyError(name)

    def expand(
        self,
        profile: str | None = None,
        only: list[str] | None = None,
        overrides: list[str] | None = None,
    ) -> list[TrialSpec]:
        """Every trial of the selected experiments, deduplicated by trial id, in grid order."""
        same_as_none = profile == "full" and "full" not in self.profiles
        key = (None if same_as_none else profile, tuple(only or ()), tuple(overrides or ()))
        if key not in self._expanded:
            self._expanded[key] = self._expand(profile, only, overrides)
        return list(self._expanded[key])

    def _expand(self, profile: str | None, only: list[str] | None, overrides: list[str] | None) -> list[TrialSpec]:
        selected = [e for e in self.experiments if not only or any(fnmatch.fnmatchcase(e.name, g) for g in only)]
        if only and not selected:
            names = ", ".join(e.name for e in self.experiments)
            raise GridError(f"--only {' '.join(only)} matches no experiment; experiments: {names}", file=self.file)
        trials: dict[str, TrialSpec] = {}
        for exp in selected:
            for spec in self.points(exp, profile, overrides):
                known = trials.get(spec.trial_id)
                if known is None:
                    trials[spec.trial_id] = spec
                elif exp.name not in known.experiments:
                    trials[spec.trial_id] = TrialSpec(**{**known.__dict__, "experiments": (*known.experiments, exp.name)})
        return list(trials.values())

    def points(self, exp: Experiment, profile: str | None = None, overrides: list[str] | None = None) -> list[TrialSpec]:
        """Every (axis point, seed) of one experiment as a trial, before deduplication: two axis points
        that resolve to one config both appear, with the same trial id. Cached: every selection
        (`--only`, a table row's) is built from these."""
        key = ("points", exp.name, None if profile == "full" and "full" not in self.profiles else profile, tuple(overrides or ()))
        if key in self._expanded:
            return self._expanded[key]
        profile_cfg, profile_seeds = self._profile(profile)
        set_cfg, set_seeds = parse_overrides(overrides or [], self.file)
        on_top = merge(profile_cfg, set_cfg)  # merging is associative: two merges a trial, not four
        seeds = set_seeds or profile_seeds or exp.seeds or self.default_seeds
        base = merge(self.defaults, exp.config)
        trials: list[TrialSpec] = []
        for axis_values, axis_cfg in _axis_points(exp):
            config = merge(merge(base, axis_cfg), on_top)
            config["train"]["freeze"] = canonical_freeze(config["train"]["freeze"], config["model"]["arch"])
            problems = check_resolved(config)
            if problems:
                key_name, expected = problems[0]
                where = ", ".join(f"{k}={_show(v)}" for k, v in axis_values.items())
                origin = f"experiment {exp.name!r}" + (f" at {where}" if where else "")
                origin += f" under profile {profile!r}" if profile else ""
                path = ("experiments", exp.index)
                message = f"{origin}: {key_name}: expected {expected}"
                raise (self.doc.error(message, path) if self.doc else GridError(message, file=self.file, path=path))
            for seed in seeds:
                resolved = {**config, "seed": seed}
                tid = trial_id(resolved)
                trials.append(TrialSpec(tid, exp.name, exp.report, seed, axis_values, resolved, (exp.name,)))
        self._expanded[key] = trials
        return list(trials)

    def _profile(self, name: str | None) -> tuple[dict[str, Any], list[int] | None]:
        if name is None or name == "full" and "full" not in self.profiles:
            return {}, None
        if name not in self.profiles:
            raise GridError(f"unknown profile: {expected_one_of(name, ['full', *self.profiles])}", file=self.file, path=("profiles",))
        profile = self.profiles[name]
        return {k: v for k, v in profile.items() if k != "seeds"}, profile.get("seeds")


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _axis_points(exp: Experiment) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The cartesian product of an experiment's axes: [(axis values, config overrides)]."""
    if not exp.axes:
        return [({}, {})]
    names = list(exp.axes)
    points = []
    for combo in itertools.product(*(exp.axes[n] for n in names)):
        values: dict[str, Any] = {}
        config: dict[str, Any] = {}
        for name, value in zip(names, combo):
            if name == VARIANT_AXIS:
                values[name] = value["name"]
                config = merge(config, undot(value.get("set", {})))
            else:
                values[name] = value
                config = set_path(config, name, value)
        points.append((values, config))
    return points


def parse_overrides(overrides: list[str], file: str) -> tuple[dict[str, Any], list[int] | None]:
    """--set KEY=VALUE ..., each VALUE read as YAML; KEY a dotted config key or `seeds`."""
    checker = Checker(None, "--set")
    config: dict[str, Any] = {}
    seeds = None
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise GridError(f"--set {item!r}: expected KEY=VALUE", file="--set")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise GridError(f"--set {item!r}: the value is not valid YAML", file="--set") from None
        if key == "seeds":
            seeds = _check_seeds(checker, value, ("seeds",))
            continue
        if key not in FIELDS:
            raise GridError(f"unknown key {key!r}{suggest(key, FIELDS)}; valid keys: {', '.join(FIELDS)}, seeds", file="--set")
        checker.key(key, value, (key,))
        config = set_path(config, key, value)
    return config, seeds


def _check_seeds(checker: Checker, value: Any, path: KeyPath) -> list[int]:
    if not (isinstance(value, list) and value and all(is_int(s) and 0 <= s <= SEED_MAX for s in value)):
        raise checker.error(f"got {value!r}, expected a non-empty list of integer seeds in [0, {SEED_MAX}]", path)
    if len(set(value)) != len(value):
        raise checker.error(f"got {value!r}, expected distinct seeds", path)
    return value


def _parse(doc: YamlDoc) -> Grid:
    data = doc.data
    checker = Checker(doc, doc.file)
    if not isinstance(data, dict):
        raise doc.error(f"expected a mapping with keys {', '.join(TOP_LEVEL_KEYS)}", ())
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise doc.error(f"unknown top-level key {key!r}; valid keys: {', '.join(TOP_LEVEL_KEYS)}{suggest(key, TOP_LEVEL_KEYS)}", (key,))
    raw_defaults = data.get("defaults") or {}
    base = checker.config(raw_defaults, ("defaults",), extra_keys=("seeds",))
    default_seeds = DEFAULT_SEEDS
    if "seeds" in raw_defaults:
        default_seeds = _check_seeds(checker, raw_defaults["seeds"], ("defaults", "seeds"))
    raw_experiments = data.get("experiments")
    if not isinstance(raw_experiments, list) or not raw_experiments:
        raise doc.error("expected a non-empty list of experiments", ("experiments",))
    experiments: list[Experiment] = []
    for i, raw in enumerate(raw_experiments):
        experiments.append(_parse_experiment(checker, raw, ("experiments", i), i))
    seen: dict[str, int] = {}
    for exp in experiments:
        if exp.name in seen:
            raise doc.error(f"duplicate experiment name {exp.name!r} (first at experiments[{seen[exp.name]}])", ("experiments", exp.index, "name"))
        seen[exp.name] = exp.index
    profiles: dict[str, dict[str, Any]] = {}
    raw_profiles = data.get("profiles") or {}
    if not isinstance(raw_profiles, dict):
        raise doc.error("expected a mapping of profile name -> overrides", ("profiles",))
    for name, raw in raw_profiles.items():
        profile = checker.config(raw, ("profiles", name), extra_keys=("seeds",))
        if "seeds" in raw:
            profile["seeds"] = _check_seeds(checker, raw["seeds"], ("profiles", name, "seeds"))
        profiles[str(name)] = profile
    tables = data.get("tables") or []
    if not isinstance(tables, list):
        raise doc.error("expected a list of tables", ("tables",))
    return Grid(doc.file, merge(defaults(), base), default_seeds, experiments, tables, profiles, doc)


def _parse_experiment(checker: Checker, raw: Any, path: KeyPath, index: int) -> Experiment:
    if not isinstance(raw, dict):
        raise checker.error("expected a mapping with name, source, dataset, model, train, axes", path)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise checker.error("every experiment needs a non-empty string `name`", (*path, "name"))
    source = raw.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("report"), str):
        raise checker.error("expected source: {report: <report file name>, ...}", (*path, "source"))
    for key in source:
        if key not in SOURCE_KEYS:
            raise checker.error(f"unknown key {key!r}; valid keys: {', '.join(SOURCE_KEYS)}{suggest(key, SOURCE_KEYS)}", (*path, "source", key))
    notes = raw.get("notes", [])
    if not (isinstance(notes, list) and all(isinstance(n, str) for n in notes)):
        raise checker.error("expected a list of strings", (*path, "notes"))
    config = checker.config(raw, path, extra_keys=EXPERIMENT_KEYS)
    seeds = _check_seeds(checker, raw["seeds"], (*path, "seeds")) if "seeds" in raw else None
    axes = _parse_axes(checker, raw.get("axes") or {}, (*path, "axes"))
    return Experiment(name, index, source, config, axes, seeds, notes)


def _parse_axes(checker: Checker, raw: Any, path: KeyPath) -> dict[str, list[Any]]:
    if not isinstance(raw, dict):
        raise checker.error("expected a mapping of dotted config key (or `variant`) -> list of values", path)
    axes: dict[str, list[Any]] = {}
    for name, values in raw.items():
        if not isinstance(values, list) or not values:
            raise checker.error("expected a non-empty list of values", (*path, name))
        for j, value in enumerate(values):
            if name == VARIANT_AXIS:
                if not isinstance(value, dict) or not isinstance(value.get("name"), str) or set(value) - {"name", "set"}:
                    raise checker.error("expected {name: <label>, set: {dotted key: value, ...}}", (*path, name, j))
                checker.config(value.get("set", {}), (*path, name, j, "set"))
            elif name in FIELDS:
                checker.key(name, value, (*path, name, j))
            else:
                raise checker.error(
                    f"unknown axis {name!r}: an axis is a dotted config key or `{VARIANT_AXIS}`{suggest(name, [*FIELDS, VARIANT_AXIS])}",
                    (*path, name),
                )
        labels = [v["name"] if name == VARIANT_AXIS else _show(v) for v in values]
        if len(set(labels)) != len(labels):
            raise checker.error(f"duplicate values {labels}", (*path, name))
        axes[str(name)] = values
    return axes


def _check_tables(grid: Grid, doc: YamlDoc) -> None:
    seen: set[str] = set()
    names = [e.name for e in grid.experiments]
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
        if table_id in seen:
            raise doc.error(f"duplicate table id {table_id!r}", (*path, "id"))
        seen.add(table_id)
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
            if metric["key"] not in METRICS:
                raise doc.error(expected_one_of(metric["key"], METRICS), (*mpath, "key"))
            if not isinstance(metric.get("compare", True), bool):
                raise doc.error(f"expected true or false, got {metric['compare']!r}", (*mpath, "compare"))
            keys.append(metric["key"])
        rows = table.get("rows")
        if not isinstance(rows, list) or not rows:
            raise doc.error("expected a non-empty list of rows", (*path, "rows"))
        for j, row in enumerate(rows):
            _check_row(grid, doc, row, (*path, "rows", j), names, keys, table.get("extras", []))
        _check_readings(doc, rows, path)
        _check_claims(doc, table.get("claims"), (*path, "claims"), [r["label"] for r in rows], keys)


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
        for side in ("row_a", "row_b"):
            if claim.get(side) not in labels:
                raise doc.error(f"claim names a row this table lacks: {expected_one_of(claim.get(side), dict.fromkeys(labels))}", (*cpath, side))
        if claim["row_a"] == claim["row_b"]:
            raise doc.error(f"a claim compares two different rows; both are {claim['row_a']!r}", (*cpath, "row_b"))
        if "metric" in claim and claim["metric"] not in metric_keys:
            raise doc.error(f"claim metric is not a column of this table: {expected_one_of(claim['metric'], metric_keys)}", (*cpath, "metric"))
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
            raise doc.error(f"label {label!r} is also row {k}: rows may share a label only as two readings "
                            f"(reading: {' | '.join(READINGS)}) of one reported number", (*path, "rows", j, "label"))
        if (row.get("reported") or {}) != (other.get("reported") or {}):
            raise doc.error(f"row {label!r} ({row['reading']}) reports {row.get('reported')}, its {other['reading']} row {k} "
                            f"{other.get('reported')}: both readings sit beside the same reported number", (*path, "rows", j, "reported"))


def _check_reported_extras(doc: YamlDoc, row: dict[str, Any], path: KeyPath, extras: list[str]) -> None:
    """A row's reported per-class metrics ({class: {precision, recall, f1, support}}) and confusion counts ([[int]])."""
    if "reported_per_class" in row:
        if "per_class" not in extras:
            raise doc.error("reported_per_class needs `extras: [per_class]` on its table", (*path, "reported_per_class"))
        value = row["reported_per_class"]
        ok = isinstance(value, dict) and value and all(
            isinstance(m, dict) and set(m) <= set(PER_CLASS_KEYS) and all(is_number(v) for v in m.values()) for m in value.values())
        if not ok:
            raise doc.error(f"expected {{class name: {{{', '.join(PER_CLASS_KEYS)}: number}}}}", (*path, "reported_per_class"))
    if "reported_confusion" in row:
        if "confusion" not in extras:
            raise doc.error("reported_confusion needs `extras: [confusion]` on its table", (*path, "reported_confusion"))
        value = row["reported_confusion"]
        ok = isinstance(value, list) and value and all(
            isinstance(r, list) and len(r) == len(value) and all(is_int(c) and c >= 0 for c in r) for r in value)
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
            raise doc.error(f"axis {axis} of {name!r} has no value {_show(value)}; values: {', '.join(map(_show, values))}", (*path, "where", axis))
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
        name = row["experiment"]
        trials = self._experiment(name)
        chosen: set[int] | None = None
        for axis, value in (row.get("where") or {}).items():
            matching = self._matching(name, axis, value)
            chosen = matching if chosen is None else chosen & matching
        positions = range(len(trials)) if chosen is None else sorted(chosen)
        return list(dict.fromkeys(trials[i].trial_id for i in positions))

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
    if key == "train.freeze":
        return canonical_freeze(value, config["model"]["arch"])
    return value


def canonical_context(key: str, config: dict[str, Any]) -> str:
    """What of a config `canonical_value(key, ...)` reads besides the value: equal contexts, equal canonical forms."""
    return config["model"]["arch"] if key == "train.freeze" else ""


__all__ = ["CLAIM_BETTER", "METRICS", "READINGS", "Grid", "GridError", "RowIndex", "TrialSpec", "format_path", "row_trial_ids"]
