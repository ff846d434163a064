"""`python -m tlbench.report`: the grid's tables, verdicts, claims and figures from a results directory.

Writes <out>/index.md and <out>/index.html (one self-contained file: figures
embedded, CSS inline), both from the Jinja2 templates in tlbench/report/templates/;
<out>/tables/<id>.csv (reported and reproduced side by side, with intervals and
verdicts), <out>/tables/claims.csv and <out>/figures/*.png. Reads partial
results as they are; exit 2 on a bad grid file.
"""

from __future__ import annotations

import argparse
import base64
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import pyarrow as pa

from tlbench.grid import Grid, GridError
from tlbench.grid.cli import check_results_folder
from tlbench.report import figures
from tlbench.report.aggregate import Cell, Row, Table, build_tables, commit_labels, metric_label, tables_frame
from tlbench.report.claims import ClaimResult, claims_frame, evaluate_claims
from tlbench.report.verdicts import LEVEL, MAX_SEEDS, POWER, Comparison
from tlbench.results.regular_files import replace_file
from tlbench.results.store import DONE, Store

SMOKE_WARNING = ("This report ran on synthetic data with random weights. Its verdicts are computed exactly as for "
                 "a real run, but they are about synthetic data: they test the pipeline, and say nothing about "
                 "the reports' numbers or claims.")  # fmt: skip
SHOWN_ROWS = 100  # rows of a table on the page; every row is in its CSV
NUMBER_COLUMNS = ("consistent", "above", "below", "one run", "pending", "diverged")
CLAIM_COLUMNS = ("supported", "reversed", "unresolved", "pending", "untested", "not compared")


def fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def cell_text(cell: Cell) -> str:
    """`85.0 ± 7.1 (2)`; a diverged seed is named, never counted: `85.0 ± 7.1 (2; 1 diverged)`, `– (2 diverged)`;
    a row that averages open axes on purpose says so: `85.0 ± 7.1 (4; averaged over train.lr)`."""
    beside = ([f"{cell.diverged} diverged"] if cell.diverged else []) + (
        [f"averaged over {', '.join(cell.averages)}"] if cell.averages else []
    )
    if cell.mean is None:
        return "–" + (f" ({'; '.join(beside)})" if beside else "")
    spread = f" ± {cell.std:.{cell.digits}f}" if cell.std is not None and cell.n > 1 else ""
    return f"{cell.mean:.{cell.digits}f}{spread} ({'; '.join([str(cell.n), *beside])})"


def diff_text(cell: Cell) -> str:
    return "–" if cell.diff is None else f"{cell.diff:+.{cell.digits}f}"


def interval_text(bounds: tuple[float | None, float | None], digits: int) -> str:
    low, high = bounds
    return "–" if low is None else f"{low:.{digits}f}–{high:.{digits}f}"


def synthetic_profile(trials: pd.DataFrame) -> bool:
    return (
        bool(len(trials))
        and bool(((trials["dataset.source"] == "synthetic") | (trials["model.weights"] == "none")).all())
        and bool((trials["dataset.source"] == "synthetic").any())
    )


def extra_tables(table: Table, rows: list[Row] | None = None) -> list[tuple[str, list[str], list[list[str]]]]:
    """The per-class metrics and confusion matrices shown under a table (of `rows`, default all): (caption, header, rows) each."""
    out = []
    for row in table.rows if rows is None else rows:
        per_class = row.extras.get("per_class")
        if per_class and "per_class" in table.extras:
            names = per_class.get("classes") or [str(i) for i in range(len(per_class["precision"]))]
            lines = [
                [n, f"{p:.3f}", f"{r:.3f}", f"{f:.3f}", f"{s:.0f}"]
                for n, p, r, f, s in zip(names, per_class["precision"], per_class["recall"], per_class["f1"], per_class["support"])
            ]
            out.append((f"Per class, {row.label} (mean over seeds):", ["class", "precision", "recall", "F1", "support"], lines))
        reported = row.extras.get("reported", {})
        if "per_class" in table.extras and reported.get("per_class"):
            out.append(per_seed_per_class(row, reported["per_class"]))
        if "confusion" in table.extras:  # one test set's counts: per seed, never summed over seeds
            for seed in row.extras.get("per_seed", []):
                if seed["confusion"] is None:
                    continue
                theirs = reported.get("confusion")
                caption = (
                    f"Confusion matrix, {row.label}, seed {seed['seed']} (rows true, columns predicted"
                    + ("; ours / reported" if theirs else "")
                    + "):"
                )
                lines = [
                    [str(i), *(f"{c} / {theirs[i][j]}" if theirs else str(c) for j, c in enumerate(line))]
                    for i, line in enumerate(seed["confusion"])
                ]
                out.append((caption, ["true \\ pred", *map(str, range(len(seed["confusion"])))], lines))
    return out


def per_seed_per_class(row: Any, reported: dict[str, dict[str, float]]) -> tuple[str, list[str], list[list[str]]]:
    """Each seed's per-class precision / recall / F1 / support beside the reported ones (ours / reported)."""
    lines = []
    for seed in row.extras.get("per_seed", []):
        ours = seed["per_class"]
        if ours is None:
            continue
        names = ours.get("classes") or [str(i) for i in range(len(ours["precision"]))]
        for i, name in enumerate(names):
            theirs = reported.get(name, {})
            cells = [f"{ours[k][i]:.3f} / {fmt(theirs.get(k), 2)}" for k in ("precision", "recall", "f1")]
            lines.append([str(seed["seed"]), name, *cells, f"{ours['support'][i]:.0f} / {fmt(theirs.get('support'), 0)}"])
    return (f"Per class and seed, {row.label} (ours / reported):", ["seed", "class", "precision", "recall", "F1", "support"], lines)


def scoreboard(tables: list[Table], claims: list[ClaimResult]) -> list[dict[str, Any]]:
    """Per report (and per reading, side by side, where its tables follow both): verdict counts.

    A row or claim with no reading belongs to every reading of its report. The report's own claims and
    ours (read off its tables: claims.OWN_PREFIX) are counted apart."""
    lines = []
    for report in dict.fromkeys(t.report for t in tables):
        mine = [t for t in tables if t.report == report]
        readings = sorted({r for t in mine for r in t.readings if r}) or [None]
        for reading in readings:
            numbers = Counter(c.verdict for t in mine for r in t.rows if r.reading in (reading, None) for c in r.cells if c.verdict)
            mine_claims = [c for c in claims if c.report == report and c.reading in (reading, None)]
            tested, ours = (Counter(c.short_verdict for c in mine_claims if c.source == source) for source in ("report", "ours"))
            lines.append({"report": report, "reading": reading, "numbers": [numbers.get(k, 0) for k in NUMBER_COLUMNS],
                          "claims": [tested.get(k, 0) for k in CLAIM_COLUMNS], "our_claims": [ours.get(k, 0) for k in CLAIM_COLUMNS]})  # fmt: skip
    return lines


FIGURE_CAPTIONS = {
    "intervals": "Per row and metric: our mean (dot), its 95% CI (thick), the 95% prediction interval for one run (thin) "
                 "and the reported number (red diamond). A diamond off the thin line is above / below.",
    "table": "The first metric along the axis the rows step through: ours (mean ± std over seeds) solid, reported dashed.",
    "misclassified": "Misclassified test images of the best row's best seed.",
    "curves": "Learning curves: mean over seeds with a min–max band.",
    "reported-vs-reproduced": "Every accuracy with both numbers: reported against ours (mean ± std); the diagonal is agreement.",
}  # fmt: skip


def figure_view(path: Path) -> dict[str, Any]:
    kind = next((k for k in FIGURE_CAPTIONS if path.stem == k or path.stem.startswith(k + "-")), None)
    return {"path": path, "stem": path.stem, "name": path.name, "caption": FIGURE_CAPTIONS.get(kind, "")}


def table_view(table: Table, figure_paths: list[Path], claims: list[ClaimResult]) -> dict[str, Any]:
    """What a template needs of one table: its cells as text, with the verdict of each.

    A table of more than SHOWN_ROWS rows shows its first SHOWN_ROWS (their errors and extras
    too) and says how many more its CSV holds: a page of thousands of rows reads as none."""
    shown = table.rows[:SHOWN_ROWS]
    rows = []
    for row in shown:
        cells = [{"ours": cell_text(c), "reported": fmt(c.reported, c.digits), "diff": diff_text(c),
                  "ci": interval_text(c.seeds.ci, c.digits), "pi": interval_text(c.pi, c.digits), "verdict": c.verdict or "–"}
                 for c in row.cells]  # fmt: skip
        rows.append({"label": row.label, "reading": row.reading, "note": row.note, "cells": cells, "status": row.status_text(),
                     "device": "; ".join(row.devices) or "–", "errors": [e[:300] for e in row.errors[:3]],
                     "warnings": row.warnings})  # fmt: skip
    return {"id": table.id, "title": table.title, "report": table.report, "anchor": Markdown(f"table-{figures.slug(table.id)}"), "notes": table.notes,
            "mixes": table.mixes(),
            "metrics": [metric_label(m) for m in table.metrics], "rows": rows, "has_readings": table.readings != [None],
            "hidden_rows": len(table.rows) - len(shown), "csv": f"tables/{figures.file_slug(table.id)}.csv",
            "extras": extra_tables(table, shown), "figures": [figure_view(p) for p in figure_paths],
            "claims": Counter(c.short_verdict for c in claims if c.table == table.id and c.source == "report"),
            "our_claims": Counter(c.short_verdict for c in claims if c.table == table.id and c.source == "ours"),
            "report_anchor": _report_anchor(table.report)}  # fmt: skip


def _report_anchor(report: str) -> Markdown:
    return Markdown(f"claims-{figures.slug(report)}")  # a slug: letters, digits, . _ -, the same in HTML and Markdown


def claims_by_report(claims: list[ClaimResult]) -> list[dict[str, Any]]:
    return [
        {"report": report, "anchor": _report_anchor(report), "claims": [claim_view(c) for c in claims if c.report == report]}
        for report in dict.fromkeys(c.report for c in claims)
    ]


def claim_view(claim: ClaimResult) -> dict[str, Any]:
    r = claim.result
    return {**claim.as_dict(), "diff_text": "–" if r.diff is None else f"{r.diff:+.{claim.digits}f}",
            "p_text": "–" if r.p_value is None else (f"{r.p_value:.3f}" if r.p_value >= 0.001 else f"{r.p_value:.1e}"),
            "seeds_text": _seeds_text(r), "n_text": _claim_n_text(claim),
            "short": claim.short_verdict, "better_word": "higher" if claim.better == "higher" else "lower",
            "metric_label": claim.metric_label}  # fmt: skip


def _claim_n_text(claim: ClaimResult) -> str:
    """Seeds tested per side, and the diverged seeds left out: `3, 2 (1 diverged)`."""
    r, diverged = claim.result, claim.diverged_a + claim.diverged_b
    return f"{r.n_a}, {r.n_b}" + (f" ({claim.diverged_a}, {claim.diverged_b} diverged)" if diverged else "")


def _seeds_text(result: Comparison) -> str:
    if result.seeds_to_resolve is not None:
        return str(result.seeds_to_resolve)
    tested = result.verdict.startswith("unresolved") and min(result.n_a, result.n_b) > 1 and result.diff
    return f"> {MAX_SEEDS}" if tested else "–"  # an effect too small for any practical number of seeds


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


class Markdown(str):
    """Text already written as Markdown (a slug, a code span, a row of escaped cells): index.md writes it as is."""


# What Markdown (CommonMark, and GitHub's ~ and $) reads as syntax or raw HTML; `\` first, so escapes stay escapes.
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#&$~])")


def markdown_text(value: Any) -> Markdown:
    """Any value as literal Markdown text, as autoescape makes it literal HTML: a newline becomes a space (it would
    end a table row or start a block), and each character Markdown reads as syntax or raw HTML is backslash-escaped."""
    if isinstance(value, Markdown):
        return value
    return Markdown(MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).splitlines())))


def markdown_cells(values: list[Any]) -> Markdown:
    """A table row's cells, each escaped, between the pipes that separate them."""
    return Markdown(" | ".join(markdown_text(v) for v in values))


def markdown_code(value: Any) -> Markdown:
    """A code span whose fence outruns any run of backticks inside it."""
    text = " ".join(str(value).splitlines())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return Markdown(f"{fence} {text} {fence}" if "`" in text else f"{fence}{text}{fence}")


def templates(markdown: bool = False) -> jinja2.Environment:
    """The page templates: HTML autoescaped, Markdown escaped the same way (every `{{ }}` through markdown_text)."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("tlbench.report", "templates"), autoescape=jinja2.select_autoescape(["html.j2"]),
                             finalize=markdown_text if markdown else None,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)  # fmt: skip
    env.filters["data_uri"] = _data_uri
    env.filters.update(md=markdown_text, cells=markdown_cells, code=markdown_code)
    return env


def write_report(grid: Grid, results: Path, out: Path, profile: str | None) -> dict[str, object]:
    store = Store(results)
    table_arrow, bad = store.read()
    trials = table_arrow.to_pandas()
    if profile is None:  # the profile the results were run with
        seen = Counter(trials["profile"].dropna()) if len(trials) else Counter()
        profile = seen.most_common(1)[0][0] if seen else "full"
        if profile != "full" and profile not in grid.profiles:
            print(f"warning: the results were run with profile {profile!r}, which {grid.file} lacks; using full", file=sys.stderr)
            profile = "full"
    tables = build_tables(grid, trials, profile)
    claims = evaluate_claims(tables)
    epochs = store.read_epochs().to_pandas()
    synthetic = synthetic_profile(trials)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    for table_id, frame in tables_frame(tables).items():
        # ids are checked at load; the slug keeps it so
        replace_file(out / "tables" / f"{figures.file_slug(table_id)}.csv", frame.to_csv(index=False))
    replace_file(out / "tables" / "claims.csv", claims_frame(claims).to_csv(index=False))
    figure_dir = out / "figures"
    views = []
    for spec, table in zip(grid.tables, tables):
        own = [figures.table_intervals(table, figure_dir), figures.table_figure(spec, table, figure_dir)]
        if "misclassified" in table.extras:
            own.append(figures.misclassified(table, trials, figure_dir))
        views.append(table_view(table, [p for p in own if p is not None], claims))
    general = [figures.reported_vs_reproduced(tables, figure_dir)]
    for experiment in sorted(set(trials["experiment"])) if len(trials) else []:
        general.append(figures.learning_curves(experiment, trials, epochs, figure_dir))
    general = [figure_view(p) for p in general if p is not None]
    done = int(trials["status"].isin(DONE).sum()) if len(trials) else 0
    header = (f"Grid {grid.file} (sha256 {grid.sha256}), profile {profile}, results {results}: "
              f"{done} trials done, {len(trials) - done} failed.")  # fmt: skip
    notices = result_notices(grid, store, table_arrow, bad)
    mixed = [t.id for t in tables if t.mixes()]
    if mixed:
        notices.append(f"{len(mixed)} table(s) mix numbers from several commits or machines (each says which): {', '.join(mixed)}")
    context = {
        "header": header, "provenance": provenance_lines(trials), "synthetic": synthetic, "smoke_warning": SMOKE_WARNING, "notices": notices,
        "scoreboard": scoreboard(tables, claims), "number_columns": NUMBER_COLUMNS, "claim_columns": CLAIM_COLUMNS,
        "tables": views, "claims": claims_by_report(claims), "figures": general, "with_readings": any(c.reading for c in claims),
        "level": round(LEVEL * 100), "power": round(POWER * 100),
    }  # fmt: skip
    replace_file(out / "index.md", templates(markdown=True).get_template("report.md.j2").render(**context))
    replace_file(out / "index.html", templates().get_template("report.html.j2").render(**context))
    n_figures = len(general) + sum(len(v["figures"]) for v in views)
    return {"tables": len(tables), "figures": n_figures, "claims": len(claims), "notices": notices, "profile": profile}


def provenance_lines(trials: pd.DataFrame) -> list[str]:
    """Which code and which machines produced the finished trials, most trials first."""
    done = trials[trials["status"].isin(DONE)] if len(trials) else trials
    if not len(done):
        return []

    def counted(values: list[str]) -> str:
        return "; ".join(f"{value} ({n} trial{'' if n == 1 else 's'})" for value, n in Counter(values).most_common())

    machines = [f"{a or 'unknown machine'}" for a in done["accelerator"].astype(object).where(done["accelerator"].notna(), None)]
    hosts = done["hostname"].nunique()
    packages = done["packages_sha256"].dropna().nunique()
    return [
        f"Code: {counted(commit_labels(done))}.",
        f"Machines: {counted(machines)}; {hosts} host{'' if hosts == 1 else 's'}"
        + (f"; {packages} different package sets (packages_sha256)." if packages > 1 else "."),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tlbench.report", description=__doc__)
    parser.add_argument("--grid", default="grid/reports.yaml")
    parser.add_argument("--results", default="results")
    parser.add_argument("--out", help="report folder (default <results>/report)")
    parser.add_argument("--profile", help="profile the results were run with (default: the one recorded in them)")
    args = parser.parse_args(argv)
    try:
        check_results_folder(args.results)
        grid = Grid.load(args.grid)
        if args.profile is not None:
            grid.expand(profile=args.profile)  # an unknown profile: exit 2 naming the valid ones
    except GridError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = Path(args.results)
    out = Path(args.out) if args.out else results / "report"
    summary = write_report(grid, results, out, args.profile)
    for notice in summary["notices"]:
        print(f"warning: {notice}", file=sys.stderr)
    print(
        f"wrote {out}/index.md, index.html, {summary['tables']} tables, {summary['claims']} claims, "
        f"{summary['figures']} figures (profile {summary['profile']})"
    )
    return 0


def result_notices(grid: Grid, store: Store, table: pa.Table, bad: list[tuple[Path, str]]) -> list[str]:
    """What a reader of the report should know about the results it read: missing, unreadable, another grid file's."""
    if not store.root.is_dir():
        return [f"results folder {store.root} does not exist: every table is empty (pass --results DIR)"]
    notices = [f"unreadable result {path} ({problem}): its trial counts as pending" for path, problem in bad]
    notices += [f"unreadable epochs {path} ({problem}): its learning curve is left out" for path, problem in store.bad_epoch_files()]
    notices += [f"{path} holds a row an earlier run could not write; `grid run` writes it" for path in store.unwritten()]
    hashes = Counter(h for h in table.column("grid_sha256").to_pylist() if h is not None)
    foreign = sum(n for h, n in hashes.items() if h != grid.sha256)
    if foreign:
        others = ", ".join(sorted(h for h in hashes if h != grid.sha256))
        notices.append(
            f"{foreign} of {table.num_rows} results were run from another grid file (grid_sha256 {others}; "
            f"{grid.file} is {grid.sha256}): rows are matched by config, "
            f"but the tables' layout and reported numbers are this file's"
        )
    return notices


__all__ = ["main", "write_report"]
