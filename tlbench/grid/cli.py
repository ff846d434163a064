"""`python -m tlbench.grid {run,list,plan,status}`: the grid file's trials, run, listed, costed or watched.

Exit codes: 0 every trial ended ok (or diverged); 1 a trial errored (or ran out of GPU memory: oom); 2 bad input
(the grid file, a profile, --set, --only); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import defaultdict
from pathlib import Path

from tlbench.grid import Grid, GridError, TrialSpec
from tlbench.grid.preflight import preflight
from tlbench.grid.tables import table_rows_of_trials
from tlbench.plan import shares
from tlbench.plan.cost import gpu_images_per_s, trial_cost
from tlbench.plan.makespan import Job, arch_gpu_share, cpu_seconds, gpu_seconds, hours, longest_first, makespan
from tlbench.results.provenance import repository_state
from tlbench.results.store import DONE, FAILED, UNWRITTEN_PREFIX, Store, flatten_config

DEFAULT_GRID = "grid/reports.yaml"
DEFAULT_PROFILE = "full"


def _selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grid", default=DEFAULT_GRID, help="grid file (default %(default)s)")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help="override set from the grid's profiles (default %(default)s)")
    # Several globs after one flag, as --set takes several keys; the flag may also repeat.
    parser.add_argument(
        "--only", action="extend", nargs="+", metavar="GLOB", help="experiments whose name matches any of these (repeatable)"
    )
    parser.add_argument("--results", default="results", help="results directory (default %(default)s)")
    parser.add_argument("--data", default="data", help="dataset root (default %(default)s)")
    parser.add_argument(
        "--set",
        action="append",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override a config key by dotted path, e.g. --set train.lr=0.01 epochs=2",
    )


def bounded(kind: type, low: float, inclusive: bool = True):
    """An argparse type: a finite number of `kind` >= low (> low where not inclusive); argparse exits 2 otherwise."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"expected a finite value {'>=' if inclusive else '>'} {low:g}, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tlbench.grid", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run every pending trial through Ray Tune")
    _selection(run)
    run.add_argument("--address", help="Ray cluster address (or RAY_ADDRESS; 'auto' on a cluster node); default: a local Ray")
    run.add_argument(
        "--gpus-per-trial", type=bounded(float, 0), help="GPU share per trial (default: per arch from its registry entry; 0 without GPUs)"
    )
    run.add_argument(
        "--cpus-per-trial",
        type=bounded(float, 0, inclusive=False),
        default=1.0,
        help="CPUs per trial; torch uses as many threads (default %(default)s)",
    )
    run.add_argument("--storage", help="Ray Tune storage path or URI (default <results>/.tune)")
    run.add_argument("--max-failures", type=bounded(int, 0), default=2, help="retries of a trial whose worker died (default %(default)s)")
    run.add_argument("--no-checkpoints", action="store_true", help="no per-epoch checkpoints (retries then start a trial over)")
    run.add_argument("--no-feature-cache", action="store_true", help="recompute frozen features every epoch (same results, slower)")
    run.add_argument("--compile", action="store_true", help="torch.compile the trained part of each network")
    run.add_argument("--dry-run", action="store_true", help="list what would run, run nothing")
    run.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard event files (default: <results>/tensorboard)")
    run.add_argument(
        "--mlflow",
        metavar="URI",
        help="log every trial's epochs to MLflow at this tracking URI (e.g. sqlite:///mlflow.db; file:mlruns also works); needs the mlflow extra",
    )
    run.add_argument("--wandb", metavar="PROJECT", help="log every trial's epochs to this W&B project; needs the wandb extra")
    listing = commands.add_parser("list", help="one line per trial with its status")
    _selection(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    plan = commands.add_parser("plan", help="trials, images, FLOPs and GPU-hours per experiment; wall time on N GPUs or CPUs")
    _selection(plan)
    plan.add_argument(
        "--gpus", type=bounded(int, 1), metavar="N", help="also estimate the wall time on N GPUs (trials at their GPU shares)"
    )
    plan.add_argument("--cpus", type=bounded(int, 1), metavar="N", help="also estimate the wall time on N CPUs like this machine's")
    plan.add_argument(
        "--gpus-per-trial",
        type=bounded(float, 0, inclusive=False),
        help="GPU share per trial for --gpus (default: per arch from its registry entry, as `run` does)",
    )
    plan.add_argument(
        "--cpus-per-trial",
        type=bounded(float, 0, inclusive=False),
        default=1.0,
        help="CPUs per trial for --cpus (default %(default)s, as `run`)",
    )
    status = commands.add_parser("status", help="per experiment: done / diverged / errored / running / pending, errors, newest finished")
    _selection(status)
    return parser


def load_trials(args: argparse.Namespace) -> tuple[Grid, list[TrialSpec]]:
    grid = Grid.load(args.grid)
    overrides = [item for group in args.overrides for item in group]
    return grid, grid.expand(profile=args.profile, only=args.only, overrides=overrides)


def status_of(spec: TrialSpec, statuses: dict[str, str]) -> str:
    status = statuses.get(spec.trial_id)
    return "pending" if status is None else "done" if status in DONE else "failed"


def cmd_list(args: argparse.Namespace) -> int:
    grid, trials = load_trials(args)
    store = Store(Path(args.results))
    statuses, bad = store.statuses()
    for path, problem in bad:
        print(f"warning: unreadable result {path}: {problem} (its trial counts as pending; `grid run` moves it aside)", file=sys.stderr)
    for path, problem in store.bad_epoch_files():
        print(f"warning: unreadable epochs {path}: {problem} (its learning curve is lost; `grid run` moves it aside)", file=sys.stderr)
    for path in store.unwritten():
        print(f"warning: {path} holds a row an earlier run could not write (`grid run` writes it)", file=sys.stderr)
    feeds = table_rows_of_trials(grid, args.profile, [item for group in args.overrides for item in group]) if args.json else {}
    for spec in trials:
        status = status_of(spec, statuses)
        if args.json:
            # config: the resolved config as the result files' dotted columns (JSON text for lists and mappings)
            print(
                json.dumps(
                    {
                        "trial_id": spec.trial_id,
                        "experiment": spec.experiment,
                        "experiments": list(spec.experiments),
                        "report": spec.report,
                        "seed": spec.seed,
                        "axes": spec.axes,
                        "status": status,
                        "config": flatten_config(spec.config),
                        "tables": feeds.get(spec.trial_id, []),
                    }
                )
            )
        else:
            axes = " ".join(f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in spec.axes.items())
            print(f"{spec.trial_id}  {status:7s}  {spec.experiment}  seed={spec.seed}  {axes}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    import torch

    from tlbench.plan.cost import CPU_TRAIN_EFFICIENCY, matmul_gflops
    from tlbench.trial.train import resolve_precision

    _, trials = load_trials(args)
    precision = resolve_precision("auto", torch.device("cpu"))
    cpu_gflops = matmul_gflops(torch.bfloat16 if precision == "bf16" else torch.float32) * CPU_TRAIN_EFFICIENCY
    per: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for spec in trials:
        cost = trial_cost(spec.config)
        row = per[spec.experiment]
        row["trials"] += 1
        for key, value in cost.items():
            row[key] += value
        row["cpu_hours"] += cost["tflops"] * 1e3 / cpu_gflops / 3600
    print(f"profile {args.profile}: {len(trials)} trials")
    print(f"{'experiment':34s} {'trials':>6s} {'images':>12s} {'TFLOPs':>10s} {'GPU-h':>8s} {'CPU-h here':>10s}")
    total = {key: sum(r[key] for r in per.values()) for key in ("trials", "images", "tflops", "gpu_hours", "cpu_hours")}
    for name, row in [*per.items(), ("total", total)]:
        print(
            f"{name:34s} {int(row['trials']):6d} {row['images']:12,.0f} {row['tflops']:10,.1f} {row['gpu_hours']:8.2f} {row['cpu_hours']:10.2f}"
        )
    rates = ", ".join(f"{arch} {gpu_images_per_s(arch):,.0f}" for arch in sorted({t.config["model"]["arch"] for t in trials}))
    print(f"GPU-hours: one whole GPU per trial at these training images/s at 224 px: {rates} (scaled by pixels).")
    print(
        f"CPU-hours here: {CPU_TRAIN_EFFICIENCY:.0%} of this machine's measured {precision} matmul rate, "
        f"{cpu_gflops:,.0f} GFLOP/s for training, one trial at a time."
    )
    print_makespans(args, trials, cpu_gflops, torch.get_num_threads())
    for line in memory_view(Store(Path(args.results)), trials):
        print(line)
    return 0


def print_makespans(args: argparse.Namespace, trials: list[TrialSpec], cpu_gflops: float, threads: int) -> None:
    """Wall time of the selected trials on --gpus N / --cpus N, packed longest first as `grid run` packs them.

    A CPU trains at this machine's rate over its torch threads (the rate is
    taken as linear in cores)."""
    gflops_per_cpu = cpu_gflops / threads
    ordered = longest_first(trials)
    if args.gpus:
        asked = [args.gpus_per_trial or arch_gpu_share(t.config) for t in ordered]
        jobs = [Job(gpu_seconds(t.config), share) for t, share in zip(ordered, asked)]
        if any(share > args.gpus for share in asked):
            raise GridError(f"a trial asks for {max(asked):g} GPUs; --gpus is {args.gpus}", file="--gpus-per-trial")
        used = ", ".join(f"{share:g}" for share in sorted(set(asked)))
        print(
            f"wall time on {args.gpus} GPU(s): {hours(makespan(jobs, args.gpus))} "
            f"(GPU shares per trial: {used}; each trial at its share as fast as GPU-h says; longest first, as `grid run` starts them)"
        )
    if args.cpus:
        if args.cpus_per_trial > args.cpus:
            raise GridError(f"--cpus-per-trial {args.cpus_per_trial:g} is more than --cpus {args.cpus}", file="--cpus-per-trial")
        jobs = [Job(cpu_seconds(t.config, gflops_per_cpu, args.cpus_per_trial), args.cpus_per_trial) for t in ordered]
        print(
            f"wall time on {args.cpus} CPU(s): {hours(makespan(jobs, args.cpus))} "
            f"({args.cpus_per_trial:g} CPU per trial at {gflops_per_cpu:,.0f} GFLOP/s per CPU: this machine's rate over "
            f"its {threads} threads; longest first, as `grid run` starts them)"
        )


def check_loggers(args: argparse.Namespace) -> None:
    """The optional logger packages a run asks for, before anything runs."""
    import importlib.util

    for flag, package, extra in (("--mlflow", "mlflow", "mlflow"), ("--wandb", "wandb", "wandb")):
        if getattr(args, package) and importlib.util.find_spec(package) is None:
            raise GridError(f"needs the {package} package, which is not installed: pip install -e '.[{extra}]'", file=flag)


def cmd_status(args: argparse.Namespace) -> int:
    """Safe while a run goes on in another terminal: it claims and moves nothing (at most it refreshes the results index)."""
    from tlbench.plan.leases import Leases
    from tlbench.plan.status import collect, render

    _, trials = load_trials(args)
    experiments, bad = collect(trials, Store(Path(args.results)), Leases(Path(args.results)))
    for path, problem in bad:
        print(f"warning: unreadable result {path}: {problem} (its trial counts as pending)", file=sys.stderr)
    print(f"results {args.results}, profile {args.profile}:")
    print("\n".join(render(experiments)))
    return 0


def memory_view(store: Store, trials: list[TrialSpec]) -> list[str]:
    """Per arch of these trials: the GPU memory their ok CUDA rows peaked at, against the share the arch asks for."""
    asks = {t.config["model"]["arch"]: arch_gpu_share(t.config) for t in trials}
    rows, _ = store.read(columns=shares.MEMORY_COLUMNS)  # one columnar read of the results index
    return shares.memory_lines(shares.memory_by_arch(rows, asks, {t.trial_id for t in trials}), asks)


def cmd_run(args: argparse.Namespace) -> int:
    check_loggers(args)
    grid, trials = load_trials(args)
    store = Store(Path(args.results))
    if not args.dry_run:
        try:
            tidy(store)
        except OSError as exc:  # a read-only or full results disk: say so, never a traceback
            print(
                f"error: cannot write to {store.root} ({exc.strerror or exc}); free space or make it writable "
                f"(or pass --results DIR), then rerun",
                file=sys.stderr,
            )
            return 1
    statuses, _ = store.statuses()
    pending = [t for t in trials if status_of(t, statuses) != "done"]
    oom = pending_oom_shares(store, statuses, pending)
    preflight(pending)  # imports torch: only when there is something to run
    print(f"{len(trials)} trials, {len(trials) - len(pending)} done, {len(pending)} to run (profile {args.profile})", flush=True)
    if args.dry_run:
        for spec in pending:
            print(f"would run {spec.trial_id} {spec.experiment} seed={spec.seed}")
        return 0
    if not pending:
        return 0
    problem = store.unwritable()
    if problem:  # before Ray starts: nothing it ran could be kept
        print(f"error: {problem}; free space or make it writable (or pass --results DIR), then rerun", file=sys.stderr)
        return 1
    from tlbench.on_ray import storage

    storage.check_form(args.storage)  # before Ray starts: a relative path or unknown scheme would fail after it
    from tlbench.on_ray.driver import RunOptions, run

    options = RunOptions(
        results=Path(args.results), data=Path(args.data), address=args.address, gpus_per_trial=args.gpus_per_trial,
        cpus_per_trial=args.cpus_per_trial, storage=args.storage, max_failures=args.max_failures,
        checkpoints=not args.no_checkpoints, speed={"feature_cache": not args.no_feature_cache, "compile": args.compile},
        context={"profile": args.profile, "grid_sha256": grid.sha256, **repository_state(grid.file)}, oom_shares=oom,
        tensorboard=not args.no_tensorboard, mlflow=args.mlflow, wandb=args.wandb,
    )  # fmt: skip
    outcome = run(pending, options)
    others = f", {outcome.by_others} by another driver on {args.results}" if outcome.by_others else ""
    others += f", {len(outcome.left_to_others)} left to the driver running them" if outcome.left_to_others else ""
    print("summary: " + ", ".join(f"{n} {status}" for status, n in sorted(outcome.counts.items())) + f" of {len(pending)} run{others}")
    statuses, _ = store.statuses()
    failed = [t for t in pending if statuses.get(t.trial_id) in FAILED]  # error, or oom: a rerun retries both
    for spec in failed:
        print(
            f"failed: {spec.trial_id} {spec.experiment} seed={spec.seed} (status {statuses[spec.trial_id]}; "
            f"see its row's `error` and `traceback`)"
        )
    if outcome.stopped:
        print(
            f"error: stopped early: {outcome.stopped}. Every row written so far is kept; rows that could not be written are "
            f"kept as {UNWRITTEN_PREFIX}<trial_id>.json in {store.trials_dir} where the disk allowed; fix the disk and rerun",
            file=sys.stderr,
        )
        return 1
    unfinished = [t for t in pending if status_of(t, statuses) == "pending" and t.trial_id not in outcome.left_to_others]
    if unfinished:
        print(f"{len(unfinished)} trial(s) did not finish; a rerun runs them", file=sys.stderr)
        return 1
    return 1 if failed else 0


def pending_oom_shares(store: Store, statuses: dict[str, str], pending: list[TrialSpec]) -> dict[str, float | None]:
    """Pending trial id -> the GPU share its `oom` row ran with (a rerun doubles it); read only where a row is `oom`."""
    if shares.OOM not in statuses.values():
        return {}
    wanted = {t.trial_id for t in pending}
    rows, _ = store.read(columns=["trial_id", "status", "gpu_share"])  # one read of the results index
    return {trial_id: share for trial_id, share in shares.oom_shares(rows).items() if trial_id in wanted}


def tidy(store: Store) -> None:
    """Before deciding what is pending: write rows kept by an earlier run, move files that are not rows aside."""
    write_kept_rows(store)
    _, bad = store.statuses()
    for path, moved, problem in store.quarantine(bad):
        print(f"warning: unreadable result {path} ({problem}): moved to {moved.name}; its trial reruns", file=sys.stderr)
    bad_epochs = store.bad_epoch_files()
    for path, moved, problem in store.quarantine(bad_epochs):
        print(f"warning: unreadable epochs {path} ({problem}): moved to {moved.name}; its learning curve is lost", file=sys.stderr)


def write_kept_rows(store: Store) -> None:
    """Rows an earlier run could not write (kept as JSON): write them now."""
    written, failed = store.write_unwritten()
    for trial_id in written:
        print(f"wrote the row of trial {trial_id} that an earlier run kept aside", flush=True)
    for path, problem in failed:
        print(f"warning: the row kept in {path} still cannot be written ({problem}); its trial counts as pending", file=sys.stderr)


def check_results_folder(results: str) -> None:
    """Every command, before anything else: a --results that is not a folder would read as no results at all."""
    problem = Store(Path(results)).not_a_folder()
    if problem:
        raise GridError(f"{problem}; pass --results DIR, a results folder (made by `grid run` where missing)", file="--results")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_results_folder(args.results)
        code = {"run": cmd_run, "list": cmd_list, "plan": cmd_plan, "status": cmd_status}[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return code
    except GridError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `grid list | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the flush at exit does not fail again
        return 0
    except KeyboardInterrupt:
        print("interrupted: every finished trial is saved; a rerun runs the rest", file=sys.stderr)
        return 130
