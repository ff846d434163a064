"""The grid: load and validate a grid file, expand it into trials, name each trial.

    Grid.load(path) -> Grid --expand(profile, only, overrides)--> [TrialSpec]

Pure Python: no torch, no Ray. Precedence, lowest first:
defaults < experiment < axis value < profile < --set.
A trial's id is a hash of its fully resolved config (seed included), not of its
name, so two experiments that resolve to the same config share one trial.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlbench.grid.config import Checker, check_resolved, check_seeds, merge, set_path, undot
from tlbench.grid.document import GridError, KeyPath, YamlDoc
from tlbench.grid.overrides import parse_overrides
from tlbench.grid.schema import EXPERIMENT_KEYS, FIELDS, SECTIONS, defaults
from tlbench.grid.tables import check_tables
from tlbench.grid.trials import VARIANT_AXIS, TrialSpec, file_name_twins, name_problem, show_value, trial_id
from tlbench.registries import freezing
from tlbench.registries.registry import expected_one_of, suggest

TOP_LEVEL_KEYS = ("defaults", "experiments", "tables", "profiles")
SOURCE_KEYS = ("report", "tables", "section")

DEFAULT_SEEDS = [0]


@dataclass
class Experiment:
    name: str
    index: int  # position in the grid file, for error messages
    source: dict[str, Any]
    config: dict[str, Any]  # nested overrides of the defaults
    axes: dict[str, list[Any]]
    seeds: list[int] | None
    notes: list[str] = field(default_factory=list)

    @property
    def report(self) -> str:
        return self.source["report"]


# -- the grid -------------------------------------------------------------------


@dataclass
class Grid:
    file: str
    defaults: dict[str, Any]
    default_seeds: list[int]
    experiments: list[Experiment]
    tables: list[dict[str, Any]]
    profiles: dict[str, dict[str, Any]]
    doc: YamlDoc | None = None
    sha256: str = ""
    # Expansions already made, by (profile, only, overrides): loading expands every profile to check it,
    # and a command then asks again for one of them; a grid of thousands of trials feels each pass.
    _expanded: dict[tuple[Any, ...], list[TrialSpec]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, path: str | Path) -> Grid:
        doc = YamlDoc(path)
        grid = _parse(doc)
        grid.sha256 = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
        # Expanding every experiment once, under every profile, surfaces
        # cross-key errors (an arch too small for a profile's image size) at load.
        for profile in [None, *grid.profiles]:
            grid.expand(profile=profile)
        for profile in grid.profiles:
            for exp in grid.experiments:
                grid._check_profile_keeps_axes(profile, exp)
        check_tables(grid, doc)
        return grid

    def experiment(self, name: str) -> Experiment:
        for exp in self.experiments:
            if exp.name == name:
                return exp
        raise KeyError(name)

    def expand(
        self,
        profile: str | None = None,
        only: list[str] | None = None,
        overrides: list[str] | None = None,
    ) -> list[TrialSpec]:
        """Every trial of the selected experiments, deduplicated by trial id, in grid order."""
        same_as_none = profile == "full" and "full" not in self.profiles
        key = (None if same_as_none else profile, tuple(only or ()), tuple(overrides or ()))
        if key not in self._expanded:
            self._expanded[key] = self._expand(profile, only, overrides)
        return list(self._expanded[key])

    def _expand(self, profile: str | None, only: list[str] | None, overrides: list[str] | None) -> list[TrialSpec]:
        selected = [e for e in self.experiments if not only or any(fnmatch.fnmatchcase(e.name, g) for g in only)]
        if only and not selected:
            names = ", ".join(e.name for e in self.experiments)
            raise GridError(f"--only {' '.join(only)} matches no experiment; experiments: {names}", file=self.file)
        trials: dict[str, TrialSpec] = {}
        for exp in selected:
            for spec in self.points(exp, profile, overrides):
                known = trials.get(spec.trial_id)
                if known is None:
                    trials[spec.trial_id] = spec
                elif exp.name not in known.experiments:
                    trials[spec.trial_id] = TrialSpec(**{**known.__dict__, "experiments": (*known.experiments, exp.name)})
        return list(trials.values())

    def points(self, exp: Experiment, profile: str | None = None, overrides: list[str] | None = None) -> list[TrialSpec]:
        """Every (axis point, seed) of one experiment as a trial, before deduplication: two axis points
        that resolve to one config both appear, with the same trial id. Cached: every selection
        (`--only`, a table row's) is built from these."""
        key = ("points", exp.name, None if profile == "full" and "full" not in self.profiles else profile, tuple(overrides or ()))
        if key in self._expanded:
            return self._expanded[key]
        profile_cfg, profile_seeds = self._profile(profile)
        set_cfg, set_seeds = parse_overrides(overrides or [], self.file)
        on_top = merge(profile_cfg, set_cfg)  # merging is associative: two merges a trial, not four
        seeds = set_seeds or profile_seeds or exp.seeds or self.default_seeds
        base = merge(self.defaults, exp.config)
        trials: list[TrialSpec] = []
        for axis_values, axis_cfg in _axis_points(exp):
            config = merge(merge(base, axis_cfg), on_top)
            config["train"]["freeze"] = freezing.canonical_in(config["train"]["freeze"], config)
            problems = check_resolved(config)
            if problems:
                key_name, expected = problems[0]
                where = ", ".join(f"{k}={show_value(v)}" for k, v in axis_values.items())
                origin = f"experiment {exp.name!r}" + (f" at {where}" if where else "")
                origin += f" under profile {profile!r}" if profile else ""
                path = ("experiments", exp.index)
                message = f"{origin}: {key_name}: expected {expected}"
                raise (self.doc.error(message, path) if self.doc else GridError(message, file=self.file, path=path))
            for seed in seeds:
                resolved = {**config, "seed": seed}
                tid = trial_id(resolved)
                trials.append(TrialSpec(tid, exp.name, exp.report, seed, axis_values, resolved, (exp.name,)))
        self._expanded[key] = trials
        return list(trials)

    def _check_profile_keeps_axes(self, profile: str, exp: Experiment) -> None:
        """A profile that sets what an axis sets runs that axis's values as one config: its trials would stand
        for every value of the axis, silently. Refused, naming the profile, the axis and the keys."""
        points = _axis_points(exp)
        if len(points) < 2:
            return
        plain, profiled = self.points(exp), self.points(exp, profile)
        stride_plain, stride_profiled = len(plain) // len(points), len(profiled) // len(points)
        first: dict[str, int] = {}
        for k in range(len(points)):
            j = first.setdefault(profiled[k * stride_profiled].trial_id, k)
            if j == k or plain[j * stride_plain].trial_id == plain[k * stride_plain].trial_id:
                continue  # a config of its own, or one already without the profile (l=0 and l=1 of ResNet50)
            (values_a, config_a), (values_b, config_b) = points[j], points[k]
            axes = [a for a in values_a if values_a[a] != values_b[a]]
            profile_keys = _dotted_keys(self._profile(profile)[0])
            keys = sorted(profile_keys & (_dotted_keys(config_a) | _dotted_keys(config_b))) or sorted(profile_keys)
            where = " and ".join(f"{', '.join(f'{a}={show_value(v[a])}' for a in axes)}" for v in (values_a, values_b))
            message = (f"profile {profile!r} sets {', '.join(keys)}, which axis {', '.join(axes)} of experiment {exp.name!r} sets: "
                       f"{where} would run as one config, its trials standing for both; drop {'it' if len(keys) == 1 else 'them'} "
                       f"from the profile")  # fmt: skip
            path = ("profiles", profile, *keys[0].split(".")) if keys else ("profiles", profile)
            raise self.doc.error(message, path) if self.doc else GridError(message, file=self.file, path=path)

    def _profile(self, name: str | None) -> tuple[dict[str, Any], list[int] | None]:
        if name is None or name == "full" and "full" not in self.profiles:
            return {}, None
        if name not in self.profiles:
            raise GridError(f"unknown profile: {expected_one_of(name, ['full', *self.profiles])}", file=self.file, path=("profiles",))
        profile = self.profiles[name]
        return {k: v for k, v in profile.items() if k != "seeds"}, profile.get("seeds")


def _dotted_keys(config: dict[str, Any]) -> set[str]:
    """The dotted keys a nested (partial) config sets: {'train': {'lr': 1}} -> {'train.lr'}."""
    return {f"{key}.{sub}" for key, value in config.items() if key in SECTIONS and isinstance(value, dict) for sub in value} | {
        key for key, value in config.items() if not (key in SECTIONS and isinstance(value, dict))
    }


def _axis_points(exp: Experiment) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The cartesian product of an experiment's axes: [(axis values, config overrides)]."""
    if not exp.axes:
        return [({}, {})]
    names = list(exp.axes)
    points = []
    for combo in itertools.product(*(exp.axes[n] for n in names)):
        values: dict[str, Any] = {}
        config: dict[str, Any] = {}
        for name, value in zip(names, combo):
            if name == VARIANT_AXIS:
                values[name] = value["name"]
                config = merge(config, undot(value.get("set", {})))
            else:
                values[name] = value
                config = set_path(config, name, value)
        points.append((values, config))
    return points


def _parse(doc: YamlDoc) -> Grid:
    data = doc.data
    checker = Checker(doc, doc.file)
    if not isinstance(data, dict):
        raise doc.error(f"expected a mapping with keys {', '.join(TOP_LEVEL_KEYS)}", ())
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise doc.error(f"unknown top-level key {key!r}; valid keys: {', '.join(TOP_LEVEL_KEYS)}{suggest(key, TOP_LEVEL_KEYS)}", (key,))
    raw_defaults = data.get("defaults") or {}
    base = checker.config(raw_defaults, ("defaults",), extra_keys=("seeds",))
    default_seeds = DEFAULT_SEEDS
    if "seeds" in raw_defaults:
        default_seeds = check_seeds(checker, raw_defaults["seeds"], ("defaults", "seeds"))
    raw_experiments = data.get("experiments")
    if not isinstance(raw_experiments, list) or not raw_experiments:
        raise doc.error("expected a non-empty list of experiments", ("experiments",))
    experiments: list[Experiment] = []
    for i, raw in enumerate(raw_experiments):
        experiments.append(_parse_experiment(checker, raw, ("experiments", i), i))
    twins = file_name_twins([e.name for e in experiments])
    if twins:
        first, second = (experiments[k] for k in twins)
        same = "duplicate experiment name" if first.name == second.name else "experiment name"
        raise doc.error(
            f"{same} {second.name!r} (first at experiments[{first.index}]"
            + ("" if first.name == second.name else f": {first.name!r}, the same file name where case does not count")
            + ")",
            ("experiments", second.index, "name"),
        )
    profiles: dict[str, dict[str, Any]] = {}
    raw_profiles = data.get("profiles") or {}
    if not isinstance(raw_profiles, dict):
        raise doc.error("expected a mapping of profile name -> overrides", ("profiles",))
    for name, raw in raw_profiles.items():
        profile = checker.config(raw, ("profiles", name), extra_keys=("seeds",))
        if "seeds" in raw:
            profile["seeds"] = check_seeds(checker, raw["seeds"], ("profiles", name, "seeds"))
        profiles[str(name)] = profile
    tables = data.get("tables") or []
    if not isinstance(tables, list):
        raise doc.error("expected a list of tables", ("tables",))
    return Grid(doc.file, merge(defaults(), base), default_seeds, experiments, tables, profiles, doc)


def _parse_experiment(checker: Checker, raw: Any, path: KeyPath, index: int) -> Experiment:
    if not isinstance(raw, dict):
        raise checker.error("expected a mapping with name, source, dataset, model, train, axes", path)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise checker.error("every experiment needs a non-empty string `name`", (*path, "name"))
    problem = name_problem("experiment name", name)
    if problem:
        raise checker.error(problem, (*path, "name"))
    source = raw.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("report"), str):
        raise checker.error("expected source: {report: <report file name>, ...}", (*path, "source"))
    for key in source:
        if key not in SOURCE_KEYS:
            raise checker.error(
                f"unknown key {key!r}; valid keys: {', '.join(SOURCE_KEYS)}{suggest(key, SOURCE_KEYS)}", (*path, "source", key)
            )
    notes = raw.get("notes", [])
    if not (isinstance(notes, list) and all(isinstance(n, str) for n in notes)):
        raise checker.error("expected a list of strings", (*path, "notes"))
    config = checker.config(raw, path, extra_keys=EXPERIMENT_KEYS)
    seeds = check_seeds(checker, raw["seeds"], (*path, "seeds")) if "seeds" in raw else None
    axes = _parse_axes(checker, raw.get("axes") or {}, (*path, "axes"))
    return Experiment(name, index, source, config, axes, seeds, notes)


def _parse_axes(checker: Checker, raw: Any, path: KeyPath) -> dict[str, list[Any]]:
    if not isinstance(raw, dict):
        raise checker.error("expected a mapping of dotted config key (or `variant`) -> list of values", path)
    axes: dict[str, list[Any]] = {}
    for name, values in raw.items():
        if not isinstance(values, list) or not values:
            raise checker.error("expected a non-empty list of values", (*path, name))
        for j, value in enumerate(values):
            if name == VARIANT_AXIS:
                if not isinstance(value, dict) or not isinstance(value.get("name"), str) or set(value) - {"name", "set"}:
                    raise checker.error("expected {name: <label>, set: {dotted key: value, ...}}", (*path, name, j))
                checker.config(value.get("set", {}), (*path, name, j, "set"))
            elif name in FIELDS:
                checker.key(name, value, (*path, name, j))
            else:
                raise checker.error(
                    f"unknown axis {name!r}: an axis is a dotted config key or `{VARIANT_AXIS}`{suggest(name, [*FIELDS, VARIANT_AXIS])}",
                    (*path, name),
                )
        labels = [v["name"] if name == VARIANT_AXIS else show_value(v) for v in values]
        if len(set(labels)) != len(labels):
            raise checker.error(f"duplicate values {labels}", (*path, name))
        axes[str(name)] = values
    return axes
