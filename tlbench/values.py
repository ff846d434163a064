"""Plain values: what counts as an integer and as a number in a config value (shared by the grid's
schema and the registries' argument checks, a freeze strategy's `{last: l}`), and `plain`, which turns
typed configs, read-only mappings and numpy scalars back into the lists, dicts and numbers of YAML and JSON."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any

import numpy as np

INT64_MAX = 2**63 - 1  # every int lands in an int64 result column


def is_int(v: Any) -> bool:
    """An integer that fits a result column (bool is not one)."""
    return isinstance(v, int) and not isinstance(v, bool) and -INT64_MAX <= v <= INT64_MAX


def is_number(v: Any) -> bool:
    """A finite number: NaN and infinities pass every comparison a check makes, so no float field takes them."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def plain(value: Any) -> Any:
    """Dataclasses, mappings, tuples and numpy scalars as the dicts, lists and numbers the grid file and JSON have
    (the inverse of `tlbench.trial.config.frozen`; what a checkpoint's weights_only load accepts)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value
