"""Freeze semantics live in the strategy registry: the grid, the tables and the cost model ask it.

What a strategy's canonical spelling reads of a trial config (the arch), and whether only the head trains (the
cost model's cheaper step), are answered by `freezing`; a strategy registered here is honoured by all three
without their code naming it. Torch-free: names only.
"""

from __future__ import annotations

import pytest
from helpers import resolved

from tlbench.grid import tables
from tlbench.plan import cost
from tlbench.registries import archs, freezing

# ResNet18's names, as `networks.network_of` reads them off the module (enough of them for a plan).
RESNET18 = freezing.Network(
    arch="resnet18",
    head="fc",
    children=archs.ARCHS["resnet18"].children,
    blocks=archs.ARCHS["resnet18"].blocks,
    batchnorms=("bn1", "layer1.0.bn1", "layer4.1.bn2"),
    modules=frozenset({"conv1", "bn1", "layer1", "layer1.0", "layer1.0.bn1", "layer2", "layer3", "layer4", "layer4.1",
                       "layer4.1.bn2", "fc"}),
)  # fmt: skip
PARAMS = ("conv1.weight", "bn1.weight", "layer1.0.bn1.bias", "layer2.0.conv1.weight", "layer3.1.conv2.weight",
          "layer4.1.bn2.weight", "fc.weight", "fc.bias")  # fmt: skip


def _value(strategy: freezing.Strategy):
    return strategy.name if strategy.is_word else {strategy.name: strategy.example}


def _config(arch: str) -> dict:
    return {"model": {"arch": arch}}


@pytest.mark.parametrize("name", freezing.STRATEGIES.names())
def test_canonical_in_is_the_strategys_spelling_on_the_arch_the_config_names(name):
    value = _value(freezing.STRATEGIES[name])
    for arch in archs.HAND_WRITTEN:
        if freezing.check_arch(value, archs.ARCHS[arch]) is None:
            assert freezing.canonical_in(value, _config(arch)) == freezing.canonical(value, archs.ARCHS[arch]), arch
    assert freezing.spelling_context(_config("resnet18")) == "resnet18"


def test_canonical_in_reads_the_arch_and_keeps_what_it_cannot_place():
    assert freezing.canonical_in({"last": 1}, _config("resnet18")) == "head"  # avgpool has no weights: 002's l=1
    assert freezing.canonical_in({"last": 2}, _config("resnet18")) == {"last": 2}
    assert freezing.canonical_in({"gradual": {"every": 2}}, _config("resnet50")) == {
        "gradual": {"every": 2, "blocks": ["layer4", "layer3", "layer2", "layer1"]}
    }
    assert freezing.canonical_in({"last": 1}, _config("no_such_arch")) == {"last": 1}  # its check names the arch
    assert freezing.canonical_in({"last": 1}, _config("pkg.module:build")) == {"last": 1}  # a custom arch's children are unknown


@pytest.mark.parametrize("name", freezing.STRATEGIES.names())
def test_only_head_says_exactly_whether_the_plan_trains_the_head_alone(name):
    strategy = freezing.STRATEGIES[name]
    value = freezing.canonical(_value(strategy), archs.ARCHS["resnet18"])
    plan = freezing.plan(value, RESNET18)
    trained = {p for _, trains in plan.stages for p in PARAMS if trains(p)}
    assert freezing.only_head_trains(value) == (trained == {"fc.weight", "fc.bias"}), f"{name}: trains {sorted(trained)}"
    assert strategy.doc, f"{name}: say what trains (docs/grid-file.md lists it)"


@pytest.fixture
def probe(monkeypatch):
    """A strategy registered for one test: a word that spells `head` on every arch, and a head-only one."""
    entries = freezing.STRATEGIES._entries
    monkeypatch.setitem(entries, "probe", freezing.Strategy("probe", entries["head"].plan, canonical=lambda arg, arch: "head"))
    monkeypatch.setitem(entries, "probe_head", freezing.Strategy("probe_head", entries["head"].plan, only_head=True))


def test_the_tables_match_rows_by_the_registrys_spelling(probe):
    config = resolved(model={"arch": "resnet18", "weights": "none"}, train={"freeze": "head"})
    assert tables.canonical_value(freezing.KEY, "probe", config) == "head"
    assert tables.canonical_value(freezing.KEY, {"last": 1}, config) == "head"
    assert tables.canonical_value("train.lr", {"last": 1}, config) == {"last": 1}  # other keys are compared as written
    assert tables.canonical_context(freezing.KEY, config) == freezing.spelling_context(config)
    assert tables.canonical_context("train.lr", config) == ""


def test_the_cost_model_asks_the_registry_whether_only_the_head_trains(probe):
    config = resolved(model={"arch": "resnet18", "weights": "none"}, train={"freeze": "head"})
    head = cost.trial_cost(config)["tflops"]
    config["train"]["freeze"] = "probe_head"
    assert cost.trial_cost(config)["tflops"] == head
    config["train"]["freeze"] = "none"
    assert cost.trial_cost(config)["tflops"] > head
