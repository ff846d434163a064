"""`python -m tlbench.report`: the grid's tables and figures from a results directory.

Writes <out>/index.md, <out>/index.html (figures embedded), <out>/tables/<id>.csv
(reported and reproduced side by side) and <out>/figures/*.png. Reads partial
results as they are; exit 2 on a bad grid file.
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

from . import figures
from .aggregate import Cell, Table, build_tables, metric_label, tables_frame
from .spec import Grid, GridError
from .store import Store

SMOKE_WARNING = ("**This report ran on synthetic data with random weights.** It tests the pipeline, not the "
                 "findings: its numbers say nothing about the reports' claims.")  # fmt: skip


STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px}"
    ".flag{background:#fde2e2}.warn{background:#fff3cd;padding:.8em;border:1px solid #e0c36a}img{max-width:100%}"
)


def fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def cell_text(cell: Cell) -> str:
    if cell.mean is None:
        return "–"
    spread = f" ± {cell.std:.{cell.digits}f}" if cell.std is not None and cell.n > 1 else ""
    return f"{cell.mean:.{cell.digits}f}{spread} ({cell.n})"


def diff_text(cell: Cell) -> str:
    if cell.diff is None:
        return "–"
    return f"{cell.diff:+.{cell.digits}f}" + (" ⚠" if cell.flagged else "")


def synthetic_profile(trials: pd.DataFrame) -> bool:
    return bool(len(trials)) and bool(((trials["dataset.source"] == "synthetic") | (trials["model.weights"] == "none")).all()) \
        and bool((trials["dataset.source"] == "synthetic").any())


def markdown_table(table: Table, synthetic: bool) -> str:
    lines = [f"## {table.id}: {table.title}", ""]
    if synthetic:
        lines += ["_Synthetic data, random weights: a pipeline check, not a reproduction._", ""]
    header = ["row"]
    for metric in table.metrics:
        header += [f"{metric_label(metric)}: ours", "reported", "diff"]
    header += ["trials", "device"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in table.rows:
        cells = []
        for cell in row.cells:
            cells += [cell_text(cell), fmt(cell.reported, cell.digits), diff_text(cell)]
        lines.append("| " + " | ".join([row.label, *cells, row.status_text(), "; ".join(row.devices) or "–"]) + " |")
    for row in table.rows:
        for error in row.errors[:3]:
            lines.append(f"\n- error in {row.label}: `{error[:300]}`")
    lines += extras_markdown(table)
    return "\n".join(lines) + "\n"


def extra_tables(table: Table) -> list[tuple[str, list[str], list[list[str]]]]:
    """The per-class metrics and confusion matrices shown under a table: (caption, header, rows) each."""
    out = []
    for row in table.rows:
        per_class = row.extras.get("per_class")
        if per_class and "per_class" in table.extras:
            names = per_class.get("classes") or [str(i) for i in range(len(per_class["precision"]))]
            lines = [[n, f"{p:.3f}", f"{r:.3f}", f"{f:.3f}", f"{s:.0f}"]
                     for n, p, r, f, s in zip(names, per_class["precision"], per_class["recall"], per_class["f1"], per_class["support"])]
            out.append((f"Per class, {row.label} (mean over seeds):", ["class", "precision", "recall", "F1", "support"], lines))
        confusion = row.extras.get("confusion")
        if confusion and "confusion" in table.extras:
            caption = (f"Confusion matrix, {row.label} (rows true, columns predicted; "
                       f"summed over {row.extras['confusion_seeds']} seed(s)):")
            out.append((caption, ["true \\ pred", *map(str, range(len(confusion)))],
                        [[str(i), *map(str, line)] for i, line in enumerate(confusion)]))
    return out


def extras_markdown(table: Table) -> list[str]:
    out = []
    for caption, header, rows in extra_tables(table):
        out += ["", caption, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def extras_html(table: Table) -> list[str]:
    out = []
    for caption, header, rows in extra_tables(table):
        out += [f"<p>{html.escape(caption)}</p>", _html_table(header, rows)]
    return out


def html_page(tables: list[Table], figure_paths: list[Path], synthetic: bool, header: str, notices: list[str]) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>tlbench report</title>", f"<style>{STYLE}</style>",
             "</head><body>", "<h1>tlbench report</h1>", f"<p>{html.escape(header)}</p>"]
    if synthetic:
        parts.append(f"<p class='warn'>{html.escape(SMOKE_WARNING.replace('**', ''))}</p>")
    parts += [f"<p class='warn'>{html.escape(n)}</p>" for n in notices]
    for table in tables:
        parts.append(f"<h2>{html.escape(table.id)}: {html.escape(table.title)}</h2>")
        if synthetic:
            parts.append("<p><em>Synthetic data, random weights: a pipeline check, not a reproduction.</em></p>")
        parts.append("<table><tr><th>row</th>")
        for metric in table.metrics:
            label = html.escape(metric_label(metric))
            parts.append(f"<th>{label}: ours</th><th>reported</th><th>diff</th>")
        parts.append("<th>trials</th><th>device</th></tr>")
        for row in table.rows:
            parts.append(f"<tr><td>{html.escape(row.label)}</td>")
            for cell in row.cells:
                css = " class='flag'" if cell.flagged else ""
                parts.append(f"<td>{html.escape(cell_text(cell))}</td><td>{fmt(cell.reported, cell.digits)}</td><td{css}>{html.escape(diff_text(cell))}</td>")
            parts.append(f"<td>{html.escape(row.status_text())}</td><td>{html.escape('; '.join(row.devices) or '–')}</td></tr>")
        parts.append("</table>")
        parts += [f"<p>error in {html.escape(row.label)}: <code>{html.escape(e[:300])}</code></p>" for row in table.rows for e in row.errors[:3]]
        parts += extras_html(table)
    parts.append("<h2>Figures</h2>")
    for path in figure_paths:
        data = base64.b64encode(path.read_bytes()).decode()
        parts.append(f"<h3>{html.escape(path.stem)}</h3><img alt='{html.escape(path.stem)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


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
    epochs = store.read_epochs().to_pandas()
    synthetic = synthetic_profile(trials)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    for table_id, frame in tables_frame(tables).items():
        frame.to_csv(out / "tables" / f"{table_id}.csv", index=False)
    figure_dir = out / "figures"
    made = [figures.reported_vs_reproduced(tables, figure_dir)]
    for experiment in sorted(set(trials["experiment"])) if len(trials) else []:
        made.append(figures.learning_curves(experiment, trials, epochs, figure_dir))
    for spec, table in zip(grid.tables, tables):
        made.append(figures.table_figure(spec, table, figure_dir))
        if "misclassified" in table.extras:
            made.append(figures.misclassified(table, trials, figure_dir))
    figure_paths = [p for p in made if p is not None]
    done = int(trials["status"].isin(["ok", "diverged"]).sum()) if len(trials) else 0
    header = (f"Grid {grid.file} (sha256 {grid.sha256}), profile {profile}, results {results}: "
              f"{done} trials done, {len(trials) - done} failed.")  # fmt: skip
    lines = ["# tlbench report", "", header, ""]
    if synthetic:
        lines += [SMOKE_WARNING, ""]
    notices = [f"{len(bad)} unreadable result file(s) (their trials count as pending): " + ", ".join(p.name for p, _ in bad)] if bad else []
    lines += [f"**{n}**" for n in notices] + ([""] if notices else [])
    lines += [("Each cell: ours as mean ± std over seeds (n), the reported number, and ours minus reported; "
               "⚠ marks a gap larger than twice the seed std (any gap with one seed)."), ""]
    md_tables = [markdown_table(t, synthetic) for t in tables]
    lines += md_tables
    lines += ["## Figures", ""] + [f"![{p.stem}](figures/{p.name})" for p in figure_paths]
    (out / "index.md").write_text("\n".join(lines) + "\n")
    (out / "index.html").write_text(html_page(tables, figure_paths, synthetic, header, notices))
    return {"tables": len(tables), "figures": len(figure_paths), "unreadable": len(bad), "profile": profile}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tlbench.report", description=__doc__)
    parser.add_argument("--grid", default="grid/reports.yaml")
    parser.add_argument("--results", default="results")
    parser.add_argument("--out", help="report folder (default <results>/report)")
    parser.add_argument("--profile", help="profile the results were run with (default: the one recorded in them)")
    args = parser.parse_args(argv)
    try:
        grid = Grid.load(args.grid)
        if args.profile is not None:
            grid.expand(profile=args.profile)  # an unknown profile: exit 2 naming the valid ones
    except GridError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = Path(args.results)
    for notice in result_notices(grid, Store(results)):
        print(f"warning: {notice}", file=sys.stderr)
    out = Path(args.out) if args.out else results / "report"
    summary = write_report(grid, results, out, args.profile)
    print(f"wrote {out}/index.md, index.html, {summary['tables']} tables, {summary['figures']} figures (profile {summary['profile']})")
    return 0


def result_notices(grid: Grid, store: Store) -> list[str]:
    """What a reader of the report should know about the results it reads: missing, unreadable, another grid file's."""
    if not store.root.is_dir():
        return [f"results folder {store.root} does not exist: every table is empty (pass --results DIR)"]
    table, bad = store.read()
    notices = [f"unreadable result {path} ({problem}): its trial counts as pending" for path, problem in bad]
    notices += [f"unreadable epochs {path} ({problem}): its learning curve is left out" for path, problem in store.bad_epoch_files()]
    notices += [f"{path} holds a row an earlier run could not write; `grid run` writes it" for path in store.unwritten()]
    hashes = Counter(h for h in table.column("grid_sha256").to_pylist() if h is not None)
    foreign = sum(n for h, n in hashes.items() if h != grid.sha256)
    if foreign:
        others = ", ".join(sorted(h for h in hashes if h != grid.sha256))
        notices.append(f"{foreign} of {table.num_rows} results were run from another grid file (grid_sha256 {others}; "
                       f"{grid.file} is {grid.sha256}): rows are matched by config, "
                       f"but the tables' layout and reported numbers are this file's")
    return notices


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "write_report"]
