"""Wall time on paper: how long a list of trials takes on N GPUs (or N CPUs), packed as the scheduler packs them.

The scheduler hands Tune its trials one at a time in `longest_first` order, and
Tune starts each as soon as its resources are free (one trial waits at a time,
so a later trial never overtakes an earlier one that does not fit yet).
`makespan` replays that: each trial, in order, starts at the earliest moment
some device has its share free, no earlier than the trial before it. `grid
plan --gpus/--cpus` feeds it durations from the cost model; the live ETA
(`progress.py`) feeds it the same durations calibrated by measured trials.
No torch and no Ray here: `grid plan` and the driver both import it.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from tlbench.plan.cost import Config, trial_cost
from tlbench.registries import archs

FREE = 1e-9  # float slack when adding shares back up (0.25 x 4 must fill exactly one device)


class HasConfig(Protocol):
    config: dict[str, Any]


Trial = TypeVar("Trial", bound=HasConfig)


def longest_first(trials: list[Trial]) -> list[Trial]:
    """Start the most expensive trials first, so the grid does not end on one long straggler."""
    return sorted(trials, key=lambda s: -trial_cost(s.config)["tflops"])


def arch_gpu_share(config: Config) -> float:
    """The fraction of one GPU a trial of this arch asks for by default (`archs.Arch.gpu_share`)."""
    return archs.get(config["model"]["arch"]).gpu_share


def gpu_seconds(config: Config) -> float:
    """A trial's duration on a GPU by the cost model (`archs.Arch.gpu_images_per_s`), at its share."""
    return trial_cost(config)["gpu_hours"] * 3600


def cpu_seconds(config: Config, gflops_per_cpu: float, cpus: float) -> float:
    """A trial's duration on `cpus` CPUs that each train at `gflops_per_cpu` (cost.CPU_TRAIN_EFFICIENCY applied)."""
    return trial_cost(config)["tflops"] * 1e3 / (gflops_per_cpu * cpus)


@dataclass(frozen=True)
class Job:
    seconds: float
    share: float  # of one device; above 1, that many whole devices (rounded up)


def makespan(jobs: list[Job], devices: int) -> float:
    """Seconds until the last job ends when `jobs`, in this order, are list-scheduled onto `devices` devices.

    A share up to 1 must fit on one device (Ray puts a fractional GPU on one
    GPU); a larger share takes that many whole devices. Raises ValueError for
    a job no device count here could hold."""
    free = [1.0] * devices
    running: list[tuple[float, int, list[tuple[int, float]]]] = []  # (end, order, [(device, share taken)])
    now = end = 0.0
    for order, job in enumerate(jobs):
        if job.share > devices + FREE or (job.share > 1 and math.ceil(job.share - FREE) > devices):
            raise ValueError(f"a job asks for {job.share:g} devices; there are {devices}")
        while (taken := _place(free, job.share)) is None:
            finished, _, released = heapq.heappop(running)
            now = max(now, finished)
            for device, share in released:
                free[device] += share
        for device, share in taken:
            free[device] -= share
        heapq.heappush(running, (now + job.seconds, order, taken))
        end = max(end, now + job.seconds)
    return end


def _place(free: list[float], share: float) -> list[tuple[int, float]] | None:
    """Where a share fits now (first fit), or None."""
    if share <= 1:
        for device, room in enumerate(free):
            if room >= share - FREE:
                return [(device, share)]
        return None
    whole = [device for device, room in enumerate(free) if room >= 1 - FREE]
    needed = math.ceil(share - FREE)
    return [(device, 1.0) for device in whole[:needed]] if len(whole) >= needed else None


def hours(seconds: float) -> str:
    """A duration for people: 45 s, 12 min, 3.4 h, 2.1 d (? where unknown)."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
