"""The frozen-feature cache: the same results as the pixel path, shared across trials, refused with a reason."""

from __future__ import annotations

import pytest
import torch
from helpers import resolved

from tlbench import features, models, train


@pytest.mark.parametrize("arch, size", [("resnet18", 32), ("resnet50", 32), ("vgg16", 32), ("alexnet", 64)])
def test_forward_chain_is_the_networks_forward(arch, size):
    torch.manual_seed(0)
    built = models.build({"arch": arch, "weights": "none", "hidden": [], "dropout": 0.0}, 5)
    built.module.eval()
    x = torch.randn(2, 3, size, size)
    chain = torch.nn.Sequential(*(m for _, m in features.forward_chain(built)))
    assert torch.allclose(chain(x), built.module(x), atol=1e-5)


def head_only(arch: str = "resnet18", **train_overrides) -> dict:
    return resolved(model={"arch": arch, "weights": "none"}, image_size=64 if arch == "alexnet" else 32, precision="fp32", epochs=3,
                    train={"freeze": "head", "lr": 1e-2, **train_overrides}, dataset={"n_classes": 3, "n_train": 240, "n_test": 90})


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


def test_hflip_and_dropout_after_the_cut_stay_live(tmp_path):
    config = head_only("alexnet", augment="hflip")
    plain = train.run_trial(config, tmp_path, feature_cache=False)
    cached = train.run_trial(config, tmp_path)
    assert cached.summary["feature_cache"] == "built (cut before classifier.0)"  # AlexNet's dropout runs live
    assert abs(cached.summary["test_acc"] - plain.summary["test_acc"]) <= 0.005
    assert len(list((tmp_path / ".tlbench-cache" / "features").glob("*.npy"))) == 4  # both views of both pools


@pytest.mark.parametrize("overrides, reason", [
    ({"augment": "strong"}, "random crops, rotations and colour jitter"),
    ({"freeze": {"gradual": {"every": 1, "blocks": ["layer4"]}}}, "gradual unfreezing"),
    ({"freeze": "bn"}, "larger than the image"),
])  # fmt: skip
def test_uncacheable_trials_say_why(tmp_path, overrides, reason):
    outcome = train.run_trial({**head_only(), "epochs": 1, "train": {**head_only()["train"], **overrides}}, tmp_path)
    assert outcome.summary["feature_cache"].startswith("not cacheable") and reason in outcome.summary["feature_cache"]


def test_last_l_layers_cut_before_the_first_trained_block(tmp_path):
    outcome = train.run_trial({**head_only(), "epochs": 1, "image_size": 64, "train": {**head_only()["train"], "freeze": {"last": 3}}}, tmp_path)
    assert outcome.summary["feature_cache"] == "built (cut before layer3)"
