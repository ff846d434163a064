"""One trial, start to finish: `run_trial(TrialConfig) -> TrialOutcome`. No Ray in here. Read it top to bottom:

    run_trial    build -> fit -> summarise, and the trial's peak memory and wall time
    build        seed, data splits, the network with its head and freeze plan, the loss, and the speed path's answer
                 (speed_path.py): which network the loop steps, on what, in which precision
    fit          the training state (checkpoint.TrainingState: resumed, or fresh after 001's lr probe), then epochs
    run_epoch    train_steps (the optimizer steps) -> epoch_stats, then evaluate on val (and test, for 003)
    summarise    test, and the summary row

Where a report trained differently from this plain loop, the loop asks quirks.py by name (each function there
cites the report line or 002 code line it mirrors). The words of train.optimizer, train.loss and
train.class_weights mean what tlbench/registries/optimizers.py and losses.py say.

A seed fixes everything: the split, the head's init, the batch order, the augmentation draws; the same config twice
on the CPU gives identical numbers. A NaN or infinite loss (a batch's, or the val or test loss a last step broke) is
a result (`diverged`), not an error.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tlbench.registries.losses import CLASS_WEIGHTS, LOSSES, Criterion
from tlbench.registries.optimizers import OPTIMIZERS
from tlbench.results.columns import EpochMetrics, TrialSummary
from tlbench.trial import data, memory, metrics, networks, pipeline, quirks
from tlbench.trial.checkpoint import Checkpointer, TrainingState, capture, fits, resume
from tlbench.trial.config import TrainConfig, TrialConfig
from tlbench.trial.speed_path import TrainedNetwork, device_name, speed_path
from tlbench.trial.thumbnails import thumbnails


@dataclass
class TrialOutcome:
    status: str  # ok | diverged
    summary: dict[str, Any]  # final metrics, timings, sizes
    epochs: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch


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
    return TrialOutcome(final_status(fitted.status, summary["test_loss"]), summary, fitted.state.epochs)


# -- build ----------------------------------------------------------------------


@dataclass
class Trial:
    """What `build` sets up for one trial: its data, network, freeze plan, loss, and what the loop steps."""

    config: TrialConfig
    splits: data.Splits
    built: networks.Built  # the whole network: what evaluation's modes, checkpoints and parameter counts see
    plan: networks.FreezePlan
    criterion: Criterion  # the loss of a batch, and how logits become predicted classes
    network: TrainedNetwork  # what a step runs (the whole network, or the cached cut's suffix), on what, how
    gen: torch.Generator  # the trial's generator: batch order, augmentation draws
    compiled: bool


def build(
    config: TrialConfig,
    data_root: str | Path,
    device: torch.device,
    feature_cache: bool,
    compile: bool,
    memory_format: str | None,
    gpu_share: float = 0.0,
) -> Trial:
    """Seed, split the data, build the network with its head and freeze plan, the loss, and the speed path."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    set_tf32(config.tf32)
    gen = seed_everything(config.seed)
    splits = data.load(config.dataset, config.image_size, data_root, config.seed)
    train, n_classes = config.train, len(splits.classes)
    built = networks.build(config.model, LOSSES[train.loss].outputs(n_classes))
    plan = quirks.freeze_plan(built, train)
    criterion = make_criterion(train, splits.train.labels, n_classes, device)
    network = speed_path(
        built, plan, config, splits, device, criterion.loss, lambda b: make_optimizer(b, plan, train, train.lr),
        Path(data_root), feature_cache, compile, memory_format, gpu_share,
    )  # fmt: skip
    return Trial(config, splits, built, plan, criterion, network, gen, compile)


def make_criterion(train: TrainConfig, labels: torch.Tensor, n_classes: int, device: torch.device) -> Criterion:
    """train.loss's criterion (registries/losses.py), weighted per class as train.class_weights says."""
    weights = CLASS_WEIGHTS[train.class_weights].weights(labels, n_classes)
    return LOSSES[train.loss].build(None if weights is None else weights.to(device))


def make_optimizer(built: networks.Built, plan: networks.FreezePlan, train: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """train.optimizer (registries/optimizers.py) over the network's lr groups, at `lr`: the parameters the plan
    trains at some stage."""
    return OPTIMIZERS[train.optimizer].build(quirks.lr_groups(built, plan, train, lr), lr, train)


# -- fit ------------------------------------------------------------------------


@dataclass
class Fitted:
    """What `fit` leaves: the training state (its epochs' rows) and how the fit ended."""

    status: str  # ok | diverged
    state: TrainingState
    train_set: data.ImageSet  # what trained: train, or train + val after 001's lr probe
    resumed_from_epoch: int


def fit(trial: Trial, checkpointer: Checkpointer | None, on_epoch: Callable[[dict[str, Any]], None] | None) -> Fitted:
    """The epochs of train + val, from where a saved state ended or from the start (after 001's lr probe)."""
    config, built, train = trial.config, trial.built, trial.config.train
    state, optimizer, base_lrs = resume_saved(trial, checkpointer) or start(trial)
    train_set, val_set = quirks.training_sets(trial.splits, train)
    resumed_from_epoch = state.epochs_run
    status = "ok"
    for epoch in range(state.epochs_run, config.epochs):
        trainable = networks.apply_stage(built, trial.plan, epoch)
        if quirks.rebuilds_optimizer(train):
            optimizer = make_optimizer(built, trial.plan, train, state.lr)
        set_epoch_lr(optimizer, base_lrs, train, epoch)
        ran = run_epoch(trial, optimizer, epoch, train_set, val_set, trainable)
        state.record(ran.row, ran.seconds, ran.images)
        if on_epoch:
            on_epoch({**ran.row, "images_per_s": ran.images_per_s})
        if ran.diverged:
            status = "diverged"
            break
        if checkpointer and epoch + 1 < config.epochs:
            checkpointer.save(capture(built.module, optimizer, trial.gen, state))
    return Fitted(status, state, train_set, resumed_from_epoch)


Started = tuple[TrainingState, torch.optim.Optimizer, list[float]]  # the state, its optimizer, its schedule's base lrs


def start(trial: Trial) -> Started:
    """A trial at epoch 0: its lr chosen first by 001's probe where the protocol asks, then its optimizer."""
    train = trial.config.train
    state = TrainingState(lr=train.lr)
    if quirks.probes_lr(train):  # score each lr from one start, then retrain the best from that start
        initial_state = copy.deepcopy(trial.built.module.state_dict())
        state.probe_scores = lr_probe(trial, initial_state)
        state.lr = quirks.probe_choice(state.probe_scores)
        trial.built.module.load_state_dict(initial_state)
    optimizer = make_optimizer(trial.built, trial.plan, train, state.lr)
    return state, optimizer, [g["lr"] for g in optimizer.param_groups]


def resume_saved(trial: Trial, checkpointer: Checkpointer | None) -> Started | None:
    """The state saved by an earlier attempt, where it fits this network and config and restores, else None
    (another network or config, or a state that does not restore: the trial starts over)."""
    saved = fits(checkpointer.load(), trial.built.module, trial.config) if checkpointer else None
    if saved is None:
        return None
    # The optimizer at the saved lr, its schedule's base lrs, then the state: or none of it (epoch 0).
    optimizer = make_optimizer(trial.built, trial.plan, trial.config.train, saved["progress"]["lr"])
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    state = resume(saved, trial.built.module, optimizer, trial.gen)
    return None if state is None else (state, optimizer, base_lrs)


def set_epoch_lr(optimizer: torch.optim.Optimizer, base_lrs: list[float], train: TrainConfig, epoch: int) -> None:
    """The step schedule (train.lr_step, train.lr_gamma) at this epoch, from the lrs the optimizer was built with."""
    epoch = quirks.schedule_epoch(train, epoch)
    factor = train.lr_gamma ** (epoch // train.lr_step) if train.lr_step else 1.0
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * factor


# -- one epoch --------------------------------------------------------------------


@dataclass
class EpochRun:
    """What `run_epoch` gives `fit`: the epoch's row, and what the training state adds up."""

    row: EpochMetrics  # epoch, train_loss/acc, val_loss/acc, lr, seconds, trainable_params (+ test_loss/acc)
    seconds: float  # in training steps
    images: int  # trained on
    diverged: bool

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def run_epoch(
    trial: Trial, optimizer: torch.optim.Optimizer, epoch: int, train_set: data.ImageSet, val_set: data.ImageSet, trainable: int
) -> EpochRun:
    """One epoch: its optimizer steps, their loss and accuracy read once, then validation (and test, for 003)."""
    train, splits = trial.config.train, trial.splits
    tick = time.perf_counter()
    stats = epoch_stats(trial.criterion, train_steps(trial, optimizer, train_set, epoch, train.max_steps))
    seconds = time.perf_counter() - tick
    val_loss, val_preds = (
        evaluate(trial, val_set, quirks.validation_augment(train), trial.gen) if len(val_set) else (float("nan"), np.zeros(0))
    )
    row: EpochMetrics = {
        "epoch": epoch + 1,
        "train_loss": stats["loss"],
        "train_acc": stats["acc"],
        "val_loss": val_loss,
        "val_acc": float((val_preds == val_set.labels.numpy()).mean()) if len(val_set) else float("nan"),
        "lr": optimizer.param_groups[0]["lr"],
        "seconds": seconds,
        "trainable_params": trainable,
    }
    if quirks.tests_every_epoch(train):
        row["test_loss"], test_preds = evaluate(trial, splits.test)
        row["test_acc"] = float((test_preds == splits.test.labels.numpy()).mean())
    broken = len(val_set) > 0 and not math.isfinite(val_loss)  # a step broke the network after its batch's loss
    return EpochRun(row, seconds, stats["images"], stats["diverged"] or broken)


def train_steps(trial: Trial, optimizer: torch.optim.Optimizer, images: data.ImageSet, epoch: int, max_steps: int | None) -> Steps:
    """The optimizer steps of one epoch (at most `max_steps`), queued without ever waiting on the device: nothing
    here reads a device value back, so the host runs ahead of the card. Each step's loss, logits and labels are
    kept, on the device, for `epoch_stats` to read once."""
    train, network = trial.config.train, trial.network
    quirks.set_train_mode(trial.built, trial.plan, epoch, train)
    order = pipeline.epoch_order(images.labels, train.sampler, trial.gen)
    rows, labels = network.inputs.epoch(images, order)  # to the card once: a step copies nothing there
    steps = Steps()
    for batch in pipeline.batches(len(order), train.batch_size, max_steps, training=True):
        x, y = network.inputs.batch_of(images, rows[batch], labels[batch], train.augment, trial.gen)
        with network.autocast():
            logits = network.net(x)
        loss = trial.criterion.loss(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps.add(loss.detach(), logits.detach(), y)
    return steps


@torch.no_grad()
def evaluate(trial: Trial, images: data.ImageSet, augment: str = "none", gen: torch.Generator | None = None) -> tuple[float, np.ndarray]:
    """(mean loss, predictions) over a whole split, in eval mode (augmented where a config says so); read back once."""
    network, criterion = trial.network, trial.criterion
    trial.built.module.eval()
    if not len(images):  # nothing to score: no mean loss, no predictions
        return float("nan"), np.zeros(0, dtype=np.int64)
    loss_sum = torch.zeros((), dtype=torch.float64, device=network.device)
    preds = []
    rows, labels = network.inputs.epoch(images, torch.arange(len(images)))
    gen = gen if gen is not None else torch.Generator()
    for batch in pipeline.batches(len(images), max(trial.config.train.batch_size, 256)):
        x, y = network.inputs.batch_of(images, rows[batch], labels[batch], augment, gen)
        with network.autocast():
            logits = network.net(x)
        loss_sum += criterion.loss(logits, y).double() * len(y)
        preds.append(criterion.predict(logits))
    return loss_sum.item() / len(images), torch.cat(preds).cpu().numpy()


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


def epoch_stats(criterion: Criterion, steps: Steps) -> dict[str, float]:
    """An epoch's loss, accuracy and divergence, from its steps in one read. No step (max_steps 0): no loss, no accuracy.

    The loss is summed on the host as each step's loss x its images, in step order, as a read per step did."""
    if not steps.sizes:
        return {"loss": float("nan"), "acc": float("nan"), "images": 0, "diverged": False}
    correct = (criterion.predict(torch.cat(steps.logits)) == torch.cat(steps.labels)).sum()
    *losses, correct_count = torch.cat([torch.stack(steps.losses).double(), correct.double().view(1)]).tolist()
    seen = sum(steps.sizes)
    diverged = not all(map(math.isfinite, losses))  # a NaN or infinite loss is a result: the trial ends here
    total = 0.0
    for loss, size in zip(losses, steps.sizes):
        total += loss * size
    return {"loss": total / seen, "acc": float("nan") if diverged else correct_count / seen, "images": seen, "diverged": diverged}


def lr_probe(trial: Trial, initial_state: dict[str, Any]) -> dict[str, float]:
    """001's probe: val accuracy after `probe_steps` steps from the same start, per candidate lr (repr of the lr)."""
    train, splits = trial.config.train, trial.splits
    scores: dict[str, float] = {}
    for lr in train.probe_lrs:
        trial.built.module.load_state_dict(initial_state)
        networks.apply_stage(trial.built, trial.plan, 0)
        optimizer = make_optimizer(trial.built, trial.plan, train, lr)
        steps_left = train.probe_steps
        while steps_left > 0:  # the steps may span more than one pass over small data
            batches_per_epoch = math.ceil(len(splits.train) / train.batch_size)
            train_steps(trial, optimizer, splits.train, 0, min(steps_left, batches_per_epoch))
            steps_left -= min(steps_left, batches_per_epoch)
        _, preds = evaluate(trial, splits.val)
        scores[repr(float(lr))] = float((preds == splits.val.labels.numpy()).mean())
    return scores


# -- summarise --------------------------------------------------------------------


def summarise(trial: Trial, fitted: Fitted) -> TrialSummary:
    """The trial's summary row: the test split's metrics, the last and best epochs, sizes, timings and the device
    (its columns are declared in tlbench/results/columns.py; tests/results/test_columns.py checks a real one)."""
    network, splits, state = trial.network, trial.splits, fitted.state
    epochs = state.epochs
    test_loss, test_preds = evaluate(trial, splits.test)
    test_labels = splits.test.labels.numpy()
    summary = test_summary(test_labels, test_preds, test_loss, len(splits.classes))
    summary["per_class"]["classes"] = splits.classes
    summary["misclassified"] = thumbnails(splits.test, test_labels, test_preds, splits.classes)
    last, best = epochs[-1], state.best_epoch()
    summary.update(quirks.best_test(epochs, trial.config.train))
    summary.update({
        "train_acc": last["train_acc"], "train_loss": last["train_loss"], "val_acc": last["val_acc"], "val_loss": last["val_loss"],
        "best_val_acc": best["val_acc"], "best_epoch": best["epoch"], "epochs_run": len(epochs),
        "train_acc_at_best_val": best["train_acc"], "data_warning": "; ".join(splits.warnings) or None,
        "lr_chosen": state.lr, "probe_scores": state.probe_scores,
        "n_train": len(fitted.train_set), "n_val": len(splits.val), "n_test": len(splits.test),
        "train_s": state.train_seconds, "epoch_s_mean": state.train_seconds / len(epochs),
        "images_per_s": state.images_seen / state.train_seconds if state.train_seconds else float("nan"),
        "resumed_from_epoch": fitted.resumed_from_epoch,
        "trainable_params": max(e["trainable_params"] for e in epochs), "total_params": networks.count_params(trial.built.module),
        "device": device_name(network.device), **network.decision.row(), "feature_cache": network.feature_cache,
        "compiled": trial.compiled,
    })  # fmt: skip
    return summary


def test_summary(labels: np.ndarray, preds: np.ndarray, loss: float, n_classes: int) -> dict[str, Any]:
    m = metrics.summarize(labels, preds, n_classes)
    return {
        "test_acc": m["acc"],
        "test_loss": loss,
        "confusion": m["confusion"],
        "per_class": m["per_class"],
        **{k: v for k, v in m.items() if k.endswith(("_macro", "_weighted"))},
    }


def final_status(fitted_status: str, test_loss: float) -> str:
    """`diverged` also when the last optimizer step broke the network: each batch's loss is checked before its
    step, so NaN weights from the last step show only in the test loss (its NaN logits all predict class 0)."""
    return fitted_status if math.isfinite(test_loss) else "diverged"


# -- the process: device, precision by rule, TF32, seeds ---------------------------


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
    with `precision: auto` measures instead (autotune.py, through speed_path.py)."""
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
