"""GPU shares: what a trial asks for after it ran out of GPU memory, and what trials measured against what they ask.

A trial asks Ray for a fraction of one GPU (its arch's default, or
`--gpus-per-trial`) and caps its CUDA memory to that fraction, so a trial
that needs more ends as `oom` instead of taking its neighbours' memory. A
rerun asks twice the share the `oom` row ran with, at most a whole GPU.
`grid plan` sets the peaks measured so far beside the shares asked.

No torch and no Ray: the driver (`on_ray/driver.py`) and `grid plan` both use it.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

WHOLE_GPU = 1.0
OOM = "oom"  # the status of a trial that ran out of the GPU memory its share allows
# Result columns the memory view reads (one columnar read of the results index).
MEMORY_COLUMNS = ["trial_id", "model.arch", "status", "device", "peak_mem_mb", "gpu_memory_mb"]


def after_oom(share: float, oom_share: float | None) -> float:
    """The share a trial asks for: `share`, or where its last run ran out of memory at `oom_share`, twice that.

    At most a whole GPU, never less than `share` (a larger `--gpus-per-trial`
    still wins), and only where the trial asks for a GPU at all: `share` 0
    (a CPU-only cluster, `--gpus-per-trial 0`) stays 0."""
    if share <= 0 or not oom_share or oom_share <= 0:
        return share
    return max(share, min(WHOLE_GPU, 2 * oom_share))


def oom_shares(rows: pa.Table) -> dict[str, float | None]:
    """trial_id -> the GPU share its row ran with, for each row whose status is `oom` (columns trial_id, status, gpu_share)."""
    oom = rows.filter(pc.equal(rows.column("status"), OOM))
    return dict(zip(oom.column("trial_id").to_pylist(), oom.column("gpu_share").to_pylist()))


def oom_line(trial_id: str, experiment: str, before: float | None, now: float) -> str:
    """What a rerun says about a trial that ran out of GPU memory last time."""
    last = f"at {before:g} of a GPU last run" if before else "last run (no share recorded)"
    if now <= 0:
        return (
            f"trial {trial_id} ({experiment}) ran out of GPU memory {last}; it asks for no GPU now "
            f"(none on the cluster, or --gpus-per-trial 0)"
        )
    capped = " (a whole GPU: the most a trial gets)" if before and 2 * before > now else ""
    return f"trial {trial_id} ({experiment}) ran out of GPU memory {last}; it asks for {now:g} of a GPU now{capped}"


@dataclass
class ArchMemory:
    """Peak memory measured on CUDA for one arch's ok trials, beside the share the arch asks for."""

    arch: str
    share: float  # the GPU fraction its trials ask for
    peaks_mb: list[float]  # torch's allocator peak of each ok CUDA trial
    card_mb: float | None  # the largest card those trials ran on (total memory), where rows say
    ooms: int = 0  # trials whose latest row is `oom`: out of their share's memory

    @property
    def share_mb(self) -> float | None:
        return self.share * self.card_mb if self.card_mb else None

    @property
    def over(self) -> bool:
        return self.share_mb is not None and bool(self.peaks_mb) and max(self.peaks_mb) > self.share_mb

    @property
    def share_needed(self) -> float | None:
        """The smallest share in steps of 0.05 whose memory holds the largest peak (None: the card is unknown)."""
        if not self.card_mb:
            return None
        steps = -(-max(self.peaks_mb) / self.card_mb // 0.05)  # ceil
        return min(WHOLE_GPU, round(steps * 0.05, 2))


def memory_by_arch(rows: pa.Table, asks: dict[str, float], trial_ids: set[str]) -> list[ArchMemory]:
    """Per arch of `asks` (arch -> share its trials ask for): the peaks of the ok rows of `trial_ids` that ran on CUDA,
    and how many of its trials ended `oom`.

    `rows` holds MEMORY_COLUMNS; a CPU row's device reads `cpu (...)`, its peak is
    the process's RSS, not GPU memory, so it is left out."""
    peaks: dict[str, list[float]] = defaultdict(list)
    cards: dict[str, float] = {}
    ooms: dict[str, int] = defaultdict(int)
    ids, arch, status, device, peak, card = (rows.column(c).to_pylist() for c in MEMORY_COLUMNS)
    for i, a, s, d, p, c in zip(ids, arch, status, device, peak, card):
        if i not in trial_ids or a not in asks:
            continue
        if s == OOM:
            ooms[a] += 1
        elif s == "ok" and d and not d.startswith("cpu") and p is not None:
            peaks[a].append(p)
            if c:
                cards[a] = max(c, cards.get(a, 0.0))
    return [ArchMemory(a, asks[a], peaks[a], cards.get(a), ooms[a]) for a in asks if peaks[a] or ooms[a]]


def memory_lines(measured: list[ArchMemory], asks: dict[str, float]) -> list[str]:
    """`grid plan`'s memory view: one line per arch with CUDA rows, then a warning per arch whose peak exceeds its share."""
    if not measured:
        return [f"GPU memory: no ok trial of these ({', '.join(sorted(asks))}) has run on a GPU yet."]
    lines = [
        "GPU memory per arch, measured in the ok trials of this selection that ran on CUDA (torch's allocator peak); "
        "oom: trials out of their share's memory (a rerun doubles it):",
        f"{'arch':34s} {'share':>6s} {'trials':>6s} {'peak max MB':>12s} {'median MB':>10s} {'card MB':>9s} {'share MB':>9s} {'oom':>4s}",
    ]
    for m in measured:
        peak_max = f"{max(m.peaks_mb):12,.0f}" if m.peaks_mb else f"{'-':>12s}"
        median = f"{statistics.median(m.peaks_mb):10,.0f}" if m.peaks_mb else f"{'-':>10s}"
        card = f"{m.card_mb:9,.0f}" if m.card_mb else f"{'?':>9s}"
        share_mb = f"{m.share_mb:9,.0f}" if m.share_mb else f"{'?':>9s}"
        lines.append(f"{m.arch:34s} {m.share:6g} {len(m.peaks_mb):6d} {peak_max} {median} {card} {share_mb} {m.ooms:4d}")
    for m in measured:
        if m.over:
            lines.append(
                f"warning: {m.arch}: a trial peaked at {max(m.peaks_mb):,.0f} MB, over its share of "
                f"{m.share:g} x {m.card_mb:,.0f} MB = {m.share_mb:,.0f} MB; at that share such a trial ends `oom` "
                f"(a rerun doubles its share): ask for --gpus-per-trial {m.share_needed:g}"
            )
    return lines
