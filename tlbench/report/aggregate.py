"""The grid's tables from a results directory: reproduced numbers beside reported, with verdicts.

    build_tables(grid, results frame, profile) -> [Table]

A row's trials are the ones its experiment expands to (all seeds); missing
ones count as pending (k of n), errored and diverged ones are counted and
named, never dropped silently. Only `ok` trials are measurements: a diverged
trial still has a test accuracy (every NaN logit predicts class 0), so it is
counted beside the cell and kept out of its mean, intervals, verdict and
claims. Works on partial results. Each cell keeps its seeds' values, its
intervals and its verdict (tlbench/report/verdicts.py).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tlbench.grid import Grid
from tlbench.grid.tables import METRICS, PER_CLASS_KEYS, RowIndex
from tlbench.report.verdicts import Summary, number_verdict, summarize
from tlbench.results.provenance import describe

MEASURED = "ok"  # the one status whose numbers are measurements of the row's config


@dataclass
class Cell:
    metric: str
    label: str
    reported: float | None
    seeds: Summary  # our finite values, one per seed, already scaled
    digits: int
    scale: float = 1.0  # the table shows the result field times this (100 for percent)
    runs: int = 1  # the reported number is the mean of this many of its authors' runs
    compared: bool = True  # False: shown beside ours, never judged (a time on the authors' hardware)
    diverged: int = 0  # seeds that diverged: counted beside the cell, never part of its numbers
    averages: tuple[str, ...] = ()  # open axes the row averages on purpose (its configs pool as seeds)

    @property
    def mean(self) -> float | None:
        return self.seeds.mean

    @property
    def std(self) -> float | None:
        return self.seeds.std

    @property
    def n(self) -> int:
        return self.seeds.n

    @property
    def diff(self) -> float | None:
        if self.mean is None or self.reported is None:
            return None
        return self.mean - self.reported

    @property
    def pi(self) -> tuple[float, float] | tuple[None, None]:
        """Our 95% prediction interval for what the reported number is: the mean of `runs` runs."""
        return self.seeds.prediction_interval(self.runs)

    @property
    def verdict(self) -> str | None:
        """consistent / above / below / one run / pending, or `not compared`; None where nothing was
        reported. The reported number is known to half a unit of its last printed digit."""
        if not self.compared and self.reported is not None:
            return "not compared"
        if self.n == 0 and self.diverged and self.reported is not None:
            return "diverged"  # not pending: the seeds ran, and none gave a measurement
        return number_verdict(self.reported, self.seeds, resolution=0.5 * 10**-self.digits, runs=self.runs)

    @property
    def flagged(self) -> bool:
        """The reported number lies outside our 95% prediction interval for one run."""
        return self.verdict in ("above", "below")


@dataclass
class Row:
    label: str
    experiment: str
    trial_ids: list[str]
    statuses: dict[str, int]  # ok / diverged / error / oom / pending -> count
    cells: list[Cell]
    devices: list[str]
    errors: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    reading: str | None = None  # as stated | as run, where the table holds both readings of a report
    note: str | None = None
    commits: list[str] = field(default_factory=list)  # the code its numbers came from (provenance.describe)
    machines: list[str] = field(default_factory=list)  # the accelerators they ran on
    feature_cached: bool = False  # some of its trials ran on the feature cache: their times are not full runs
    warnings: list[str] = field(default_factory=list)  # the loader's, as its trials recorded them (data_warning)

    @property
    def title(self) -> str:
        """The label with its reading, where it has one: two rows of one reported number tell apart."""
        return f"{self.label} [{self.reading}]" if self.reading else self.label

    @property
    def expected(self) -> int:
        return len(self.trial_ids)

    def status_text(self) -> str:
        done = self.statuses.get("ok", 0) + self.statuses.get("diverged", 0)
        parts = [f"{done} trial{'' if done == 1 else 's'}" if done == self.expected else f"{done} of {self.expected} done"]
        parts += [f"{self.statuses[s]} {s}" for s in ("diverged", "error", "oom", "pending") if self.statuses.get(s)]
        return ", ".join(parts)


@dataclass
class Table:
    id: str
    title: str
    metrics: list[dict[str, Any]]
    rows: list[Row]
    extras: list[str]
    report: str = ""  # the report file its rows' experiments come from
    claims: list[dict[str, Any]] = field(default_factory=list)  # the report's comparisons of its rows
    notes: list[str] = field(default_factory=list)  # the grid table's notes: readings, selections, why numbers differ

    @property
    def readings(self) -> list[str | None]:
        """The readings its rows follow ("as stated", "as run"), or [None] for a table with one reading."""
        return sorted({r.reading for r in self.rows if r.reading}) or [None]

    def mixes(self) -> list[str]:
        """Warnings where its numbers came from several commits or machines: a difference between two
        of its rows may then be the code's or the hardware's, not the config's."""
        out = []
        for what, found in (
            ("commits", {c for r in self.rows for c in r.commits}),
            ("machines", {m for r in self.rows for m in r.machines}),
        ):
            if len(found) > 1:
                out.append(f"its numbers come from {len(found)} {what}: {'; '.join(sorted(found))}")
        return out


def metric_label(metric: dict[str, Any]) -> str:
    return metric.get("label") or METRICS[metric["key"]]


def build_tables(grid: Grid, trials: pd.DataFrame, profile: str | None) -> list[Table]:
    rows = RowIndex(grid, profile)
    found = TrialColumns(trials, [m["key"] for t in grid.tables for m in t["metrics"]])
    tables = []
    for spec in grid.tables:
        built = [_row(spec, row, rows.trial_ids(row), found) for row in spec["rows"]]
        report = grid.experiment(spec["rows"][0]["experiment"]).report
        tables.append(Table(spec["id"], spec.get("title", spec["id"]), spec["metrics"], built, spec.get("extras", []),
                            report, spec.get("claims", []), spec.get("notes", [])))  # fmt: skip
    return tables


class TrialColumns:
    """The results' columns a table needs, as arrays, with trial id -> position: a row takes its
    trials' values with one array index each, not a DataFrame lookup (thousands of rows stay fast)."""

    TEXT = ("status", "error", "device", "per_class", "confusion", "accelerator", "feature_cache", "data_warning")

    def __init__(self, trials: pd.DataFrame, metrics: list[str]):
        self.position = pd.Index(trials["trial_id"] if len(trials) else [], dtype=object)
        self.text = {c: np.asarray(trials[c].astype(object).where(trials[c].notna(), None), dtype=object) if len(trials)
                     else np.array([], dtype=object) for c in self.TEXT}  # fmt: skip
        self.text["commit"] = np.asarray(commit_labels(trials), dtype=object)
        self.numbers = {m: trials[m].astype(float).to_numpy() if len(trials) else np.array([]) for m in set(metrics)}
        self.seeds = trials["seed"].to_numpy() if len(trials) else np.array([], dtype=int)

    def positions(self, ids: list[str]) -> np.ndarray:
        where = self.position.get_indexer(ids) if len(self.position) else np.full(len(ids), -1)
        return where[where >= 0]


def _row(table: dict[str, Any], row: dict[str, Any], ids: list[str], found: TrialColumns) -> Row:
    present = found.positions(ids)
    status = found.text["status"][present]
    statuses = {"pending": len(ids) - len(present)}
    for value, count in Counter(status.tolist()).items():
        statuses[str(value)] = count
    usable = present[status == MEASURED]  # diverged trials ran, but their numbers measure nothing
    averages = tuple(row.get("averages", ()))
    cells = []
    for metric in table["metrics"]:
        scale, digits = metric.get("scale", 1), metric.get("digits", 4)
        values = found.numbers[metric["key"]][usable] * scale
        reported = (row.get("reported") or {}).get(metric["key"])
        cells.append(
            Cell(
                metric["key"],
                metric_label(metric),
                reported,
                summarize(values),
                digits,
                scale,
                runs=row.get("reported_runs", 1),
                compared=metric.get("compare", True),
                diverged=statuses.get("diverged", 0),
                averages=averages,
            )
        )
    errors = [str(e) for e in found.text["error"][present] if e is not None]
    devices = sorted({d for d in found.text["device"][usable] if d is not None})
    out = Row(
        row["label"],
        row["experiment"],
        ids,
        statuses,
        cells,
        devices,
        errors,
        reading=row.get("reading"),
        note=row.get("note"),
        commits=sorted(set(found.text["commit"][usable])),
        machines=sorted({m for m in found.text["accelerator"][usable] if m}),
        feature_cached=any(str(c).startswith(("built", "hit")) for c in found.text["feature_cache"][usable] if c),
        warnings=sorted({w for w in found.text["data_warning"][usable] if w}),
    )
    if len(usable) and table.get("extras"):
        out.extras = _extras(found.seeds[usable], found.text["per_class"][usable], found.text["confusion"][usable])
    out.extras["reported"] = {k: row[f"reported_{k}"] for k in ("per_class", "confusion") if f"reported_{k}" in row}
    return out


def commit_labels(trials: pd.DataFrame) -> list[str]:
    """Each trial's code as `provenance.describe` names it ("no git commit" for rows without one)."""
    if not len(trials):
        return []
    commits = trials["git_commit"].astype(object).where(trials["git_commit"].notna(), None)
    dirty = trials["git_dirty"].astype(object).where(trials["git_dirty"].notna(), None)
    return [describe(c, d) for c, d in zip(commits, dirty)]


def _extras(seeds: np.ndarray, per_class_json: np.ndarray, confusion_json: np.ndarray) -> dict[str, Any]:
    """Per-class precision/recall/F1 (mean over seeds) and the confusion matrix (summed over seeds), and
    `per_seed`: each seed's own per-class metrics and confusion counts, the ones a reported
    confusion matrix (one test set's counts) compares with. Inputs: one entry per usable trial (JSON or None)."""
    per_class = [json.loads(p) for p in per_class_json if p is not None]
    confusion = [np.asarray(json.loads(c)) for c in confusion_json if c is not None]
    out: dict[str, Any] = {
        "per_seed": [
            {
                "seed": int(seeds[i]),
                "per_class": json.loads(per_class_json[i]) if per_class_json[i] is not None else None,
                "confusion": json.loads(confusion_json[i]) if confusion_json[i] is not None else None,
            }
            for i in np.argsort(seeds, kind="stable")
        ]
    }
    if per_class:
        out["per_class"] = {k: np.mean([p[k] for p in per_class], axis=0).tolist() for k in PER_CLASS_KEYS}
        out["per_class"]["classes"] = per_class[0].get("classes")
    if confusion:
        out["confusion"] = np.sum(confusion, axis=0).tolist()
        out["confusion_seeds"] = len(confusion)
    return out


def tables_frame(tables: list[Table]) -> dict[str, pd.DataFrame]:
    """One long frame per table: a line per (row, metric) with reported and reproduced side by side,
    our intervals and the verdict. One line per metric keeps every column one meaning (`reported`,
    `ci_low`, ...) however many metrics a table has."""
    frames = {}
    for table in tables:
        lines = []
        for row in table.rows:
            for cell in row.cells:
                (ci_low, ci_high), (pi_low, pi_high) = cell.seeds.ci, cell.pi
                lines.append({
                    "table": table.id, "row": row.label, "reading": row.reading, "metric": cell.metric, "label": cell.label,
                    "reported": cell.reported, "reproduced": cell.mean, "std": cell.std, "n": cell.n,
                    "expected": row.expected, "diff": cell.diff, "flag": cell.flagged, "status": row.status_text(),
                    "device": "; ".join(row.devices),
                    "ci_low": ci_low, "ci_high": ci_high, "pi_low": pi_low, "pi_high": pi_high,
                    "verdict": cell.verdict, "diverged": cell.diverged, "averages": ", ".join(cell.averages) or None,
                })  # fmt: skip
        frames[table.id] = pd.DataFrame(lines)
    return frames
