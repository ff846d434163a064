"""A validated trial config as typed, frozen values: `TrialConfig.from_dict(config)`.

The grid loads, checks and hashes a trial's config as a plain nested dict (tlbench/grid/grid_file.py:
its trial id is the hash of that dict, its result columns that dict flattened).
The worker trains from this typed tree instead, so a mistyped key is an
attribute error in an editor or a test, not a KeyError in a Ray worker hours in.

    TrialConfig(epochs, image_size, precision, tf32, dataset: DatasetConfig, model: ModelConfig, train: TrainConfig, seed)

tlbench/grid/schema.py stays the one home of every key: its default, range and doc. The
dataclasses below only name each key with its type and hold no defaults; they
are built from an already resolved config (every key present), and
tests/trial/test_trial_config.py checks that their dotted field names are exactly
`schema.FIELDS` (plus `seed`) and that each type agrees with its Field's kind.

Values are deep-frozen: lists become tuples; `dataset.imbalance`, a fixed
shape, becomes the small dataclass `Imbalance`; `train.freeze` is a word or a
read-only mapping (types.MappingProxyType) of one strategy key, the shape the
freeze strategy registry (tlbench/registries/freezing.py) dispatches on, with
optional inner keys that `to_dict` must give back exactly as they were.
`to_dict` is the exact inverse of `from_dict`. No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from difflib import get_close_matches
from types import MappingProxyType
from typing import Any, TypeVar

from tlbench.values import plain

Freeze = str | Mapping[str, Any]  # a word (head | none | bn), or {strategy: argument}, read-only


class TrialConfigError(ValueError):
    """A config dict whose keys are not a trial config's: names the dotted key."""


@dataclass(frozen=True)
class Imbalance:
    minority: str  # a group (pets: cat | dog) or class name
    keep: float  # the share of its train images kept, in (0, 1]


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    source: str
    target: str | None
    path: str | None
    limit: int | None
    val_fraction: float
    train_fraction: float
    split: tuple[float, ...] | None
    imbalance: Imbalance | None
    split_method: str
    train_resize: str | None
    expect_counts: Mapping[str, int] | None
    resize: str
    n_train: int
    n_test: int
    n_classes: int | None
    priors: tuple[float, ...] | None

    @classmethod
    def from_dict(cls, section: Mapping[str, Any], where: str = "dataset") -> DatasetConfig:
        return _section(cls, section, where)


@dataclass(frozen=True)
class ModelConfig:
    arch: str
    weights: str
    hidden: tuple[int, ...]
    dropout: float

    @classmethod
    def from_dict(cls, section: Mapping[str, Any], where: str = "model") -> ModelConfig:
        return _section(cls, section, where)


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    loss: str
    class_weights: str
    sampler: str
    batch_size: int
    freeze: Freeze
    optimizer_per_epoch: bool
    train_mode_epochs: int | None
    block_lr_decay: float
    head_lr: float | None
    frozen_bn: str
    lr_step: int | None
    lr_gamma: float
    augment: str
    augment_val: bool
    test_every_epoch: bool
    normalize: str
    protocol: str
    probe_lrs: tuple[float, ...]
    probe_steps: int
    max_steps: int | None

    @classmethod
    def from_dict(cls, section: Mapping[str, Any], where: str = "train") -> TrainConfig:
        return _section(cls, section, where)


@dataclass(frozen=True)
class TrialConfig:
    epochs: int
    image_size: int
    precision: str
    tf32: bool | None
    dataset: DatasetConfig
    model: ModelConfig
    train: TrainConfig
    seed: int

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> TrialConfig:
        """The typed config of a resolved one (grid/grid_file.py: every key present). An unknown or missing key raises
        TrialConfigError naming it; the values were checked when the grid loaded (grid/config.py)."""
        return _section(cls, config, "")

    def to_dict(self) -> dict[str, Any]:
        """The plain nested dict again (lists, dicts): `TrialConfig.from_dict(c).to_dict() == c`."""
        return plain(self)


# The keys that hold a section or a small dataclass, built from their mapping (imbalance: or None).
_NESTED: dict[str, type] = {"dataset": DatasetConfig, "model": ModelConfig, "train": TrainConfig, "dataset.imbalance": Imbalance}

T = TypeVar("T")


def _section(cls: type[T], raw: Mapping[str, Any], where: str) -> T:
    prefix = f"{where}." if where else ""
    if not isinstance(raw, Mapping):
        raise TrialConfigError(f"trial config: {where or 'the config'} should be a mapping of keys, got {type(raw).__name__}")
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = [key for key in raw if key not in names]
    if unknown:
        close = get_close_matches(str(unknown[0]), names, n=1)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
        raise TrialConfigError(f"trial config: unknown key {prefix}{unknown[0]}{hint}")
    missing = [name for name in names if name not in raw]
    if missing:
        raise TrialConfigError(
            f"trial config: missing key {prefix}{missing[0]} (a resolved config has every key of tlbench/grid/schema.py)"
        )
    values = {}
    for name in names:
        value, path = raw[name], f"{prefix}{name}"
        nested = _NESTED.get(path)
        values[name] = _section(nested, value, path) if nested and (value is not None or nested is not Imbalance) else frozen(value)
    return cls(**values)


def frozen(value: Any) -> Any:
    """Lists as tuples and mappings as read-only mappings, all the way down."""
    if isinstance(value, (list, tuple)):
        return tuple(frozen(v) for v in value)
    if isinstance(value, Mapping):
        return MappingProxyType({k: frozen(v) for k, v in value.items()})
    return value
