"""A small CNN for quick checks, and the example of a custom arch.

Use it in a grid file as `model: {arch: "tlbench.tiny:small_cnn", weights: none}`.
A custom arch function takes `weights` and returns (module, path of its head);
tlbench replaces the head to fit the task, like a torchvision head.

It lives at the package's top, not in trial/: its dotted path is a name that grid
files write and that trial ids hash, so moving it would rename every trial of those files.
"""

from __future__ import annotations

from torch import nn


def small_cnn(weights: str = "none") -> tuple[nn.Module, str]:
    if weights != "none":
        raise ValueError("small_cnn has no pretrained weights; use model.weights: none")

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2)]

    features = nn.Sequential(*block(3, 16), *block(16, 32), *block(32, 64))
    model = nn.Sequential()
    model.add_module("features", features)
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flatten", nn.Flatten())
    model.add_module("fc", nn.Linear(64, 1000))
    return model, "fc"
