"""The loss registry: what `train.loss` and `train.class_weights` may say, and the criterion each builds.

    train.loss: cross_entropy | bce          train.class_weights: none | balanced

A loss entry says how many outputs the task head has for a task of C classes (`outputs`: bce is one logit, of
two classes only) and builds the trial's `Criterion`: the loss of a batch's logits and how logits become predicted
classes. A class weighting builds the per-class weights the loss applies (or None). The loss is always computed in
fp32, whatever precision the forward pass ran in.

Adding one is one `register` here: `tests/registries/test_optimizers_losses.py` builds, scores and steps every entry,
and checks that the schema offers exactly these names. Torch-free at import (the driver validates grid files with
it): torch is imported inside each builder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tlbench.registries.registry import Registry


@dataclass(frozen=True)
class Criterion:
    """A trial's loss, built once: `loss(logits, labels)` -> a scalar tensor; `predict(logits)` -> class indices."""

    loss: Callable[[Any, Any], Any]
    predict: Callable[[Any], Any]


@dataclass(frozen=True)
class Loss:
    name: str  # the word train.loss uses
    outputs: Callable[[int], int]  # the task's classes -> the head's outputs; ValueError where the loss cannot take them
    build: Callable[[Any], Criterion]  # (class weights: a tensor of one weight per class, or None) -> the criterion
    doc: str


@dataclass(frozen=True)
class ClassWeights:
    name: str  # the word train.class_weights uses
    weights: Callable[[Any, int], Any]  # (train labels, classes) -> a float tensor of one weight per class, or None
    doc: str


LOSSES: Registry[Loss] = Registry("loss")
CLASS_WEIGHTS: Registry[ClassWeights] = Registry("class weighting")


def _cross_entropy(weights: Any) -> Criterion:
    import torch.nn.functional as F

    def loss(logits: Any, labels: Any) -> Any:
        return F.cross_entropy(logits.float(), labels, weight=weights)

    return Criterion(loss, lambda logits: logits.argmax(1))


def _bce(weights: Any) -> Criterion:
    import torch.nn.functional as F

    def loss(logits: Any, labels: Any) -> Any:
        per_sample = F.binary_cross_entropy_with_logits(logits.float().squeeze(1), labels.float(), reduction="none")
        if weights is None:
            return per_sample.mean()
        w = weights[labels]
        return (per_sample * w).sum() / w.sum()  # the weighted mean, as cross_entropy's `weight` gives

    return Criterion(loss, lambda logits: (logits.squeeze(1) > 0).long())


def _two_classes(n_classes: int) -> int:
    if n_classes != 2:
        raise ValueError(f"train.loss bce needs 2 classes, the data has {n_classes}")
    return 1


LOSSES.register(Loss("cross_entropy", lambda n_classes: n_classes, _cross_entropy, "softmax cross-entropy on C logits"))
LOSSES.register(Loss("bce", _two_classes, _bce, "binary cross-entropy on one logit (two classes; the logit scores the second)"))


def _balanced(labels: Any, n_classes: int) -> Any:
    """n / (classes x n_c): every class carries the same total weight in the loss."""
    import torch

    counts = torch.bincount(labels, minlength=n_classes).float().clamp(min=1)
    return counts.sum() / (n_classes * counts)


CLASS_WEIGHTS.register(ClassWeights("none", lambda labels, n_classes: None, "every image weighs the same"))
CLASS_WEIGHTS.register(ClassWeights("balanced", _balanced, "each class carries the same total weight in the loss"))
