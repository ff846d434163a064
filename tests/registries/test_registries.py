"""Every entry of the dataset and arch registries gets the same checks (timm's test_models.py style).

A new dataset or arch is one registry entry; these tests then cover it without another line, and a
dataset with real data fails here until `tests/fake_datasets.FAKES` can write its on-disk format."""

from __future__ import annotations

import json

import pytest
import torch
from fake_datasets import FAKES

from tlbench.grid import schema
from tlbench.registries import archs, freezing
from tlbench.registries.datasets import DATASETS
from tlbench.registries.registry import UnknownName
from tlbench.trial import data
from tlbench.trial import networks as models
from tlbench.trial.config import DatasetConfig, ModelConfig


@pytest.mark.parametrize("registry, close", [(DATASETS, "cifar1"), (archs.ARCHS, "resnet19")])
def test_a_failed_lookup_lists_the_valid_names_and_the_closest(registry, close):
    with pytest.raises(UnknownName) as err:
        registry[close]
    message = str(err.value)
    assert all(name in message for name in registry.names()[:4]) and "did you mean" in message


def test_the_schema_offers_exactly_the_registered_datasets():
    assert schema.FIELDS["dataset.name"].choices == DATASETS.names()


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_states_consistent_facts(name):
    info = DATASETS[name]
    assert info.name == name and info.default_target in info.targets
    for target, n in info.targets.items():
        if n:
            assert len(info.classes(target, n)) == n, f"{name}/{target}: class names and class count disagree"
        if target in info.priors:
            assert len(info.priors[target]) == n and sum(info.priors[target]) == pytest.approx(1)
        if target in info.groups:
            assert len(info.groups[target]) == n
    assert (info.load is None) == info.classes_from_config  # only the synthetic dataset has no real data
    assert info.pool_sizes is None or (info.pool_sizes[0] > 0 and (info.pool_sizes[1] > 0) == info.has_test_split)


def _dataset_config(name: str, **keys) -> DatasetConfig:
    info = DATASETS[name]
    cfg = {**schema.defaults()["dataset"], "name": name, "split": None if info.has_test_split else [0.8, 0.1, 0.1]}
    return DatasetConfig.from_dict({**cfg, **keys})


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_datasets_synthetic_twin_has_its_classes(name):
    info = DATASETS[name]
    extra = {"n_classes": 3} if info.classes_from_config else {}
    splits = data.load(_dataset_config(name, source="synthetic", n_train=60, n_test=20, **extra), 16, "unused", seed=0)
    n = info.targets[info.default_target] or (3 if info.classes_from_config else 10)
    assert len(splits.classes) == n and int(splits.train.labels.max()) < n
    assert len(splits.train) and len(splits.val) and len(splits.test)


@pytest.mark.parametrize("name", [n for n in DATASETS.names() if DATASETS[n].load is not None])
def test_every_real_loader_reads_its_on_disk_format(name, tmp_path):
    """The loader reads files in the format the real dataset ships (written by the fake), and every label
    it reads is one of the entry's classes."""
    assert name in FAKES, f"{name}: add a writer of its on-disk format to tests/fake_datasets.FAKES"
    write, keys = FAKES[name]
    write(tmp_path)
    splits = data.load(_dataset_config(name, **keys), 16, tmp_path, seed=0)
    info = DATASETS[name]
    n = info.targets[info.default_target] or len(splits.classes)
    assert len(splits.classes) == n
    for part in (splits.train, splits.val, splits.test):
        assert len(part) and 0 <= int(part.labels.min()) and int(part.labels.max()) < n
        assert part.images().shape[1:] == (3, 16, 16)


TABLE = json.loads(archs.TORCHVISION_TABLE.read_text())["archs"]


@pytest.mark.parametrize("name", archs.ARCHS.names())
def test_every_arch_states_consistent_facts(name):
    arch = archs.get(name)
    assert arch.name == name and arch.head and arch.classifier and arch.gflops_224 > 0 and arch.gpu_images_per_s > 0
    assert arch.head == arch.classifier or arch.head.startswith(arch.classifier + ".")
    assert arch.gpu_share in (0.25, 0.5, 1.0) and arch.min_image_size >= 1
    # The shipped torchvision table agrees: the hand-written report archs' head and cost included.
    assert (TABLE[name]["head"], TABLE[name]["classifier"]) == (arch.head, arch.classifier)
    assert TABLE[name]["gflops_224"] == pytest.approx(arch.gflops_224, abs=0.01)
    assert archs.default_gpu_share(arch.gflops_224) == arch.gpu_share  # the default rule reproduces the hand-set shares


@pytest.mark.parametrize("name", archs.HAND_WRITTEN)
def test_every_hand_written_arch_names_modules_its_network_has(name):
    arch = archs.get(name)
    names = models.module_names(name)
    for path in (arch.head, arch.classifier, *arch.blocks, *(arch.children or ())):
        assert path in names, f"{name}: no module {path!r}"
    if arch.children:
        assert list(arch.children) == [n for n in dict(models.empty_model(name).named_children()) if n != arch.head.split(".")[0]]


@pytest.mark.parametrize("name", archs.HAND_WRITTEN)
def test_every_hand_written_arch_builds_with_a_new_head(name):
    torch.manual_seed(0)
    built = models.build(ModelConfig(arch=name, weights="none", hidden=(), dropout=0.0), 3)
    assert built.module.get_submodule(built.head).out_features == 3


def _freeze_value(strategy: freezing.Strategy):
    return strategy.name if strategy.is_word else {strategy.name: strategy.example}


@pytest.mark.parametrize("name", freezing.STRATEGIES.names())
def test_every_freeze_strategy_checks_canonicalises_and_plans_on_a_real_network(name):
    strategy = freezing.STRATEGIES[name]
    value, arch = _freeze_value(strategy), archs.get("resnet18")
    assert freezing.check(value) is None and freezing.check_arch(value, arch) is None
    if not strategy.is_word:
        assert freezing.check({name: "nonsense"}) is not None  # a malformed argument is refused at load
    canonical = freezing.canonical(value, arch)
    assert freezing.canonical(canonical, arch) == canonical  # one spelling: canonicalising again changes nothing
    built = models.build(ModelConfig(arch="resnet18", weights="none", hidden=(), dropout=0.0), 3)
    plan = models.freeze_plan(canonical, built)
    assert plan.stages[0][0] == 0
    params = [n for n, _ in built.module.named_parameters()]
    for _, trains in plan.stages:  # the head trains at every stage; every named module path is one the network has
        assert all(trains(n) for n in params if n.startswith("fc."))
    assert set(freezing.module_paths(canonical)) <= models.module_names("resnet18")
    last_stage = plan.stages[-1][1]
    expected_all = name == "none"
    assert all(last_stage(n) for n in params) == expected_all


def test_an_unknown_freeze_strategy_is_named_with_the_valid_ones():
    assert "did you mean 'gradual'" in freezing.check({"gradul": {"every": 1}})
    assert "one of head, none, bn" in freezing.check("heads")
