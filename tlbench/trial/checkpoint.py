"""A trial's state between epochs, so a trial cut off (a dead worker) goes on where it was.

`run_trial` calls `Checkpointer.save(state)` after each epoch and, at its start,
`Checkpointer.load()`. The state holds everything the next epoch depends on:
weights, optimizer moments, every random generator, and the training state so
far (`TrainingState`, kept on disk as the plain dict `progress`), so a resumed
trial ends with the same numbers as one never interrupted. Where the state is
kept is the caller's business (Ray Tune storage in on_ray/).

A state file may come from a shared mount anyone can write to, so it holds
only tensors and plain values (numbers, strings, lists, dicts) and is read
with `torch.load(weights_only=True)`, which refuses anything else: reading one
never runs code. A file that does not load, or loads with the wrong shape
(`problem`, `fits`), is reported and the trial starts from epoch 0.
"""

from __future__ import annotations

import copy
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from tlbench.results.columns import EpochMetrics
from tlbench.results.regular_files import open_regular
from tlbench.trial.config import TrialConfig
from tlbench.values import plain

KEYS = ("model", "optimizer", "generator", "torch_rng", "numpy_rng", "python_rng", "cuda_rng", "progress")


@dataclass
class TrainingState:
    """What a trial carries from one epoch to the next, besides weights, moments and generators.

    `record` is the one place an epoch changes it. On disk it is the plain dict `progress` (`progress_of`,
    `state_of`), in the form checkpoints have always had, so a state saved before this class existed resumes."""

    lr: float  # what training runs at: train.lr, or 001's probe's choice
    probe_scores: dict[str, float] | None = None  # 001's probe: val accuracy per candidate lr (repr of the lr)
    epochs: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch run, in order
    images_seen: int = 0  # training images stepped on, over every epoch run
    train_seconds: float = 0.0  # time in training steps, over every epoch run

    @property
    def epochs_run(self) -> int:
        return len(self.epochs)

    def record(self, row: dict[str, Any], seconds: float, images: int) -> None:
        """An epoch's row, its time in training steps and the images it stepped on."""
        self.epochs.append(row)
        self.train_seconds += seconds
        self.images_seen += images

    def best_epoch(self) -> dict[str, Any]:
        """The row of the best validation accuracy (the first of equals; an epoch without one counts as -1)."""
        return max(self.epochs, key=lambda e: -1 if math.isnan(e["val_acc"]) else e["val_acc"])


def progress_of(state: TrainingState) -> dict[str, Any]:
    """The state as a checkpoint keeps it: plain values only, keys in their old order."""
    return plain({
        "epochs": state.epochs, "images_seen": state.images_seen, "train_seconds": state.train_seconds,
        "lr": state.lr, "probe_scores": state.probe_scores,
    })  # fmt: skip


def state_of(progress: dict[str, Any]) -> TrainingState:
    """A checkpoint's `progress` (checked by `problem`) as the state, copied: the checkpoint is not shared."""
    progress = copy.deepcopy(progress)
    return TrainingState(
        lr=progress["lr"],
        probe_scores=progress["probe_scores"],
        epochs=progress["epochs"],
        images_seen=progress["images_seen"],
        train_seconds=progress["train_seconds"],
    )


class Checkpointer(Protocol):
    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: dict[str, Any]) -> None: ...


def capture(module: torch.nn.Module, optimizer: torch.optim.Optimizer, gen: torch.Generator, state: TrainingState | None) -> dict[str, Any]:
    """Everything the next epoch depends on, as tensors and plain values (`state` None: no progress, {})."""
    numpy_state = np.random.get_state(legacy=False)
    version, python_state, python_gauss = random.getstate()
    return {
        "model": module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        # numpy's and Python's generator states as tensors: weights_only loads no numpy arrays
        "numpy_rng": {
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "python_rng": {"version": version, "state": torch.tensor(python_state, dtype=torch.int64), "gauss": python_gauss},
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,  # dropout on a GPU draws here
        "progress": {} if state is None else progress_of(state),
    }


def restore(state: dict[str, Any], module: torch.nn.Module, optimizer: torch.optim.Optimizer, gen: torch.Generator) -> dict[str, Any]:
    """Put a captured state back; returns its progress, as saved."""
    module.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    numpy_rng = state["numpy_rng"]
    key = numpy_rng["key"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", key, numpy_rng["pos"], numpy_rng["has_gauss"], numpy_rng["gauss"]))
    python_rng = state["python_rng"]
    random.setstate((python_rng["version"], tuple(python_rng["state"].tolist()), python_rng["gauss"]))
    if state.get("cuda_rng") is not None and torch.cuda.is_available() and len(state["cuda_rng"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["progress"]


def read(path: str | Path) -> dict[str, Any] | None:
    """A state file, or None (reported) where it does not load or has the wrong structure."""
    try:
        # On the CPU first: a retry may land on a node without the GPU the state was saved from;
        # load_state_dict then moves every tensor to where the model lives.
        with open_regular(path) as fh:  # a planted FIFO would block torch.load forever
            state = torch.load(fh, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated (a driver killed mid-copy), foreign, not a file, or a pickle that wants to run code
        return _ignored(path, f"{type(error).__name__}: {str(error)[:300]}")
    wrong = problem(state)
    return _ignored(path, wrong) if wrong else state


def _ignored(path: str | Path, why: str) -> None:
    print(f"tlbench: ignoring unreadable checkpoint {path} ({why}); the trial starts from epoch 0", file=sys.stderr, flush=True)
    return None


def problem(state: Any) -> str | None:
    """What is wrong with a loaded state's structure, or None."""
    if not isinstance(state, dict) or set(state) != set(KEYS):
        return f"expected a mapping with keys {', '.join(KEYS)}"
    checks = {
        "model": isinstance(state["model"], dict) and all(isinstance(v, torch.Tensor) for v in state["model"].values()),
        "optimizer": isinstance(state["optimizer"], dict) and isinstance(state["optimizer"].get("state"), dict)
        and isinstance(state["optimizer"].get("param_groups"), list),
        "generator": isinstance(state["generator"], torch.Tensor) and state["generator"].dtype == torch.uint8,
        "torch_rng": isinstance(state["torch_rng"], torch.Tensor) and state["torch_rng"].dtype == torch.uint8,
        "numpy_rng": isinstance(state["numpy_rng"], dict) and isinstance(state["numpy_rng"].get("key"), torch.Tensor)
        and state["numpy_rng"]["key"].shape == (624,) and isinstance(state["numpy_rng"].get("pos"), int),
        "python_rng": isinstance(state["python_rng"], dict) and isinstance(state["python_rng"].get("state"), torch.Tensor)
        and state["python_rng"]["state"].shape == (625,) and isinstance(state["python_rng"].get("version"), int),
        "cuda_rng": state["cuda_rng"] is None
        or isinstance(state["cuda_rng"], list) and all(isinstance(t, torch.Tensor) for t in state["cuda_rng"]),
        "progress": _progress_ok(state["progress"]),
    }  # fmt: skip
    wrong = [key for key, ok in checks.items() if not ok]
    return f"wrong structure at {', '.join(wrong)}" if wrong else None


EPOCH_KEYS = tuple(sorted(EpochMetrics.__required_keys__))  # train.run_epoch's rows: the columns every epoch has


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _progress_ok(progress: Any) -> bool:
    """The progress run_trial reads back: its totals, the lr, the probe's scores, and one full row per epoch run."""
    if not isinstance(progress, dict) or not isinstance(progress.get("epochs"), list) or "probe_scores" not in progress:
        return False
    scores = progress.get("probe_scores")
    return (_number(progress.get("lr")) and _number(progress.get("train_seconds"))
            and type(progress.get("images_seen")) is int and progress["images_seen"] >= 0
            and (scores is None or isinstance(scores, dict) and all(isinstance(k, str) and _number(v) for k, v in scores.items()))
            and all(isinstance(row, dict) and all(_number(row.get(key)) for key in EPOCH_KEYS) and row["epoch"] == i + 1
                    and all(_number(row[key]) for key in ("test_loss", "test_acc") if key in row)
                    for i, row in enumerate(progress["epochs"])))  # fmt: skip


def resume(state: dict[str, Any], module: torch.nn.Module, optimizer: torch.optim.Optimizer, gen: torch.Generator) -> TrainingState | None:
    """`restore`, and the training state saved; or, where the state does not go back in (an optimizer of other
    groups, tensors of other shapes), the network and every generator as they were and None (reported): the
    trial starts from epoch 0."""
    before = copy.deepcopy(capture(module, optimizer, gen, None))  # deep: state_dict() shares the live weights
    try:
        progress = restore(state, module, optimizer, gen)
        for param, moments in optimizer.state.items():  # load_state_dict checks group sizes, not the moments' shapes
            for value in moments.values():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                    raise ValueError(f"optimizer state of shape {tuple(value.shape)} for a parameter of {tuple(param.shape)}")
    except Exception as error:
        restore(before, module, optimizer, gen)
        return _ignored("of this trial", f"it does not restore: {type(error).__name__}: {str(error)[:300]}")
    return state_of(progress)


def fits(state: dict[str, Any] | None, module: torch.nn.Module, config: TrialConfig | None = None) -> dict[str, Any] | None:
    """The state where its weights fit this network (same names and shapes) and its epochs this config, else None (reported)."""
    if state is None:
        return None
    if config is not None:
        epochs = state["progress"]["epochs"]
        if len(epochs) >= config.epochs:
            return _ignored("of this trial", f"it ran {len(epochs)} epochs, the config runs {config.epochs}")
        if config.train.test_every_epoch and not all("test_acc" in row and "test_loss" in row for row in epochs):
            return _ignored("of this trial", "its epochs lack the test scores train.test_every_epoch records")
    own = module.state_dict()
    theirs = state["model"]
    if set(own) != set(theirs) or any(own[k].shape != theirs[k].shape for k in own):
        different = sorted(set(own) ^ set(theirs)) or [k for k in own if own[k].shape != theirs[k].shape]
        return _ignored("of this trial", f"its weights do not fit the network: {', '.join(different[:5])}")
    return state
