"""One trial as the grid runs it: `run_trial`, with its failures turned into a row.

`execute(spec) -> (row, epochs)` never raises for a trial's own failure: an
exception becomes status `error` with the message and the traceback's tail, so
the rest of the grid goes on; a CUDA out-of-memory becomes status `oom` (not
done: a rerun retries it with twice the GPU share). Ctrl-C still stops it. No Ray here.
"""

from __future__ import annotations

import datetime
import os
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tlbench.grid import TrialSpec
from tlbench.results import provenance
from tlbench.results.columns import EpochReport, EpochRow, TrialRow
from tlbench.results.store import flatten_config
from tlbench.trial.checkpoint import Checkpointer
from tlbench.trial.config import TrialConfig

TRACEBACK_LINES = 12  # of the failing trial's traceback, kept in its row


def trial_row(spec: TrialSpec, status: str, summary: dict[str, Any], context: dict[str, Any]) -> TrialRow:
    """The result row: who the trial is, what it was, what it gave, where it ran, with which code and software.

    `summary`: run_trial's (a TrialSummary), or a failed trial's error, traceback and wall_s. The git state
    comes from the driver (`context`: the grid file's repository); the rest is this worker's. Its columns are
    declared in results/columns.py (tests/results/test_columns.py checks a real trial's row against them)."""
    import torch
    import torchvision

    return {
        "trial_id": spec.trial_id, "experiment": spec.experiment, "experiments": list(spec.experiments),
        "report": spec.report, "variant": spec.axes.get("variant"), "axes": spec.axes, "status": status,
        **summary, **flatten_config(spec.config),
        "profile": context.get("profile"), "grid_sha256": context.get("grid_sha256"), "node_id": context.get("node_id"),
        "git_commit": context.get("git_commit"), "git_dirty": context.get("git_dirty"), **provenance.environment(),
        "hostname": socket.gethostname(), "pid": os.getpid(), "torch_version": torch.__version__, "torchvision_version": torchvision.__version__,
        "finished_at": now_iso(), "started_at": context.get("started_at"),
        "gpu_share": context.get("gpu_share"), "gpu_ids": context.get("gpu_ids"),
        "gpu_memory_mb": card_memory_mb() if summary.get("device") else None,  # rows of trials that trained
    }  # fmt: skip


def card_memory_mb() -> float | None:
    """Total memory of the CUDA card this process trains on (run_trial picks CUDA wherever there is one), else None."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / 2**20


def now_iso() -> str:
    """UTC now, to the millisecond: trials' start and end times, fine enough to see which overlapped."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def execute(
    spec: TrialSpec,
    data_root: str | Path,
    context: dict[str, Any],
    checkpointer: Checkpointer | None = None,
    speed: dict[str, bool] | None = None,
    gpu_share: float = 0.0,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> tuple[TrialRow, list[EpochRow]]:
    """`speed`: run_trial's options that change speed, not results (feature_cache, compile); `gpu_share`: the
    fraction of a GPU the trial was given, recorded in its row (a CUDA out-of-memory within it is status `oom`);
    `on_epoch`: run_trial's."""
    from tlbench.trial import memory
    from tlbench.trial.train import run_trial

    context = {**context, "gpu_share": gpu_share}  # the row's record of it (trial_row)

    started = time.perf_counter()
    try:
        config = TrialConfig.from_dict(spec.config)  # typed once, here: a bad key is this trial's error row
        outcome = run_trial(config, data_root, checkpointer=checkpointer, gpu_share=gpu_share, on_epoch=on_epoch, **(speed or {}))
    except Exception as exc:
        tail = "".join(traceback.format_exception(exc)[-TRACEBACK_LINES:])
        status, message = (
            ("oom", memory.oom_message(exc, gpu_share)) if memory.is_cuda_oom(exc) else ("error", f"{type(exc).__name__}: {exc}")
        )
        summary = {"error": message, "traceback": tail, "wall_s": time.perf_counter() - started}
        return trial_row(spec, status, summary, context), []
    epochs: list[EpochRow] = [{"trial_id": spec.trial_id, "experiment": spec.experiment, "seed": spec.seed, **e} for e in outcome.epochs]
    return trial_row(spec, outcome.status, outcome.summary, context), epochs
