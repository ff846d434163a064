"""A trial's state between epochs, so a trial cut off (a dead worker) goes on where it was.

`run_trial` calls `Checkpointer.save(state)` after each epoch and, at its start,
`Checkpointer.load()`. The state holds everything the next epoch depends on:
weights, optimizer moments, every random generator, and the progress so far,
so a resumed trial ends with the same numbers as one never interrupted. Where
the state is kept is the caller's business (Ray Tune storage in scheduler.py).
"""

from __future__ import annotations

import random
from typing import Any, Protocol

import numpy as np
import torch


class Checkpointer(Protocol):
    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: dict[str, Any]) -> None: ...


def capture(module: torch.nn.Module, optimizer: torch.optim.Optimizer, gen: torch.Generator, progress: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state(),
        "python_rng": random.getstate(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,  # dropout on a GPU draws here
        "progress": progress,
    }


def restore(state: dict[str, Any], module: torch.nn.Module, optimizer: torch.optim.Optimizer, gen: torch.Generator) -> dict[str, Any]:
    """Put a captured state back; returns its progress."""
    module.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    random.setstate(state["python_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available() and len(state["cuda_rng"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["progress"]
