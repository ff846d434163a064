"""`python -m tlbench.bench`: tlbench's speed against the plain way, side by side in one run.

Prints `name value` lines:
  feature_cache_speedup_cold   head-only ResNet18, 10 epochs: uncached / cached (cache built inside the run)
  feature_cache_speedup_warm   the same with the cache already built (a second lr or seed of an experiment)
  input_pipeline_speedup       batches/s: tlbench's input path / ImageFolder + PIL DataLoader (best of 0-2 workers)
  train_speedup                full fine-tune ResNet18 at 112 px: tlbench's trainer (defaults) / a plain fp32 loop
  cpu_matmul_gflops_fp32 / _bf16, train_flops_fraction (training FLOP/s over the peak of the precision used)
  ray_overhead_s               per near-empty trial through Ray Tune, actors reused
plus the raw timings and accuracies behind each ratio. `--quick` shrinks everything (a smoke check, not a measurement).
"""

from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def emit(name: str, value: float | str) -> None:
    print(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}", flush=True)


def write_jpegs(root: Path, n_per_class: int, classes: int, side: int) -> Path:
    """An image folder of JPEGs (train/ and test/), the format the reports' loaders read."""
    from PIL import Image

    from .synthetic import synthetic_pool

    for split, n, seed in (("train", n_per_class * classes, 0), ("test", max(classes, n_per_class * classes // 4), 1)):
        images, labels = synthetic_pool(n, [1 / classes] * classes, side, "bench", seed)
        for i, (img, label) in enumerate(zip(images, labels)):
            folder = root / "bench" / split / f"c{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i}.jpg", quality=90)
    return root


def trial_config(size: int, epochs: int, freeze: Any, batch: int, **overrides: Any) -> dict[str, Any]:
    from . import spec

    config = spec.merge(spec.defaults(), {
        "epochs": epochs, "image_size": size, "seed": 0,
        "dataset": {"name": "imagefolder", "path": "bench", "val_fraction": 0.2},
        "model": {"arch": "resnet18", "weights": "none"},
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": batch, "freeze": freeze},
    })  # fmt: skip
    return spec.merge(config, overrides)


def bench_feature_cache(root: Path, size: int, epochs: int) -> None:
    from .train import run_trial

    config = trial_config(size, epochs, "head", 32)
    run_trial({**config, "epochs": 1}, root, feature_cache=False)  # decode the JPEGs once, for both sides
    timings = {}
    for name, cache in (("uncached", False), ("cold", True), ("warm", True)):
        if name == "cold":
            shutil.rmtree(root / ".tlbench-cache" / "features", ignore_errors=True)
        tick = time.perf_counter()
        outcome = run_trial(config, root, feature_cache=cache)
        timings[name] = time.perf_counter() - tick
        emit(f"feature_cache_{name}_s", timings[name])
        emit(f"feature_cache_{name}_test_acc", outcome.summary["test_acc"])
    emit("feature_cache_speedup_cold", timings["uncached"] / timings["cold"])
    emit("feature_cache_speedup_warm", timings["uncached"] / timings["warm"])


def plain_loader(root: Path, size: int, batch: int, workers: int) -> torch.utils.data.DataLoader:
    """What the reports' code does: ImageFolder + PIL transforms, decoded and resized every epoch."""
    from torchvision import datasets, transforms

    transform = transforms.Compose([
        transforms.Resize((size, size)), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])  # fmt: skip
    dataset = datasets.ImageFolder(str(root / "bench" / "train"), transform=transform)
    return torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers)


def bench_input_pipeline(root: Path, size: int, batch: int) -> int:
    """Batches per second delivered, no model step. Returns the plain loader's best worker count."""
    from . import data, pipeline, spec

    dataset = spec.merge(spec.defaults(), {"dataset": {"name": "imagefolder", "path": "bench", "val_fraction": 0.0}})["dataset"]
    tick = time.perf_counter()
    shutil.rmtree(root / data.CACHE_DIR, ignore_errors=True)
    splits = data.load(dataset, size, root, seed=0)
    emit("input_pipeline_decode_once_s", time.perf_counter() - tick)
    inputs = pipeline.PixelInputs(torch.device("cpu"), "imagenet", channels_last=True)
    gen = torch.Generator().manual_seed(0)
    tick, count = time.perf_counter(), 0
    for _ in range(3):
        for positions in pipeline.batches(pipeline.epoch_order(splits.train.labels, "uniform", gen), batch):
            inputs.batch(splits.train, positions, "hflip", gen)
            count += 1
    ours = count / (time.perf_counter() - tick)
    emit("input_pipeline_tlbench_batches_per_s", ours)
    best, best_workers = 0.0, 0
    for workers in (0, 1, 2):
        tick, count = time.perf_counter(), 0
        for _ in plain_loader(root, size, batch, workers):
            count += 1
        rate = count / (time.perf_counter() - tick)
        emit(f"input_pipeline_plain_{workers}_workers_batches_per_s", rate)
        if rate > best:
            best, best_workers = rate, workers
    emit("input_pipeline_speedup", ours / best)
    return best_workers


def bench_training(root: Path, size: int, epochs: int, workers: int) -> float:
    """Full fine-tune, training images per second: tlbench's defaults vs a plain fp32 loop. Returns ours."""
    from torchvision import models

    from .train import run_trial

    config = trial_config(size, epochs, "none", 32)
    outcome = run_trial(config, root)
    ours = outcome.summary["images_per_s"]
    emit("train_tlbench_images_per_s", ours)
    emit("train_tlbench_precision", outcome.summary["precision_used"])
    torch.manual_seed(0)
    model = models.resnet18(num_classes=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = plain_loader(root, size, 32, workers)
    model.train()
    tick, seen = time.perf_counter(), 0
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            seen += len(y)
    plain = seen / (time.perf_counter() - tick)
    emit("train_plain_fp32_images_per_s", plain)
    emit("train_speedup", ours / plain)
    return ours


def training_flops_per_image(size: int) -> float:
    """Forward + backward FLOPs of one ResNet18 image at `size`, counted by torch (2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision import models

    model = models.resnet18(num_classes=10)
    with FlopCounterMode(display=False) as counter:  # two images: BatchNorm cannot train on one
        model(torch.randn(2, 3, size, size)).sum().backward()
    return counter.get_total_flops() / 2


def bench_ray_overhead(few: int, many: int) -> None:
    """Marginal seconds per trial through Ray Tune beyond the trial's own work."""
    import ray

    from . import scheduler, spec

    root = Path(tempfile.mkdtemp(prefix="tlbench-ray-bench-"))
    try:
        base = spec.merge(spec.defaults(), {
            "epochs": 1, "image_size": 16, "dataset": {"name": "synthetic", "n_classes": 2, "n_train": 16, "n_test": 8},
            "model": {"arch": "tlbench.tiny:small_cnn", "weights": "none"}, "train": {"freeze": "none"},
        })  # fmt: skip
        scheduler.connect(None)
        walls = {}
        for count in (few, many):
            specs = []
            for i in range(count):
                config = {**copy.deepcopy(base), "seed": 1000 * count + i}
                specs.append(spec.TrialSpec(spec.trial_id(config), "bench", "bench", config["seed"], {}, config, ("bench",)))
            options = scheduler.RunOptions(results=root / f"r{count}", data=root, checkpoints=False)
            tick = time.perf_counter()
            scheduler.run(specs, options)
            walls[count] = time.perf_counter() - tick
        import pandas as pd

        own = pd.read_parquet(root / f"r{many}" / "trials")["wall_s"].mean()
        lanes = max(1, int(ray.cluster_resources().get("CPU", 1)))  # trials that run side by side
        emit(f"ray_grid_of_{few}_s", walls[few])
        emit(f"ray_grid_of_{many}_s", walls[many])
        emit("ray_trial_own_work_s", own)
        emit("ray_seconds_per_trial_all_in", walls[many] / many)  # Tune's start-up included
        # The grid's fixed start-up cancels out; each lane runs (many - few) / lanes more trials.
        emit("ray_overhead_s", (walls[many] - walls[few]) * lanes / (many - few) - own)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tlbench.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the bench runs, measures nothing")
    parser.add_argument("--skip-ray", action="store_true", help="leave out the Ray Tune overhead bench")
    args = parser.parse_args(argv)
    per_class, side, epochs, train_epochs = (4, 40, 2, 1) if args.quick else (60, 160, 10, 1)
    size = 32 if args.quick else 112
    emit("threads", torch.get_num_threads())
    root = Path(tempfile.mkdtemp(prefix="tlbench-bench-"))
    try:
        write_jpegs(root, per_class, 10, side)
        bench_feature_cache(root, size, epochs)
        workers = bench_input_pipeline(root, size, 32)
        ours = bench_training(root, size, train_epochs, workers)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    from .cost import matmul_gflops

    fp32, bf16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    emit("cpu_matmul_gflops_fp32", fp32)
    emit("cpu_matmul_gflops_bf16", bf16)
    from .train import resolve_precision

    peak = bf16 if resolve_precision("auto", torch.device("cpu")) == "bf16" else fp32
    emit("train_flops_fraction", ours * training_flops_per_image(size) / 1e9 / peak)
    if not args.skip_ray:
        bench_ray_overhead(2, 6 if args.quick else 22)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["main"]
