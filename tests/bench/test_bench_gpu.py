"""`bench --gpu`'s harness, checked on the CPU: it says there is no GPU, its trials resolve, its pieces run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tlbench.bench import gpu as bench_gpu
from tlbench.trial.config import TrialConfig


def test_without_cuda_it_says_so_and_exits_0(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the bench would run")
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "-m", "tlbench.bench", "--gpu", "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "gpu none (no CUDA device)"
    assert json.loads(out.read_text()) == {"gpu": "none (no CUDA device)"}
    assert "ray" not in proc.stderr.lower()


def test_its_trials_are_valid_configs_with_random_weights():
    for case in bench_gpu.CASES:
        config = TrialConfig.from_dict(bench_gpu.config_for(case))
        assert (config.model.arch, config.train.batch_size, config.image_size) == (case.arch, case.batch, 224)
        assert config.model.weights == "none"


def test_lines_land_in_the_json_file_one_by_one(tmp_path, capsys):
    lines = bench_gpu.Lines(tmp_path / "out.json")
    lines.emit("gpu_train_images_per_s", 1234.5)
    lines.emit("gpu_train_precision", "bf16+channels_last")
    assert json.loads((tmp_path / "out.json").read_text()) == {
        "gpu_train_images_per_s": 1234.5,
        "gpu_train_precision": "bf16+channels_last",
    }
    assert capsys.readouterr().out.splitlines() == ["gpu_train_images_per_s 1234", "gpu_train_precision bf16+channels_last"]


@pytest.mark.slow
def test_the_whole_harness_runs_on_the_cpu_at_a_small_size(tmp_path, monkeypatch):
    """Every stage as on a card (the cases, two packed processes, the FLOPs fraction), on the CPU at 32 px, fp32
    (auto's measurement is not what this checks): a one-shot run on a lent card must not meet its bugs first."""
    monkeypatch.setattr(bench_gpu, "DEVICE", "cpu")
    monkeypatch.setattr(bench_gpu, "SIZE", 32)
    monkeypatch.setattr(bench_gpu, "CASES", [bench_gpu.Case("", "resnet18", 16, "none"), bench_gpu.Case("_head", "resnet18", 16, "head")])
    config_for = bench_gpu.config_for
    monkeypatch.setattr(bench_gpu, "config_for", lambda case, epochs=bench_gpu.EPOCHS: {**config_for(case, epochs), "precision": "fp32"})
    lines = bench_gpu.Lines(tmp_path / "out.json")
    bench_gpu.measure(tmp_path, lines, quick=True, packed=[2], compile=False, profile_to=tmp_path / "out.json")
    values = json.loads((tmp_path / "out.json").read_text())
    assert not [name for name in values if name.endswith("_error")], values
    for suffix in ("", "_head"):
        for name in ("gpu_reference_images_per_s", "gpu_train_images_per_s", "gpu_train_vs_reference"):
            assert values[f"{name}{suffix}"] > 0, name + suffix
    assert values["gpu_train_feature_cache_head"].startswith("built")
    # --profile: one epoch's ops by host time per case, the optimizer's step among them
    assert values["gpu_profile_head"] == str(tmp_path / "out-profile_head.txt")
    for name in ("out-profile_resnet18.txt", "out-profile_head.txt"):
        table = (tmp_path / name).read_text()
        assert "Self CPU" in table and "Optimizer.step#Adam.step" in table, name
    assert values["gpu_packed_throughput_2"] > 0 and len(json.loads(values["gpu_packed_per_trial_images_per_s_2"])) == 2
    assert 0 < values["train_flops_fraction"] < 1
