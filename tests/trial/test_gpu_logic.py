"""The GPU path's decisions, checked without a GPU: precision, GPU shares, scheduling order."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import resolved

from tlbench.grid import TrialSpec, trial_id
from tlbench.on_ray import driver as scheduler
from tlbench.trial import train


@pytest.mark.parametrize("device, cuda_bf16, cpu_bf16, expected", [
    ("cuda", True, False, "bf16"), ("cuda", False, True, "fp32"), ("cpu", True, True, "bf16"), ("cpu", True, False, "fp32"),
])  # fmt: skip
def test_auto_precision_is_bf16_where_the_device_does_it_well(monkeypatch, device, cuda_bf16, cpu_bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: cuda_bf16)
    monkeypatch.setattr(train, "cpu_has_fast_bf16", lambda: cpu_bf16)
    assert train.resolve_precision("auto", torch.device(device)) == expected
    assert train.resolve_precision("fp32", torch.device(device)) == "fp32"


def test_cpu_bf16_detection_reads_the_cpu_flags(monkeypatch, tmp_path):
    for flags, expected in ((" fma avx512_bf16 sse", True), (" fma amx_bf16", True), (" fma avx2", False)):
        fake = tmp_path / "cpuinfo"
        fake.write_text(f"flags\t:{flags}\n")
        monkeypatch.setattr(train, "Path", lambda _, fake=fake: fake)
        assert train.cpu_has_fast_bf16() is expected


def spec_for(arch: str, size: int = 224) -> TrialSpec:
    config = resolved(
        model={"arch": arch, "weights": "none"}, image_size=size, dataset={"name": "cifar10", "n_classes": None}, train={"freeze": "none"}
    )
    return TrialSpec(trial_id(config), "e", "r", 0, {}, config, ("e",))


def test_gpu_share_by_arch_only_where_the_cluster_has_gpus():
    options = scheduler.RunOptions(results=Path("r"), data=Path("d"))
    assert scheduler.gpu_share(spec_for("resnet18"), options, cluster_gpus=0) == 0
    assert scheduler.gpu_share(spec_for("resnet18"), options, cluster_gpus=4) == 0.25
    assert scheduler.gpu_share(spec_for("vgg16"), options, cluster_gpus=4) == 0.5
    explicit = scheduler.RunOptions(results=Path("r"), data=Path("d"), gpus_per_trial=1.0)
    assert scheduler.gpu_share(spec_for("resnet18"), explicit, cluster_gpus=0) == 1.0


def test_longest_trials_start_first():
    ordered = scheduler.longest_first([spec_for("resnet18"), spec_for("vgg16"), spec_for("alexnet"), spec_for("resnet50")])
    assert [s.config["model"]["arch"] for s in ordered] == ["vgg16", "resnet50", "resnet18", "alexnet"]


def test_a_trials_pools_go_to_the_card_only_where_they_fit_in_a_part_of_its_share(monkeypatch):
    from types import SimpleNamespace

    from tlbench.trial import memory, pipeline
    from tlbench.trial.data import ImageSet

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=80 * 2**30))
    cuda = torch.device("cuda")
    assert memory.data_budget_bytes(cuda, 0.25) == 80 * 2**30 * 0.25 * memory.DATA_SHARE
    assert memory.data_budget_bytes(cuda, 0.0) == memory.data_budget_bytes(cuda, 1.0) == 80 * 2**30 * memory.DATA_SHARE
    assert memory.data_budget_bytes(torch.device("cpu"), 0.25) == 0
    pool = torch.zeros(100, 3, 32, 32, dtype=torch.uint8)  # 300 KiB
    images = ImageSet.whole(pool, torch.zeros(100, dtype=torch.int64), [str(i) for i in range(100)], "p")
    inputs = pipeline.PixelInputs(cuda, "imagenet", channels_last=True)
    assert inputs.place([images, images.subset([0, 1])], 2**18).startswith("staged")  # one pool, counted once, > 256 KiB
    assert inputs.on_card == {}
