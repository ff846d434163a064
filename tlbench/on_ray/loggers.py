"""Ray Tune's own loggers, fed each trial's per-epoch metrics: TensorBoard, MLflow, W&B.

Imported only by `driver.py` (it imports Ray Tune). Each is Tune's callback
with three changes: a run is named `<experiment>/<axes>/seed=<n>` rather than
by Tune's trial name; it is tagged with the tlbench trial (trial_id,
experiment, report, seed) and its resolved config as dotted keys, rather than
Tune's param space (which here is the scheduler's plumbing); and it logs only
the epoch reports' numeric metrics, never the final report that carries the
row as JSON (the results folder holds that).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from ray.air.constants import TRAINING_ITERATION
from ray.tune.logger import TBXLoggerCallback

from tlbench.results.columns import TUNE_METRICS
from tlbench.results.store import flatten_config


def epoch_metrics(result: dict[str, Any]) -> dict[str, float] | None:
    """The per-epoch numbers of a Tune result (the epoch columns declared `tune`: columns.TUNE_METRICS); None for the
    final result (it carries the row) or one without an epoch."""
    if "payload" in result or "epoch" not in result:
        return None
    return {key: float(result[key]) for key in TUNE_METRICS if isinstance(result.get(key), (int, float))}


def trial_of(tune_trial: Any) -> dict[str, Any]:
    """The tlbench trial (TrialSpec's fields) a Tune trial runs."""
    return tune_trial.config["point"]["trial"]


def run_name(trial: dict[str, Any]) -> str:
    """`<experiment>/<axes>/seed=<n>`: how a person finds a trial among a grid's runs (also a folder name).

    A list or mapping value is written as compact JSON without its quotes, a `/` in a value as `_`,
    and characters a shell would trip on are dropped: `train.freeze={frozen:[layer1,layer2]}`."""
    axes = ",".join(f"{key}={_axis_value(value)}" for key, value in sorted(trial["axes"].items())) or "no-axes"
    return f"{trial['experiment']}/{_fits_a_folder(axes)}/seed={trial['seed']}"


MAX_FOLDER_BYTES = 200  # file systems stop at 255 bytes a name; a long variant name or freeze list would crash the run


def _fits_a_folder(name: str) -> str:
    """`name`, or where it is longer than a folder name may be, its start and a hash of the whole (distinct runs
    stay distinct folders)."""
    if len(name.encode()) <= MAX_FOLDER_BYTES:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return name.encode()[: MAX_FOLDER_BYTES - 17].decode(errors="ignore") + "-" + digest


def _axis_value(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":")) if isinstance(value, (dict, list)) else str(value)
    return re.sub(r"[^\w.,:=+\-\[\]{}]", "", text.replace("/", "_"))


def run_tags(trial: dict[str, Any]) -> dict[str, str]:
    return {"trial_id": trial["trial_id"], "experiment": trial["experiment"], "report": trial["report"], "seed": str(trial["seed"])}


def run_config(trial: dict[str, Any]) -> dict[str, Any]:
    """The resolved config as the result files' dotted columns (JSON text for lists and mappings)."""
    return flatten_config(trial["config"])


class EpochTensorBoard(TBXLoggerCallback):
    """TensorBoard event files, one run per trial under `folder/<experiment>/<axes>/seed=<n>`, one step per epoch."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = Path(folder)

    def log_trial_start(self, trial: Any) -> None:
        if trial in self._trial_writer:  # a retried trial: a new event file beside the first
            self._trial_writer[trial].close()
        self._trial_writer[trial] = self._summary_writer_cls(str(self.folder / run_name(trial_of(trial))), flush_secs=30)
        self._trial_result[trial] = {}

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        metrics = epoch_metrics(result)
        if metrics is not None:
            super().log_trial_result(iteration, trial, {TRAINING_ITERATION: int(result["epoch"]), **metrics})

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        """Close the run; no hparams summary (Tune's would list the scheduler's plumbing, not the config)."""
        self._trial_result.pop(trial, None)
        writer = self._trial_writer.pop(trial, None)
        if writer is not None:
            writer.close()


def mlflow_callback(tracking_uri: str, experiment_name: str) -> Any:
    """Tune's MLflowLoggerCallback, one MLflow run per trial (needs the `mlflow` extra)."""
    import os

    from ray.air.integrations.mlflow import MLflowLoggerCallback

    if "://" not in tracking_uri or tracking_uri.startswith("file:"):  # MLflow 3 refuses a local folder store unless asked
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")

    class TrialMLflow(MLflowLoggerCallback):
        def log_trial_start(self, trial: Any) -> None:
            if trial in self._trial_runs:  # a retried trial keeps its run
                return
            tlbench_trial = trial_of(trial)
            run = self.mlflow_util.start_run(tags={**self.tags, **run_tags(tlbench_trial)}, run_name=run_name(tlbench_trial))
            self._trial_runs[trial] = run.info.run_id
            self.mlflow_util.log_params(run_id=run.info.run_id, params_to_log=run_config(tlbench_trial))

        def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
            metrics = epoch_metrics(result)
            if metrics is not None:
                if trial not in self._trial_runs:
                    self.log_trial_start(trial)
                self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=metrics, step=int(result["epoch"]))

    return TrialMLflow(tracking_uri=tracking_uri, experiment_name=experiment_name)


def wandb_callback(project: str, folder: Path) -> Any:
    """Tune's WandbLoggerCallback, one W&B run per trial (needs the `wandb` extra; WANDB_MODE=offline works without a key).

    W&B keeps its run files under `folder` (results/wandb): by default they go to
    the trial's folder in Ray's temporary session directory, and the copy Tune
    syncs to its storage can predate the run's end."""
    from ray.air.integrations.wandb import WandbLoggerCallback

    Path(folder).mkdir(parents=True, exist_ok=True)

    class TrialWandb(WandbLoggerCallback):
        def log_trial_start(self, trial: Any) -> None:
            tlbench_trial = trial_of(trial)
            tags = run_tags(tlbench_trial)
            self._start_logging_actor(
                trial, [*self._exclude_results, *self.excludes], id=tags["trial_id"], name=run_name(tlbench_trial),
                resume="allow", reinit="finish_previous", allow_val_change=True, group=tlbench_trial["experiment"], project=self.project,
                config={**tags, **run_config(tlbench_trial)}, tags=[f"{key}={value}" for key, value in tags.items()],
                **self.kwargs)  # fmt: skip

        def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
            metrics = epoch_metrics(result)
            if metrics is not None:
                epoch = int(result["epoch"])  # W&B's step is the result's training_iteration: make it the epoch
                super().log_trial_result(iteration, trial, {**metrics, "epoch": epoch, TRAINING_ITERATION: epoch})

    return TrialWandb(project=project, dir=str(folder))
