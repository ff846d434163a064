"""`--set KEY=VALUE`: command-line overrides of a grid's configs, checked like the grid file's own keys.

They apply last (defaults < experiment < axis value < profile < --set); `seeds=[...]` replaces the seeds.
"""

from __future__ import annotations

from typing import Any

import yaml

from tlbench.grid.config import Checker, check_seeds, set_path
from tlbench.grid.document import GridError
from tlbench.grid.schema import FIELDS
from tlbench.registries.registry import suggest


def parse_overrides(overrides: list[str], file: str) -> tuple[dict[str, Any], list[int] | None]:
    """--set KEY=VALUE ..., each VALUE read as YAML; KEY a dotted config key or `seeds`."""
    checker = Checker(None, "--set")
    config: dict[str, Any] = {}
    seeds = None
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise GridError(f"--set {item!r}: expected KEY=VALUE", file="--set")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise GridError(f"--set {item!r}: the value is not valid YAML", file="--set") from None
        if key == "seeds":
            seeds = check_seeds(checker, value, ("seeds",))
            continue
        if key not in FIELDS:
            raise GridError(f"unknown key {key!r}{suggest(key, FIELDS)}; valid keys: {', '.join(FIELDS)}, seeds", file="--set")
        checker.key(key, value, (key,))
        config = set_path(config, key, value)
    return config, seeds
