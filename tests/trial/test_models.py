"""Every arch x freeze strategy: it builds, takes a backward step, and exactly the
right parameters train. Counts are computed by hand from the architectures
(torchvision's published totals: AlexNet 61,100,840; VGG16 138,357,544;
ResNet18 11,689,512; ResNet50 25,557,032)."""

from __future__ import annotations

import pytest
import torch

from tlbench.registries import archs
from tlbench.trial import networks as models
from tlbench.trial.config import ModelConfig

# Pieces, in parameters.
ALEX_FEATURES = 23_296 + 307_392 + 663_936 + 884_992 + 590_080  # five convs
ALEX_FC6, ALEX_FC7 = 9216 * 4096 + 4096, 4096 * 4096 + 4096
VGG_FEATURES = 14_714_688
VGG_CONV5 = 3 * (512 * 512 * 9 + 512)  # features.24, .26, .28
VGG_FC6, VGG_FC7 = 25088 * 4096 + 4096, 4096 * 4096 + 4096
R18 = {"stem": 9408 + 128, "layer1": 147_968, "layer2": 525_568, "layer3": 2_099_712, "layer4": 8_393_728}
R18_BN = 128 + 4 * 128 + 5 * 256 + 5 * 512 + 5 * 1024
R50 = {"stem": 9408 + 128, "layer1": 215_808, "layer2": 1_219_584, "layer3": 7_098_368, "layer4": 14_964_736}
R50_BN = 53_120


def head(width: int, classes: int) -> int:
    return width * classes + classes


# (arch, freeze, classes, hidden, trainable parameters)
CASES = [
    ("alexnet", "head", 10, [], head(4096, 10)),
    ("alexnet", "none", 2, [], ALEX_FEATURES + ALEX_FC6 + ALEX_FC7 + head(4096, 2)),  # 001 random init: "~57M"
    ("alexnet", {"trainable": ["classifier.4"]}, 2, [], ALEX_FC7 + head(4096, 2)),  # 001 fine-tune
    ("alexnet", {"frozen": ["features"]}, 10, [], ALEX_FC6 + ALEX_FC7 + head(4096, 10)),
    ("alexnet", "bn", 10, [], head(4096, 10)),  # AlexNet has no BatchNorm
    ("vgg16", "head", 2, [4096, 4096], VGG_FC6 + VGG_FC7 + head(4096, 2)),  # the new classifier is the head
    ("vgg16", {"trainable": ["features.24", "features.26", "features.28"]}, 1, [4096, 4096], VGG_CONV5 + VGG_FC6 + VGG_FC7 + head(4096, 1)),
    ("vgg16", "none", 10, [], VGG_FEATURES + VGG_FC6 + VGG_FC7 + head(4096, 10)),
    ("vgg16", {"gradual": {"every": 1, "blocks": ["features.28"]}}, 10, [], head(4096, 10)),  # epoch 0: head only
    ("resnet18", "head", 37, [], head(512, 37)),
    ("resnet18", "bn", 37, [], R18_BN + head(512, 37)),
    ("resnet18", {"last": 2}, 37, [], R18["layer4"] + head(512, 37)),
    ("resnet18", {"last": 3}, 37, [], R18["layer4"] + R18["layer3"] + head(512, 37)),
    ("resnet18", {"last": 4}, 37, [], R18["layer4"] + R18["layer3"] + R18["layer2"] + head(512, 37)),
    ("resnet18", {"last": 5}, 37, [], R18["layer4"] + R18["layer3"] + R18["layer2"] + R18["layer1"] + head(512, 37)),
    ("resnet18", {"last": 9}, 37, [], sum(R18.values()) + head(512, 37)),
    ("resnet18", {"frozen": ["layer1", "layer2"]}, 10, [], R18["stem"] + R18["layer3"] + R18["layer4"] + head(512, 10)),  # 004 early
    ("resnet18", {"frozen": ["layer2", "layer3"]}, 10, [], R18["stem"] + R18["layer1"] + R18["layer4"] + head(512, 10)),  # 004 middle
    ("resnet18", "none", 10, [], sum(R18.values()) + head(512, 10)),
    ("resnet18", {"gradual": {"every": 2}}, 37, [], head(512, 37)),
    ("resnet50", "head", 37, [], head(2048, 37)),
    ("resnet50", {"last": 3}, 37, [], R50["layer4"] + R50["layer3"] + head(2048, 37)),
    ("resnet50", "bn", 37, [], R50_BN + head(2048, 37)),
    ("resnet50", "none", 37, [], sum(R50.values()) + head(2048, 37)),
]


def _build(arch: str, freeze, classes: int, hidden: list[int]) -> tuple[models.Built, models.FreezePlan]:
    torch.manual_seed(0)
    built = models.build(ModelConfig(arch=arch, weights="none", hidden=tuple(hidden), dropout=0.5 if hidden else 0.0), classes)
    if isinstance(freeze, dict) and "gradual" in freeze:
        from tlbench.registries import freezing

        freeze = freezing.canonical_in(freeze, {"model": {"arch": arch}})
    return built, models.freeze_plan(freeze, built)


@pytest.mark.parametrize("arch, freeze, classes, hidden, expected", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
@pytest.mark.slow
def test_strategy_trains_exactly_the_expected_parameters(arch, freeze, classes, hidden, expected):
    built, plan = _build(arch, freeze, classes, hidden)
    trainable = models.apply_stage(built, plan, 0)
    assert trainable == expected
    # One backward step at a small size: gradients reach exactly the trainable parameters.
    size = archs.get(arch).min_image_size if arch == "alexnet" else 32
    models.set_train_mode(built, plan)
    out = built.module(torch.randn(2, 3, size, size))
    assert out.shape == (2, classes)
    out.float().pow(2).mean().backward()
    for name, param in built.module.named_parameters():
        assert (param.grad is not None) == param.requires_grad, name


def test_gradual_unfreezing_schedule_epoch_by_epoch():
    """002 strategy 2: head first, then layer4, layer3, layer2, layer1, one every 2 epochs; BN stats frozen."""
    built, plan = _build("resnet18", {"gradual": {"every": 2}}, 37, [])
    stage = [head(512, 37)]
    for block in ("layer4", "layer3", "layer2", "layer1"):
        stage.append(stage[-1] + R18[block])
    expected = [stage[0], stage[0], stage[1], stage[1], stage[2], stage[2], stage[3], stage[3], stage[4], stage[4]]
    assert [models.apply_stage(built, plan, epoch) for epoch in range(10)] == expected
    models.set_train_mode(built, plan)
    bns = [m for m in built.module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)


def test_gradual_unfreezing_as_002_ran_it():
    """002 as run (new_main.py:245-249): layer4 with the head from epoch 1, layer3 at 3, layer2 at 5, layer1 at 7;
    every BatchNorm in train mode in epoch 1 (model.train() undoes the freeze), eval mode after."""
    built, plan = _build("resnet18", {"gradual": {"every": 2, "first": 0}}, 37, [])
    stage = [head(512, 37)]
    for block in ("layer4", "layer3", "layer2", "layer1"):
        stage.append(stage[-1] + R18[block])
    expected = [stage[1], stage[1], stage[2], stage[2], stage[3], stage[3], stage[4], stage[4], stage[4], stage[4]]
    assert [models.apply_stage(built, plan, epoch) for epoch in range(10)] == expected
    bns = [m for m in built.module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    models.set_train_mode(built, plan, 0, train_mode_epochs=1)
    assert all(m.training for m in bns)
    models.set_train_mode(built, plan, 1, train_mode_epochs=1)
    assert not any(m.training for m in built.module.modules())


@pytest.mark.parametrize("freeze, stats_move", [("head", False), ("bn", True)])
@pytest.mark.slow
def test_batchnorm_statistics_move_only_where_batchnorm_trains(freeze, stats_move):
    """A frozen BatchNorm keeps its statistics in train mode; the bn strategy lets them adapt."""
    built, plan = _build("resnet18", freeze, 10, [])
    models.apply_stage(built, plan, 0)
    models.set_train_mode(built, plan)
    before = built.module.bn1.running_mean.clone()
    built.module(torch.randn(4, 3, 32, 32))
    assert built.module.training
    assert torch.equal(before, built.module.bn1.running_mean) != stats_move


def test_discriminative_lr_groups_decay_away_from_the_head():
    built, _ = _build("resnet18", "none", 10, [])
    groups = models.param_groups(built, 0.01, 0.1)
    lrs = [g["lr"] for g in groups]
    assert lrs == pytest.approx([0.01, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7])  # head, layer4..layer1, stem
    assert sum(p.numel() for g in groups for p in g["params"]) == models.count_params(built.module)


def test_unknown_module_path_names_the_arch_and_its_modules():
    built = models.build(ModelConfig(arch="resnet18", weights="none", hidden=(), dropout=0.0), 10)
    with pytest.raises(ValueError, match="resnet18 has no module 'layer9'.*layer4"):
        models.freeze_plan({"trainable": ["layer9"]}, built)


def test_missing_pretrained_weights_say_what_to_put_where(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torchvision.models as tvm

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tvm.ResNet18_Weights.DEFAULT.__class__, "get_state_dict", offline, raising=False)
    with pytest.raises(models.WeightsMissing, match=r"resnet18-f37072fd\.pth.*checkpoints"):
        models.build(ModelConfig(arch="resnet18", weights="imagenet", hidden=(), dropout=0.0), 10)


def test_custom_arch_from_a_module_path():
    built = models.build(ModelConfig(arch="tlbench.tiny:small_cnn", weights="none", hidden=(8,), dropout=0.1), 3)
    assert built.head == "fc"
    assert built.module(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    with pytest.raises(ValueError, match="cannot import"):
        models.build(ModelConfig(arch="tlbench.tiny:missing", weights="none", hidden=(), dropout=0.0), 3)
