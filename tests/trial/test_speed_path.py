"""The speed path's answer says what the training loop steps: the whole network on pixels, or the feature
cache's suffix on cached features, and in which precision."""

from __future__ import annotations

from dataclasses import replace

import torch
from helpers import editable

from tlbench.trial import features, pipeline, train


def test_without_the_cache_the_loop_steps_the_whole_network_on_pixels(tmp_path):
    trial = train.build(editable(), tmp_path, torch.device("cpu"), feature_cache=False, compile=False, memory_format=None)
    network = trial.network
    assert network.net is trial.built.module and not network.on_features
    assert isinstance(network.inputs, pipeline.PixelInputs) and network.feature_cache == "off"
    assert network.decision.row()["precision_used"] == "fp32" and network.decision.how == "fixed"


def test_with_the_cache_the_loop_steps_the_suffix_on_features_and_says_so(tmp_path):
    trial = train.build(editable(), tmp_path, torch.device("cpu"), feature_cache=True, compile=False, memory_format=None)
    network = trial.network
    assert isinstance(network.net, features.Suffix) and network.on_features
    assert isinstance(network.inputs, features.FeatureInputs) and network.feature_cache == "built (cut before fc)"
    suffix_params = {id(p) for p in network.net.parameters()}
    assert suffix_params <= {id(p) for p in trial.built.module.parameters()}  # the suffix shares the network's modules
    rows, labels = network.inputs.epoch(trial.splits.train, torch.arange(4))
    x, _ = network.inputs.batch_of(trial.splits.train, rows, labels, "none", torch.Generator())
    with network.autocast():
        assert network.net(x).shape == (4, 3)


def test_a_network_that_cannot_be_cut_trains_whole_and_the_row_says_why(tmp_path):
    trial = train.build(editable(augment="strong"), tmp_path, torch.device("cpu"), True, False, None)
    assert trial.network.net is trial.built.module and trial.network.feature_cache.startswith("not cacheable: ")


def test_a_bf16_decision_runs_the_forward_pass_under_autocast(tmp_path):
    config = editable()
    trial = train.build(config, tmp_path, torch.device("cpu"), False, False, None)
    with trial.network.autocast():
        assert not torch.is_autocast_enabled("cpu")
    bf16 = train.build(replace(config, precision="bf16"), tmp_path, torch.device("cpu"), False, False, None)
    with bf16.network.autocast():
        assert torch.is_autocast_enabled("cpu")
