"""The grid's tables from a results directory: reproduced numbers beside reported, with verdicts.

    build_tables(grid, results frame, profile) -> [Table]

A row's trials are the ones its experiment expands to (all seeds); missing
ones count as pending (k of n), errored and diverged ones are counted and
named, never dropped silently. Works on partial results. Each cell keeps its
seeds' values, its intervals and its verdict (tlbench/verdicts.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .spec import METRICS, Grid, row_trial_ids
from .verdicts import Summary, number_verdict, summarize


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
    statuses: dict[str, int]  # ok / diverged / error / pending -> count
    cells: list[Cell]
    devices: list[str]
    errors: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    reading: str | None = None  # as stated | as run, where the table holds both readings of a report
    note: str | None = None

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
        parts += [f"{self.statuses[s]} {s}" for s in ("diverged", "error", "pending") if self.statuses.get(s)]
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


def metric_label(metric: dict[str, Any]) -> str:
    return metric.get("label") or METRICS[metric["key"]]


def build_tables(grid: Grid, trials: pd.DataFrame, profile: str | None) -> list[Table]:
    by_id = trials.set_index("trial_id") if len(trials) else trials
    tables = []
    for spec in grid.tables:
        rows = [_row(grid, spec, row, by_id, profile) for row in spec["rows"]]
        report = grid.experiment(spec["rows"][0]["experiment"]).report
        tables.append(Table(spec["id"], spec.get("title", spec["id"]), spec["metrics"], rows, spec.get("extras", []),
                            report, spec.get("claims", []), spec.get("notes", [])))  # fmt: skip
    return tables


def _row(grid: Grid, table: dict[str, Any], row: dict[str, Any], by_id: pd.DataFrame, profile: str | None) -> Row:
    ids = row_trial_ids(grid, row, profile)
    present = [i for i in ids if len(by_id) and i in by_id.index]
    found = by_id.loc[present] if present else pd.DataFrame()
    statuses = {"pending": len(ids) - len(present)}
    if len(found):
        for status, count in found["status"].value_counts().items():
            statuses[str(status)] = int(count)
    usable = found[found["status"].isin(["ok", "diverged"])] if len(found) else found
    cells = []
    for metric in table["metrics"]:
        scale, digits = metric.get("scale", 1), metric.get("digits", 4)
        values = usable[metric["key"]].astype(float).to_numpy() * scale if len(usable) else np.array([])
        reported = (row.get("reported") or {}).get(metric["key"])
        cells.append(Cell(metric["key"], metric_label(metric), reported, summarize(values), digits, scale,
                          runs=row.get("reported_runs", 1), compared=metric.get("compare", True)))
    errors = [str(e) for e in found["error"].dropna().tolist()] if len(found) else []
    devices = sorted(set(usable["device"].dropna().tolist())) if len(usable) else []
    out = Row(row["label"], row["experiment"], ids, statuses, cells, devices, errors, reading=row.get("reading"), note=row.get("note"))
    if len(usable) and table.get("extras"):
        out.extras = _extras(usable)
    out.extras["reported"] = {k: row[f"reported_{k}"] for k in ("per_class", "confusion") if f"reported_{k}" in row}
    return out


def _extras(usable: pd.DataFrame) -> dict[str, Any]:
    """Per-class precision/recall/F1 (mean over seeds) and the confusion matrix (summed over seeds), and
    `per_seed`: each seed's own per-class metrics and confusion counts, the ones a reported
    confusion matrix (one test set's counts) compares with."""
    per_class = [json.loads(p) for p in usable["per_class"].dropna()]
    confusion = [np.asarray(json.loads(c)) for c in usable["confusion"].dropna()]
    out: dict[str, Any] = {"per_seed": [
        {"seed": int(r["seed"]), "per_class": json.loads(r["per_class"]) if isinstance(r["per_class"], str) else None,
         "confusion": json.loads(r["confusion"]) if isinstance(r["confusion"], str) else None}
        for _, r in usable.sort_values("seed").iterrows()
    ]}
    if per_class:
        out["per_class"] = {k: np.mean([p[k] for p in per_class], axis=0).tolist() for k in ("precision", "recall", "f1", "support")}
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
                    "verdict": cell.verdict,
                })  # fmt: skip
        frames[table.id] = pd.DataFrame(lines)
    return frames
