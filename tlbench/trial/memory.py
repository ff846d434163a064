"""A trial's memory: its cap on a shared GPU, its own peak, and what an out-of-memory says.

Tune reuses a worker process for trial after trial, so the process's lifetime
high-water mark (`ru_maxrss`) would give a trial an earlier trial's peak. Each
trial resets what it reads at its start:

- CUDA: torch's allocator peak (`reset_peak_memory_stats` / `max_memory_allocated`).
- CPU, Linux: the RSS high-water mark (writing "5" to `/proc/self/clear_refs`
  resets `VmHWM` in `/proc/self/status` to the current RSS), after handing freed
  heap back to the OS (`malloc_trim`) so the mark starts from what is live.
- Elsewhere: `ru_maxrss`, and the row says it is the process's lifetime peak.

On a GPU shared by several trials, each caps torch's allocator to its share of
the card (`set_per_process_memory_fraction`): a trial that needs more fails
alone, with status `oom` and a message naming the share to ask for, rather than
taking its neighbours' memory.
"""

from __future__ import annotations

import ctypes
import resource
from pathlib import Path

import torch

from tlbench.plan.shares import after_oom

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


class PeakMemory:
    """The peak memory of one trial, from its start (construction) to `peak_mb()`."""

    def __init__(self, device: torch.device):
        self.device = device
        self.source = self._reset()

    def _reset(self) -> str:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()  # what an earlier trial in this process left cached is not this trial's
            torch.cuda.reset_peak_memory_stats(self.device)
            return "cuda allocator peak"
        _trim_heap()
        try:
            CLEAR_REFS.write_text("5")
            if _vm_hwm_kib() is None:
                raise OSError("no VmHWM in /proc/self/status")
        except OSError:
            return "process lifetime rss (ru_maxrss): includes earlier trials in this process"
        return "rss high-water since trial start"

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if self.source.startswith("rss"):
            kib = _vm_hwm_kib()
            if kib is not None:
                return kib / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def cap_gpu_share(device: torch.device, share: float) -> None:
    """Cap torch's allocator on `device` to `share` of the card (0 or >= 1: the whole card).

    Set for every trial, not only shared ones: a reused worker keeps the cap of
    the trial before."""
    if device.type == "cuda":
        # An index, not `device`: torch 2.11 (seen on an H200) refuses a cuda device without one.
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.set_per_process_memory_fraction(share if 0 < share < 1 else 1.0, index)


DATA_SHARE = 0.25  # of a trial's share of the card, for its uint8 pools; the rest is the network's, its activations' and optimizer's


def data_budget_bytes(device: torch.device, share: float) -> int:
    """The bytes a trial's pools may take on its card: DATA_SHARE of its share (0 or >= 1: the whole card). None off CUDA."""
    if device.type != "cuda":
        return 0
    total = torch.cuda.get_device_properties(device).total_memory
    return int(total * (share if 0 < share < 1 else 1.0) * DATA_SHARE)


def is_cuda_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError)


def oom_message(exc: BaseException, share: float) -> str:
    """What ran out, what the trial had, and what to ask for instead."""
    try:
        total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / 2**20
        peak = torch.cuda.max_memory_allocated() / 2**20
        had = f"{share * total if 0 < share < 1 else total:.0f} of {total:.0f} MB; its peak allocation {peak:.0f} MB"
    except Exception:  # no CUDA context left to ask: say what is known
        had = "memory unknown"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if 0 < share < 1:
        ask = after_oom(share, share)  # what a rerun asks for
        return (
            f"CUDA out of memory with a GPU share of {share:g} ({had}): ask for {ask:g} of a GPU "
            f"(--gpus-per-trial {ask:g}), or rerun: a rerun gives an oom trial twice its share, up to a whole GPU. "
            f"[{first}]"
        )
    return f"CUDA out of memory with a whole GPU ({had}): lower train.batch_size or image_size, or use a card with more memory. [{first}]"


def _vm_hwm_kib() -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _trim_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the mark then starts from what the heap holds
        pass
