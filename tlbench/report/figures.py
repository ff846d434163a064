"""The report's figures, as PNG files (matplotlib, no display needed).

- learning curves per experiment: train/val loss and accuracy by epoch, mean with a band over seeds;
- per table whose rows step along one axis (layers unfrozen, data fraction):
  the first metric against that axis, one line per experiment, reported dashed;
- per table, every row and metric: our mean with its 95% CI and prediction interval, reported beside it;
- reported vs reproduced, every cell of every table;
- misclassified test images of a table's best model.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a cluster node or in CI
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from tlbench.grid.trials import SAFE_NAME
from tlbench.report.aggregate import MEASURED, Table, metric_label
from tlbench.results.regular_files import replace_file


def literal_text(draw):
    """Draw with every string as written: a grid's title or label, a class name from results, is text, not
    matplotlib math (`$a_b_c$` parsed as math fails the whole report). Text reads the setting when created."""

    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        with plt.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return drawn


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    replace_file(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    plt.close(fig)
    return path


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def file_slug(text: str) -> str:
    """`text` where it is a safe file name (every grid name is, checked at load), else its slug and a hash
    of it: an experiment name read from a results folder (data, maybe another grid's) still names one
    file of its own inside the figures folder, never `..` or a twin of another name's."""
    if SAFE_NAME.fullmatch(text):
        return text
    return f"{slug(text)[:60].strip('.')}-{hashlib.sha256(text.encode()).hexdigest()[:8]}".lstrip("-")


MAX_CURVES = 8  # configs drawn one line each; an experiment of more is drawn as one summary line


@literal_text
def learning_curves(experiment: str, trials: pd.DataFrame, epochs: pd.DataFrame, out: Path) -> Path | None:
    """One figure per experiment: a line per config (its axis values), mean over seeds with a min-max band.
    More than MAX_CURVES configs: one line, the mean over every trial, with the 10-90% band of the trials."""
    mine = trials[(trials["experiment"] == experiment) & (trials["status"] == MEASURED)]  # a diverged trial's curve is no measurement
    if not len(mine) or not len(epochs):
        return None
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    epochs = epochs[epochs["trial_id"].isin(mine["trial_id"])]
    configs = mine["axes"].nunique()
    if configs > MAX_CURVES:
        groups = [(f"all {configs} configs, {len(mine)} trials (mean, 10-90% band)", epochs, (0.1, 0.9))]
    else:
        by_config = mine.groupby("axes")["trial_id"]
        groups = [(", ".join(f"{_axis_label(v)}" for v in json.loads(axes_json).values()) or experiment,
                   epochs[epochs["trial_id"].isin(ids)], (0.0, 1.0)) for axes_json, ids in by_config]  # fmt: skip
    for k, (label, rows, band) in enumerate(groups):
        if not len(rows):
            continue
        numeric = ["train_loss", "val_loss", "train_acc", "val_acc"]
        by_epoch = rows.groupby("epoch")[numeric]
        stats = pd.concat({"mean": by_epoch.mean(), "min": by_epoch.quantile(band[0]), "max": by_epoch.quantile(band[1])}, axis=1)
        stats.columns = stats.columns.swaplevel()
        colour = colours[k % len(colours)]
        for ax, metric in ((ax_loss, "loss"), (ax_acc, "acc")):
            for split, style in (("train", "-"), ("val", "--")):
                column = f"{split}_{metric}"
                ax.plot(stats.index, stats[(column, "mean")], style, marker="o", markersize=3, color=colour, label=f"{label} ({split})")
                ax.fill_between(stats.index, stats[(column, "min")], stats[(column, "max")], color=colour, alpha=0.12)
    ax_loss.set(xlabel="epoch", ylabel="loss", title=f"{experiment}: loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title=f"{experiment}: accuracy")
    ax_acc.legend(fontsize=6, loc="best")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, out / f"curves-{file_slug(experiment)}.png")


def axis_of_rows(table: dict[str, Any]) -> str | None:
    """The one axis every row of a table fixes (and that takes more than one value), if any."""
    keys = [tuple((row.get("where") or {}).keys()) for row in table["rows"]]
    if not keys or any(len(k) != 1 for k in keys) or len({k[0] for k in keys}) != 1:
        return None
    axis = keys[0][0]
    values = {json.dumps(row["where"][axis], sort_keys=True) for row in table["rows"]}
    return axis if len(values) > 1 else None


@literal_text
def table_figure(spec: dict[str, Any], table: Table, out: Path) -> Path | None:
    """The first metric against the rows' axis, one line per experiment; reported dashed."""
    axis = axis_of_rows(spec)
    if axis is None:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.8))
    by_experiment: dict[str, list[tuple[str, Any]]] = {}
    for row_spec, row in zip(spec["rows"], table.rows):
        by_experiment.setdefault(row.experiment, []).append((_axis_label(row_spec["where"][axis]), row))
    positions = {label: i for i, label in enumerate(dict.fromkeys(lbl for rows in by_experiment.values() for lbl, _ in rows))}
    for experiment, rows in by_experiment.items():
        xs = [positions[label] for label, _ in rows]
        cells = [row.cells[0] for _, row in rows]
        means = [c.mean if c.mean is not None else np.nan for c in cells]
        stds = [c.std or 0.0 for c in cells]
        line = ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=f"{experiment} (ours)")
        reported = [c.reported if c.reported is not None else np.nan for c in cells]
        ax.plot(xs, reported, "--", marker="x", color=line[0].get_color(), label=f"{experiment} (reported)")
    ax.set_xticks(list(positions.values()), list(positions.keys()))
    ax.set(xlabel=axis, ylabel=metric_label(table.metrics[0]))
    ax.set_title("\n".join(textwrap.wrap(table.title, 60)), fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, out / f"table-{file_slug(table.id)}.png")


MAX_INTERVAL_ROWS = 60  # rows in one interval figure; a larger table shows its flagged rows first


def interval_rows(table: Table) -> list[Any]:
    """The rows an interval figure draws: all, or the flagged ones (reported outside our prediction
    interval) and then the first others, up to MAX_INTERVAL_ROWS, in table order."""
    if len(table.rows) <= MAX_INTERVAL_ROWS:
        return table.rows
    flagged = [i for i, r in enumerate(table.rows) if any(c.flagged for c in r.cells)]
    chosen = set(flagged[:MAX_INTERVAL_ROWS])
    chosen |= set([i for i in range(len(table.rows)) if i not in chosen][: MAX_INTERVAL_ROWS - len(chosen)])
    return [table.rows[i] for i in sorted(chosen)]


@literal_text
def table_intervals(table: Table, out: Path) -> Path:
    """One panel per metric, one line per row: the prediction interval for one run (thin), the CI of our
    mean (thick), our mean (dot) and the reported number (red diamond). A reported number off the thin
    line is the verdict `above` / `below` at a glance. A table of many rows: see interval_rows."""
    rows = interval_rows(table)
    labels = [f"{r.label} ({r.reading})" if r.reading else r.label for r in rows]
    n_metrics = len(table.metrics)
    fig, axes = plt.subplots(1, n_metrics, figsize=(min(13, 2.2 + 3.6 * n_metrics), 1.1 + 0.42 * len(labels)), squeeze=False, sharey=True)
    ys = np.arange(len(labels))[::-1]
    for k, ax in enumerate(axes[0]):
        # One artist per kind of mark, not one per row: drawing stays fast at MAX_INTERVAL_ROWS rows.
        cells = [(y, row.cells[k]) for y, row in zip(ys, rows)]
        spread = [(y, c.pi, c.seeds.ci) for y, c in cells if c.seeds.n > 1]
        if spread:
            y_s, pis, cis = zip(*spread)
            ax.hlines(y_s, *zip(*pis), color="#7a9cc6", linewidth=1.5, capstyle="butt")
            ax.hlines(y_s, *zip(*cis), color="#1f4e8c", linewidth=5, capstyle="butt")
        means = [(c.mean, y) for y, c in cells if c.mean is not None]
        if means:
            ax.plot(*zip(*means), "o", color="#1f4e8c", markersize=5)
        reported = [(c.reported, y + 0.22) for y, c in cells if c.reported is not None]
        if reported:
            ax.plot(*zip(*reported), "D", color="#c0392b", markersize=5)
        ax.set_title("\n".join(textwrap.wrap(metric_label(table.metrics[k]), 28)), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # narrow panels: few ticks, no overlapping labels
        ax.grid(axis="x", alpha=0.3)
        ax.set_ylim(-0.7, len(labels) - 0.3)
    axes[0][0].set_yticks(ys, ["\n".join(textwrap.wrap(lbl, 26)) for lbl in labels], fontsize=7)
    handles = [plt.Line2D([], [], color="#7a9cc6", linewidth=1.5, label="95% prediction interval (one run)"),
               plt.Line2D([], [], color="#1f4e8c", linewidth=5, label="95% CI of our mean"),
               plt.Line2D([], [], marker="o", color="#1f4e8c", linestyle="", label="our mean"),
               plt.Line2D([], [], marker="D", color="#c0392b", linestyle="", label="reported")]  # fmt: skip
    if len(rows) < len(table.rows):
        fig.suptitle(f"{len(rows)} of {len(table.rows)} rows (flagged first); every row is in tables/{table.id}.csv", fontsize=8)
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7, frameon=False)
    height = 1.1 + 0.42 * len(labels)
    fig.tight_layout(rect=(0, 0.9 / height * 0.6, 1, 1 - (0.3 / height if len(rows) < len(table.rows) else 0)))
    path = out / f"intervals-{file_slug(table.id)}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    plt.close(fig)
    return path


def _axis_label(value: Any) -> str:
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        return f"{key} {arg}" if not isinstance(arg, (dict, list)) else key
    return str(value)


@literal_text
def reported_vs_reproduced(tables: list[Table], out: Path) -> Path | None:
    """Every accuracy cell with both numbers, in percent (tables show fractions or percent): ideally on the diagonal."""
    points = [
        (c.reported * 100 / c.scale, c.mean * 100 / c.scale, (c.std or 0.0) * 100 / c.scale, t.id)
        for t in tables
        for r in t.rows
        for c in r.cells
        if c.reported is not None and c.mean is not None and c.metric.endswith("acc")
    ]
    fig, ax = plt.subplots(figsize=(5, 5))
    if points:
        x, y, err, _ = zip(*points)
        ax.errorbar(x, y, yerr=err, fmt="o", alpha=0.7)
        lo, hi = min(min(x), min(y)), max(max(x), max(y))
        ax.plot([lo, hi], [lo, hi], "k--", linewidth=1)
    else:
        ax.text(0.5, 0.5, "no accuracy cell has both numbers yet", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="reported (%)", ylabel="reproduced (%, mean +- std over seeds)", title="accuracies: reported vs reproduced")
    return _save(fig, out / "reported-vs-reproduced.png")


@literal_text
def misclassified(table: Table, trials: pd.DataFrame, out: Path) -> Path | None:
    """Thumbnails kept in the result of the best trial (by test acc) of the table's best row."""
    done = trials[trials["status"] == MEASURED]
    best_row = max((r for r in table.rows if r.cells and r.cells[0].mean is not None), key=lambda r: r.cells[0].mean, default=None)
    if best_row is None:
        return None
    candidates = done[done["trial_id"].isin(best_row.trial_ids)].sort_values("test_acc", ascending=False)
    if not len(candidates) or not isinstance(candidates.iloc[0]["misclassified"], str):  # None, or NaN in a mixed frame
        return None
    images = json.loads(candidates.iloc[0]["misclassified"])
    if not images:
        return None
    fig, axes = plt.subplots(1, len(images), figsize=(2.2 * len(images), 2.6), squeeze=False)
    for ax, item in zip(axes[0], images):
        ax.imshow(plt.imread(io.BytesIO(base64.b64decode(item["png"])), format="png"))
        ax.set_title(f"true {item['label']}\npred {item['pred']}", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{table.id}: misclassified test images, best model ({best_row.label})", fontsize=9)
    return _save(fig, out / f"misclassified-{file_slug(table.id)}.png")
