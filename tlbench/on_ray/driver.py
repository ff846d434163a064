"""Pending trials -> Ray Tune, one Tune trial each; results come back to the driver.

With `loggers.py`, the only code that imports Ray. Each trial runs `execute.execute` in a Ray
actor with its own resources (a GPU share per arch, CPUs with torch threads to
match). Its row travels back in its last Tune result and the driver writes it,
so the cluster needs no shared filesystem for results. After every epoch the
trial reports a checkpoint to Tune's storage: a trial whose worker dies is
retried (`--max-failures`) from its last epoch, and a rerun after the driver
died picks up, from the same storage, every checkpoint its trials left.

Trials reach Tune through `ClaimingSearcher`, one at a time as resources free
up, each only once this driver holds its claim (`plan/leases.py`): two drivers on
one results folder split the grid. `StoreResults` writes rows and never raises.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Tune's automatic per-trial CSV/JSON/TensorBoard loggers would duplicate what
# the store writes; the loggers asked for (loggers.py) are added by name.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Ctrl-C should stop the grid at once as a KeyboardInterrupt (exit 130), not
# make Tune wind down and return as if the grid had ended.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")

import ray
from ray import tune
from ray.tune.search import Searcher

from tlbench.grid import GridError, TrialSpec
from tlbench.on_ray import loggers
from tlbench.on_ray.storage import check_shared, location
from tlbench.plan import shares
from tlbench.plan.leases import Leases
from tlbench.plan.makespan import (  # longest_first: the order `grid plan`'s makespan assumes
    arch_gpu_share,
    cpu_seconds,
    gpu_seconds,
    longest_first,
)
from tlbench.plan.progress import CPU_TRAIN_GFLOPS_GUESS, Planned, Progress
from tlbench.registries.datasets import DATASETS
from tlbench.results.columns import EpochReport
from tlbench.results.regular_files import is_regular
from tlbench.results.store import Store

STATE_FILE = "state.pt"


@dataclass
class RunOptions:
    results: Path
    data: Path
    address: str | None = None
    gpus_per_trial: float | None = None  # None: the arch's share where the cluster has GPUs, else 0
    cpus_per_trial: float = 1.0
    storage: str | None = None  # Tune's experiment storage (path or URI); default <results>/.tune
    max_failures: int = 2  # retries of a trial whose worker died
    checkpoints: bool = True  # a checkpoint per epoch in Tune's storage, for retries and reruns
    speed: dict[str, bool] = field(default_factory=dict)  # run_trial's feature_cache / compile
    context: dict[str, Any] = field(default_factory=dict)  # profile, grid hash: copied into every row
    oom_shares: dict[str, float | None] = field(default_factory=dict)  # trial id -> share its last run ran out of memory at
    tensorboard: bool = True  # TensorBoard event files under <results>/tensorboard, one run per trial
    mlflow: str | None = None  # an MLflow tracking URI: one MLflow run per trial
    wandb: str | None = None  # a W&B project: one W&B run per trial


def gpu_share(spec: TrialSpec, options: RunOptions, cluster_gpus: float) -> float:
    """The GPU fraction a trial asks for: its usual share, doubled (at most a whole GPU) where it last ran out of memory."""
    return shares.after_oom(usual_share(spec, options, cluster_gpus), options.oom_shares.get(spec.trial_id))


def usual_share(spec: TrialSpec, options: RunOptions, cluster_gpus: float) -> float:
    """The GPU fraction a trial asks for before any `oom`: explicit, else its arch's (0 on a CPU-only cluster)."""
    if options.gpus_per_trial is not None:
        return options.gpus_per_trial
    if cluster_gpus <= 0:
        return 0.0
    return arch_gpu_share(spec.config)


# -- in the worker ------------------------------------------------------------------


class TuneCheckpointer:
    """Checkpoints through Tune: reported after each epoch, restored on a retry.

    `resume` is a state file an earlier driver's run left for this trial. An
    epoch's metrics (`hold`) go in the same report as its checkpoint, so every
    epoch is one Tune result; an epoch with no checkpoint after it (the last,
    a diverged one) is reported by `flush`."""

    def __init__(self, resume: str | None):
        self.resume = resume
        self.held: dict[str, Any] | None = None

    def hold(self, metrics: EpochReport) -> None:
        """An epoch's report (columns.EpochReport: Tune's loggers log its TUNE_METRICS), sent with the next checkpoint."""
        self.flush()
        self.held = metrics

    def flush(self) -> None:
        if self.held is not None:
            tune.report(self.held)
            self.held = None

    def load(self) -> dict[str, Any] | None:
        from tlbench.trial.checkpoint import read

        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                return read(Path(folder) / STATE_FILE)
        if self.resume and Path(self.resume).exists():
            return read(self.resume)
        return None

    def save(self, state: dict[str, Any]) -> None:
        import torch

        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, Path(folder) / STATE_FILE)
            metrics, self.held = self.held or {}, None
            tune.report({**metrics, "epoch": len(state["progress"]["epochs"])}, checkpoint=tune.Checkpoint.from_directory(folder))


def _trainable(config: dict[str, Any]) -> None:
    """A Tune function trainable: one trial; a report per epoch (its metrics, its checkpoint), then its row."""
    import torch

    from tlbench.trial.execute import execute, now_iso

    torch.set_num_threads(max(1, int(config["cpus"])))  # match the CPUs Ray granted: no oversubscription
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # a line per checkpoint on the driver's terminal would bury the progress line
    spec = _spec(config)
    runtime = ray.get_runtime_context()
    context = {
        **config["context"],
        "node_id": runtime.get_node_id(),
        "started_at": now_iso(),
        "gpu_ids": [str(i) for i in runtime.get_accelerator_ids().get("GPU", [])],
    }  # the GPUs Ray gave this trial
    checkpointer = TuneCheckpointer(config["point"].get("resume")) if config["checkpoints"] else None
    on_epoch = checkpointer.hold if checkpointer else tune.report  # every epoch's metrics reach Tune's callbacks
    row, epochs = execute(spec, config["data"], context, checkpointer, config["speed"], gpu_share=config["point"]["gpu"], on_epoch=on_epoch)
    if checkpointer:
        checkpointer.flush()
    tune.report({"payload": json.dumps({"row": row, "epochs": epochs}, default=_json_default)})


def _spec(config: dict[str, Any]) -> TrialSpec:
    raw = config["point"]["trial"]
    return TrialSpec(**{**raw, "experiments": tuple(raw["experiments"])})


def _json_default(value: Any) -> Any:
    """numpy and torch scalars as Python numbers (NaN stays NaN: json writes and reads it)."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


# -- in the driver -------------------------------------------------------------------


class StoreResults(tune.Callback):
    """Write each trial's row the moment its final result arrives; count and print it; free its claim.

    It never raises (an exception here would end the whole grid inside Tune):
    a row no column can hold is kept as JSON beside the results and the grid
    goes on; a results disk that refuses writes (full, read-only) sets
    `disk_error`, and `ClaimingSearcher` then starts no further trial."""

    def __init__(self, store: Store, claims: Leases, progress: Progress, counts: dict[str, int]):
        self.store, self.claims, self.progress, self.counts = store, claims, progress, counts
        self.disk_error: str | None = None

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        try:
            self.progress.started(trial.config["point"]["trial"]["trial_id"])
        except Exception as exc:  # the progress line is a view: it must not cost a trial
            _say(f"warning: the progress line failed ({type(exc).__name__}: {exc})")

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        try:
            self.progress.tick()
        except Exception as exc:
            _say(f"warning: the progress line failed ({type(exc).__name__}: {exc})")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict[str, Any], **info: Any) -> None:
        if "payload" not in result:  # an epoch's report (metrics, maybe a checkpoint): the final one carries the row
            return
        try:
            payload = json.loads(result["payload"])
            row = payload["row"]
            status = row["status"] if self._write(row, payload["epochs"]) else "unwritten"
            self.counts[status] = self.counts.get(status, 0) + 1
            self.progress.finished_trial(row, status)
        except Exception as exc:  # never let Tune see it
            self._failed(trial, exc)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Ray gave up on a trial (its worker kept dying): record it as an error row."""
        try:
            from tlbench.trial.execute import trial_row

            spec = _spec(trial.config)
            message = f"Ray trial failed after retries: {getattr(trial, 'error_msg', None) or 'worker died'}"
            context = {**trial.config["context"], "node_id": None, "gpu_share": trial.config["point"]["gpu"]}
            row = trial_row(spec, "error", {"error": message[:2000]}, context)
            status = "error" if self._write(row, []) else "unwritten"
            self.counts[status] = self.counts.get(status, 0) + 1
            self.progress.failed_trial(spec.trial_id, f"[error] {spec.trial_id} {spec.experiment}: {message[:200]}")
        except Exception as exc:
            self._failed(trial, exc)

    def _write(self, row: dict[str, Any], epochs: list[dict[str, Any]]) -> bool:
        """Write a row; where it cannot be, say so, keep it as JSON for a later run, and go on."""
        trial_id = row["trial_id"]
        try:
            self.store.write(row, epochs)
            return True
        except OSError as exc:  # the results disk: full, read-only, gone
            self.disk_error = f"cannot write to {self.store.root} ({exc.strerror or exc})"
            what = "the results disk refused it"
            advice = "free space or make the results folder writable, then rerun `grid run`: it writes kept rows first"
        except Exception as exc:  # this row: a value no column holds
            what = f"{type(exc).__name__}: {str(exc)[:300]}"
            advice = "a later `grid run` tries to write it again (it stays pending until then)"
        finally:
            self._release(trial_id)  # its own guard: a claim that cannot be freed must not replace the write's outcome
        try:
            kept = f"kept as {self.store.keep_unwritten(row, epochs)}"
        except Exception as exc:
            kept = f"could not be kept either ({type(exc).__name__}: {exc}); the row: {json.dumps(row, default=str)}"
        print(f"error: trial {trial_id}: its result could not be written ({what}); {kept}; {advice}", file=sys.stderr, flush=True)
        return False

    def _release(self, trial_id: str) -> None:
        try:
            self.claims.release(trial_id)
        except OSError as exc:  # EROFS, permissions: the claim goes stale when this driver exits
            _say(f"warning: cannot free the claim of trial {trial_id} ({exc.strerror or exc})")

    def _failed(self, trial: Any, exc: Exception) -> None:
        self.counts["unwritten"] = self.counts.get("unwritten", 0) + 1
        _say(
            f"error: tlbench could not handle the result of Tune trial {getattr(trial, 'trial_id', trial)} "
            f"({type(exc).__name__}: {exc}); its trial stays pending"
        )


def _say(message: str) -> None:
    """A message on stderr that cannot raise into Tune (a closed or broken stderr)."""
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


class ClaimingSearcher(Searcher):
    """Hands Tune the pending trials, longest first, each only once this driver holds its claim.

    Tune asks for one trial at a time as resources free up (one pending trial
    for a custom searcher), so a second driver on the same results folder
    claims the trials this one has not reached: the two split the grid. What is
    left once every unclaimed trial is handed out belongs to another live driver
    (a dead driver's claims are stale and taken over): this one says so and
    finishes rather than wait for them, because a waiting Tune keeps its reused
    actors, and with them the CPUs and GPUs the other driver needs to run them."""

    def __init__(self, points: list[dict[str, Any]], claims: Leases, store: Store, results: StoreResults):
        super().__init__()
        self.queue, self.elsewhere = list(points), []
        self.claims, self.store, self.results = claims, store, results
        self.by_others = 0
        self.told = False  # whether this driver said which trials it leaves to another

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.results.disk_error:
            return Searcher.FINISHED
        while self.queue:
            point = self.queue.pop(0)
            if self._claim(point):
                return {"point": point}
        if self.elsewhere and not self.told:
            self.told = True
            running = [p for p in self.elsewhere if not self.store.done(p["trial"]["trial_id"])]
            self.by_others += len(self.elsewhere) - len(running)
            self.elsewhere = running
            if running:
                _say(self._left_to_others())
        return Searcher.FINISHED

    def _left_to_others(self) -> str:
        """Which drivers hold the trials this one leaves to them, so a claim that never goes stale is seen."""
        holders: dict[str, int] = {}
        for point in self.elsewhere:
            holder = self.claims.holder(point["trial"]["trial_id"]) or {}
            who = f"host {holder.get('host', '?')} pid {holder.get('pid', '?')} driver {str(holder.get('driver', '?'))[:6]}"
            holders[who] = holders.get(who, 0) + 1
        listed = "; ".join(f"{n} held by {who}" for who, n in holders.items())
        return (
            f"left {len(self.elsewhere)} trial(s) to the driver that claimed them ({listed}); claims in {self.claims.folder}: "
            f"a later run takes over any that driver leaves unfinished"
        )

    def _claim(self, point: dict[str, Any]) -> bool:
        trial_id = point["trial"]["trial_id"]
        try:
            taken = self.claims.take(trial_id)
        except OSError as exc:  # the results disk refuses the claim file: stop as for a row (Tune must not see it)
            self.results.disk_error = f"cannot write to {self.claims.folder} ({exc.strerror or exc})"
            self.queue, self.elsewhere = [], []
            return False
        if not taken:
            self.elsewhere.append(point)
            return False
        if self.store.done(trial_id):  # another driver finished it since this one listed what was pending
            self.results._release(trial_id)
            self.by_others += 1
            return False
        return True

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the results folder and the claims are the state; a rerun works out what is pending."""

    def restore(self, checkpoint_path: str) -> None:
        pass


def cluster_resources() -> dict[str, float]:
    """What the connected cluster has: {"CPU": n, "GPU": n, ...}."""
    return ray.cluster_resources()


def connect(address: str | None) -> None:
    """A running cluster at `address` (or RAY_ADDRESS, 'auto' on a node), else a local Ray."""
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)


def earlier_checkpoints(storage: str) -> dict[str, str]:
    """trial_id -> the newest state file an earlier run left in a local storage path."""
    if "://" in storage:  # cloud storage: Tune's retries still resume; a new driver starts trials afresh
        return {}
    found: dict[str, tuple[float, str]] = {}
    for state in Path(storage).glob(f"tlbench-*/*/checkpoint_*/{STATE_FILE}"):
        if not is_regular(state):  # a FIFO planted in a shared storage would hang the worker that reads it
            print(f"warning: ignoring {state}: not a regular file", file=sys.stderr, flush=True)
            continue
        trial_id, mtime = state.parent.parent.name, state.stat().st_mtime
        if trial_id not in found or mtime > found[trial_id][0]:
            found[trial_id] = (mtime, str(state))
    return {trial_id: path for trial_id, (_, path) in found.items()}


@ray.remote(num_cpus=0)
def _prepare_on_node(configs: list[tuple[dict[str, Any], int]], root: str) -> str:
    """Download and decode each real dataset once on this node, before any trial reads it."""
    from tlbench.trial import data
    from tlbench.trial.config import DatasetConfig

    for dataset, size in configs:
        data.load(DatasetConfig.from_dict(dataset), size, root, seed=0)
    return ray.get_runtime_context().get_node_id()


def prepare_data(pending: list[TrialSpec], data: Path) -> None:
    """Each node gets every real dataset the grid needs, one at a time, before trials start.

    A failure here (a dataset missing offline) is left for the trials to report
    by name; preparing is only there so no two trials download at once."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    wanted: dict[str, tuple[dict[str, Any], int]] = {}
    for spec in pending:
        dataset = spec.config["dataset"]
        if dataset["source"] == "real" and DATASETS[dataset["name"]].load is not None:
            wanted[json.dumps([dataset, spec.config["image_size"]], sort_keys=True)] = (dataset, spec.config["image_size"])
    if not wanted:
        return
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    tasks = [_prepare_on_node.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(
        list(wanted.values()), str(data.resolve())) for node in nodes]  # fmt: skip
    try:
        ray.get(tasks)
    except Exception as exc:  # reported again by each trial that needs the dataset
        cause = getattr(exc, "cause", None) or exc  # a RayTaskError wraps what the task raised
        print(f"warning: preparing the datasets failed: {type(cause).__name__}: {cause}; its trials will fail with that error", flush=True)


def check_resources(pending: list[TrialSpec], options: RunOptions, cluster_gpus: float) -> None:
    """Refuse, before submitting anything, trials no node of the cluster could ever place (Tune would wait forever)."""
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    for spec in pending:
        gpus, cpus = gpu_share(spec, options, cluster_gpus), options.cpus_per_trial
        if not any(node.get("CPU", 0) >= cpus and node.get("GPU", 0) >= gpus for node in nodes):
            largest = ", ".join(f"{node.get('CPU', 0):g} CPU/{node.get('GPU', 0):g} GPU" for node in nodes) or "no live node"
            raise GridError(
                f"a trial asks for {cpus:g} CPU and {gpus:g} GPU on one node; the cluster's nodes have {largest} "
                f"(set --cpus-per-trial / --gpus-per-trial to what a node has)",
                file="--gpus-per-trial/--cpus-per-trial",
            )


def progress_of(points: list[dict[str, Any]], options: RunOptions, cluster_gpus: float) -> Progress:
    """The live line's plan: the trials in start order, on the cluster's GPUs where they ask for some, else its CPUs."""
    on_gpus = any(point["gpu"] > 0 for point in points)
    plan = []
    for point in points:
        trial = point["trial"]
        config = trial["config"]
        estimated = gpu_seconds(config) if on_gpus else cpu_seconds(config, CPU_TRAIN_GFLOPS_GUESS, options.cpus_per_trial)
        plan.append(Planned(trial["trial_id"], config["model"]["arch"], estimated, point["gpu"] if on_gpus else options.cpus_per_trial))
    devices = cluster_gpus if on_gpus else ray.cluster_resources().get("CPU", 1.0)
    return Progress(plan, max(1, int(devices)))


def logger_callbacks(options: RunOptions) -> list[tune.Callback]:
    """Tune's TensorBoard (by default), MLflow and W&B loggers, fed every epoch's metrics (loggers.py)."""
    chosen: list[tune.Callback] = []
    if options.tensorboard:
        chosen.append(loggers.EpochTensorBoard(Path(options.results).resolve() / "tensorboard"))
    if options.mlflow:
        chosen.append(loggers.mlflow_callback(options.mlflow, experiment_name="tlbench"))
    if options.wandb:
        chosen.append(loggers.wandb_callback(options.wandb, Path(options.results).resolve() / "wandb"))
    return chosen


@dataclass
class RunOutcome:
    counts: dict[str, int]  # trials this driver ran, by status (unwritten: its row is kept as JSON)
    by_others: int = 0  # pending trials another driver on the same results folder finished
    stopped: str | None = None  # why the run stopped early (the results disk refused a write)
    left_to_others: tuple[str, ...] = ()  # ids of pending trials another live driver holds and is running


def run(pending: list[TrialSpec], options: RunOptions) -> RunOutcome:
    """Run every pending trial this driver can claim through Ray Tune."""
    connect(options.address)
    cluster_gpus = ray.cluster_resources().get("GPU", 0.0)
    ordered = longest_first(pending)
    check_resources(ordered, options, cluster_gpus)
    storage = location(options.storage, options.results)
    check_shared(storage, options.checkpoints)  # before submitting: a node-local path would fail each trial's checkpoint
    prepare_data(ordered, options.data)
    resume = earlier_checkpoints(storage)
    counts: dict[str, int] = {}
    points = []
    for spec in ordered:
        point = {"trial": {**spec.__dict__, "experiments": list(spec.experiments)}, "gpu": gpu_share(spec, options, cluster_gpus)}
        if spec.trial_id in options.oom_shares:
            print(shares.oom_line(spec.trial_id, spec.experiment, options.oom_shares[spec.trial_id], point["gpu"]), flush=True)
        if spec.trial_id in resume:
            point["resume"] = resume[spec.trial_id]
        points.append(point)
    constants = {
        "cpus": options.cpus_per_trial,
        "data": str(Path(options.data).resolve()),
        "context": dict(options.context),
        "checkpoints": options.checkpoints,
        "speed": dict(options.speed),
    }
    store, claims = Store(options.results), Leases(options.results)
    results = StoreResults(store, claims, progress_of(points, options, cluster_gpus), counts)
    searcher = ClaimingSearcher(points, claims, store, results)

    def resources(config: dict[str, Any]) -> tune.PlacementGroupFactory:
        return tune.PlacementGroupFactory([{"CPU": config["cpus"], "GPU": config["point"]["gpu"]}])

    tuner = tune.Tuner(
        tune.with_resources(_trainable, resources=resources),
        param_space=constants,
        tune_config=tune.TuneConfig(
            search_alg=searcher, num_samples=-1, reuse_actors=True, trial_dirname_creator=lambda t: t.config["point"]["trial"]["trial_id"]
        ),
        run_config=tune.RunConfig(
            name=time.strftime("tlbench-%Y%m%d-%H%M%S-") + claims.me["driver"][:6],  # two drivers never share a folder
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[results, *logger_callbacks(options)],
            verbose=0,
        ),
    )
    # The driver keeps results itself; Tune's analysis would warn that its own
    # per-trial logs (switched off above) are missing.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    try:
        tuner.fit()
    finally:
        results.progress.close()
        claims.release_all()  # on Ctrl-C too; after SIGKILL the claims go stale with this process
    left = tuple(p["trial"]["trial_id"] for p in searcher.elsewhere)
    return RunOutcome(counts, by_others=searcher.by_others, stopped=results.disk_error, left_to_others=left)
