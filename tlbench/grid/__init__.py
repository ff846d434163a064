"""The grid: a grid file loaded, validated and expanded into trials. No torch, no Ray at import
(preflight.py imports torch inside `grid run`'s last checks).

    from tlbench.grid import Grid
    trials = Grid.load("grid/reports.yaml").expand(profile="smoke")   # [TrialSpec], each with its id and config

Modules, in the order a grid file is read:
    document.py   the YAML, the line of every key, GridError naming file:line and key path
    schema.py     every config key: type, default, unit, check (the one home of each key)
    config.py     merging layers of config, checking values and cross-key rules
    overrides.py  `--set KEY=VALUE` on the command line
    trials.py     TrialSpec and the trial id; which names may become file names
    grid_file.py  Grid, Experiment: a grid file parsed and expanded into trials
    tables.py     the tables and claims a grid file declares, and which trials feed a row
    preflight.py  `grid run`'s last checks, which need torch or run the grid file's code (custom archs)
    reference.py  docs/grid-file.md written from the schema and the registries (`python -m tlbench.grid.reference`)

`python -m tlbench.grid` is the command line (cli.py).
"""

from __future__ import annotations

from tlbench.grid.document import GridError
from tlbench.grid.grid_file import Grid
from tlbench.grid.trials import TrialSpec, trial_id

__all__ = ["Grid", "GridError", "TrialSpec", "trial_id"]
