"""What a trial costs, on paper: images it processes and the FLOPs that takes.

Used to schedule the longest trials first and by `grid plan`. Estimates, not
measurements: forward GFLOPs per image at 224 px as torch's FlopCounterMode
counts them (2 per multiply-add; torchvision's published "GFLOPS" count
multiply-adds, half as many), scaled by pixel count; a training step counts
forward + backward as 3x forward (2x where only the head trains).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from tlbench.registries import archs, freezing
from tlbench.registries.datasets import DATASETS

# The driver's trial configs: the grid model's validated dicts (`grid.TrialSpec.config`). Read as dicts, not
# typed: planning a grid of 10,000 trials reads each several times, and typing one costs 20x its cost model.
Config = Mapping[str, Any]

CPU_TRAIN_EFFICIENCY = 0.5  # training FLOP/s over the matmul peak on a CPU (python -m tlbench.bench measured 0.68-0.71)


def images(config: Config) -> dict[str, float]:
    """Images per split for one trial (approximate where imbalance drops some)."""
    data = config["dataset"]
    sizes = DATASETS[data["name"]].pool_sizes
    pool, test = (data["n_train"], data["n_test"]) if data["source"] == "synthetic" or sizes is None else sizes
    if data["limit"]:
        pool = min(pool, data["limit"])
    if not DATASETS[data["name"]].has_test_split:
        train_share, val_share, test_share = data["split"]
        test, val, train = pool * test_share, pool * val_share, pool * train_share
    else:
        val = pool * data["val_fraction"]
        train = pool - val
    train *= data["train_fraction"]
    if data["imbalance"]:
        train *= 0.5 + 0.5 * data["imbalance"]["keep"]  # about half the classes lose images
    return {"train": train, "val": val, "test": test}


def gflops_per_image(config: Config) -> float:
    return gflops_224(config["model"]["arch"]) * (config["image_size"] / 224) ** 2


def gflops_224(arch: str) -> float:
    return archs.get(arch).gflops_224


def gpu_images_per_s(arch: str) -> float:
    """Training images per second on one GPU at 224 px (`archs.Arch.gpu_images_per_s`)."""
    return archs.get(arch).gpu_images_per_s


def trial_cost(config: Config) -> dict[str, float]:
    """{images: processed in all, tflops: their estimated cost, gpu_hours: at the arch's GPU rate}."""
    n = images(config)
    train = config["train"]
    step_factor = 2.0 if freezing.only_head_trains(train["freeze"]) else 3.0
    train_images = n["train"] * config["epochs"]
    if train["protocol"] == "lr_probe":
        train_images = (n["train"] + n["val"]) * config["epochs"] + len(train["probe_lrs"]) * train["probe_steps"] * train["batch_size"]
    eval_images = n["val"] * config["epochs"] + n["test"]
    per_image = gflops_per_image(config)
    tflops = (train_images * step_factor + eval_images) * per_image / 1e3
    rate = gpu_images_per_s(config["model"]["arch"]) * (224 / config["image_size"]) ** 2
    return {"images": train_images + eval_images, "tflops": tflops, "gpu_hours": (train_images + eval_images / 3) / rate / 3600}


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 10, device: str = "cpu") -> float:
    """This machine's matrix-multiply rate in GFLOP/s at one size: a quick estimate (`grid plan`)."""
    import time

    import torch

    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b  # warm-up
    _sync(device)
    tick = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - tick) / 1e9


def peak_matmul_gflops(dtype: torch.dtype, device: str = "cpu", min_seconds: float = 1.0) -> float:
    """The best matrix-multiply rate over several sizes, each timed for at least `min_seconds`.

    A training-efficiency fraction is only as honest as the peak it divides by:
    one short timing at one size reads low (clock ramp-up, a size the library
    tiles badly), which flatters the fraction. A size that does not fit, or whose one
    product the rate so far says would take seconds, ends the sweep."""
    import time

    import torch

    sizes = (2048, 4096, 8192) if device.startswith("cuda") else (1024, 2048, 4096)
    sync_every = 8 if device.startswith("cuda") else 1  # a sync per product would time the sync
    best = 0.0
    for n in sizes:
        if best and 2 * n**3 / (best * 1e9) > max(2.0, 4 * min_seconds):
            break  # one product at this size would take seconds: a precision without hardware support (bf16 on AVX2)
        try:
            a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
        except RuntimeError:  # out of memory at this size
            break
        a @ b
        _sync(device)
        repeats, elapsed = 0, 0.0
        tick = time.perf_counter()
        while elapsed < min_seconds:
            a @ b
            repeats += 1
            if repeats % sync_every == 0:
                _sync(device)
                elapsed = time.perf_counter() - tick
        _sync(device)
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - tick) / 1e9)
    return best


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
