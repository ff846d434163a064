"""The scale benchmark (`python -m tlbench.bench --scale`): driver and report times as the grid grows.

For each size it writes a grid of one experiment (configs x 5 seeds, one table
row per config) and a results folder of finished trials fabricated from one
real trial's row and epochs (new trial ids, configs and accuracies; nothing else
trains), then times, each in a fresh process as a user runs it:

  scale_index_build_s   the first `grid run` over files it has never seen (the results index is built)
  scale_run_noop_s      `grid run` with every trial done ("N done, 0 to run")
  scale_list_s          `grid list`
  scale_report_cold_s   the first report (the epochs' index is built: only the report reads epochs)
  scale_report_s        `python -m tlbench.report` again (tables, claims, figures, HTML)

each printed with the size as suffix (`scale_report_s_10000_trials`), plus the
10k/1k ratio (`scale_report_s_growth`): about 10 means linear in the trials.

Then results copied in from a cluster: 5,000 finished trials no command has
indexed yet (quick: 100), and the first `grid list` over them, which reads every
trial and epochs file once and builds the folder's index:

  scale_first_read_5000_s        its seconds (quick: scale_first_read_100_s)
  scale_first_read_files_per_s   trial files read per second by it
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

SEEDS = 5
# (trials, table rows); a row is one config's seeds.
SIZES = {"full": ((1000, 200), (10000, 2000)), "quick": ((40, 8), (100, 20))}
COMMANDS = {
    "scale_index_build_s": ["tlbench.grid", "run"],
    "scale_run_noop_s": ["tlbench.grid", "run"],
    "scale_list_s": ["tlbench.grid", "list"],
    "scale_report_cold_s": ["tlbench.report"],
    "scale_report_s": ["tlbench.report"],
}


def scale_grid(configs: int) -> str:
    """One experiment of `configs` configs (lr x weight decay) and 5 seeds; a table row per config."""
    # Written as plain decimals: YAML reads "1e-05" (no dot) as a string.
    n_lrs = max(d for d in range(1, int(configs**0.5) + 1) if configs % d == 0)  # exactly `configs` points
    lrs = [f"{1e-4 * (1 + i):.6f}" for i in range(n_lrs)]
    decays = [f"{1e-5 * i:.7f}" for i in range(configs // n_lrs)]
    points = [(lr, wd) for lr in lrs for wd in decays]
    rows = "\n".join(f"      - {{label: 'lr {lr} wd {wd}', experiment: scale, where: {{train.lr: {lr}, train.weight_decay: {wd}}}, "
                     f"reported: {{test_acc: 50.0}}}}" for lr, wd in points)  # fmt: skip
    return f"""
defaults:
  seeds: {list(range(SEEDS))}
  epochs: 1
  image_size: 32
experiments:
  - name: scale
    source: {{report: scale.txt}}
    dataset: {{name: synthetic, n_classes: 3, n_train: 48, n_test: 24}}
    model: {{arch: "tlbench.tiny:small_cnn", weights: none}}
    train: {{freeze: none, batch_size: 16}}
    axes:
      train.lr: [{", ".join(lrs)}]
      train.weight_decay: [{", ".join(decays)}]
tables:
  - id: t-scale
    title: scale
    metrics: [{{key: test_acc, scale: 100, digits: 1}}, {{key: val_acc, scale: 100, digits: 1}}]
    rows:
{rows}
profiles:
  quick: {{seeds: [0]}}
"""


def real_trial(grid_file: Path, work: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One real trial of the grid (its first), run here: the row and epochs every fabricated one copies."""
    from tlbench.grid import Grid
    from tlbench.trial.execute import execute

    first = Grid.load(grid_file).expand()[0]
    row, epochs = execute(first, work / "data", {"profile": "full", "node_id": "scale-bench"})
    if row["status"] != "ok":
        raise RuntimeError(f"the template trial failed: {row.get('error')}")
    return row, epochs


def fabricate(grid_file: Path, results: Path, row: dict[str, Any], epochs: list[dict[str, Any]]) -> int:
    """A finished result (trial and epochs files) for every trial of the grid, copied from one real row."""
    from tlbench.grid import Grid
    from tlbench.results.store import Store, epoch_table, flatten_config, trial_table

    store = Store(results)
    store.trials_dir.mkdir(parents=True, exist_ok=True)
    store.epochs_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    grid = Grid.load(grid_file)
    specs = grid.expand()

    def write(spec: Any) -> None:
        acc = min(1.0, max(0.0, rng.gauss(0.5, 0.05)))
        mine = {**row, "trial_id": spec.trial_id, "experiment": spec.experiment, "experiments": list(spec.experiments),
                "axes": spec.axes, "test_acc": acc, "val_acc": acc, "grid_sha256": grid.sha256, **flatten_config(spec.config)}  # fmt: skip
        # Written directly, not through Store.write's fsync: this is a fixture, not a run.
        pq.write_table(trial_table(mine), store.trials_dir / f"{spec.trial_id}.parquet")
        pq.write_table(epoch_table([{**e, "trial_id": spec.trial_id, "seed": spec.seed} for e in epochs]),
                       store.epochs_dir / f"{spec.trial_id}.parquet")  # fmt: skip

    with ThreadPoolExecutor(4) as pool:  # pyarrow writes without the GIL
        list(pool.map(write, specs))
    return len(specs)


def timed(module_args: list[str], grid_file: Path, results: Path) -> float:
    command = [sys.executable, "-m", *module_args, "--grid", str(grid_file), "--results", str(results)]
    if module_args[0] == "tlbench.report":
        command += ["--out", str(results / "report")]
    tick = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - tick
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return seconds


FIRST_READ_TRIALS = {"full": 5000, "quick": 100}


def bench_first_read(work: Path, template: tuple[dict[str, Any], list[dict[str, Any]]], trials: int, emit: Any) -> float:
    """The first `grid list` over `trials` finished results no command has indexed yet (copied in from a cluster)."""
    grid_file = work / f"grid-first-read-{trials}.yaml"
    grid_file.write_text(scale_grid(trials // SEEDS))
    results = work / f"results-first-read-{trials}"
    n = fabricate(grid_file, results, *template)
    seconds = timed(["tlbench.grid", "list"], grid_file, results)
    emit(f"scale_first_read_{n}_s", seconds)
    emit("scale_first_read_files_per_s", n / seconds)
    return seconds


def bench_scale(quick: bool, emit: Any) -> None:
    work = Path(tempfile.mkdtemp(prefix="tlbench-scale-bench-"))
    try:
        grid_file = work / "grid-template.yaml"
        grid_file.write_text(scale_grid(1))
        template = real_trial(grid_file, work)
        bench_first_read(work, template, FIRST_READ_TRIALS["quick" if quick else "full"], emit)
        times: dict[str, dict[int, float]] = {name: {} for name in COMMANDS}
        for trials, _rows in SIZES["quick" if quick else "full"]:
            grid_file = work / f"grid-{trials}.yaml"
            grid_file.write_text(scale_grid(trials // SEEDS))
            results = work / f"results-{trials}"
            tick = time.perf_counter()
            n = fabricate(grid_file, results, *template)
            emit(f"scale_fabricate_s_{n}_trials", time.perf_counter() - tick)
            for name, module_args in COMMANDS.items():
                times[name][trials] = timed(module_args, grid_file, results)
                emit(f"{name}_{trials}_trials", times[name][trials])
        small, large = SIZES["quick" if quick else "full"][0][0], SIZES["quick" if quick else "full"][1][0]
        for name, by_size in times.items():
            emit(f"{name}_growth", by_size[large] / by_size[small])
        for name in ("scale_run_noop_s", "scale_list_s", "scale_report_s"):
            emit(name, times[name][large])
    finally:
        shutil.rmtree(work, ignore_errors=True)


__all__ = ["bench_first_read", "bench_scale", "scale_grid"]
