"""Custom archs for the traced feature cache's tests (`model.arch: "traced_models:<function>"`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
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


# -- a network whose frozen layers' code and weights a test can change under one arch name -----------------

ACTIVATION: type[nn.Module] = nn.ReLU  # tests swap it (ReLU -> Tanh): the same arch name, other features
STEM_SCALE = 1.0  # tests change it: the same code, other weights


def editable_net(weights: str = "none") -> tuple[nn.Module, str]:
    """A conv stem and a pooled head; what the stem computes is set by ACTIVATION and STEM_SCALE at build time."""
    net = nn.Sequential()
    net.add_module("stem", nn.Conv2d(3, 4, 3, stride=2, padding=1))
    net.add_module("act", ACTIVATION())
    net.add_module("pool", nn.AdaptiveAvgPool2d(1))
    net.add_module("flat", nn.Flatten())
    net.add_module("fc", nn.Linear(4, 1000))
    with torch.no_grad():
        net.stem.weight.mul_(STEM_SCALE)
    return net, "fc"


# -- frozen random ops before a trainable head (EfficientNet-Lite-like) ----------------------------------------


class BatchNormAct(nn.BatchNorm2d):
    """timm's BatchNormAct2d: a BatchNorm outside torch.nn, so fx traces through its forward, whose
    F.batch_norm gets `self.training` baked in at trace time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
        batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        running = not self.training or self.track_running_stats
        x = F.batch_norm(
            x,
            self.running_mean if running else None,
            self.running_var if running else None,
            self.weight,
            self.bias,
            batch_stats,
            self.momentum,
            self.eps,
        )
        return F.relu6(x)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """timm's drop_path: in train mode, a random mask per image (drop-connect)."""
    if p == 0 or not training:
        return x
    mask = x.new_empty((x.shape[0], 1, 1, 1)).bernoulli_(1 - p)
    return x * mask / (1 - p)


class LiteBlock(nn.Module):
    def __init__(self, channels: int, drop: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.bn = BatchNormAct(channels)
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + drop_path(self.bn(self.conv(x)), self.drop, self.training)


class LiteNet(nn.Module):
    """EfficientNet-Lite0's shape in small: a wide full-resolution stem (its output is larger than the image),
    blocks whose drop-connect rate grows from 0, and `_fc` (the head) after pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = BatchNormAct(8)
        self.blocks = nn.Sequential(LiteBlock(8, 0.0), LiteBlock(8, 0.2))
        self._fc = nn.Linear(8, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.bn1(self.conv_stem(x)))
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def lite_net(weights: str = "none") -> tuple[nn.Module, str]:
    return LiteNet(), "_fc"


class StochasticDepthNet(nn.Module):
    """torchvision's StochasticDepth in a frozen residual block, after a full-resolution stem of 8 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Conv2d(8, 8, 3, padding=1)
        self.depth = torchvision.ops.StochasticDepth(0.3, "row")
        self.fc = nn.Linear(8, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = x + self.depth(F.relu(self.block(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def stochastic_depth_net(weights: str = "none") -> tuple[nn.Module, str]:
    return StochasticDepthNet(), "fc"


class SequenceFirstNet(nn.Module):
    """Tokens sequence-first ([tokens, batch, width], nn.MultiheadAttention's default layout) through many
    frozen layers, then a frozen Dropout: every point before the Dropout but the stem's is no cut (no row
    per image), and the stem's features are larger than the image."""

    def __init__(self, depth: int = 6) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layers = nn.Sequential(*[nn.Linear(8, 8) for _ in range(depth)])
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(8, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(x).flatten(2).permute(2, 0, 1)
        return self.fc(self.drop(self.layers(tokens)).mean(0))


def sequence_first_net(weights: str = "none") -> tuple[nn.Module, str]:
    return SequenceFirstNet(), "fc"
