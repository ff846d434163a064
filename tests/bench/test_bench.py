"""The benchmark runs end to end and prints every figure it promises (tiny sizes: no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

PROMISED = ["feature_cache_speedup_cold", "feature_cache_speedup_warm", "feature_cache_speedup_cold_traced",
            "feature_cache_speedup_warm_traced", "input_pipeline_speedup", "train_speedup",
            "cpu_matmul_gflops_fp32", "cpu_matmul_gflops_bf16", "train_flops_fraction", "auto_vs_best_fixed",
            "train_step_overhead"]  # fmt: skip


def test_bench_quick_prints_every_ratio():
    proc = subprocess.run([sys.executable, "-m", "tlbench.bench", "--quick"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    values = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line and not line.startswith("["))
    for name in PROMISED:
        assert float(values[name]) > 0, name
    # a marginal cost: at these sizes it is within noise of zero, either side
    assert abs(float(values["ray_overhead_s"])) < 30
    # the cached and uncached trials agree (the cache changes speed, not results)
    assert values["feature_cache_uncached_test_acc"] == values["feature_cache_cold_test_acc"] == values["feature_cache_warm_test_acc"]
    traced = [values[f"feature_cache_traced_{name}_test_acc"] for name in ("uncached", "cold", "warm")]
    assert traced[0] == traced[1] == traced[2]
    assert values["feature_cache_traced_cut"] == "built (cut before fc)"  # the traced path cached it
    assert values["sync_free_steps"] == "1"  # an epoch reads the device back once, whatever its steps
    # auto picked one of the candidates it timed, and says which
    assert values["auto_choice"] in values["auto_measured_images_per_s"]


def test_bench_memory_measures_each_distinct_trial_shape_once(tmp_path):
    """Two lrs of one shape are one measurement; another batch size is another."""
    from helpers import TINY_GRID

    grid = tmp_path / "grid.yaml"
    grid.write_text(
        TINY_GRID.replace(
            "axes:\n      train.lr: [3.0e-3, 1.0e-3]", "axes:\n      train.batch_size: [8, 16]\n      train.lr: [3.0e-3, 1.0e-3]"
        ).replace("where: {train.lr: ", "where: {train.batch_size: 8, train.lr: ")  # a row leaving an axis open is refused
    )
    proc = subprocess.run([sys.executable, "-m", "tlbench.bench", "--memory", "--quick", "--grid", str(grid)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    peaks = [line for line in proc.stdout.splitlines() if line.startswith("peak_mem_mb ")]
    assert len(peaks) == 2, proc.stdout
    assert {"batch=8" in p for p in peaks} == {True, False}
    assert all(float(p.rsplit(" ", 1)[1]) > 0 for p in peaks)
    assert float(dict(line.split(" ", 1) for line in proc.stdout.splitlines())["peak_mem_mb_max_tlbench.tiny:small_cnn"]) > 0


def test_bench_scale_quick_prints_the_scale_lines():
    """At tiny sizes (40 and 100 fabricated trials): every command runs over the fabricated results."""
    proc = subprocess.run([sys.executable, "-m", "tlbench.bench", "--scale", "--quick"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    values = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    for name in ("scale_run_noop_s", "scale_list_s", "scale_report_s"):
        assert float(values[name]) > 0, name
        assert float(values[f"{name}_40_trials"]) > 0 and float(values[f"{name}_growth"]) > 0, name
    assert float(values["scale_fabricate_s_100_trials"]) > 0
