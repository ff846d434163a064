"""The keys of a trial's config: one home per key, its type, default and range.

A trial config is nested in three sections (`dataset`, `model`, `train`) plus a
few top-level keys. Every key here becomes a result column, dotted
(`train.lr`), with the Arrow type `arrow_type` gives it. No torch here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any

from tlbench.registries import archs, freezing
from tlbench.registries.augmentations import AUGMENTATIONS, described
from tlbench.registries.datasets import DATASETS
from tlbench.registries.losses import CLASS_WEIGHTS, LOSSES
from tlbench.registries.optimizers import OPTIMIZERS
from tlbench.registries.registry import suggest
from tlbench.values import is_int, is_number

# The valid values of the config keys that take a word (their registries' names where they have one).
SAMPLERS = ("uniform", "oversample")
NORMALIZE = ("imagenet", "half")
RESIZE = ("squash", "crop")
WEIGHTS = ("imagenet", "none")  # and any torchvision weights enum name of the arch
SPLIT_METHODS = ("stratified", "random", "greedy")
PRECISIONS = ("auto", "fp32", "bf16")
FROZEN_BN = ("eval", "train")
PROTOCOLS = ("standard", "lr_probe")
SOURCES = ("real", "synthetic")


REQUIRED = object()  # a default that says: the grid file must set it


@dataclass(frozen=True)
class Field:
    kind: str  # int | float | bool | str | list[int] | list[float] | list[str] | freeze | imbalance | counts
    default: Any
    doc: str
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    check: Callable[[Any], str | None] | None = None  # returns what was expected, or None when fine
    # False for keys added after results were published: at their default they
    # stay out of the trial id, so every config that does not use them keeps its id.
    hashed_at_default: bool = True
    # False for a key that checks a run and changes nothing in it (dataset.expect_counts):
    # never in the trial id, so setting it on an experiment keeps its trials.
    hashed: bool = True
    unit: str = ""  # what a number counts (px, epochs, images, steps); "" for a ratio, a rate or a word

    @property
    def scalar(self) -> bool:
        return self.kind in ("int", "float", "bool", "str")


def _at_least(lo: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= lo else f"a value >= {lo}"


def _positive(v: float) -> str | None:
    return None if v > 0 and math.isfinite(v) else "a finite value > 0"


def _fraction_open_closed(v: float) -> str | None:  # (0, 1]
    return None if 0 < v <= 1 else "a fraction in (0, 1]"


def _fraction_closed_open(v: float) -> str | None:  # [0, 1)
    return None if 0 <= v < 1 else "a fraction in [0, 1)"


def _split(v: list[float]) -> str | None:
    if len(v) != 3 or any(not 0 < x < 1 for x in v) or abs(sum(v) - 1) > 1e-6:
        return "three fractions in (0, 1) for train/val/test that sum to 1"
    return None


def _priors(v: list[float]) -> str | None:
    if any(x <= 0 for x in v) or abs(sum(v) - 1) > 1e-6:
        return "class priors > 0 that sum to 1"
    return None


def _nonneg_list(v: list[int]) -> str | None:
    return None if all(x >= 1 for x in v) else "widths >= 1"


def _nonempty_positive(v: list[float]) -> str | None:
    return None if v and all(x > 0 for x in v) else "a non-empty list of learning rates > 0"


def _class_counts(value: dict[str, Any]) -> str | None:
    fine = bool(value) and all(isinstance(k, str) and is_int(v) and v >= 0 for k, v in value.items())
    return None if fine else "a mapping {class name: count >= 0}"


SEED_MAX = 2**32 - 1  # numpy's legacy seeding and most tools stop here


def _imbalance(value: dict[str, Any]) -> str | None:
    shape = "{minority: <group or class name>, keep: <fraction in (0, 1]>}"
    if set(value) != {"minority", "keep"} or not isinstance(value["minority"], str):
        return shape
    keep = value["keep"]
    return None if is_number(keep) and 0 < keep <= 1 else shape


def _weights(v: str) -> str | None:
    # Which enum names an arch has is checked where torchvision is at hand (models.weights_enum).
    if v in WEIGHTS or (v.replace("_", "").isalnum() and v.isupper()):
        return None
    return f"one of {', '.join(WEIGHTS)}, or a torchvision weights name of the arch (DEFAULT, IMAGENET1K_V1, ...)" + suggest(v, WEIGHTS)


def _arch(v: str) -> str | None:
    if v in archs.ARCHS:
        return None
    if archs.is_custom(v):  # its module is imported only by `grid run` (archs.import_problem): a grid loaded to read runs no code
        return archs.custom_shape_problem(v)
    if v in archs.UNSUPPORTED:
        return f"a torchvision classification model with a Linear head; {v} has {archs.UNSUPPORTED[v]}"
    close = get_close_matches(v, archs.ARCHS.names(), n=5, cutoff=0.6)
    return (
        f"one of {', '.join(archs.HAND_WRITTEN)}, any other torchvision classification model (torchvision.models.list_models()), "
        f"or 'package.module:function' for a custom model" + (f"; did you mean {' or '.join(map(repr, close))}?" if close else "")
    )


SCHEMA: dict[str, Any] = {
    "epochs": Field("int", 10, "passes over the train split", check=_at_least(1), unit="epochs"),
    "image_size": Field("int", 224, "input side after resizing, px", check=_at_least(16), unit="px"),
    "precision": Field(
        "str",
        "auto",
        "auto: bf16 autocast where the device does it well (measured per trial); fp32: no autocast, as every report "
        "trained (PyTorch's default; with tf32: false for full fp32 on Ampere and later GPUs)",
        choices=PRECISIONS,
    ),
    "tf32": Field(
        "bool",
        None,
        "null: PyTorch's defaults (cuDNN convolutions may use TF32 on Ampere and later GPUs, matmuls do not); "
        "false: no TF32 anywhere, full fp32 as the reports' GPUs (a T4: no TF32) and CPUs ran (the fidelity profile)",
        nullable=True,
        hashed_at_default=False,
    ),
    "dataset": {
        "name": Field("str", REQUIRED, "dataset registry name", choices=DATASETS.names()),
        "source": Field("str", "real", "real data, or its synthetic twin (same classes and priors)", choices=SOURCES),
        "target": Field("str", None, "what to predict (pets: species|breed; CelebA: an attribute)", nullable=True),
        "path": Field("str", None, "folder for imagefolder / local CelebA-HQ, relative to --data", nullable=True),
        "limit": Field(
            "int", None, "use only the first N images of the pool (CelebA 30k)", nullable=True, check=_at_least(1), unit="images"
        ),
        "val_fraction": Field(
            "float", 0.2, "share of the train pool held out for validation (0: no validation set)", check=_fraction_closed_open
        ),
        "train_fraction": Field(
            "float", 1.0, "share of the train pool used to train, drawn outside val, stratified", check=_fraction_open_closed
        ),
        "split": Field("list[float]", None, "train/val/test fractions for datasets without a test split", nullable=True, check=_split),
        "imbalance": Field(
            "imbalance",
            None,
            "{minority: group, keep: fraction}: keep only part of a group's train images",
            nullable=True,
            check=_imbalance,
        ),
        "split_method": Field(
            "str",
            "stratified",
            "how val/train (and test, without an official split) are drawn: stratified by class and seeded by the trial seed; "
            "random: unstratified, seeded (000: sklearn train_test_split(random_state=42) without stratify, so its per-split "
            "class shares differ: train 57.69% / val 58.30% / test 57.53% female); greedy: 002 new_main.py:43-61 split_data, "
            "image by image in dataset order, per class: to train while its train share is under target, else to val while "
            "its val share is under val_fraction, else dropped (train target 1 - val_fraction, times imbalance.keep for the "
            "minority group), deterministic",
            choices=SPLIT_METHODS,
            hashed_at_default=False,
        ),
        "train_resize": Field(
            "str",
            None,
            "resize mode of the train pool (train and val) where it differs from the test pool's (null: dataset.resize). "
            "002's augmented run crops the original image (new_main.py:19, :80 train_transform on trainval), the others "
            "the weights' centre crop (:79): squash keeps the whole image for train.augment's random resized crop",
            nullable=True,
            choices=RESIZE,
            hashed_at_default=False,
        ),
        "expect_counts": Field(
            "counts",
            None,
            "{class name: count}: the pool's class counts as the report states them (000: female 17320, male 12680). "
            "A check, not a setting: the loader compares the pool it builds, prints both and records a warning on the "
            "trial (column data_warning) where they differ; never part of the trial id",
            nullable=True,
            check=_class_counts,
            hashed=False,
        ),
        "resize": Field("str", "squash", "squash: resize to a square; crop: shorter side to size*256/224, centre crop", choices=RESIZE),
        "n_train": Field("int", 512, "synthetic: images in the train pool", check=_at_least(2), unit="images"),
        "n_test": Field("int", 256, "synthetic: images in the test pool", check=_at_least(1), unit="images"),
        "n_classes": Field("int", None, "synthetic (standalone): number of classes", nullable=True, check=_at_least(2), unit="classes"),
        "priors": Field("list[float]", None, "synthetic (standalone): class priors", nullable=True, check=_priors),
    },
    "model": {
        "arch": Field(
            "str",
            REQUIRED,
            f"{' | '.join(archs.HAND_WRITTEN)} | any torchvision classification model | package.module:function",
            check=_arch,
        ),
        "weights": Field(
            "str",
            "imagenet",
            "a torchvision weights name of the arch (DEFAULT, IMAGENET1K_V1, IMAGENET1K_V2, ...: "
            "torchvision.models.get_model_weights(arch)), checked against the arch before a run; "
            "imagenet: an alias of DEFAULT; none: random init",
            check=_weights,
        ),
        "hidden": Field(
            "list[int]",
            [],
            "hidden widths of a new classifier (Linear+ReLU+Dropout each); [] replaces only the last Linear",
            check=_nonneg_list,
            unit="units per layer",
        ),
        "dropout": Field("float", 0.0, "dropout after each hidden layer of the new classifier", check=_fraction_closed_open),
    },
    "train": {
        "optimizer": Field("str", "adam", "optimizer registry name", choices=OPTIMIZERS.names()),
        "lr": Field("float", 1e-3, "learning rate", check=_positive),
        "momentum": Field("float", 0.9, "SGD momentum", check=_fraction_closed_open),
        "nesterov": Field("bool", False, "SGD Nesterov momentum"),
        "weight_decay": Field("float", 0.0, "L2 (SGD, Adam) or decoupled (AdamW) weight decay", check=_at_least(0)),
        "loss": Field("str", "cross_entropy", "cross_entropy on C logits, or bce on one logit (binary tasks)", choices=LOSSES.names()),
        "class_weights": Field(
            "str", "none", "balanced: each class carries the same total weight in the loss", choices=CLASS_WEIGHTS.names()
        ),
        "sampler": Field("str", "uniform", "oversample: draw classes equally often (with replacement)", choices=SAMPLERS),
        "batch_size": Field("int", 32, "images per step", check=_at_least(1), unit="images"),
        "freeze": Field(
            "freeze",
            "head",
            f"what trains: {freezing.spellings()} (first: the 0-based epoch the first block opens, default k; "
            "002 new_main.py:245-249 opens layer4 at epoch 0: first 0)",
            check=freezing.check,
        ),
        "optimizer_per_epoch": Field(
            "bool",
            False,
            "a new optimizer at every epoch's start (002 new_main.py:252-259 builds SGD(model.parameters(), lr=0.001) "
            "inside the epoch loop): momentum and Adam moments restart each epoch, and a step schedule built with it "
            "(:259 StepLR, stepped once at :274) never decays",
            hashed_at_default=False,
        ),
        "train_mode_epochs": Field(
            "int",
            None,
            "null: train mode every epoch, frozen BatchNorm layers in eval mode (their ImageNet statistics kept). "
            "k: the whole network in train mode for the first k epochs, every BatchNorm re-estimating its running "
            "statistics, frozen ones included, then in eval mode from epoch k+1 on (002 new_main.py:159 and :240 call "
            "model.train() once before the epoch loop, :126 model.eval() in the per-epoch validation is never undone: k = 1)",
            nullable=True,
            check=_at_least(1),
            hashed_at_default=False,
            unit="epochs",
        ),
        "block_lr_decay": Field(
            "float", 1.0, "lr multiplier per block further from the head (discriminative lr)", check=_fraction_open_closed
        ),
        "head_lr": Field(
            "float",
            None,
            "null: the head trains at train.lr and block k from it at lr * block_lr_decay^k. A number: the head's own "
            "lr, and the block nearest the head trains at train.lr, each further one times block_lr_decay (002's "
            "intent, new_main.py:227, :252-254: fc at 1e-3, layer4 1e-2, layer3 1e-3, layer2 1e-4, layer1 1e-5)",
            nullable=True,
            check=_positive,
            hashed_at_default=False,
        ),
        "frozen_bn": Field(
            "str",
            "eval",
            "frozen BatchNorm layers (no trainable parameter) in eval mode, keeping their ImageNet statistics; "
            "train: plain PyTorch model.train(), every BatchNorm re-estimates its running statistics on the new data, "
            "frozen ones included (the features a frozen base gives then drift, so no feature cache). "
            "train.train_mode_epochs, where set, decides instead",
            choices=FROZEN_BN,
            hashed_at_default=False,
        ),
        "lr_step": Field(
            "int", None, "step schedule: multiply lr by lr_gamma every lr_step epochs", nullable=True, check=_at_least(1), unit="epochs"
        ),
        "lr_gamma": Field("float", 0.1, "step schedule factor", check=_positive),
        "augment": Field("str", "none", described(), choices=AUGMENTATIONS.names()),
        "augment_val": Field(
            "bool",
            False,
            "the validation split is augmented like train (002 new_main.py:80, :94-96: train and val are one random_split "
            "of a dataset built with train_transform, so val is augmented too)",
            hashed_at_default=False,
        ),
        "test_every_epoch": Field(
            "bool",
            False,
            "evaluate the test split after every epoch too, so best_test_acc (the best epoch's test accuracy) is "
            "known: 003's code evaluates on the test loader each epoch and reports the best ('The best Test accuracy "
            "recorded was 79.69% in Epoch 7'), a selection on the test set",
            hashed_at_default=False,
        ),
        "normalize": Field("str", "imagenet", "imagenet mean/std, or half (mean = std = 0.5)", choices=NORMALIZE),
        "protocol": Field("str", "standard", "lr_probe: 001's probe, retrain on train+val, test", choices=PROTOCOLS),
        "probe_lrs": Field("list[float]", [1e-5, 1e-4, 1e-3], "lr_probe: candidate learning rates", check=_nonempty_positive),
        "probe_steps": Field("int", 15, "lr_probe: optimizer steps per candidate", check=_at_least(1), unit="steps"),
        "max_steps": Field(
            "int", None, "cap on optimizer steps per epoch (for quick runs)", nullable=True, check=_at_least(1), unit="steps per epoch"
        ),
    },
}

# Keys of a grid-file level that are not trial config.
EXPERIMENT_KEYS = ("name", "source", "notes", "seeds", "axes")


def fields(schema: dict[str, Any] = SCHEMA, prefix: str = "") -> dict[str, Field]:
    """Every leaf key as a dotted path -> Field."""
    out: dict[str, Field] = {}
    for key, value in schema.items():
        path = f"{prefix}{key}"
        if isinstance(value, Field):
            out[path] = value
        else:
            out.update(fields(value, prefix=f"{path}."))
    return out


FIELDS = fields()
SECTIONS = tuple(k for k, v in SCHEMA.items() if isinstance(v, dict))


def defaults() -> dict[str, Any]:
    """The full nested config with every default (REQUIRED where the grid must say)."""

    def walk(node: dict[str, Any]) -> dict[str, Any]:
        return {k: (v.default if isinstance(v, Field) else walk(v)) for k, v in node.items()}

    return walk(SCHEMA)


def hashed_items(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config without the keys that are at a default that is not hashed (see Field)."""

    def walk(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in node.items():
            spec = schema.get(key)
            if isinstance(spec, Field) and (not spec.hashed or (not spec.hashed_at_default and value == spec.default)):
                continue
            out[key] = walk(value, spec) if isinstance(spec, dict) and isinstance(value, dict) else value
        return out

    return walk(config, SCHEMA)


def arrow_kind(field: Field) -> str:
    """Scalar fields keep their type as a column; lists and mappings are JSON text."""
    return field.kind if field.scalar else "json"
