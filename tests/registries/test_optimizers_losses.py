"""Every optimizer, loss and class weighting registered gets the same checks: it builds, it steps, and the schema
offers exactly the registered words. A new entry is covered without another line."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import typed

from tlbench.grid import schema
from tlbench.registries.losses import CLASS_WEIGHTS, LOSSES
from tlbench.registries.optimizers import OPTIMIZERS
from tlbench.registries.registry import UnknownName


@pytest.mark.parametrize("key, registry", [("train.optimizer", OPTIMIZERS), ("train.loss", LOSSES), ("train.class_weights", CLASS_WEIGHTS)])
def test_the_schema_offers_exactly_the_registered_words(key, registry):
    assert schema.FIELDS[key].choices == registry.names()
    assert schema.FIELDS[key].default in registry


@pytest.mark.parametrize("registry, close", [(OPTIMIZERS, "adamm"), (LOSSES, "cross_entrpy"), (CLASS_WEIGHTS, "balance")])
def test_a_failed_lookup_lists_the_valid_words_and_the_closest(registry, close):
    with pytest.raises(UnknownName) as err:
        registry[close]
    assert all(name in str(err.value) for name in registry.names()) and "did you mean" in str(err.value)


def _two_groups(model: torch.nn.Linear, lr: float) -> list[dict]:
    return [{"params": [model.weight], "lr": lr}, {"params": [model.bias], "lr": lr * 10}]


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_builds_over_groups_and_steps(name):
    train = typed(train={"optimizer": name, "weight_decay": 0.01, "momentum": 0.5, "nesterov": True}).train
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = OPTIMIZERS[name].build(_two_groups(model, 0.1), 0.1, train)
    assert isinstance(optimizer, torch.optim.Optimizer)
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 1.0]  # each group keeps its own lr
    assert all(g["weight_decay"] == 0.01 for g in optimizer.param_groups)
    model(torch.randn(4, 3)).square().sum().backward()
    optimizer.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_sgd_takes_momentum_and_nesterov_from_the_train_section():
    train = typed(train={"optimizer": "sgd", "momentum": 0.5, "nesterov": True}).train
    group = OPTIMIZERS["sgd"].build(_two_groups(torch.nn.Linear(3, 2), 0.1), 0.1, train).param_groups[0]
    assert group["momentum"] == 0.5 and group["nesterov"] is True


@pytest.mark.parametrize("weighting", CLASS_WEIGHTS.names())
@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_builds_scores_predicts_and_trains(name, weighting):
    labels = torch.tensor([0, 0, 0, 1, 1, 0])
    outputs = LOSSES[name].outputs(2)
    criterion = LOSSES[name].build(CLASS_WEIGHTS[weighting].weights(labels, 2))
    torch.manual_seed(0)
    model = torch.nn.Linear(5, outputs)
    x = torch.randn(len(labels), 5)
    logits = model(x)
    assert criterion.predict(logits).shape == labels.shape and set(criterion.predict(logits).tolist()) <= {0, 1}
    loss = criterion.loss(logits.bfloat16(), labels)
    assert loss.dim() == 0 and loss.dtype == torch.float32 and torch.isfinite(loss)  # fp32 whatever the forward's precision
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(20):
        optimizer.zero_grad()
        criterion.loss(model(x), labels).backward()
        optimizer.step()
    assert criterion.loss(model(x), labels) < loss


def test_cross_entropy_and_bce_compute_what_torch_does():
    logits, labels, weights = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-1.0, 3.0]]), torch.tensor([0, 1, 1]), torch.tensor([0.25, 2.0])
    ce = LOSSES["cross_entropy"].build(weights)
    assert torch.equal(ce.loss(logits, labels), F.cross_entropy(logits, labels, weight=weights))
    assert ce.predict(logits).tolist() == [0, 0, 1]
    one = logits[:, 1:]
    bce = LOSSES["bce"].build(weights)
    per_sample = F.binary_cross_entropy_with_logits(one.squeeze(1), labels.float(), reduction="none")
    expected = (per_sample * weights[labels]).sum() / weights[labels].sum()  # a weighted mean, as cross_entropy's
    assert torch.allclose(bce.loss(one, labels), expected)
    assert torch.equal(LOSSES["bce"].build(None).loss(one, labels), per_sample.mean())
    assert bce.predict(one).tolist() == [0, 1, 1]  # a logit above 0 is the second class


def test_bce_is_one_logit_of_two_classes_and_says_so_otherwise():
    assert LOSSES["bce"].outputs(2) == 1 and LOSSES["cross_entropy"].outputs(5) == 5
    with pytest.raises(ValueError, match="train.loss bce needs 2 classes, the data has 3"):
        LOSSES["bce"].outputs(3)


def test_balanced_class_weights_give_each_class_the_same_total_weight():
    labels = torch.tensor([0] * 6 + [1] * 2 + [2] * 2)
    weights = CLASS_WEIGHTS["balanced"].weights(labels, 3)
    totals = torch.bincount(labels).float() * weights
    assert torch.allclose(totals, totals[0].expand(3))
    assert weights.tolist() == pytest.approx([10 / 18, 10 / 6, 10 / 6])
    assert CLASS_WEIGHTS["none"].weights(labels, 3) is None
