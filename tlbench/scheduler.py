"""Pending trials -> Ray Tune, one Tune trial each; results come back to the driver.

The only module that imports Ray. Each trial runs `execute.execute` in a Ray
actor with its own resources (a GPU share per arch, CPUs with torch threads to
match); its row travels back in the Tune result and the driver writes it, so
the cluster needs no shared filesystem for results.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Tune's own per-trial CSV/JSON/TensorBoard loggers would duplicate what the
# store writes, and TensorBoard is not a dependency.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

import ray  # noqa: E402
from ray import tune  # noqa: E402

from . import catalog
from .cost import trial_cost
from .spec import TrialSpec
from .store import Store



@dataclass
class RunOptions:
    results: Path
    data: Path
    address: str | None = None
    gpus_per_trial: float | None = None  # None: the arch's share where the cluster has GPUs, else 0
    cpus_per_trial: float = 1.0
    storage: str | None = None  # Tune's experiment storage; default <results>/.tune
    max_failures: int = 2  # retries of a trial whose worker died
    context: dict[str, Any] = field(default_factory=dict)  # profile, grid hash: copied into every row


def gpu_share(spec: TrialSpec, options: RunOptions, cluster_gpus: float) -> float:
    """The GPU fraction a trial asks for: explicit, else its arch's (0 on a CPU-only cluster)."""
    if options.gpus_per_trial is not None:
        return options.gpus_per_trial
    if cluster_gpus <= 0:
        return 0.0
    return catalog.arch_info(spec.config["model"]["arch"]).gpu_share


def longest_first(pending: list[TrialSpec]) -> list[TrialSpec]:
    """Start the most expensive trials first, so the grid does not end on one long straggler."""
    return sorted(pending, key=lambda s: -trial_cost(s.config)["tflops"])


def _trainable(config: dict[str, Any]) -> None:
    """A Tune function trainable: one trial, reported once."""
    import torch

    from .execute import execute

    torch.set_num_threads(max(1, int(config["cpus"])))  # match the CPUs Ray granted: no oversubscription
    spec = _spec(config)
    context = {**config["context"], "node_id": ray.get_runtime_context().get_node_id()}
    row, epochs = execute(spec, config["data"], context)
    tune.report({"payload": json.dumps({"row": row, "epochs": epochs}, default=_json_default)})


def _spec(config: dict[str, Any]) -> TrialSpec:
    raw = config["point"]["trial"]
    return TrialSpec(**{**raw, "experiments": tuple(raw["experiments"])})


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def _specs_as_config(spec: TrialSpec) -> dict[str, Any]:
    return {**spec.__dict__, "experiments": list(spec.experiments)}


class StoreResults(tune.Callback):
    """A Tune callback in the driver: write each trial's row the moment it reports."""

    def __init__(self, store: Store, by_id: dict[str, TrialSpec], counts: dict[str, int]):
        self.store, self.by_id, self.counts = store, by_id, counts

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict[str, Any], **info: Any) -> None:
        payload = json.loads(result["payload"])
        row = payload["row"]
        self.store.write(row, payload["epochs"])
        self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1
        done = sum(self.counts.values())
        detail = f"test_acc={row['test_acc']:.4f}" if row.get("test_acc") is not None else row.get("error", "")
        print(f"[{done}/{len(self.by_id)}] {row['status']:8s} {row['trial_id']} {row['experiment']} seed={row['seed']} {detail}", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Ray gave up on a trial (its worker kept dying): record it as an error row."""
        from .execute import trial_row

        spec = _spec(trial.config)
        message = f"Ray trial failed after retries: {getattr(trial, 'error_msg', None) or 'worker died'}"
        row = trial_row(spec, "error", {"error": message[:2000]}, {**trial.config["context"], "node_id": None})
        self.store.write(row, [])
        self.counts["error"] = self.counts.get("error", 0) + 1
        print(f"[error] {spec.trial_id} {spec.experiment}: {message[:200]}", flush=True)


def connect(address: str | None) -> None:
    """A running cluster at `address` (or RAY_ADDRESS, 'auto' on a node), else a local Ray."""
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=True)


def run(pending: list[TrialSpec], options: RunOptions) -> dict[str, int]:
    """Run every pending trial through Ray Tune; returns counts by status."""
    connect(options.address)
    cluster_gpus = ray.cluster_resources().get("GPU", 0.0)
    ordered = longest_first(pending)
    by_id = {s.trial_id: s for s in ordered}
    counts: dict[str, int] = {}
    callback = StoreResults(Store(options.results), by_id, counts)

    def resources(config: dict[str, Any]) -> tune.PlacementGroupFactory:
        return tune.PlacementGroupFactory([{"CPU": config["cpus"], "GPU": config["point"]["gpu"]}])

    shares = {s.trial_id: gpu_share(s, options, cluster_gpus) for s in ordered}
    context = dict(options.context)
    trials = [{"trial": _specs_as_config(s), "gpu": shares[s.trial_id]} for s in ordered]
    param_space = {
        "point": tune.grid_search(trials),
        "cpus": options.cpus_per_trial,
        "data": str(Path(options.data).resolve()),
        "context": context,
    }
    storage = options.storage or str((Path(options.results) / ".tune").resolve())
    tuner = tune.Tuner(
        tune.with_resources(_trainable, resources=resources),
        param_space=param_space,
        tune_config=tune.TuneConfig(reuse_actors=True, trial_dirname_creator=lambda t: t.trial_id),
        run_config=tune.RunConfig(
            name="tlbench",
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
            callbacks=[callback],
            verbose=0,
        ),
    )
    # The driver keeps results itself; Tune's analysis would warn that its own
    # per-trial logs (switched off above) are missing.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    tuner.fit()
    return counts
