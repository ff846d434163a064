"""The optimizer registry: what `train.optimizer` may say, and the torch optimizer each word builds.

    train.optimizer: adam | adamw | sgd

An entry builds its optimizer over the trial's parameter groups (the head's and each block's lr: quirks.lr_groups)
from the train section's numbers (`train.weight_decay`; SGD's `train.momentum` and `train.nesterov`). Adding an
optimizer is one `OPTIMIZERS.register(Optimizer(...))` here: `tests/registries/test_optimizers_losses.py` builds and
steps every entry, and checks that the schema offers exactly these names. Torch-free at import (the driver validates
grid files with it): torch is imported inside each builder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tlbench.registries.registry import Registry

if TYPE_CHECKING:
    from tlbench.trial.config import TrainConfig

# (parameter groups, the base lr, the train section) -> a torch.optim.Optimizer
Builder = Callable[[list[dict[str, Any]], float, "TrainConfig"], Any]


@dataclass(frozen=True)
class Optimizer:
    name: str  # the word train.optimizer uses
    build: Builder
    doc: str


OPTIMIZERS: Registry[Optimizer] = Registry("optimizer")


def _adam(groups: list[dict[str, Any]], lr: float, train: TrainConfig) -> Any:
    import torch

    return torch.optim.Adam(groups, lr=lr, weight_decay=train.weight_decay)


def _adamw(groups: list[dict[str, Any]], lr: float, train: TrainConfig) -> Any:
    import torch

    return torch.optim.AdamW(groups, lr=lr, weight_decay=train.weight_decay)


def _sgd(groups: list[dict[str, Any]], lr: float, train: TrainConfig) -> Any:
    import torch

    return torch.optim.SGD(groups, lr=lr, momentum=train.momentum, nesterov=train.nesterov, weight_decay=train.weight_decay)


OPTIMIZERS.register(Optimizer("adam", _adam, "Adam; train.weight_decay is L2, added to the gradient"))
OPTIMIZERS.register(Optimizer("adamw", _adamw, "AdamW; train.weight_decay is decoupled"))
OPTIMIZERS.register(Optimizer("sgd", _sgd, "SGD with train.momentum and train.nesterov; train.weight_decay is L2"))
