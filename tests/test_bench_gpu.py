"""`bench --gpu`'s harness, checked on the CPU: it says there is no GPU, its trials resolve, its pieces run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tlbench import bench, bench_gpu
from tlbench.trial_config import TrialConfig


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
def test_the_trainer_and_packed_trials_run_through_the_harness(tmp_path, monkeypatch):
    """On the CPU at 32 px with a small network: run_trial's epochs are read, and two packed processes report."""
    monkeypatch.setattr(bench_gpu, "SIZE", 32)
    bench.write_jpegs(tmp_path, 8, 10, 32)
    case = bench_gpu.Case("", "tlbench.tiny:small_cnn", 16, "none")
    rate, summary = bench_gpu.tlbench_rate(case, tmp_path)
    assert rate > 0 and summary["epochs_run"] == bench_gpu.EPOCHS
    rates = bench_gpu.packed_rate(case, tmp_path, 2, epochs=2, timeout_s=300)
    assert len(rates) == 2 and all(r > 0 for r in rates)
