"""`grid run`'s last checks before anything runs: the ones that need torch or run the grid file's code.

The only module of the grid package that may import torch (inside its checks), and the only
one that imports a custom arch's module: a grid file is code, and only `run` runs it.
"""

from __future__ import annotations

from tlbench.grid.document import GridError
from tlbench.grid.schema import WEIGHTS
from tlbench.grid.trials import TrialSpec
from tlbench.registries import archs, freezing


def preflight(trials: list[TrialSpec]) -> None:
    """Checks that need torch or run the grid's code, still before anything runs: custom archs' modules import,
    weights names and module paths that the arch has. Only `run` calls it: the commands that only read run no code."""
    for arch, spec in {t.config["model"]["arch"]: t for t in trials if archs.is_custom(t.config["model"]["arch"])}.items():
        problem = archs.import_problem(arch)
        if problem:
            raise GridError(f"experiment {spec.experiment!r}: model.arch: got {arch!r}, expected {problem}", file="grid")
    named = [t for t in trials if t.config["model"]["weights"] not in WEIGHTS and not archs.is_custom(t.config["model"]["arch"])]
    if named:
        from tlbench.trial.networks import weights_enum

        for spec in named:
            try:
                weights_enum(spec.config["model"]["arch"], spec.config["model"]["weights"])
            except ValueError as exc:
                raise GridError(f"experiment {spec.experiment!r}: {exc}", file="grid") from None
    # Only trials whose freeze strategy names module paths: building an arch's module list costs a second.
    naming = [t for t in trials if freezing.module_paths(t.config["train"]["freeze"]) and not archs.is_custom(t.config["model"]["arch"])]
    if naming:
        from tlbench.trial.networks import module_names

        for spec in naming:
            arch = spec.config["model"]["arch"]
            problem = freezing.missing_module(spec.config["train"]["freeze"], arch, module_names(arch))
            if problem:
                raise GridError(f"experiment {spec.experiment!r}: {problem}", file="grid")
