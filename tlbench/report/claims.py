"""The reports' claims about their own tables, tested on our seeds.

    evaluate_claims([Table]) -> [ClaimResult] --claims_frame--> tables/claims.csv

A claim (grid file, `tables[].claims`) says row_a beats row_b on one metric.
Welch's t-test on our seeds says `supported`, `reversed` or `unresolved at n
seeds` with the seeds per row that would resolve it (tlbench/report/verdicts.py). A
table that follows both readings of its report has its claims tested within
each reading: the rows with the claim's labels and that reading (or no reading).

Two kinds are counted apart: the report's own statements, and comparisons we
read off its table, whose text starts with OWN_PREFIX ("From the table: ...").
A claim with `untested: <why>` is the report's "no difference" statement: listed,
never tested. A claim on a time (verdicts.TIME_METRICS) is judged only between
rows whose trials ran the same way (no feature cache on either side), else it
is `not compared` with the reason. Diverged seeds are not in the cells' values
(aggregate.py), so not in the test; a claim counts them beside n, and one whose
side has only diverged seeds is `unresolved`, not `pending` (they ran).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from tlbench.report.aggregate import Cell, Row, Table
from tlbench.report.verdicts import TIME_METRICS, Comparison, compare, not_compared, timing_difference

CLAIM_COLUMNS = ["report", "table", "claim", "row_a", "row_b", "diff", "p_value", "n_a", "n_b", "verdict",
                 "metric", "better", "reading", "seeds_to_resolve", "mean_a", "mean_b", "source",
                 "diverged_a", "diverged_b"]  # fmt: skip
# A claim whose text starts so is ours, read off the report's table, not a statement the report makes.
OWN_PREFIX = "From the table:"


@dataclass
class ClaimResult:
    report: str
    table: str
    claim: str
    row_a: str
    row_b: str
    metric: str
    metric_label: str
    better: str
    reading: str | None
    mean_a: float | None
    mean_b: float | None
    digits: int
    result: Comparison
    diverged_a: int = 0  # seeds of row_a that diverged: left out of the test
    diverged_b: int = 0

    @property
    def short_verdict(self) -> str:
        """supported / reversed / unresolved / pending / untested / not compared: what a scoreboard counts."""
        return self.result.verdict.split(" at ")[0].split(":")[0]

    @property
    def source(self) -> str:
        """report: a statement of the report's; ours: a comparison we read off its table (OWN_PREFIX)."""
        return "ours" if self.claim.startswith(OWN_PREFIX) else "report"

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "report": self.report, "table": self.table, "claim": self.claim, "row_a": self.row_a, "row_b": self.row_b,
            "diff": r.diff, "p_value": r.p_value, "n_a": r.n_a, "n_b": r.n_b, "verdict": r.verdict,
            "metric": self.metric, "better": self.better, "reading": self.reading,
            "seeds_to_resolve": r.seeds_to_resolve, "mean_a": self.mean_a, "mean_b": self.mean_b, "source": self.source,
            "diverged_a": self.diverged_a, "diverged_b": self.diverged_b,
        }  # fmt: skip


def evaluate_claims(tables: list[Table]) -> list[ClaimResult]:
    out = []
    for table in tables:
        for claim in table.claims:
            metric = claim.get("metric", table.metrics[0]["key"])
            column = [m["key"] for m in table.metrics].index(metric)
            if "untested" in claim:
                out.append(_untested(table, claim, metric, column))
                continue
            for reading in table.readings:
                a, b = _row(table, claim["row_a"], reading), _row(table, claim["row_b"], reading)
                if a is None or b is None:  # a label that only one reading has
                    continue
                cell_a, cell_b = a.cells[column], b.cells[column]
                better = claim.get("better", "higher")
                out.append(ClaimResult(table.report, table.id, claim["claim"], a.label, b.label, metric, cell_a.label, better, reading,
                                       cell_a.mean, cell_b.mean, cell_a.digits, _judge(column, a, b, better),
                                       cell_a.diverged, cell_b.diverged))  # fmt: skip
    return out


def _judge(column: int, a: Row, b: Row, better: str) -> Comparison:
    """Welch's test of a over b; a time only where both rows' trials ran the same way."""
    seeds_a, seeds_b = a.cells[column].seeds, b.cells[column].seeds
    if a.cells[column].metric in TIME_METRICS and seeds_a.n and seeds_b.n:
        why = timing_difference(a.label, a.feature_cached, b.label, b.feature_cached)
        if why:
            return not_compared(seeds_a, seeds_b, why)
    return _diverged_sides(compare(seeds_a, seeds_b, better), (a.label, a.cells[column]), (b.label, b.cells[column]))


def _diverged_sides(result: Comparison, *sides: tuple[str, Cell]) -> Comparison:
    """A claim with a side whose every seed diverged is unresolved (its seeds ran), not pending."""
    gone = [label for label, cell in sides if cell.n == 0 and cell.diverged]
    if result.verdict != "pending" or not gone:
        return result
    return replace(result, verdict=f"unresolved: every seed of {' and '.join(map(repr, gone))} diverged")


def _untested(table: Table, claim: dict[str, Any], metric: str, column: int) -> ClaimResult:
    """A "no difference" statement: listed with the reason it is not tested, never counted as tested."""
    spec = table.metrics[column]
    return ClaimResult(table.report, table.id, claim["claim"], claim.get("row_a", ""), claim.get("row_b", ""), metric,
                       spec.get("label") or metric, claim.get("better", "higher"), None, None, None, spec.get("digits", 4),
                       Comparison(None, None, 0, 0, f"untested: {claim['untested']}", None))  # fmt: skip


def _row(table: Table, label: str, reading: str | None) -> Row | None:
    """The row with this label under this reading; a row with no reading belongs to both."""
    matches = [r for r in table.rows if r.label == label and r.reading in (reading, None)]
    return next((r for r in matches if r.reading == reading), matches[0] if matches else None)


def claims_frame(results: list[ClaimResult]) -> pd.DataFrame:
    return pd.DataFrame([r.as_dict() for r in results], columns=CLAIM_COLUMNS)
