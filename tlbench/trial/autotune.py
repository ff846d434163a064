"""`precision: auto` by measurement: time a few training steps of each candidate, keep the fastest.

Which precision and memory format train a network fastest depends on the network
as much as on the device: bf16 + channels_last doubles ResNet18 on an AVX-512
BF16 CPU yet slows a depthwise network there, and on an AVX2 CPU bf16 is
emulated, several times slower than fp32. A fixed rule loses somewhere. So for
`precision: auto` a trial times a handful of training steps (forward, backward,
optimizer step, after a warm-up) of each candidate -- fp32 / bf16 (where the
device has it) x contiguous / channels_last -- on its own device, on what it
will actually train (the whole network, or what follows the feature cache's cut)
at its own input shape and batch, and keeps the fastest. Where the feature
cache's prefix runs once over the pools instead, that build is part of what the
precision decides (its features are computed in it), so its inference is timed
too and the choice minimises the trial's whole cost: build plus steps (`Build`).

The decision is kept on the node, one small JSON file per (model, what trains,
head, input shape, batch, optimizer, device; with a cache's build, also the image
size and the images built and trained) under `<data>/.tlbench-cache/autotune/`,
so a grid measures each shape once; a file that is not a decision (garbled,
planted, of a device without bf16) is ignored with a warning and measured again.

Measuring never changes a trial's numbers: it trains deep copies of the network
and its optimizer, on synthetic inputs drawn from a generator of its own, inside
`torch.random.fork_rng` (dropout draws from the global stream).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlbench.results.regular_files import read_regular_text

WARMUP_STEPS = {"cpu": 1, "cuda": 2}  # the first steps pay for allocation and kernel selection (cudnn.benchmark)
TIMED_STEPS = 2  # per candidate; the fastest counts (on a shared machine, interference only ever adds time)
# The build's inference is timed on a smaller batch, once after its warm-up: a prefix's forward at the trial's batch
# costs a tenth of a second on a CPU (ResNet18 at 112 px, fp32), and the choice needs its ratios, not its seconds.
BUILD_TIMING = {"batch": 16, "timed_steps": 1}
GIVE_UP_FACTOR = 3.0  # a candidate whose first timed step is this much slower than the best so far cannot win
BF16_MIN_MATMUL_RATIO = 1.0  # a CPU whose bf16 matmul is slower than fp32's emulates it: bf16 cannot win there
MAX_FILE_BYTES = 64 * 1024  # a decision is a few hundred bytes; anything larger is not one


@dataclass(frozen=True)
class Candidate:
    precision: str  # fp32 | bf16
    channels_last: bool

    @property
    def memory_format(self) -> str:
        return "channels_last" if self.channels_last else "contiguous"

    @property
    def name(self) -> str:
        return f"{self.precision}+{self.memory_format}"

    @classmethod
    def parse(cls, name: str) -> Candidate:
        precision, _, memory_format = str(name).partition("+")
        if precision not in ("fp32", "bf16") or memory_format not in ("contiguous", "channels_last"):
            raise ValueError(f"not a candidate: {name!r}")
        return cls(precision, memory_format == "channels_last")


@dataclass
class Decision:
    candidate: Candidate
    how: str  # measured | cached | fixed
    images_per_s: dict[str, float] = field(default_factory=dict)  # per candidate name, where measured
    seconds: float = 0.0  # spent measuring in this trial
    skipped: str | None = None  # candidates not timed, and why

    def row(self) -> dict[str, Any]:
        """The result columns that record it."""
        return {
            "precision_used": self.candidate.precision,
            "memory_format_used": self.candidate.memory_format,
            "auto_choice": self.how,
            "autotune_images_per_s": self.images_per_s or None,
            "autotune_s": self.seconds,
            "autotune_skipped": self.skipped,
        }


def fixed(precision: str, device: torch.device) -> Decision:
    """A fixed precision stays fixed; its memory format as before: channels_last on CUDA and with bf16."""
    return Decision(Candidate(precision, device.type == "cuda" or precision == "bf16"), "fixed")


def bf16_possible(device: torch.device) -> bool:
    """CUDA where the card has bf16; a CPU always runs it (emulated where it lacks AVX-512 BF16 / AMX)."""
    return torch.cuda.is_bf16_supported() if device.type == "cuda" else True


@functools.cache
def cpu_bf16_matmul_ratio(threads: int, n: int = 256) -> float:
    """bf16 over fp32 matrix-multiply rate on this CPU at this thread count: ~2 where bf16 is native, well under 1 where emulated.

    A tenth of a second that spares timing a training step of an emulated
    precision, which can take tens of seconds (ResNet18: 25 s for one step at 32 px)."""
    gen = torch.Generator().manual_seed(0)
    best = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(n, n, generator=gen).to(dtype), torch.randn(n, n, generator=gen).to(dtype)
        a @ b
        rates = []
        for _ in range(3):  # the best of three blocks of >= 10 ms: load on a shared machine only slows a block
            count, tick = 0, time.perf_counter()
            while count == 0 or time.perf_counter() - tick < 0.01:
                a @ b
                count += 1
            rates.append(count / (time.perf_counter() - tick))
        best[dtype] = max(rates)
    return best[torch.bfloat16] / best[torch.float32]


def candidates(device: torch.device) -> tuple[list[Candidate], str | None]:
    """What to time on this device, and why any precision is left out."""
    skipped = None
    if not bf16_possible(device):
        skipped = "bf16: not supported by this device"
    elif device.type == "cpu":
        ratio = cpu_bf16_matmul_ratio(torch.get_num_threads())
        if ratio < BF16_MIN_MATMUL_RATIO:  # its convolutions and matmuls are what bf16 would speed up
            skipped = f"bf16: its matmul runs at {ratio:.2f}x fp32's on this CPU (emulated)"
    precisions = ["fp32"] if skipped else ["fp32", "bf16"]
    return [Candidate(p, cl) for p in precisions for cl in (False, True)], skipped


@dataclass(frozen=True)
class Build:
    """The feature cache's build where a trial caches a prefix: what `decide` weighs beside the training steps.

    Head-only, the build is most of a trial's work (a Linear head's step costs microseconds), and the precision
    decided is the one the features are computed in: timing the steps alone chose fp32 for ResNet18's head while
    its build ran 3.3x faster in bf16 + channels_last on an AMX CPU. Counted whether or not the features are on disk
    yet, so a decision never depends on what an earlier trial left behind."""

    make_step: Callable[[Candidate], Step]  # one batch of the prefix's inference, per candidate
    batch: int  # the images in that batch
    input_shape: tuple[int, ...]  # one image the prefix takes: (3, image_size, image_size)
    images: int  # images the build runs the prefix over (each pool once per view)
    trained_images: int  # images the trial's steps train on (epochs x training set)

    def effective_rates(self, steps: dict[Candidate, float], builds: dict[Candidate, float]) -> dict[Candidate, float]:
        """Trained images per second of the whole trial, build included, per candidate."""

        def rate(candidate: Candidate) -> float:
            step, build = steps.get(candidate, math.nan), builds.get(candidate, math.nan)
            if not (step > 0 and build > 0):  # not timed (a candidate that gave up has its first step's rate)
                return 0.0
            return self.trained_images / (self.trained_images / step + self.images / build)

        return {c: rate(c) for c in steps}


def fastest(rates: dict[Candidate, float]) -> Candidate:
    """The candidate with the most images/s; ties go to the first listed (fp32 contiguous, the plain way)."""
    usable = {c: r for c, r in rates.items() if math.isfinite(r) and r > 0}
    if not usable:
        raise ValueError("no candidate could be timed")
    return max(usable, key=lambda c: (usable[c], -list(rates).index(c)))


def cache_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]


class DecisionCache:
    """Decisions on this node, one JSON file per key, written atomically."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str, allowed: list[Candidate]) -> Decision | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
            raw = json.loads(read_regular_text(path, follow_links=False))  # only tlbench writes here: a link was planted
            if not isinstance(raw, dict) or raw.get("key") != key:
                raise ValueError("not a decision for this key")
            candidate = Candidate.parse(raw["choice"])
            if candidate not in allowed:
                raise ValueError(f"{candidate.name} is not a candidate on this device")
            rates = {str(k): float(v) for k, v in dict(raw.get("images_per_s") or {}).items()}
            skipped = None if raw.get("skipped") is None else str(raw["skipped"])
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            warnings.warn(f"ignoring the precision decision {path}: {type(exc).__name__}: {exc}; measuring again", stacklevel=2)
            return None
        return Decision(candidate, "cached", rates, skipped=skipped)

    def put(self, key: str, decision: Decision, identity: dict[str, Any], allowed: list[Candidate]) -> Decision:
        """Keep the first decision made for a key, and return the one the key now holds.

        Trials of one shape that start together all measure, and measurements differ: where each kept its own
        (or the last writer's won), two trials of one config could train in two precisions on a first run. So a
        decision is created, never replaced, and a trial that finds another's kept first trains with that one.
        Best effort: a decision that cannot be kept is measured again next time."""
        text = json.dumps(
            {
                "key": key,
                "choice": decision.candidate.name,
                "images_per_s": decision.images_per_s,
                "skipped": decision.skipped,
                "identity": identity,
            },
            sort_keys=True,
            default=str,
        )
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as fh:
                    fh.write(text)
                try:
                    os.link(tmp, self.path(key))  # creates the key's file, or fails where it exists
                except FileExistsError:
                    kept = self.get(key, allowed)
                    if kept is not None:
                        return kept
                    os.replace(tmp, self.path(key))  # what is there is unreadable (get said why): ours replaces it
                except OSError:  # a file system without hard links: kept all the same, the last writer winning
                    os.replace(tmp, self.path(key))
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        except OSError as exc:
            warnings.warn(f"cannot keep the precision decision in {self.folder}: {exc}", stacklevel=2)
        return decision


Step = Callable[[], None]


def measure(
    make_step: Callable[[Candidate], Step],
    options: list[Candidate],
    batch: int,
    device: torch.device,
    clock: Callable[[], float] = time.perf_counter,
    timed_steps: int = TIMED_STEPS,
) -> dict[Candidate, float]:
    """Images/s of each candidate: warm-up steps, then the fastest of a few timed ones.

    One candidate at a time, so only one copy of the network (and its optimizer
    state) is alive at once: on a shared GPU the copies count against the share."""
    rates: dict[Candidate, float] = {}
    best_step = math.inf
    for candidate in options:
        step = make_step(candidate)
        for _ in range(WARMUP_STEPS.get(device.type, 1)):
            step()
        _sync(device)
        times = []
        for _ in range(timed_steps):
            tick = clock()
            step()
            _sync(device)
            times.append(clock() - tick)
            if times[0] > GIVE_UP_FACTOR * best_step:
                break  # it cannot win: do not spend seconds on an emulated precision
        fastest_step = min(times)
        best_step = min(best_step, fastest_step)
        rates[candidate] = batch / fastest_step if fastest_step > 0 else math.inf
        del step
    return rates


def decide(
    device: torch.device,
    identity: dict[str, Any],
    cache: DecisionCache,
    make_step: Callable[[Candidate], Step],
    batch: int,
    measure: Callable[..., dict[Candidate, float]] = measure,
    build: Build | None = None,
) -> Decision:
    """The cached decision for this identity, else measured now and kept (or the one another trial kept first).

    With a `build`, its prefix's inference is timed too, and the candidate that makes build plus steps fastest
    wins; the decision's rates then also hold the build's images/s, as `build <candidate>`."""
    options, skipped = candidates(device)
    if build is not None:  # part of the choice: another image size, split size or epoch count may choose otherwise
        identity = {
            **identity,
            "build_input": list(build.input_shape),
            "build_images": build.images,
            "trained_images": build.trained_images,
        }
    key = cache_key(identity)
    cached = cache.get(key, options)
    if cached is not None:
        return cached
    tick = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        rates = measure(make_step, options, batch, device)
        builds = {}
        if build is not None:
            builds = measure(build.make_step, options, build.batch, device, timed_steps=BUILD_TIMING["timed_steps"])
    chosen = fastest(build.effective_rates(rates, builds) if build is not None else rates)
    timed = {c.name: round(r, 2) for c, r in rates.items()} | {f"build {c.name}": round(r, 2) for c, r in builds.items()}
    decision = Decision(chosen, "measured", timed, time.perf_counter() - tick, skipped)
    return cache.put(key, decision, identity, options)


def training_step(
    built: Any,
    net: nn.Module,
    prepare: Callable[[Any], None],
    make_optimizer: Callable[[Any], torch.optim.Optimizer],
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    input_shape: tuple[int, ...],
    n_classes: int,
    batch: int,
    device: torch.device,
) -> Callable[[Candidate], Step]:
    """make_step for `measure`: one training step of a copy of what the trial trains, as a candidate.

    `net` is what a step runs (the whole network or the part after a cached
    prefix); copied in one go with `built` so the copy's optimizer holds the
    copy's parameters. `prepare(built_copy)` sets what trains and the train mode."""

    def make(candidate: Candidate) -> Step:
        memo: dict[int, Any] = {}
        built_copy, net_copy = copy.deepcopy(built, memo), copy.deepcopy(net, memo)
        prepare(built_copy)
        memory_format = torch.channels_last if candidate.channels_last else torch.contiguous_format
        net_copy.to(device=device, memory_format=memory_format)
        built_copy.module.to(device)
        optimizer = make_optimizer(built_copy)
        gen = torch.Generator().manual_seed(0)  # its own: the trial's generators are not drawn from
        x = torch.randn(batch, *input_shape, generator=gen).to(device)
        if candidate.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(n_classes, (batch,), generator=gen).to(device)

        def step() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=candidate.precision == "bf16"):
                logits = net_copy(x)
            value = loss(logits, y)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()

        return step

    return make


def inference_step(prefix: nn.Module, input_shape: tuple[int, ...], batch: int, device: torch.device) -> Callable[[Candidate], Step]:
    """make_step for `measure`: one batch of a copy of the feature cache's prefix in inference, as its build runs it."""

    def make(candidate: Candidate) -> Step:
        memory_format = torch.channels_last if candidate.channels_last else torch.contiguous_format
        prefix_copy = copy.deepcopy(prefix).eval().to(device=device, memory_format=memory_format)
        x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0)).to(device)
        if candidate.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)

        @torch.no_grad()
        def step() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=candidate.precision == "bf16"):
                prefix_copy(x)

        return step

    return make


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
