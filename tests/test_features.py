"""The frozen-feature cache: the same results as the pixel path, shared across trials, refused with a reason."""

from __future__ import annotations

import pytest
import torch
from helpers import changed, typed

from tlbench import features, models, train
from tlbench.trial_config import TrialConfig


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
