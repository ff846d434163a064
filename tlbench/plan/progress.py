"""A grid run as it goes: done / running / pending / failed, elapsed, and an ETA.

On a terminal, one status line redrawn in place; otherwise the one line per
finished trial `grid run` has always printed, with the ETA appended. The ETA is
the makespan (`makespan.py`) of what is left, in the order the scheduler starts
trials, on the cluster's GPUs (or CPUs): each trial's duration is the cost
model's, times what finished trials of its arch actually took over what the
model said (all finished trials where none of its arch has finished yet). A
running trial counts for what is left of its estimate. No Ray here: the
scheduler's Tune callback calls it.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from tlbench.plan.makespan import Job, hours, makespan
from tlbench.results.store import DONE  # every other status (error, oom, unwritten) counts as failed

REDRAW_SECONDS = 1.0  # the live line's clock ticks no faster than this
# One CPU's training rate for the first ETA on a CPU cluster, before any trial has finished: an AVX2
# core (docs/grids.md: 42 GFLOP/s fp32 matmul on 2 cores, half of that in training). Not measured here, so the
# driver need not import torch; the first finished trial replaces it (Calibration).
CPU_TRAIN_GFLOPS_GUESS = 10.0


@dataclass(frozen=True)
class Planned:
    """One trial as the ETA sees it: its arch, its duration by the cost model, its share of a device."""

    trial_id: str
    arch: str
    estimated_s: float
    share: float


class Calibration:
    """Measured over estimated seconds of finished trials, per arch and overall: the cost model's correction."""

    def __init__(self) -> None:
        self.per_arch: dict[str, tuple[float, float]] = {}  # arch -> (estimated s, measured s) summed

    def record(self, arch: str, estimated_s: float, measured_s: float) -> None:
        estimated, measured = self.per_arch.get(arch, (0.0, 0.0))
        self.per_arch[arch] = (estimated + estimated_s, measured + measured_s)

    def factor(self, arch: str) -> float:
        estimated, measured = self.per_arch.get(arch, (0.0, 0.0))
        if estimated <= 0:  # no finished trial of this arch: what every finished trial says
            estimated = sum(e for e, _ in self.per_arch.values())
            measured = sum(m for _, m in self.per_arch.values())
        return measured / estimated if estimated > 0 else 1.0

    def seconds(self, trial: Planned) -> float:
        return trial.estimated_s * self.factor(trial.arch)


def eta_seconds(plan: list[Planned], devices: int, calibration: Calibration, running: dict[str, float], finished: set[str]) -> float:
    """Seconds until the last trial of `plan` (in start order) ends; `running`: trial_id -> seconds it has run."""
    jobs = [Job(max(0.0, calibration.seconds(t) - running[t.trial_id]), t.share) for t in plan if t.trial_id in running]
    jobs += [Job(calibration.seconds(t), t.share) for t in plan if t.trial_id not in running and t.trial_id not in finished]
    return makespan(jobs, devices)


class Progress:
    """Counts trials as they start and end and shows them: a live line on a terminal, a line per trial elsewhere."""

    def __init__(
        self,
        plan: list[Planned],
        devices: int,
        stream: TextIO | None = None,
        live: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.plan, self.devices = plan, devices
        self.by_id = {t.trial_id: t for t in plan}
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.clock = clock
        self.began = clock()
        self.calibration = Calibration()
        self.started_at: dict[str, float] = {}
        self.finished: dict[str, str] = {}  # trial_id -> status
        self.drawn_at = float("-inf")

    def started(self, trial_id: str) -> None:
        if trial_id not in self.finished:
            self.started_at.setdefault(trial_id, self.clock())  # a retried trial keeps its first start
        self.tick()

    def finished_trial(self, row: dict[str, Any], status: str) -> None:
        """A trial's row was written (or not: status `unwritten`): count it, learn from its time, show it."""
        trial_id = row["trial_id"]
        began = self.started_at.pop(trial_id, None)
        self.finished[trial_id] = status
        planned = self.by_id.get(trial_id)
        # Errors and divergences end early, a trial resumed from a checkpoint ran only its last epochs: no guide to a whole trial.
        if status == "ok" and not row.get("resumed_from_epoch") and began is not None and planned is not None:
            self.calibration.record(planned.arch, planned.estimated_s, self.clock() - began)
        if self.live:
            self.draw()
            return
        detail = f"test_acc={row['test_acc']:.4f}" if row.get("test_acc") is not None else row.get("error", "")
        self._write(
            f"[{len(self.finished)}/{len(self.plan)}] {status:8s} {trial_id} {row['experiment']} seed={row['seed']} "
            f"{detail} eta={hours(self.eta())}\n"
        )

    def failed_trial(self, trial_id: str, message: str) -> None:
        """Ray gave up on a trial: count it as failed and say why."""
        self.started_at.pop(trial_id, None)
        self.finished[trial_id] = "error"
        self.note(message)

    def note(self, message: str) -> None:
        """A line of its own (an error) that the live line must not swallow."""
        self._write(("\r\x1b[2K" if self.live else "") + message + "\n")
        if self.live:
            self.draw()

    def tick(self) -> None:
        """Redraw the live line when its clock has moved on (Tune calls this every step)."""
        if self.live and self.clock() - self.drawn_at >= REDRAW_SECONDS:
            self.draw()

    def counts(self) -> dict[str, int]:
        done = sum(status in DONE for status in self.finished.values())
        failed = len(self.finished) - done
        running = len(self.started_at)
        return {"done": done, "running": running, "pending": len(self.plan) - done - failed - running, "failed": failed}

    def eta(self) -> float:
        now = self.clock()
        running = {trial_id: now - began for trial_id, began in self.started_at.items()}
        try:
            return eta_seconds(self.plan, self.devices, self.calibration, running, set(self.finished))
        except ValueError:  # a share larger than the devices counted (a cluster whose GPUs sit on several nodes)
            return float("nan")

    def line(self) -> str:
        counts = self.counts()
        measured = "" if self.calibration.per_arch else " (cost model)"
        return (
            f"{counts['done']} done, {counts['running']} running, {counts['pending']} pending, {counts['failed']} failed"
            f" of {len(self.plan)} | elapsed {hours(self.clock() - self.began)} | eta {hours(self.eta())}{measured}"
        )

    def draw(self) -> None:
        """Clear the terminal's line and write the status, cut to the terminal's width (a wrapped line would not clear)."""
        self.drawn_at = self.clock()
        width = shutil.get_terminal_size((120, 24)).columns
        self._write("\r\x1b[2K" + self.line()[: max(width - 1, 20)])

    def close(self) -> None:
        """End the live line so what follows starts on a line of its own."""
        if self.live:
            self.draw()
            self._write("\n")

    def _write(self, text: str) -> None:
        try:  # a closed or broken stdout must not raise into Tune
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass
