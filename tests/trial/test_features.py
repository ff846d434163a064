"""The frozen-feature cache: the same results as the pixel path, shared across trials, refused with a reason."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
import traced_models
from helpers import cache_files as _cache_files
from helpers import changed, editable, finishes, typed, unblock

from tlbench.trial import features, train
from tlbench.trial import networks as models
from tlbench.trial.config import TrialConfig
from tlbench.trial.data import DataError


@pytest.mark.parametrize("arch, size, cut_name, cut_key", [
    ("resnet18", 32, "fc", "fx:flatten"), ("resnet50", 32, "fc", "fx:flatten"), ("alexnet", 64, "classifier", "fx:flatten"),
])  # fmt: skip
@pytest.mark.slow
def test_the_traced_cut_splits_the_networks_forward(arch, size, cut_name, cut_key):
    """Head only: the report archs cut where the per-arch chain did (ResNet before fc, AlexNet before its dropout)."""
    torch.manual_seed(0)
    config = head_only(arch)
    built = models.build(config.model, 5)
    cut = features.find_cut(built, models.freeze_plan("head", built), config.train, size)
    assert (cut.name, cut.key) == (cut_name, cut_key)
    built.module.eval()
    x = torch.randn(2, 3, size, size)
    assert torch.allclose(cut.suffix(cut.prefix(x)), built.module(x), atol=1e-5)


def head_only(arch: str = "resnet18", **train_overrides) -> TrialConfig:
    return typed(
        model={"arch": arch, "weights": "none"},
        image_size=64 if arch == "alexnet" else 32,
        precision="fp32",
        epochs=3,
        train={"freeze": "head", "lr": 1e-2, **train_overrides},
        dataset={"n_classes": 3, "n_train": 240, "n_test": 90},
    )


@pytest.mark.slow
def test_cached_head_only_trial_matches_the_uncached_one_and_is_shared(tmp_path):
    config = head_only()
    plain = train.run_trial(config, tmp_path, feature_cache=False)
    first = train.run_trial(config, tmp_path)
    second = train.run_trial(config, tmp_path)
    assert plain.summary["feature_cache"] == "off"
    assert first.summary["feature_cache"] == "built (cut before fc)" and second.summary["feature_cache"] == "hit (cut before fc)"
    assert first.summary["test_acc"] == plain.summary["test_acc"]  # no randomness after the cut: the same
    assert first.summary["test_loss"] == pytest.approx(plain.summary["test_loss"], rel=1e-4)
    assert [e["train_loss"] for e in first.epochs] == pytest.approx([e["train_loss"] for e in plain.epochs], rel=1e-4)
    assert second.summary["test_loss"] == first.summary["test_loss"]
    assert len(list((tmp_path / ".tlbench-cache" / "features").glob("*.npy"))) == 2  # train and test pools


@pytest.mark.slow
def test_hflip_and_dropout_after_the_cut_stay_live(tmp_path):
    config = head_only("alexnet", augment="hflip")
    plain = train.run_trial(config, tmp_path, feature_cache=False)
    cached = train.run_trial(config, tmp_path)
    assert cached.summary["feature_cache"] == "built (cut before classifier)"  # AlexNet's dropout runs live
    assert abs(cached.summary["test_acc"] - plain.summary["test_acc"]) <= 0.005
    # both views of the pool that trains, the plain view of the test pool (only evaluated, never flipped)
    assert len(list((tmp_path / ".tlbench-cache" / "features").glob("*.npy"))) == 3


@pytest.mark.parametrize("overrides, reason", [
    ({"augment": "strong"}, "random crops, rotations and colour jitter"),
    ({"freeze": {"gradual": {"every": 1, "blocks": ["layer4"]}}}, "gradual unfreezing"),
    ({"freeze": "bn"}, "larger than the image"),
])  # fmt: skip
@pytest.mark.slow
def test_uncacheable_trials_say_why(tmp_path, overrides, reason):
    outcome = train.run_trial(changed(head_only(), epochs=1, train=overrides), tmp_path)
    assert outcome.summary["feature_cache"].startswith("not cacheable") and reason in outcome.summary["feature_cache"]


@pytest.mark.slow
def test_last_l_layers_cut_before_the_first_trained_block(tmp_path):
    outcome = train.run_trial(changed(head_only(), epochs=1, image_size=64, train={"freeze": {"last": 3}}), tmp_path)
    assert outcome.summary["feature_cache"] == "built (cut before layer3)"


def _equal_runs(config: TrialConfig, root) -> tuple:
    """The same trial uncached and cached (built), then cached again at another lr (hit): the first two must agree exactly."""
    plain = train.run_trial(config, root, feature_cache=False)
    cached = train.run_trial(config, root)
    again = train.run_trial(changed(config, train={"lr": config.train.lr / 2}), root)
    assert plain.summary["feature_cache"] == "off"
    assert [e["train_loss"] for e in cached.epochs] == [e["train_loss"] for e in plain.epochs]  # exact, every epoch
    assert [e["val_loss"] for e in cached.epochs] == [e["val_loss"] for e in plain.epochs]
    assert cached.summary["test_loss"] == plain.summary["test_loss"]
    assert cached.summary["confusion"] == plain.summary["confusion"]  # the same test predictions
    return cached, again


@pytest.mark.slow
def test_traced_cache_on_a_functional_network_with_dropout_matches_uncached_exactly(tmp_path):
    """Functional ops, a skip connection, F.dropout and nn.Dropout before the head: the cut lands before the
    first dropout, and both dropouts run live in train mode and not in eval mode, as in the whole network."""
    config = typed(
        model={"arch": "traced_models:functional_net", "weights": "none"},
        image_size=16,
        precision="fp32",
        epochs=3,
        train={"freeze": {"trainable": ["proj"]}, "lr": 1e-2, "batch_size": 16},
        dataset={"n_classes": 3, "n_train": 120, "n_test": 60, "val_fraction": 0.2},
    )
    cached, again = _equal_runs(config, tmp_path)
    assert cached.summary["feature_cache"] == "built (cut before proj)"
    assert again.summary["feature_cache"] == "hit (cut before proj)"
    cached, _ = _equal_runs(changed(config, train={"freeze": "head"}), tmp_path)
    assert cached.summary["feature_cache"] == "built (cut before dropout)"  # F.dropout, after proj's relu


@pytest.mark.slow
def test_traced_cache_on_mobilenet_v3_small_head_only_matches_uncached_exactly(tmp_path):
    """A torchvision network outside the report four (depthwise convolutions, squeeze-excitation, Hardswish,
    Dropout inside its classifier): built, then hit by a trial at another lr, with the uncached run's numbers."""
    config = typed(
        model={"arch": "mobilenet_v3_small", "weights": "none"},
        image_size=32,
        precision="fp32",
        epochs=2,
        train={"freeze": "head", "lr": 1e-2, "batch_size": 32},
        dataset={"n_classes": 3, "n_train": 120, "n_test": 60},
    )
    cached, again = _equal_runs(config, tmp_path)
    assert cached.summary["feature_cache"] == "built (cut before classifier.2)"  # its Dropout runs live
    assert again.summary["feature_cache"] == "hit (cut before classifier.2)"


def test_an_untraceable_network_runs_uncached_and_says_why(tmp_path):
    config = typed(
        model={"arch": "traced_models:data_dependent_net", "weights": "none"},
        image_size=16,
        precision="fp32",
        train={"freeze": "head"},
        dataset={"n_classes": 3, "n_train": 60, "n_test": 30},
    )
    outcome = train.run_trial(config, tmp_path)
    assert outcome.status == "ok"
    assert outcome.summary["feature_cache"].startswith("not cacheable: cannot trace traced_models:data_dependent_net: TraceError")
    assert not (tmp_path / ".tlbench-cache" / "features").exists()


# -- the cache's key: what the features are a function of ---------------------------------------------------


@pytest.mark.parametrize("change, value", [("ACTIVATION", torch.nn.Tanh), ("STEM_SCALE", 3.0)])
def test_a_custom_arch_changed_under_its_name_misses_the_cache(tmp_path, monkeypatch, change, value):
    """ReLU -> Tanh in the frozen part, or other weights: a miss with the uncached run's numbers, never the old
    network's features (the key held the arch's name, not what its prefix computes)."""
    config = editable()
    assert train.run_trial(config, tmp_path).summary["feature_cache"] == "built (cut before fc)"
    assert train.run_trial(config, tmp_path).summary["feature_cache"] == "hit (cut before fc)"
    monkeypatch.setattr(traced_models, change, value)
    cached = train.run_trial(config, tmp_path)
    plain = train.run_trial(config, tmp_path, feature_cache=False)
    assert cached.summary["feature_cache"] == "built (cut before fc)"
    assert cached.summary["test_loss"] == plain.summary["test_loss"] and cached.summary["confusion"] == plain.summary["confusion"]
    assert len(list((tmp_path / ".tlbench-cache" / "features").glob("*.npy"))) == 2 * 2  # two networks, train and test pools


def test_the_key_follows_the_prefix_not_the_arch_name():
    """The fingerprint reads code, module settings and every tensor: equal for two builds with equal weights,
    different for another activation, another weight, another buffer."""

    def prefix_of(**edits) -> torch.nn.Module:
        torch.manual_seed(0)
        for name, value in edits.items():
            setattr(traced_models, name, value)
        try:
            built = models.build(editable().model, 3)
        finally:
            traced_models.ACTIVATION, traced_models.STEM_SCALE = torch.nn.ReLU, 1.0
        return features.find_cut(built, models.freeze_plan("head", built), editable().train, 16).prefix

    base = features.fingerprint(prefix_of())
    assert features.fingerprint(prefix_of()) == base
    assert features.fingerprint(prefix_of(ACTIVATION=torch.nn.Tanh)) != base
    assert features.fingerprint(prefix_of(ACTIVATION=torch.nn.LeakyReLU)) != base
    assert features.fingerprint(prefix_of(STEM_SCALE=1.0 + 1e-6)) != base


# -- why a trial does not cache, and what finding out costs -----------------------------------------------------


@pytest.mark.parametrize("arch, reason", [
    # EfficientNet-Lite-like: a BatchNorm fx traces through (frozen: eval mode) and drop-connect in its second block
    ("lite_net", "blocks.1.bernoulli_ is random in train mode, and the cut before it (blocks.1) would cache features larger than the image"),
    ("stochastic_depth_net", "depth (StochasticDepth) is random in train mode, and the cut before it (block) would cache features larger than the image"),
    ("sequence_first_net", "drop (Dropout) is random in train mode, and the cut before it (permute) would cache features larger than the image"),
])  # fmt: skip
def test_a_frozen_random_op_is_named_as_what_stops_the_cut(arch, reason):
    built = models.build(typed(model={"arch": f"traced_models:{arch}", "weights": "none"}).model, 3)
    assert features.find_cut(built, models.freeze_plan("head", built), editable().train, 16) == reason


def test_a_failed_cut_search_runs_the_frozen_layers_once(monkeypatch):
    """Every point between the stem and the dropout is rejected (no row per image): the search's work is two
    traces and one pass of the frozen layers, not a pass per rejected point (seconds per trial on a big net)."""
    built = models.build(typed(model={"arch": "traced_models:sequence_first_net", "weights": "none"}).model, 3)
    runs, traces = [], []
    built.module.stem.register_forward_hook(lambda *_: runs.append(1))
    trace = features.NodePathTracer.trace
    monkeypatch.setattr(features.NodePathTracer, "trace", lambda *args, **kwargs: traces.append(1) or trace(*args, **kwargs))
    reason = features.find_cut(built, models.freeze_plan("head", built), editable().train, 16)
    assert (len(traces), len(runs)) == (2, 1)
    assert reason.startswith("drop (Dropout) is random")


def test_the_first_layer_trains_only_where_it_does():
    built = models.build(editable().model, 3)
    assert features.find_cut(built, models.freeze_plan("none", built), editable().train, 16) == "the first layer trains"


# -- a cache file that is not what a build writes: rebuilt with a warning, never used -------------------------


def _few_rows(path) -> None:
    np.save(path, np.load(path)[:-5])  # a valid .npy of too few rows: an IndexError mid-training, before


def _float64(path) -> None:
    np.save(path, np.load(path).astype(np.float64))


def _truncated(path) -> None:
    os.truncate(path, os.path.getsize(path) - 16)


def _garbage(path) -> None:
    path.write_bytes(b"not an npy file")


def _fifo(path) -> None:
    path.unlink()
    os.mkfifo(path)


@pytest.mark.parametrize("spoil", [_few_rows, _float64, _truncated, _garbage, _fifo])
def test_a_spoiled_feature_cache_is_rebuilt_with_a_warning_naming_it(tmp_path, spoil):
    config = editable()
    first = train.run_trial(config, tmp_path)
    spoiled = _cache_files(tmp_path)[0]
    spoil(spoiled)
    try:
        with pytest.warns(UserWarning, match=f"rebuilding the feature cache {spoiled}"):
            again = finishes(train.run_trial, config, tmp_path)  # a FIFO read blocks: fail, not hang
    finally:
        if spoiled.is_fifo():
            unblock(spoiled)
    assert again.summary["feature_cache"] == "built (cut before fc)"
    assert again.summary["test_loss"] == first.summary["test_loss"] and again.summary["confusion"] == first.summary["confusion"]
    assert spoiled.is_file() and not spoiled.is_fifo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt once: the next run is a plain hit
        assert train.run_trial(config, tmp_path).summary["feature_cache"] == "hit (cut before fc)"


def test_a_folder_at_a_feature_cache_is_an_error_naming_it(tmp_path):
    config = editable()
    train.run_trial(config, tmp_path)
    planted = _cache_files(tmp_path)[0]
    planted.unlink()
    (planted / "inside").mkdir(parents=True)
    with pytest.warns(UserWarning, match=str(planted)), pytest.raises(DataError, match=f"cannot replace the feature cache {planted}"):
        train.run_trial(config, tmp_path)
