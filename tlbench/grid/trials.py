"""What a trial of the grid is (its spec and id) and which names may become file names.

The leaf of the grid package: grid_file.py and tables.py both read it, and it reads neither,
so the grid model and its tables depend one way.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from tlbench.grid.schema import hashed_items

VARIANT_AXIS = "variant"  # an axis of named override sets: [{name: ..., set: {...}}]

# Experiment names and table ids become file and folder names (tables/<id>.csv, figures/curves-<name>.png,
# TensorBoard's <name>/..., MLflow's and W&B's run names): a letter or digit, then letters, digits, `.`, `_`, `-`.
# No `/`, no `..`, no leading `-` or `.`; short enough for a prefix and a suffix within a file name's 255 bytes.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
SAFE_NAME_RULE = "a letter or digit, then letters, digits, '.', '_' or '-' (at most 100 characters)"


def name_problem(what: str, name: str) -> str | None:
    """Why `name` cannot be a file name, or None where it can."""
    if SAFE_NAME.fullmatch(name):
        return None
    hint = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:100]
    return f"{what} {name!r} becomes a file name: expected {SAFE_NAME_RULE}" + (f", e.g. {hint!r}" if hint else "")


def file_name_twins(names: list[str]) -> tuple[int, int] | None:
    """The first two positions whose names are one file on a case-insensitive file system (macOS, Windows)."""
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        j = first.setdefault(name.casefold(), i)
        if j != i:
            return j, i
    return None


@dataclass(frozen=True)
class TrialSpec:
    """One trial: a fully resolved config and where it came from."""

    trial_id: str
    experiment: str  # the first experiment that asked for this config
    report: str
    seed: int
    axes: dict[str, Any]  # axis name -> its value for this trial (variant: its name)
    config: dict[str, Any]  # every key of the schema, resolved; `seed` included
    experiments: tuple[str, ...] = ()  # every experiment that shares this config


def trial_id(config: dict[str, Any]) -> str:
    canonical = json.dumps(hashed_items(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def show_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
