"""The speed path: what the training loop steps, and in which precision, decided in one call.

    network = speed_path(built, plan, config, splits, device, criterion, make_optimizer, ...)

Three choices that change a trial's speed, never its numbers, made before anything trains:

- precision and memory format (autotune.py): fixed as configured, or for `precision: auto` the fastest candidate
  measured on what a step will run, at the trial's own input shape and batch;
- the frozen-feature cache (features.py): where everything before some point of the network is frozen and
  deterministic, that prefix runs once over each pool and its output is kept; the loop then steps only the
  trainable suffix, on those cached features instead of pixels;
- torch.compile of what the loop steps, where the caller asks.

The answer, `TrainedNetwork`, says which network the loop steps (`net`: the whole network, or the cut's suffix),
where its batches come from (`inputs`: pixels or cached features, with the same interface: `epoch` then `batch_of`), and the autocast
its forward pass runs under. The whole network (`built.module`) is still what evaluation's mode switch, the
checkpoint and the parameter count see: the suffix shares its modules.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tlbench.registries.losses import LOSSES
from tlbench.trial import autotune, data, features, memory, networks, pipeline, quirks
from tlbench.trial.config import TrialConfig
from tlbench.values import plain

Autocast = Callable[[], contextlib.AbstractContextManager]


@dataclass(frozen=True)
class TrainedNetwork:
    """What the training loop steps, on what, in which precision."""

    net: nn.Module  # what a step runs: built.module on pixels, or the feature cache's suffix on cached features
    inputs: pipeline.PixelInputs | features.FeatureInputs  # a batch's inputs and labels on the device
    autocast: Autocast  # the context a forward pass runs in: bf16 autocast, or nothing
    decision: autotune.Decision  # the precision and memory format, and how they were chosen (its row's columns)
    feature_cache: str  # the row's word: off | not cacheable: <why> | built (cut before <module>) | hit (...)
    data_placement: str  # where the pools or features live: host | on card (... MB) | staged (...)
    device: torch.device

    @property
    def on_features(self) -> bool:
        return isinstance(self.inputs, features.FeatureInputs)


def speed_path(
    built: networks.Built,
    plan: networks.FreezePlan,
    config: TrialConfig,
    splits: data.Splits,
    device: torch.device,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    make_optimizer: Callable[[networks.Built], torch.optim.Optimizer],
    data_root: Path,
    feature_cache: bool = False,
    compile: bool = False,
    memory_format: str | None = None,
    gpu_share: float = 0.0,
) -> TrainedNetwork:
    """Decide the precision (measuring it on what a step will run), move the network to the device, build or read
    the feature cache where it can be cut, place the data, and compile where asked: the network the loop steps.

    `criterion` and `make_optimizer` (the trial's loss and its optimizer at train.lr over a network) are what
    `precision: auto` times a step of."""
    train = config.train
    cut = features.find_cut(built, plan, train, config.image_size) if feature_cache else "off"
    # Precision and memory format before anything is built with them (the feature cache is).
    decision = choose_precision(
        built, plan, config, splits, device, criterion, make_optimizer, None if isinstance(cut, str) else cut, data_root, memory_format
    )
    precision, channels_last = decision.candidate.precision, decision.candidate.channels_last
    autocast = autocast_for(precision, device)
    if channels_last:
        built.module.to(memory_format=torch.channels_last)
    built.module.to(device)
    sets = [splits.train, splits.val, splits.test]
    if isinstance(cut, str):  # no cache asked, or why the network cannot be cut
        cache = f"not cacheable: {cut}" if feature_cache else "off"
        inputs: pipeline.PixelInputs | features.FeatureInputs = pipeline.PixelInputs(device, train.normalize, channels_last)
        net = built.module
    else:
        # The build runs the prefix in the decision's precision and layout: `auto` timed the build's inference too.
        inputs = features.FeatureInputs(cut, sets, config, data_root, device, precision, autocast, channels_last)
        cache = f"{'built' if inputs.built_now else 'hit'} (cut before {cut.name})"
        net = cut.suffix
    budget = memory.data_budget_bytes(device, gpu_share)
    placement = inputs.place(sets, budget) if isinstance(inputs, pipeline.PixelInputs) else inputs.place(budget)
    if compile:
        net = torch.compile(net)
    return TrainedNetwork(net, inputs, autocast, decision, cache, placement, device)


def choose_precision(
    built: networks.Built,
    plan: networks.FreezePlan,
    config: TrialConfig,
    splits: data.Splits,
    device: torch.device,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    make_optimizer: Callable[[networks.Built], torch.optim.Optimizer],
    cut: features.Cut | None,
    data_root: Path,
    memory_format: str | None,
) -> autotune.Decision:
    """A fixed precision as configured (`memory_format` forces its layout); `auto`: the fastest candidate measured
    on what a step runs -- the whole network, or what follows the cached cut, with the cut's build weighed in
    (autotune.Build: the prefix's inference over each pool and view, beside epochs x the training set's steps)."""
    train, size = config.train, config.image_size
    if config.precision != "auto":
        decision = autotune.fixed(config.precision, device)
        if memory_format is not None:
            decision.candidate = autotune.Candidate(decision.candidate.precision, memory_format == "channels_last")
        return decision
    if memory_format is not None:
        raise ValueError("memory_format is for a fixed precision; precision auto measures it")
    net, input_shape = built.module, (3, size, size)
    if cut is not None:  # a step runs what follows the cut, on features of the shape the cut search recorded
        net, input_shape = cut.suffix, cut.shape
    n_classes = len(splits.classes)
    batch = max(2, min(train.batch_size, len(splits.train)))  # BatchNorm cannot train on one image
    identity = {
        "arch": config.model.arch, "hidden": list(config.model.hidden), "outputs": LOSSES[train.loss].outputs(n_classes),
        "freeze": plain(train.freeze), "net_params": networks.count_params(net), "input": list(input_shape), "batch": batch,
        "optimizer": train.optimizer, "device": device_name(device), "torch": torch.__version__,
    }  # fmt: skip

    def prepare(clone: networks.Built) -> None:
        networks.apply_stage(clone, plan, 0)
        quirks.set_train_mode(clone, plan, 0, train)

    make_step = autotune.training_step(built, net, prepare, make_optimizer, criterion, input_shape, n_classes, batch, device)
    build = None
    if cut is not None:
        sets = [splits.train, splits.val, splits.test]
        build_batch = min(batch, autotune.BUILD_TIMING["batch"])
        # An estimate: lr_probe's extra steps (001) are left out
        per_epoch = len(splits.train) if train.max_steps is None else min(len(splits.train), train.max_steps * train.batch_size)
        build = autotune.Build(
            autotune.inference_step(cut.prefix, (3, size, size), build_batch, device),
            build_batch,
            (3, size, size),
            features.build_images(sets, train.augment),
            max(1, config.epochs * per_epoch),
        )
    cache = autotune.DecisionCache(data_root / data.CACHE_DIR / "autotune")
    return autotune.decide(device, identity, cache, make_step, batch, build=build)


def autocast_for(precision: str, device: torch.device) -> Autocast:
    """The context a forward pass runs in: bf16 autocast, or, for fp32, nothing to enter (a disabled autocast still
    costs a step microseconds)."""
    if precision != "bf16":
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def device_name(device: torch.device) -> str:
    """The device as the row's `device` column and the precision decision's key name it."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
