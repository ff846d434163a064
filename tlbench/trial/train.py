"""One trial, start to finish: `run_trial(TrialConfig) -> TrialOutcome`. No Ray in here.

    build:     seed, data splits, model with its head and freeze plan, the runner on the device
    fit:       (resume, or 001's lr probe) -> epochs of train + val
    summarise: test, and the summary row

A seed fixes everything: the split, the head's init, the batch order, the
augmentation draws; the same config twice on the CPU gives identical numbers.
A NaN or infinite loss (a batch's, or the val or test loss a last step broke) is a result (`diverged`), not an error.
"""

from __future__ import annotations

import contextlib
import copy
import math
import platform
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tlbench.trial import autotune, data, features, memory, metrics, pipeline
from tlbench.trial import networks as models
from tlbench.trial.checkpoint import Checkpointer, capture, fits, resume
from tlbench.trial.config import TrainConfig, TrialConfig
from tlbench.trial.thumbnails import thumbnails
from tlbench.values import plain


@dataclass
class TrialOutcome:
    status: str  # ok | diverged
    summary: dict[str, Any]  # final metrics, timings, sizes
    epochs: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 matmuls run natively, about twice fp32's rate."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in (" avx512_bf16", " amx_bf16"))


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision by a fixed rule: what `grid plan` assumes on paper. A trial
    with `precision: auto` measures instead (autotune.py)."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


# PyTorch's TF32 switches as this process found them: a Ray worker runs trials of either setting in turn.
TORCH_TF32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)


def set_tf32(tf32: bool | None) -> None:
    """The config's `tf32`: null restores PyTorch's defaults, false turns TF32 off in cuDNN and matmuls alike."""
    cudnn, matmul = TORCH_TF32 if tf32 is None else (tf32, tf32)
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def balanced_class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """n / (classes x n_c): every class carries the same total weight in the loss."""
    counts = torch.bincount(labels, minlength=n_classes).float().clamp(min=1)
    return counts.sum() / (n_classes * counts)


@dataclass
class Steps:
    """What an epoch's steps leave on the device, read once at its end."""

    losses: list[torch.Tensor] = field(default_factory=list)
    logits: list[torch.Tensor] = field(default_factory=list)
    labels: list[torch.Tensor] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.losses.append(loss)
        self.logits.append(logits)
        self.labels.append(labels)
        self.sizes.append(len(labels))


class Runner:
    """Steps, evaluation and the loss for one trial's model on one device."""

    def __init__(
        self,
        built: models.Built,
        config: TrialConfig,
        splits: data.Splits,
        device: torch.device,
        plan: models.FreezePlan,
        data_root: str | Path = "data",
        feature_cache: bool = False,
        memory_format: str | None = None,
        gpu_share: float = 0.0,
    ):
        self.built, self.config, self.splits, self.device = built, config, splits, device
        train = config.train
        self.binary = train.loss == "bce"
        self.n_classes = len(splits.classes)
        self.class_weights = None
        if train.class_weights == "balanced":
            self.class_weights = balanced_class_weights(splits.train.labels, self.n_classes).to(device)
        cut = features.find_cut(built, plan, train, config.image_size) if feature_cache else "off"
        # Precision and memory format before anything is built with them (the feature cache is).
        self.decision = self.choose_precision(plan, None if isinstance(cut, str) else cut, Path(data_root), memory_format)
        self.precision, self.channels_last = self.decision.candidate.precision, self.decision.candidate.channels_last
        if self.channels_last:
            built.module.to(memory_format=torch.channels_last)
        built.module.to(device)
        # What a step runs: the whole network on pixels, or only the part after a
        # frozen prefix, on that prefix's cached output (features.py).
        self.net, self.inputs = built.module, pipeline.PixelInputs(device, train.normalize, self.channels_last)
        self.feature_cache = "off"
        if feature_cache:
            if isinstance(cut, str):
                self.feature_cache = f"not cacheable: {cut}"
            else:
                # The decision above timed what follows the cut (a Linear head does not care about layouts); the
                # build runs the convolutions before it, batched, in inference: channels_last, which on this
                # project's CPU built ResNet18's cache in 6.5 s against 9.3 contiguous (GoogLeNet 9.5 vs 15.5).
                build_channels_last = self.channels_last or config.precision == "auto"
                self.inputs = features.FeatureInputs(
                    cut,
                    [splits.train, splits.val, splits.test],
                    config,
                    Path(data_root),
                    device,
                    self.precision,
                    self.autocast,
                    build_channels_last,
                )
                self.net = cut.suffix
                self.feature_cache = f"{'built' if self.inputs.built_now else 'hit'} (cut before {cut.name})"
        budget = memory.data_budget_bytes(device, gpu_share)
        if isinstance(self.inputs, pipeline.PixelInputs):
            self.data_placement = self.inputs.place([splits.train, splits.val, splits.test], budget)
        else:
            self.data_placement = self.inputs.place(budget)

    def choose_precision(
        self, plan: models.FreezePlan, cut: features.Cut | None, data_root: Path, memory_format: str | None
    ) -> autotune.Decision:
        """A fixed precision as configured (`memory_format` forces its layout); `auto`: the fastest
        candidate measured on what a step runs -- the whole network, or what follows the cached cut."""
        config, train, size = self.config, self.config.train, self.config.image_size
        if config.precision != "auto":
            decision = autotune.fixed(config.precision, self.device)
            if memory_format is not None:
                decision.candidate = autotune.Candidate(decision.candidate.precision, memory_format == "channels_last")
            return decision
        if memory_format is not None:
            raise ValueError("memory_format is for a fixed precision; precision auto measures it")
        net, input_shape = self.built.module, (3, size, size)
        if cut is not None:  # a step runs what follows the cut, on features of the shape the cut search recorded
            net, input_shape = cut.suffix, cut.shape
        batch = max(2, min(train.batch_size, len(self.splits.train)))  # BatchNorm cannot train on one image
        identity = {
            "arch": config.model.arch, "hidden": list(config.model.hidden), "outputs": 1 if self.binary else self.n_classes,
            "freeze": plain(train.freeze), "net_params": models.count_params(net), "input": list(input_shape), "batch": batch,
            "optimizer": train.optimizer, "device": device_name(self.device), "torch": torch.__version__,
        }  # fmt: skip

        def prepare(clone: models.Built) -> None:
            models.apply_stage(clone, plan, 0)
            models.set_train_mode(clone, plan, 0, train.train_mode_epochs)

        make_step = autotune.training_step(
            self.built,
            net,
            prepare,
            lambda b: make_optimizer(b, train, train.lr),
            self.loss,
            input_shape,
            self.n_classes,
            batch,
            self.device,
        )
        cache = autotune.DecisionCache(data_root / data.CACHE_DIR / "autotune")
        return autotune.decide(self.device, identity, cache, make_step, batch)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision != "bf16":  # nothing to enter: a disabled autocast still costs a step microseconds
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.binary:
            per_sample = F.binary_cross_entropy_with_logits(logits.squeeze(1), y.float(), reduction="none")
            if self.class_weights is None:
                return per_sample.mean()
            w = self.class_weights[y]
            return (per_sample * w).sum() / w.sum()
        return F.cross_entropy(logits, y, weight=self.class_weights)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits.squeeze(1) > 0).long() if self.binary else logits.argmax(1)

    def train_epoch(
        self,
        images: data.ImageSet,
        optimizer: torch.optim.Optimizer,
        plan: models.FreezePlan,
        gen: torch.Generator,
        max_steps: int | None,
        epoch: int = 0,
    ) -> dict[str, float]:
        """One pass of training steps, then its loss, accuracy and divergence, read from the device once."""
        train = self.config.train
        models.set_train_mode(self.built, plan, epoch, train.train_mode_epochs)
        order = pipeline.epoch_order(images.labels, train.sampler, gen)
        return self.epoch_stats(self.train_steps(images, order, optimizer, gen, max_steps))

    def train_steps(
        self, images: data.ImageSet, order: torch.Tensor, optimizer: torch.optim.Optimizer, gen: torch.Generator, max_steps: int | None
    ) -> Steps:
        """The steps of one epoch, queued without ever waiting on the device: nothing here reads a device value
        back, so the host runs ahead of the card. Each step's loss, logits and labels are kept, on the device, for
        `epoch_stats` to read once."""
        train = self.config.train
        steps = Steps()
        for positions in pipeline.batches(order, train.batch_size, max_steps, training=True):
            x, y = self.inputs.batch(images, positions, train.augment, gen)
            with self.autocast():
                logits = self.net(x)
            loss = self.loss(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps.add(loss.detach(), logits.detach(), y)
        return steps

    def epoch_stats(self, steps: Steps) -> dict[str, float]:
        """An epoch's loss, accuracy and divergence, from its steps in one read. No step (max_steps 0): no loss, no accuracy.

        The loss is summed on the host as each step's loss x its images, in step order, as a read per step did."""
        if not steps.sizes:
            return {"loss": float("nan"), "acc": float("nan"), "images": 0, "diverged": False}
        correct = (self.predict(torch.cat(steps.logits)) == torch.cat(steps.labels)).sum()
        *losses, correct_count = torch.cat([torch.stack(steps.losses).double(), correct.double().view(1)]).tolist()
        seen = sum(steps.sizes)
        diverged = not all(map(math.isfinite, losses))  # a NaN or infinite loss is a result: the trial ends here
        total = 0.0
        for loss, size in zip(losses, steps.sizes):
            total += loss * size
        return {"loss": total / seen, "acc": float("nan") if diverged else correct_count / seen, "images": seen, "diverged": diverged}

    @torch.no_grad()
    def evaluate(self, images: data.ImageSet, augment: str = "none", gen: torch.Generator | None = None) -> tuple[float, np.ndarray]:
        """(mean loss, predictions) over a whole split, in eval mode (augmented where a config says so); read back once."""
        self.built.module.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        preds = []
        order = torch.arange(len(images))
        for positions in pipeline.batches(order, max(self.config.train.batch_size, 256)):
            x, y = self.inputs.batch(images, positions, augment, gen if gen is not None else torch.Generator())
            with self.autocast():
                logits = self.net(x)
            loss_sum += self.loss(logits, y).double() * len(y)
            preds.append(self.predict(logits))
        if not preds:  # nothing to score: no mean loss, no predictions
            return float("nan"), np.zeros(0, dtype=np.int64)
        return loss_sum.item() / len(images), torch.cat(preds).cpu().numpy()


def make_optimizer(built: models.Built, train: TrainConfig, lr: float) -> torch.optim.Optimizer:
    groups = models.param_groups(built, lr, train.block_lr_decay, train.head_lr)
    name, wd = train.optimizer, train.weight_decay
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=train.momentum, nesterov=train.nesterov, weight_decay=wd)
    raise KeyError(f"no optimizer {name!r}; valid: adam, adamw, sgd")


def set_epoch_lr(optimizer: torch.optim.Optimizer, base_lrs: list[float], train: TrainConfig, epoch: int) -> None:
    """The step schedule at this epoch. An optimizer rebuilt every epoch restarts the
    schedule built with it (002 new_main.py:259): its epoch count is then always 0."""
    if train.optimizer_per_epoch:
        epoch = 0
    factor = train.lr_gamma ** (epoch // train.lr_step) if train.lr_step else 1.0
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * factor


def run_trial(
    config: TrialConfig,
    data_root: str | Path = "data",
    device: torch.device | None = None,
    checkpointer: Checkpointer | None = None,
    feature_cache: bool = True,
    compile: bool = False,
    gpu_share: float = 0.0,
    memory_format: str | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrialOutcome:
    """Train and test one fully resolved config (tlbench/grid/): build, fit, summarise. Raises on bad data or code.

    With a checkpointer, the state is saved after every epoch, and a saved state
    (an earlier attempt of this trial) is picked up where it ended. The feature
    cache, torch.compile and a forced `memory_format` ("contiguous" |
    "channels_last", fixed precisions only) change speed, not results, so they
    are options here rather than config keys. `gpu_share`: the fraction of the
    GPU the scheduler gave this trial; on CUDA its allocator is capped to it.
    `on_epoch` gets each epoch's row as it ends (plus its training images/s),
    before that epoch's checkpoint is saved: the scheduler reports it to Tune."""
    started = time.perf_counter()
    device = device or pick_device()
    memory.cap_gpu_share(device, gpu_share)  # before anything is built on the card
    peak_memory = memory.PeakMemory(device)  # this trial's own peak, not an earlier one's in this process
    trial = build(config, data_root, device, feature_cache, compile, memory_format, gpu_share)
    fitted = fit(trial, checkpointer, on_epoch)
    summary = summarise(trial, fitted)
    summary.update({"peak_mem_mb": peak_memory.peak_mb(), "peak_mem_source": peak_memory.source, "wall_s": time.perf_counter() - started})
    return TrialOutcome(final_status(fitted.status, summary["test_loss"]), summary, fitted.epochs)


def final_status(fitted_status: str, test_loss: float) -> str:
    """`diverged` also when the last optimizer step broke the network: each batch's loss is checked before its
    step, so NaN weights from the last step show only in the test loss (its NaN logits all predict class 0)."""
    return fitted_status if math.isfinite(test_loss) else "diverged"


@dataclass
class Trial:
    """What `build` sets up for one trial: its data, network, freeze plan, and the runner that steps it."""

    config: TrialConfig
    splits: data.Splits
    built: models.Built
    plan: models.FreezePlan
    runner: Runner
    gen: torch.Generator  # the trial's generator: batch order, augmentation draws
    compiled: bool


@dataclass
class Fitted:
    """What `fit` leaves: the epochs run and the totals kept across them (checkpointed as `progress`)."""

    status: str  # ok | diverged
    epochs: list[dict[str, Any]]
    progress: dict[str, Any]  # epochs, images_seen, train_seconds, lr, probe_scores
    train_set: data.ImageSet  # what trained: train, or train + val under lr_probe
    resumed_from_epoch: int


def build(
    config: TrialConfig,
    data_root: str | Path,
    device: torch.device,
    feature_cache: bool,
    compile: bool,
    memory_format: str | None,
    gpu_share: float = 0.0,
) -> Trial:
    """Seed, split the data, build the network with its head and freeze plan, and the runner on the device."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    set_tf32(config.tf32)
    gen = seed_everything(config.seed)
    splits = data.load(config.dataset, config.image_size, data_root, config.seed)
    binary = config.train.loss == "bce"
    if binary and len(splits.classes) != 2:
        raise ValueError(f"train.loss bce needs 2 classes, the data has {len(splits.classes)}")
    built = models.build(config.model, 1 if binary else len(splits.classes))
    plan = models.freeze_plan(config.train.freeze, built, config.train.frozen_bn)
    runner = Runner(built, config, splits, device, plan, data_root, feature_cache, memory_format, gpu_share)
    if compile:
        runner.net = torch.compile(runner.net)
    return Trial(config, splits, built, plan, runner, gen, compile)


def fit(trial: Trial, checkpointer: Checkpointer | None, on_epoch: Callable[[dict[str, Any]], None] | None) -> Fitted:
    """The epochs of train + val, from where a saved state ended or from the start (after 001's lr probe)."""
    config, built, plan, splits = trial.config, trial.built, trial.plan, trial.splits
    train = config.train
    resumed = resume_saved(trial, checkpointer)
    if resumed is None:
        progress = start_progress(trial)
        optimizer = make_optimizer(built, train, progress["lr"])
        base_lrs = [g["lr"] for g in optimizer.param_groups]
    else:
        progress, optimizer, base_lrs = resumed
    train_set, val_set = splits.train, splits.val
    if train.protocol == "lr_probe":  # val now trains too: scoring on it would flatter the model
        train_set, val_set = data.ImageSet.concat(splits.train, splits.val), splits.val.subset(np.arange(0))
    resumed_from_epoch = len(progress["epochs"])
    epochs = progress["epochs"]
    status = "ok"
    for epoch in range(len(epochs), config.epochs):
        trainable = models.apply_stage(built, plan, epoch)
        if train.optimizer_per_epoch:  # 002's gradual unfreezing: a fresh optimizer (no momentum) each epoch
            optimizer = make_optimizer(built, train, progress["lr"])
        set_epoch_lr(optimizer, base_lrs, train, epoch)
        row, images_per_s, diverged = run_epoch(trial, optimizer, epoch, train_set, val_set, progress, trainable)
        epochs.append(row)
        if on_epoch:
            on_epoch({**row, "images_per_s": images_per_s})
        if diverged:
            status = "diverged"
            break
        if checkpointer and epoch + 1 < config.epochs:
            checkpointer.save(capture(built.module, optimizer, trial.gen, progress))
    return Fitted(status, epochs, progress, train_set, resumed_from_epoch)


def resume_saved(trial: Trial, checkpointer: Checkpointer | None) -> tuple[dict[str, Any], torch.optim.Optimizer, list[float]] | None:
    """(progress, optimizer, its schedule's base lrs) of a saved state that fits this network and config, else None
    (another network or config, or a state that does not restore: the trial starts over)."""
    saved = fits(checkpointer.load(), trial.built.module, trial.config) if checkpointer else None
    if saved is None:
        return None
    # The optimizer at the saved lr, its schedule's base lrs, then the state: or none of it (epoch 0).
    optimizer = make_optimizer(trial.built, trial.config.train, saved["progress"]["lr"])
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    progress = resume(saved, trial.built.module, optimizer, trial.gen)
    return None if progress is None else (progress, optimizer, base_lrs)


def start_progress(trial: Trial) -> dict[str, Any]:
    """The totals of a trial at epoch 0, its lr chosen first by 001's probe where the protocol asks."""
    progress = {"epochs": [], "images_seen": 0, "train_seconds": 0.0, "lr": trial.config.train.lr, "probe_scores": None}
    if trial.config.train.protocol == "lr_probe":  # 001: score each lr from one start, retrain the best on train+val
        initial_state = copy.deepcopy(trial.built.module.state_dict())
        scores = lr_probe(trial.runner, trial.plan, initial_state, trial.gen)
        progress["probe_scores"] = scores
        progress["lr"] = float(max(scores, key=lambda k: (scores[k], -float(k))))
        trial.built.module.load_state_dict(initial_state)
    return progress


def run_epoch(
    trial: Trial,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    train_set: data.ImageSet,
    val_set: data.ImageSet,
    progress: dict[str, Any],
    trainable: int,
) -> tuple[dict[str, Any], float, bool]:
    """One epoch of training, then validation (and test, under train.test_every_epoch): (its row, training
    images/s, diverged). Adds the epoch's time and images to `progress`."""
    runner, train = trial.runner, trial.config.train
    tick = time.perf_counter()
    stats = runner.train_epoch(train_set, optimizer, trial.plan, trial.gen, train.max_steps, epoch)
    seconds = time.perf_counter() - tick
    progress["train_seconds"] += seconds
    progress["images_seen"] += stats["images"]
    val_augment = train.augment if train.augment_val else "none"
    val_loss, val_preds = runner.evaluate(val_set, val_augment, trial.gen) if len(val_set) else (float("nan"), np.zeros(0))
    val_acc = float((val_preds == val_set.labels.numpy()).mean()) if len(val_set) else float("nan")
    row = {
        "epoch": epoch + 1,
        "train_loss": stats["loss"],
        "train_acc": stats["acc"],
        "val_loss": val_loss,
        "val_acc": val_acc,
        "lr": optimizer.param_groups[0]["lr"],
        "seconds": seconds,
        "trainable_params": trainable,
    }
    if train.test_every_epoch:  # 003's code: its per-epoch "validation" reads the test loader
        row["test_loss"], test_preds = runner.evaluate(trial.splits.test)
        row["test_acc"] = float((test_preds == trial.splits.test.labels.numpy()).mean())
    images_per_s = stats["images"] / seconds if seconds > 0 else float("nan")
    broken = len(val_set) > 0 and not math.isfinite(val_loss)  # a step broke the network after its batch's loss
    return row, images_per_s, stats["diverged"] or broken


def summarise(trial: Trial, fitted: Fitted) -> dict[str, Any]:
    """The trial's summary row: the test split's metrics, the last and best epochs, sizes, timings and the device."""
    runner, splits, epochs, progress = trial.runner, trial.splits, fitted.epochs, fitted.progress
    test_loss, test_preds = runner.evaluate(splits.test)
    test_labels = splits.test.labels.numpy()
    summary = test_summary(test_labels, test_preds, test_loss, runner.n_classes)
    summary["per_class"]["classes"] = splits.classes
    summary["misclassified"] = thumbnails(splits.test, test_labels, test_preds, splits.classes)
    last = epochs[-1]
    best = max(epochs, key=lambda e: -1 if math.isnan(e["val_acc"]) else e["val_acc"])
    if trial.config.train.test_every_epoch:  # the best epoch by test accuracy: a selection on the test set, as 003 reported
        best_test = max(epochs, key=lambda e: e["test_acc"])
        summary.update({"best_test_acc": best_test["test_acc"], "best_test_epoch": best_test["epoch"]})
    summary.update({
        "train_acc": last["train_acc"], "train_loss": last["train_loss"], "val_acc": last["val_acc"], "val_loss": last["val_loss"],
        "best_val_acc": best["val_acc"], "best_epoch": best["epoch"], "epochs_run": len(epochs),
        "train_acc_at_best_val": best["train_acc"], "data_warning": "; ".join(splits.warnings) or None,
        "lr_chosen": progress["lr"], "probe_scores": progress["probe_scores"],
        "n_train": len(fitted.train_set), "n_val": len(splits.val), "n_test": len(splits.test),
        "train_s": progress["train_seconds"], "epoch_s_mean": progress["train_seconds"] / len(epochs),
        "images_per_s": progress["images_seen"] / progress["train_seconds"] if progress["train_seconds"] else float("nan"),
        "resumed_from_epoch": fitted.resumed_from_epoch,
        "trainable_params": max(e["trainable_params"] for e in epochs), "total_params": models.count_params(trial.built.module),
        "device": device_name(runner.device), **runner.decision.row(), "feature_cache": runner.feature_cache,
        "compiled": trial.compiled,
    })  # fmt: skip
    return summary


def lr_probe(runner: Runner, plan: models.FreezePlan, initial_state: dict[str, Any], gen: torch.Generator) -> dict[str, float]:
    """Val accuracy after `probe_steps` steps from the same start, per candidate lr."""
    train = runner.config.train
    scores: dict[str, float] = {}
    for lr in train.probe_lrs:
        runner.built.module.load_state_dict(initial_state)
        models.apply_stage(runner.built, plan, 0)
        optimizer = make_optimizer(runner.built, train, lr)
        steps_left = train.probe_steps
        while steps_left > 0:  # the steps may span more than one pass over small data
            batches_per_epoch = math.ceil(len(runner.splits.train) / train.batch_size)
            runner.train_epoch(runner.splits.train, optimizer, plan, gen, min(steps_left, batches_per_epoch))
            steps_left -= min(steps_left, batches_per_epoch)
        _, preds = runner.evaluate(runner.splits.val)
        scores[repr(float(lr))] = float((preds == runner.splits.val.labels.numpy()).mean())
    return scores


def test_summary(labels: np.ndarray, preds: np.ndarray, loss: float, n_classes: int) -> dict[str, Any]:
    m = metrics.summarize(labels, preds, n_classes)
    return {
        "test_acc": m["acc"],
        "test_loss": loss,
        "confusion": m["confusion"],
        "per_class": m["per_class"],
        **{k: v for k, v in m.items() if k.endswith(("_macro", "_weighted"))},
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
