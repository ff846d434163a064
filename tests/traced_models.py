"""Custom archs for the traced feature cache's tests (`model.arch: "traced_models:<function>"`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FunctionalNet(nn.Module):
    """Not a chain of modules: functional ops, a skip connection, and dropout (a function and a module) before its head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.branch = nn.Conv2d(8, 8, 3, padding=1)
        self.proj = nn.Linear(8, 16)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(16, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        x = x + F.relu(self.branch(x))  # a skip connection
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        x = F.relu(self.proj(x))
        x = F.dropout(x, 0.2, training=self.training)  # fx bakes `self.training` in at trace time
        return self.fc(self.drop(x))


class DataDependentNet(FunctionalNet):
    """Control flow on a tensor's value: torch.fx cannot trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:
            x = -x
        return super().forward(x)


def functional_net(weights: str = "none") -> tuple[nn.Module, str]:
    return FunctionalNet(), "fc"


def data_dependent_net(weights: str = "none") -> tuple[nn.Module, str]:
    return DataDependentNet(), "fc"
