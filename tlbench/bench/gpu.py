"""`python -m tlbench.bench --gpu` (or `python -m tlbench.bench.gpu`): tlbench's trainer on a card, against a tuned loop.

Prints `name value` lines and writes them as one JSON object (`--json PATH`, default gpu-bench.json), rewritten
after every line, so a run cut short still leaves what it measured:
  gpu_reference_images_per_s[_case]  a tuned plain loop: bf16 autocast, channels_last, its batch already on the card,
                                     nothing read back per step; the same network (torchvision, 10 classes) and batch
  gpu_train_images_per_s[_case]      tlbench's trainer (run_trial, default precision: auto) on 32 px JPEGs (CIFAR's
                                     size) at 224 px; the best training epoch after the first
  gpu_train_vs_reference[_case]      their ratio; target >= 0.9
      cases: ResNet18 full fine-tune, batch 32 (no suffix); VGG16 full, batch 64 (_vgg16); ResNet50 head-only with
      the feature cache, batch 32 (_resnet50_head: its reference trains the head on features already on the card)
  gpu_packed_throughput[_N]          N trials (default 4) at once, each its own process with a 1/N share of the card,
                                     as Ray's fractional GPUs run them: their summed images/s over one trial alone
  train_flops_fraction               ResNet18's training FLOP/s over the card's matmul peak at the precision it used
  gpu_train_images_per_s_compiled    with --compile only: the ResNet18 case with torch.compile (minutes to compile)
  gpu_profile[_case]                 with --profile only: the file beside the JSON that holds torch.profiler's table of
                                     one training epoch of the case (after a first), by host time: where a step that
                                     trails its reference spends it, from the same one-shot run

Without CUDA it prints `gpu none (no CUDA device)` and exits 0. It uses only `run_trial` and a config built like
bench/workload.py's `trial_config`, random weights and no Ray, so the same file run against an older tlbench measures that.
Sized for about 2 minutes on an H100/H200 (4 with --compile).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

DEVICE = "cuda"  # a test runs the harness on "cpu", at a small SIZE
SIZE = 224
SIDE = 32  # the JPEGs' side: CIFAR's, enlarged to SIZE for training
PER_CLASS = {"quick": 8, "full": 256}  # 10 classes; 5% to val, so ResNet18 runs 76 steps an epoch at batch 32
EPOCHS = 3  # the first pays for cuDNN's kernel choice; the best later one counts
REFERENCE_STEPS = {"quick": (2, 3), "full": (10, 40)}  # warm-up, timed (x2 blocks, the best counts)


@dataclass(frozen=True)
class Case:
    suffix: str
    arch: str
    batch: int
    freeze: str  # none: full fine-tune | head: head-only, through the feature cache


CASES = [Case("", "resnet18", 32, "none"), Case("_vgg16", "vgg16", 64, "none"), Case("_resnet50_head", "resnet50", 32, "head")]


class Lines:
    """Each line printed and kept; the JSON file rewritten after each (atomically), so a cut run keeps its lines."""

    def __init__(self, path: Path | None):
        self.path, self.values = path, {}

    def emit(self, name: str, value: Any) -> None:
        self.values[name] = value
        print(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}", flush=True)
        if self.path is not None:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self.values, indent=1, sort_keys=True))
            os.replace(tmp, self.path)


def config_for(case: Case, epochs: int = EPOCHS) -> dict[str, Any]:
    from tlbench.bench.workload import trial_config

    return trial_config(SIZE, epochs, case.freeze, case.batch, model={"arch": case.arch}, dataset={"val_fraction": 0.05})


def tlbench_rate(case: Case, root: Path, **options: Any) -> tuple[float, dict[str, Any]]:
    """The best training images/s of run_trial's epochs after the first, and its summary."""
    from tlbench.trial.config import TrialConfig
    from tlbench.trial.train import run_trial

    rates: list[float] = []
    outcome = run_trial(TrialConfig.from_dict(config_for(case)), root, on_epoch=lambda row: rates.append(row["images_per_s"]), **options)
    return max(rates[1:] or rates), outcome.summary


def synchronize() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(step: Any, batch: int, warmup: int, steps: int) -> float:
    """Images/s of `step`, synchronised only around each timed block (best of two)."""
    for _ in range(warmup):
        step()
    best = 0.0
    for _ in range(2):
        synchronize()
        tick = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize()
        best = max(best, steps * batch / (time.perf_counter() - tick))
    return best


def reference_rate(case: Case, warmup: int, steps: int) -> float:
    """The tuned plain loop: bf16 autocast, channels_last, data on the card, nothing read back per step."""
    from torchvision import models

    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True  # tuned: cuDNN's fastest kernels for the fixed shape, as the trainer sets it
    device = torch.device(DEVICE)
    model = models.get_model(case.arch, weights=None, num_classes=10)
    y = torch.randint(10, (case.batch,), device=device)
    if case.freeze == "head":  # the cache's counterpart: the head trained on features already on the card
        head = torch.nn.Linear(model.fc.in_features, 10).to(device)
        x = torch.randn(case.batch, model.fc.in_features, device=device)
        net, params = head, head.parameters()
    else:
        net = model.to(device, memory_format=torch.channels_last)
        x = torch.randn(case.batch, 3, SIZE, SIZE, device=device).contiguous(memory_format=torch.channels_last)
        params = net.parameters()
    net.train()
    optimizer = torch.optim.Adam(params, lr=1e-3)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return timed(step, case.batch, warmup, steps)


def profile_epoch(case: Case, root: Path, out: Path) -> Path:
    """torch.profiler over the second epoch of a two-epoch trial of the case (the first pays for kernel choice): its
    ops by host time, with the card's, as a text table at `out`."""
    from torch.profiler import ProfilerActivity, profile

    from tlbench.trial.config import TrialConfig
    from tlbench.trial.train import run_trial

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEVICE == "cuda" else [])
    profiler = profile(activities=activities)

    def on_epoch(row: dict[str, Any]) -> None:  # on at the first epoch's end, off at the second's
        if row["epoch"] == 1:
            synchronize()
            profiler.start()
        elif row["epoch"] == 2:
            synchronize()
            profiler.stop()

    run_trial(TrialConfig.from_dict(config_for(case, epochs=2)), root, on_epoch=on_epoch)
    out.write_text(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=40))
    return out


def bench_case(case: Case, root: Path, lines: Lines, quick: bool, profile_to: Path | None = None) -> tuple[float, dict[str, Any]]:
    reference = reference_rate(case, *REFERENCE_STEPS["quick" if quick else "full"])
    lines.emit(f"gpu_reference_images_per_s{case.suffix}", reference)
    ours, summary = tlbench_rate(case, root)
    lines.emit(f"gpu_train_images_per_s{case.suffix}", ours)
    lines.emit(f"gpu_train_precision{case.suffix}", f"{summary['precision_used']}+{summary['memory_format_used']}")
    if case.freeze == "head":
        lines.emit(f"gpu_train_feature_cache{case.suffix}", str(summary.get("feature_cache")))
    lines.emit(f"gpu_train_vs_reference{case.suffix}", ours / reference)
    if profile_to is not None:
        name = f"{profile_to.stem}-profile{case.suffix or '_resnet18'}.txt"
        lines.emit(f"gpu_profile{case.suffix}", str(profile_epoch(case, root, profile_to.with_name(name))))
    return ours, summary


# -- packed trials: several processes, one card --------------------------------------------------------------


def packed_worker(config_file: str, root: str, share: float, out: str, ready: str, go: str) -> None:
    """One of the packed trials: CUDA up, then wait for the others (`go`), then the trial; its epochs' rates to `out`."""
    from tlbench.trial.config import TrialConfig
    from tlbench.trial.train import run_trial

    if torch.cuda.is_available():  # its context up before the others start (a CPU runs it in tests)
        torch.zeros(1, device="cuda")
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.01)
    rates: list[float] = []
    run_trial(TrialConfig.from_dict(json.loads(Path(config_file).read_text())), root, gpu_share=share,
              on_epoch=lambda row: rates.append(row["images_per_s"]))  # fmt: skip
    Path(out).write_text(json.dumps(rates))


def packed_rate(case: Case, root: Path, count: int, epochs: int, timeout_s: float) -> list[float]:
    """Each of `count` concurrent trials' median training images/s over its epochs after the first."""
    work = Path(tempfile.mkdtemp(prefix="tlbench-packed-", dir=root))
    config_file = work / "config.json"
    config_file.write_text(json.dumps(config_for(case, epochs)))
    go = work / "go"
    procs = []
    for i in range(count):
        args = [str(config_file), str(root), str(1 / count), str(work / f"out{i}.json"), str(work / f"ready{i}"), str(go)]
        procs.append(subprocess.Popen([sys.executable, "-m", "tlbench.bench.gpu", "--packed-worker", *args]))
    deadline = time.monotonic() + timeout_s
    while not all((work / f"ready{i}").exists() for i in range(count)):
        if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(0.05)
    go.touch()  # all start their trials together, so their training overlaps
    for proc in procs:
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
    rates = []
    for i in range(count):
        out = work / f"out{i}.json"
        if not out.exists():
            raise RuntimeError(f"packed trial {i} of {count} left no result (exit {procs[i].returncode})")
        epochs_rates = json.loads(out.read_text())
        rates.append(statistics.median(epochs_rates[1:] or epochs_rates))
    return rates


# -- the run ----------------------------------------------------------------------------------------------------


def guarded(lines: Lines, name: str, what: Any) -> Any:
    """A stage that fails prints why and lets the others run: a one-shot run on a lent card returns what it can."""
    try:
        return what()
    except Exception as exc:
        lines.emit(f"{name}_error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300])
        return None


def measure(root: Path, lines: Lines, quick: bool, packed: list[int], compile: bool, profile_to: Path | None = None) -> None:
    """Every line after the device's: the cases, packed trials, the FLOPs fraction (and the compiled case)."""
    from tlbench.bench.workload import training_flops_per_image, write_jpegs
    from tlbench.plan.cost import peak_matmul_gflops

    started = time.perf_counter()
    write_jpegs(root, PER_CLASS["quick" if quick else "full"], 10, SIDE)
    results = {
        case.suffix: guarded(lines, f"gpu_case{case.suffix or '_resnet18'}", lambda c=case: bench_case(c, root, lines, quick, profile_to))
        for case in CASES
    }
    lines.emit("gpu_cases_s", time.perf_counter() - started)
    resnet18 = results[""]
    if resnet18 is not None:
        single, summary = resnet18
        for count in packed:
            rates = guarded(lines, f"gpu_packed_{count}", lambda n=count: packed_rate(CASES[0], root, n, 2 if quick else 5, 120))
            if rates:
                suffix = "" if count == 4 else f"_{count}"
                lines.emit(f"gpu_packed_images_per_s{suffix}", sum(rates))
                lines.emit(f"gpu_packed_per_trial_images_per_s{suffix}", json.dumps([round(r, 1) for r in rates]))
                lines.emit(f"gpu_packed_throughput{suffix}", sum(rates) / single)
        precision = summary["precision_used"]
        peak = peak_matmul_gflops(torch.bfloat16 if precision == "bf16" else torch.float32, DEVICE, 0.2 if quick else 0.5)
        lines.emit(f"{DEVICE}_matmul_gflops_{precision}", peak)
        lines.emit("train_flops_fraction", single * training_flops_per_image(SIZE) / 1e9 / peak)
        if compile:
            rate = guarded(lines, "gpu_compiled", lambda: tlbench_rate(CASES[0], root, compile=True)[0])
            if rate:
                lines.emit("gpu_train_images_per_s_compiled", rate)
                lines.emit("gpu_compiled_vs_eager", rate / single)


def run(quick: bool, json_path: Path | None, packed: list[int], compile: bool, profile: bool = False) -> int:
    lines = Lines(json_path)
    if not torch.cuda.is_available():
        lines.emit("gpu", "none (no CUDA device)")
        return 0
    started = time.perf_counter()
    lines.emit("gpu", torch.cuda.get_device_name())
    lines.emit("gpu_torch", torch.__version__)
    root = Path(tempfile.mkdtemp(prefix="tlbench-gpu-bench-"))
    try:
        measure(root, lines, quick, packed, compile, json_path if profile and json_path is not None else None)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    lines.emit("gpu_bench_s", time.perf_counter() - started)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tlbench.bench --gpu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the bench runs")
    parser.add_argument("--json", default="gpu-bench.json", help="where to write the lines as JSON (default %(default)s)")
    parser.add_argument("--packed", default="4", help="comma-separated trial counts to pack on the card (default %(default)s)")
    parser.add_argument("--compile", action="store_true", help="also time the ResNet18 case under torch.compile")
    parser.add_argument("--profile", action="store_true", help="also profile one epoch of each case, a table beside the JSON")
    parser.add_argument("--packed-worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.packed_worker:
        config_file, root, share, out, ready, go = args.packed_worker
        packed_worker(config_file, root, float(share), out, ready, go)
        return 0
    packed = [int(n) for n in str(args.packed).split(",") if n.strip()]
    return run(args.quick, Path(args.json), packed, args.compile, args.profile)


if __name__ == "__main__":
    from tlbench.process_exit import run_command

    run_command(main)
