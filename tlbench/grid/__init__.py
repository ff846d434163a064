"""The grid: a grid file loaded, validated and expanded into trials. Pure Python: no torch, no Ray.

    from tlbench.grid import Grid
    trials = Grid.load("grid/reports.yaml").expand(profile="smoke")   # [TrialSpec], each with its id and config

Modules, in the order a grid file is read:
    document.py   the YAML, the line of every key, GridError naming file:line and key path
    schema.py     every config key: type, default, unit, check (the one home of each key)
    config.py     merging layers of config, checking values and cross-key rules
    overrides.py  `--set KEY=VALUE` on the command line
    model.py      Grid, Experiment, TrialSpec: expansion into trials and the trial id
    tables.py     the tables and claims a grid file declares, and which trials feed a row

`python -m tlbench.grid` is the command line (`tlbench/cli.py`).
"""

from __future__ import annotations

from .document import GridError
from .model import Grid, TrialSpec, trial_id

__all__ = ["Grid", "GridError", "TrialSpec", "trial_id"]
