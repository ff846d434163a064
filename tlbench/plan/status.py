"""`grid status`: where a grid run stands, per experiment, read from the results folder alone.

It reads rows (through the results index, which it may refresh) and claims (for
what is running), and claims or moves nothing, so it can watch a run going on
in another terminal or on another machine that shares the folder.

    done       a row with status ok
    diverged   a row with status diverged (a NaN or infinite loss: a result)
    errored    a row with status error or oom (a rerun runs it again)
    running    no finished row, and a live driver holds its claim
    pending    nothing yet
"""

from __future__ import annotations

import datetime
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tlbench.grid import TrialSpec
from tlbench.plan.leases import Leases
from tlbench.results.store import FAILED, Store

COLUMNS = ("done", "diverged", "errored", "running", "pending")
ERRORS_SHOWN = 3  # distinct first lines of errors per experiment


@dataclass
class ExperimentStatus:
    name: str
    counts: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # first line of each error message -> trials
    newest: str | None = None  # finished_at of its newest row (ISO 8601, UTC)

    @property
    def trials(self) -> int:
        return sum(self.counts[c] for c in COLUMNS)


def collect(trials: list[TrialSpec], store: Store, claims: Leases) -> tuple[list[ExperimentStatus], list[tuple[Path, str]]]:
    """Per experiment (in grid order), its trials counted by state; and the result files that could not be read."""
    table, bad = store.read(columns=["trial_id", "status", "error", "finished_at"])
    rows = {r["trial_id"]: r for r in table.to_pylist()}
    live = claims.live()
    by_name: dict[str, ExperimentStatus] = defaultdict(lambda: ExperimentStatus(""))
    for spec in trials:
        entry = by_name[spec.experiment]
        entry.name = spec.experiment
        row = rows.get(spec.trial_id)
        state = _state(row, spec.trial_id in live)
        entry.counts[state] += 1
        if state == "errored" and row.get("error"):
            entry.errors[row["error"].strip().splitlines()[0][:200] if row["error"].strip() else "(empty message)"] += 1
        if row is not None and row.get("finished_at") and (entry.newest is None or row["finished_at"] > entry.newest):
            entry.newest = row["finished_at"]
    return list(by_name.values()), bad


def _state(row: dict | None, claimed: bool) -> str:
    status = None if row is None else row.get("status")
    if status == "ok":
        return "done"
    if status == "diverged":
        return "diverged"
    if status in FAILED:
        return "running" if claimed else "errored"  # a rerun under way
    return "running" if claimed else "pending"


def render(experiments: list[ExperimentStatus], now: datetime.datetime | None = None) -> list[str]:
    """The status as lines: a total, then a line per experiment with its errors' first lines under it."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    total = Counter()
    for e in experiments:
        total.update(e.counts)
    newest = max((e.newest for e in experiments if e.newest), default=None)
    width = max([len("experiment"), *(len(e.name) for e in experiments)])
    lines = [f"{sum(total[c] for c in COLUMNS)} trials: " + ", ".join(f"{total[c]} {c}" for c in COLUMNS)
             + f"; newest finished: {_when(newest, now)}",
             f"{'experiment':{width}s} {'trials':>6s} " + " ".join(f"{c:>8s}" for c in COLUMNS) + "  newest finished"]  # fmt: skip
    for e in experiments:
        lines.append(f"{e.name:{width}s} {e.trials:6d} " + " ".join(f"{e.counts[c]:8d}" for c in COLUMNS) + f"  {_when(e.newest, now)}")
        for message, n in e.errors.most_common(ERRORS_SHOWN):
            lines.append(f"    {n} x {message}")
        if len(e.errors) > ERRORS_SHOWN:
            lines.append(f"    ... {len(e.errors) - ERRORS_SHOWN} other error message(s): `grid list --json` and the rows' `error` column")
    return lines


def _when(stamp: str | None, now: datetime.datetime) -> str:
    if stamp is None:
        return "-"
    try:
        then = datetime.datetime.fromisoformat(stamp)
    except ValueError:  # not ours: show it as it is
        return stamp
    if then.tzinfo is None:
        then = then.replace(tzinfo=datetime.timezone.utc)
    seconds = max(0.0, (now - then).total_seconds())
    ago = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
    return f"{stamp} ({ago} ago)"
