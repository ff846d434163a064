"""`python -m tlbench.bench`: tlbench's speed against the plain way, side by side in one run.

Prints `name value` lines:
  feature_cache_speedup_cold   head-only ResNet18, 10 epochs: uncached / cached (cache built inside the run); each
                               side's `precision: auto` decision is made before, in a run of its own, and printed
                               (feature_cache_uncached_autotune_s / _cached_autotune_s: once per shape and node)
  feature_cache_speedup_warm   the same with the cache already built (a second lr or seed of an experiment)
  feature_cache_speedup_cold_traced / _warm_traced   the same on head-only RegNetY-400MF: not a chain of
                               modules nor one of the reports' archs, so only the cut found on its traced graph
                               caches it (before its fc; feature_cache_traced_cut says where)
  input_pipeline_speedup       batches/s: tlbench's input path / ImageFolder + PIL DataLoader (best of 0-2 workers)
  train_speedup                full fine-tune ResNet18 at 112 px: tlbench's trainer (defaults) / a plain fp32 loop
  auto_vs_best_fixed           full fine-tune of MobileNetV3-small (depthwise; random weights, through the custom-arch
                               hook): images/s of `precision: auto` over the best of fp32/bf16 x contiguous/channels_last
                               run fixed. Training steps only: auto's own measurement (`auto_autotune_s`, once per shape
                               and node, then cached) is outside the timed epoch; `auto_vs_best_fixed_all_in` counts it
  cpu_matmul_gflops_fp32 / _bf16   the CPU's matmul peak: best of several sizes, each timed >= 1 s
  cuda_matmul_gflops_fp32 / _bf16  the same on the GPU, where there is one (the trials then train there)
  train_flops_fraction         training FLOP/s over the matmul peak of the device and precision used
  ray_overhead_s               per near-empty trial through Ray Tune, actors reused
  train_step_overhead          a network whose compute is negligible (pool + linear), batch 32: tlbench's training
                               step time over a bare loop's (tensors ready, forward, loss, backward, Adam); target <= 1.3
  sync_free_steps              1 when a training epoch reads the device back the same number of times whatever its
                               steps (none per step: on a GPU the host never waits for the card), else 0
plus the raw timings and accuracies behind each ratio. `--quick` shrinks everything (a smoke check, not a measurement).

`--gpu` instead runs the GPU bench (tlbench/bench/gpu.py): tlbench's trainer against a tuned plain loop on the
card, packed trials, and writes the lines to a JSON file too (`--json PATH`); without CUDA it says so and exits 0.

`--memory` instead measures the peak memory of one epoch of every distinct trial
shape of the grid's full profile (arch, what trains, batch, image size, optimizer)
on synthetic data of that shape, and per arch the share of this device it needs
beside the share the scheduler asks for (`archs.py`). Meant for a GPU machine.

`--scale` instead times `grid run` (nothing to do), `grid list` and `report` over
fabricated results of 1,000 and 10,000 trials (tlbench/bench/scale.py); nothing trains
but one tiny template trial.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from tlbench.bench.workload import emit, training_flops_per_image, trial_config, write_jpegs
from tlbench.trial.config import DatasetConfig, TrialConfig

# Head-only, the traced cache's line: a torchvision network outside the reports' four whose forward is not a chain
# of modules (a stem, a trunk, then functional flatten before fc). MobileNetV3-Small, tried first, trains its head
# in ~7 s uncached here: the ~0.5 s a trial costs before its first step would then bound the warm ratio near 15.
TRACED_ARCH = "regnet_y_400mf"
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
# (images per class, JPEG side, training image size, cache epochs, fine-tune epochs). A GPU gets the
# reports' 224 px and more images: at the CPU's sizes an H100 measures only its fixed overheads.
AUTO_STEPS = 4  # training steps per run of auto_vs_best_fixed: an emulated bf16 step can take seconds
SIZES = {"quick": (4, 40, 32, 2, 1), "cpu": (60, 160, 112, 10, 1), "cuda": (300, 256, 224, 10, 3)}


def bench_feature_cache(root: Path, size: int, epochs: int, arch: str = "resnet18", traced: bool = False) -> None:
    """Head-only `arch`: uncached, then the cache built inside the run (cold), then already built (warm).

    `traced` names the lines of a network only the traced cut caches (`..._traced`)."""
    from tlbench.trial.train import run_trial

    config = trial_config(size, epochs, "head", 32, model={"arch": arch})
    # Each side once first: the JPEGs decoded once for both, and each side's `precision: auto` decision made (once
    # per shape and node, then kept), so neither timing below holds a measurement the other lacks. Uncached, one
    # epoch decides; cached, the decision weighs the build against all the epochs' steps, so it runs them all.
    for cache, epochs_first in ((False, 1), (True, epochs)):
        primed = run_trial(TrialConfig.from_dict({**config, "epochs": epochs_first}), root, feature_cache=cache)
        emit(f"feature_cache_{'traced_' if traced else ''}{'cached' if cache else 'uncached'}_autotune_s", primed.summary["autotune_s"])
    timings = {}
    for name, cache in (("uncached", False), ("cold", True), ("warm", True)):
        if name == "cold":
            shutil.rmtree(root / ".tlbench-cache" / "features", ignore_errors=True)
        tick = time.perf_counter()
        outcome = run_trial(TrialConfig.from_dict(config), root, feature_cache=cache)
        timings[name] = time.perf_counter() - tick
        emit(f"feature_cache_{'traced_' if traced else ''}{name}_s", timings[name])
        emit(f"feature_cache_{'traced_' if traced else ''}{name}_test_acc", outcome.summary["test_acc"])
        if name == "cold" and traced:
            emit("feature_cache_traced_cut", outcome.summary["feature_cache"])
    emit(f"feature_cache_speedup_cold{'_traced' if traced else ''}", timings["uncached"] / timings["cold"])
    emit(f"feature_cache_speedup_warm{'_traced' if traced else ''}", timings["uncached"] / timings["warm"])


def mobilenet_v3_small(weights: str = "none") -> tuple[torch.nn.Module, str]:
    """A depthwise network outside the reports' four, as a custom arch (`tlbench.bench.speed:mobilenet_v3_small`)."""
    from torchvision import models

    if weights != "none":
        raise ValueError("the bench's mobilenet_v3_small is built with random weights; use model.weights: none")
    return models.get_model("mobilenet_v3_small", weights=None), "classifier.3"


def bench_auto_precision(root: Path, size: int, steps: int, batch: int = 32, repeats: int = 2) -> None:
    """Images/s of `precision: auto` against every fixed precision x memory format, the same trial otherwise.

    Rounds in turn (drift on a shared machine hits every candidate alike), the
    best run of each counts; a fixed candidate under half the best so far
    cannot be the best and is not run again (bf16 emulated on an AVX2 CPU
    takes seconds a step)."""
    from tlbench.trial.autotune import Candidate
    from tlbench.trial.train import run_trial

    # Synthetic images, just enough for the steps and one test batch: bf16 may be emulated, evaluation too.
    config = trial_config(
        size,
        1,
        "none",
        batch,
        model={"arch": "tlbench.bench.speed:mobilenet_v3_small", "weights": "none"},
        dataset={"name": "synthetic", "n_classes": 10, "n_train": steps * batch, "n_test": batch, "val_fraction": 0.0},
    )
    fixed = [Candidate(p, cl) for p in ("fp32", "bf16") for cl in (False, True)]
    best: dict[str, float] = {}
    auto_summary: dict[str, Any] = {}
    for round_ in range(repeats):
        for candidate in [*fixed, None]:
            name = candidate.name if candidate else "auto"
            if round_ and candidate and best[name] < 0.5 * max(best.values()):
                continue
            if candidate:
                fixed_config = TrialConfig.from_dict({**config, "precision": candidate.precision})
                outcome = run_trial(fixed_config, root, memory_format=candidate.memory_format)
            else:
                outcome = run_trial(TrialConfig.from_dict({**config, "precision": "auto"}), root)
                auto_summary = auto_summary or outcome.summary  # the first auto run measures; later ones read its decision
            best[name] = max(best.get(name, 0.0), outcome.summary["images_per_s"])
    for name, rate in best.items():
        emit(f"auto_candidate_images_per_s {name}", rate)
    emit("auto_choice", f"{auto_summary['precision_used']}+{auto_summary['memory_format_used']}")
    emit("auto_measured_images_per_s", json.dumps(auto_summary["autotune_images_per_s"]))
    if auto_summary["autotune_skipped"]:
        emit("auto_skipped", auto_summary["autotune_skipped"])
    emit("auto_autotune_s", auto_summary["autotune_s"])
    emit("auto_train_s", auto_summary["train_s"])
    best_fixed = max(rate for name, rate in best.items() if name != "auto")
    emit("auto_vs_best_fixed", best["auto"] / best_fixed)
    all_in = auto_summary["images_per_s"] * auto_summary["train_s"] / (auto_summary["train_s"] + auto_summary["autotune_s"])
    emit("auto_vs_best_fixed_all_in", all_in / best_fixed)


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
    from tlbench.grid.config import merge
    from tlbench.grid.schema import defaults
    from tlbench.trial import data, pipeline

    dataset = merge(defaults(), {"dataset": {"name": "imagefolder", "path": "bench", "val_fraction": 0.0}})["dataset"]
    tick = time.perf_counter()
    shutil.rmtree(root / data.CACHE_DIR, ignore_errors=True)
    splits = data.load(DatasetConfig.from_dict(dataset), size, root, seed=0)
    emit("input_pipeline_decode_once_s", time.perf_counter() - tick)
    inputs = pipeline.PixelInputs(torch.device("cpu"), "imagenet", channels_last=True)
    gen = torch.Generator().manual_seed(0)
    tick, count = time.perf_counter(), 0
    for _ in range(3):
        rows, labels = inputs.epoch(splits.train, pipeline.epoch_order(splits.train.labels, "uniform", gen))
        for part in pipeline.batches(len(rows), batch):
            inputs.batch_of(splits.train, rows[part], labels[part], "hflip", gen)
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


def bench_training(root: Path, size: int, epochs: int, workers: int) -> tuple[float, str]:
    """Full fine-tune, training images per second: tlbench's defaults vs a plain fp32 loop. Returns ours, and its precision."""
    from torchvision import models

    from tlbench.trial.train import pick_device, run_trial

    config = trial_config(size, epochs, "none", 32)
    outcome = run_trial(TrialConfig.from_dict(config), root)
    ours = outcome.summary["images_per_s"]
    emit("train_tlbench_images_per_s", ours)
    emit("train_tlbench_precision", f"{outcome.summary['precision_used']}+{outcome.summary['memory_format_used']}")
    emit("train_tlbench_autotune_s", outcome.summary["autotune_s"])  # outside the timed epochs
    torch.manual_seed(0)
    device = pick_device()  # the plain loop trains where ours did: a fair ratio on a GPU machine too
    model = models.resnet18(num_classes=10).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = plain_loader(root, size, 32, workers)
    model.train()
    tick, seen = time.perf_counter(), 0
    for _ in range(epochs):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            seen += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    plain = seen / (time.perf_counter() - tick)
    emit("train_plain_fp32_images_per_s", plain)
    emit("train_speedup", ours / plain)
    return ours, outcome.summary["precision_used"]


def negligible_net(weights: str = "none") -> tuple[torch.nn.Module, str]:
    """A network whose compute is negligible (`tlbench.bench.speed:negligible_net`): what a step costs beyond the network."""
    if weights != "none":
        raise ValueError("negligible_net has random weights only; use model.weights: none")
    layers = [("pool", torch.nn.AdaptiveAvgPool2d(2)), ("flatten", torch.nn.Flatten()), ("fc", torch.nn.Linear(12, 1000))]
    return torch.nn.Sequential(OrderedDict(layers)), "fc"


def bare_steps(batches: list[tuple[torch.Tensor, torch.Tensor]], lr: float) -> float:
    """Seconds per step of the barest loop: tensors ready, forward, loss, backward, Adam."""
    torch.manual_seed(0)
    net, _ = negligible_net()
    net.fc = torch.nn.Linear(12, 10)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    tick = time.perf_counter()
    for x, y in batches:
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - tick) / len(batches)


def step_overhead_config(steps: int, batch: int = 32) -> dict[str, Any]:
    """A trial of `negligible_net` on synthetic 16 px images: `steps` training steps, fp32, no augmentation."""
    return trial_config(16, 1, "none", batch, precision="fp32",
        model={"arch": "tlbench.bench.speed:negligible_net", "weights": "none"},
        dataset={"name": "synthetic", "n_classes": 10, "n_train": steps * batch, "n_test": batch, "val_fraction": 0.0},
        train={"augment": "none", "lr": 1e-3})  # fmt: skip


def bench_step_overhead(root: Path, steps: int, repeats: int = 3, batch: int = 32) -> None:
    """tlbench's step time over a bare loop's, a network whose compute is negligible: what the trainer adds per step.

    Rounds in turn, the best of each side counts (load on a shared machine only ever adds time). One thread:
    at negligible compute, intra-op threads add only their fork and join to both sides, and on a shared machine
    that cost is noise (here a bare step took 0.3 to 14 ms at two threads)."""
    from tlbench.trial.train import run_trial

    config = TrialConfig.from_dict(step_overhead_config(steps, batch))
    gen = torch.Generator().manual_seed(0)
    ready = [(torch.randn(batch, 3, 16, 16, generator=gen), torch.randint(10, (batch,), generator=gen)) for _ in range(steps)]
    ours, bare = float("inf"), float("inf")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(repeats):
            summary = run_trial(config, root, device=torch.device("cpu"), memory_format="contiguous").summary
            ours = min(ours, batch / summary["images_per_s"])
            bare = min(bare, bare_steps(ready, 1e-3))
    finally:
        torch.set_num_threads(threads)
    emit("train_step_tlbench_us", ours * 1e6)
    emit("train_step_bare_us", bare * 1e6)
    emit("train_step_overhead", ours / bare)


def bench_sync_free(root: Path) -> None:
    """1 when an epoch reads the device back as often at 6 steps as at 2 (never per step), counted on the CPU."""
    from tlbench.trial.host_reads import HostReads
    from tlbench.trial.train import build, epoch_stats, make_optimizer, train_steps

    config = TrialConfig.from_dict(step_overhead_config(8))
    trial = build(config, root, torch.device("cpu"), False, False, None)
    optimizer = make_optimizer(trial.built, trial.plan, config.train, config.train.lr)
    counts = []
    for steps in (2, 6):
        with HostReads() as reads:
            epoch_stats(trial.criterion, train_steps(trial, optimizer, trial.splits.train, 0, steps))
        counts.append(reads.count)
    emit("sync_free_reads_per_epoch", float(counts[0]))
    emit("sync_free_steps", int(counts[0] == counts[1]))


def bench_ray_overhead(few: int, many: int) -> None:
    """Marginal seconds per trial through Ray Tune beyond the trial's own work."""
    from tlbench.grid import TrialSpec, trial_id
    from tlbench.grid.config import merge
    from tlbench.grid.schema import defaults
    from tlbench.on_ray import driver

    root = Path(tempfile.mkdtemp(prefix="tlbench-ray-bench-"))
    try:
        base = merge(defaults(), {
            "epochs": 1, "image_size": 16, "dataset": {"name": "synthetic", "n_classes": 2, "n_train": 16, "n_test": 8},
            "model": {"arch": "tlbench.tiny:small_cnn", "weights": "none"}, "train": {"freeze": "none"},
        })  # fmt: skip
        driver.connect(None)
        walls = {}
        for count in (few, many):
            specs = []
            for i in range(count):
                config = {**copy.deepcopy(base), "seed": 1000 * count + i}
                specs.append(TrialSpec(trial_id(config), "bench", "bench", config["seed"], {}, config, ("bench",)))
            options = driver.RunOptions(results=root / f"r{count}", data=root, checkpoints=False)
            tick = time.perf_counter()
            driver.run(specs, options)
            walls[count] = time.perf_counter() - tick
        import pandas as pd

        own = pd.read_parquet(root / f"r{many}" / "trials")["wall_s"].mean()
        # Trials that run side by side: one per CPU, and on a GPU machine no more than the GPU shares allow.
        resources = driver.cluster_resources()
        share = driver.gpu_share(specs[0], options, resources.get("GPU", 0.0))
        lanes = max(1, int(resources.get("CPU", 1) // options.cpus_per_trial))
        if share > 0:
            lanes = min(lanes, int(resources["GPU"] / share))
        emit("ray_parallel_trials", float(lanes))
        emit(f"ray_grid_of_{few}_s", walls[few])
        emit(f"ray_grid_of_{many}_s", walls[many])
        emit("ray_trial_own_work_s", own)
        emit("ray_seconds_per_trial_all_in", walls[many] / many)  # Tune's start-up included
        # The grid's fixed start-up cancels out; each lane runs (many - few) / lanes more trials.
        emit("ray_overhead_s", (walls[many] - walls[few]) * lanes / (many - few) - own)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def memory_shapes(grid_file: str) -> dict[str, dict[str, Any]]:
    """One config per distinct memory shape of the grid's full profile, named for what sets its memory."""
    from tlbench.grid import Grid

    shapes: dict[str, dict[str, Any]] = {}
    for trial in Grid.load(grid_file).expand(profile="full"):
        config, train = trial.config, trial.config["train"]
        freeze = train["freeze"] if isinstance(train["freeze"], str) else json.dumps(train["freeze"], separators=(",", ":"))
        name = (
            f"{config['model']['arch']}[{freeze}] batch={train['batch_size']} {config['image_size']}px "
            f"{train['optimizer']} {config['precision']}"
        )
        shapes.setdefault(name, config)
    return shapes


def bench_memory(grid_file: str, quick: bool) -> None:
    """Peak memory of one epoch of each distinct trial shape, on synthetic data of that shape.

    The pixels do not matter to memory, the shapes do: the arch and its head,
    what trains (gradients and optimizer state), the batch and the image size.
    The feature cache stays on, as in a real run: a head-only trial holds only
    the head. Per arch, the largest peak over the device's memory is the share
    a trial needs, printed beside the share the scheduler asks for."""
    from tlbench.grid.config import merge
    from tlbench.registries import archs
    from tlbench.trial.train import pick_device, run_trial

    device = pick_device()
    total_mb = torch.cuda.get_device_properties(device).total_memory / 2**20 if device.type == "cuda" else None
    emit("memory_device", f"{device.type} ({total_mb:.0f} MB)" if total_mb else "cpu (peaks: each trial's own RSS high-water)")
    worst: dict[str, float] = {}
    root = Path(tempfile.mkdtemp(prefix="tlbench-memory-bench-"))
    try:
        for name, config in memory_shapes(grid_file).items():
            batch = config["train"]["batch_size"]
            size = 32 if quick else config["image_size"]
            config = merge(config, {
                "epochs": 1, "image_size": max(size, archs.get(config["model"]["arch"]).min_image_size),
                "dataset": {"source": "synthetic", "n_train": 2 * batch, "n_test": batch, "limit": None},
                "model": {"weights": "none"}, "train": {"probe_steps": 1, "max_steps": 2 if quick else None},
            })  # fmt: skip
            outcome = run_trial(TrialConfig.from_dict(config), root)
            peak = outcome.summary["peak_mem_mb"]
            emit(f"peak_mem_mb {name}", peak)
            arch = config["model"]["arch"]
            worst[arch] = max(worst.get(arch, 0.0), peak)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for arch, peak in worst.items():
        emit(f"peak_mem_mb_max_{arch}", peak)
        if total_mb:
            emit(f"gpu_share_needed_{arch}", peak / total_mb)
            emit(f"gpu_share_asked_{arch}", archs.get(arch).gpu_share)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tlbench.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the bench runs, measures nothing")
    parser.add_argument("--skip-ray", action="store_true", help="leave out the Ray Tune overhead bench")
    parser.add_argument("--memory", action="store_true", help="only: peak memory of each distinct trial shape of --grid")
    parser.add_argument("--grid", default="grid/reports.yaml", help="the grid whose shapes --memory measures (default %(default)s)")
    parser.add_argument("--scale", action="store_true", help="only: grid run / list / report times at 1,000 and 10,000 finished trials")
    parser.add_argument("--gpu", action="store_true", help="only: the GPU bench (tlbench/bench/gpu.py); says so and exits 0 without CUDA")
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--gpu" in argv:  # its options (--json, --packed, --compile, --profile, --quick) are bench/gpu.py's
        from tlbench.bench.gpu import main as gpu_main

        return gpu_main([arg for arg in argv if arg != "--gpu"])
    args = parser.parse_args(argv)
    if args.memory:
        bench_memory(args.grid, args.quick)
        return 0
    if args.scale:
        from tlbench.bench.scale import bench_scale

        bench_scale(args.quick, emit)
        return 0
    per_class, side, size, epochs, train_epochs = SIZES["quick" if args.quick else "cuda" if torch.cuda.is_available() else "cpu"]
    emit("threads", torch.get_num_threads())
    root = Path(tempfile.mkdtemp(prefix="tlbench-bench-"))
    try:
        write_jpegs(root, per_class, 10, side)
        bench_feature_cache(root, size, epochs)
        bench_feature_cache(root, size, epochs, TRACED_ARCH, traced=True)
        workers = bench_input_pipeline(root, size, 32)
        ours, trained_precision = bench_training(root, size, train_epochs, workers)
        bench_auto_precision(root, size, 2 if args.quick else AUTO_STEPS, batch=4 if args.quick else 32)
        bench_step_overhead(root, 20 if args.quick else 300, repeats=1 if args.quick else 5)
        bench_sync_free(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    from tlbench.plan.cost import peak_matmul_gflops
    from tlbench.trial.train import pick_device

    seconds = 0.1 if args.quick else 1.0
    peaks = {"cpu": {p: peak_matmul_gflops(dtype, "cpu", seconds) for p, dtype in PRECISIONS.items()}}
    device = pick_device()
    if device.type == "cuda":
        peaks["cuda"] = {p: peak_matmul_gflops(dtype, "cuda", seconds) for p, dtype in PRECISIONS.items()}
    for kind, by_precision in peaks.items():
        for precision, gflops in by_precision.items():
            emit(f"{kind}_matmul_gflops_{precision}", gflops)
    peak = peaks[device.type][trained_precision]  # the precision the training bench ran: auto measured it
    emit("train_flops_fraction", ours * training_flops_per_image(size) / 1e9 / peak)
    if not args.skip_ray:
        bench_ray_overhead(2, 6 if args.quick else 22)
    return 0


__all__ = ["main"]
