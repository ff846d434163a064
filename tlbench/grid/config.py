"""A trial config as nested mappings: merging, dotted keys, and strict validation.

`Checker` validates (partial) config mappings from a grid file, `--set` or a
profile against the schema, naming the file, line and key path of a mistake;
`check_resolved` applies the rules that need the whole resolved config (an
arch's smallest input, a dataset's targets). No torch here.
"""

from __future__ import annotations

import copy
from typing import Any

from tlbench.grid.document import GridError, KeyPath, YamlDoc
from tlbench.grid.schema import FIELDS, REQUIRED, SECTIONS, SEED_MAX, Field
from tlbench.registries import archs, freezing
from tlbench.registries.datasets import DATASETS, target_of
from tlbench.registries.losses import LOSSES
from tlbench.registries.registry import expected_one_of, suggest
from tlbench.values import is_int, is_number


def undot(mapping: dict[str, Any]) -> dict[str, Any]:
    """{'train.lr': 1} -> {'train': {'lr': 1}}, so a profile can say either."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(key, str) and "." in key:
            head, rest = key.split(".", 1)
            value = undot({rest: value})
            key = head
        elif isinstance(value, dict) and key in SECTIONS:
            value = undot(value)
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key in SECTIONS:
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of config sections; a leaf value (freeze mappings too) replaces whole."""
    out = _copy(base)
    for key, value in over.items():
        if key in SECTIONS and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = _copy(value)
    return out


def _copy(value: Any) -> Any:
    """A deep copy of plain YAML data (mappings, lists, scalars): `copy.deepcopy` without its memo,
    several times faster, which the expansion of a grid of thousands of trials feels."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    return copy.deepcopy(value)


def set_path(config: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    return merge(config, undot({dotted: value}))


def get_path(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node


class Checker:
    """Validates config mappings against the schema, reporting into one file."""

    def __init__(self, doc: YamlDoc | None, file: str):
        self.doc, self.file = doc, file

    def error(self, message: str, path: KeyPath) -> GridError:
        if self.doc is not None:
            return self.doc.error(message, path)
        return GridError(message, file=self.file, path=path)

    def config(self, mapping: Any, path: KeyPath, extra_keys: tuple[str, ...] = ()) -> dict[str, Any]:
        """A (partial) config at `path`: known keys, right types, in range. Returns it undotted."""
        if not isinstance(mapping, dict):
            raise self.error(f"expected a mapping, got {type(mapping).__name__}", path)
        for key, value in mapping.items():
            if key in extra_keys:
                continue
            self.key(str(key), value, (*path, key), extra_keys)
        return undot({k: v for k, v in mapping.items() if k not in extra_keys})

    def key(self, dotted: str, value: Any, path: KeyPath, extra_keys: tuple[str, ...] = ()) -> None:
        if dotted in SECTIONS:
            if not isinstance(value, dict):
                raise self.error(f"expected a mapping of {dotted} keys, got {value!r}", path)
            for sub, sub_value in value.items():
                self.key(f"{dotted}.{sub}", sub_value, (*path, sub))
            return
        spec = FIELDS.get(dotted)
        if spec is None:
            valid = [*extra_keys, *SECTIONS, *(k for k in FIELDS if "." not in k)]
            if "." in dotted:
                section = dotted.split(".", 1)[0]
                valid = [k.split(".", 1)[1] for k in FIELDS if k.startswith(section + ".")] or list(FIELDS)
            leaf = dotted.rsplit(".", 1)[-1] if dotted.split(".", 1)[0] in SECTIONS else dotted
            raise self.error(f"unknown key {leaf!r}; valid keys: {', '.join(valid)}{suggest(leaf, valid)}", path)
        self.value(spec, value, path)

    def value(self, spec: Field, value: Any, path: KeyPath) -> None:
        if value is None:
            if spec.nullable:
                return
            raise self.error(f"must not be null; expected {spec.kind} ({spec.doc})", path)
        problem = type_problem(spec, value)
        if problem:
            raise self.error(f"got {value!r}, expected {problem} ({spec.doc})", path)
        if spec.choices is not None and value not in spec.choices:
            raise self.error(expected_one_of(value, spec.choices), path)
        if spec.check is not None:
            expected = spec.check(value)
            if expected:
                raise self.error(f"got {value!r}, expected {expected}", path)


def type_problem(spec: Field, value: Any) -> str | None:
    kind = spec.kind
    ok = {
        "int": is_int,
        "float": is_number,
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "list[int]": lambda v: isinstance(v, list) and all(is_int(x) for x in v),
        "list[float]": lambda v: isinstance(v, list) and all(is_number(x) for x in v),
        "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "freeze": lambda v: isinstance(v, (str, dict)),
        "imbalance": lambda v: isinstance(v, dict),
        "counts": lambda v: isinstance(v, dict),
    }[kind](value)
    names = {
        "int": "an integer (int64)",
        "float": "a finite number",
        "bool": "true or false",
        "str": "a string",
        "list[int]": "a list of integers",
        "list[float]": "a list of finite numbers",
    }
    return None if ok else names.get(kind, kind if kind.startswith("list") else f"a {kind} setting")


def check_resolved(config: dict[str, Any]) -> list[tuple[str, str]]:
    """Cross-key rules on a fully resolved config: [(dotted key, what was expected)]."""
    problems: list[tuple[str, str]] = []
    for dotted, spec in FIELDS.items():
        if get_path(config, dotted) is REQUIRED:
            problems.append((dotted, f"a value ({spec.doc}); it has no default"))
    if problems:
        return problems
    data, model, train = config["dataset"], config["model"], config["train"]
    arch = model["arch"]
    if archs.is_custom(arch):
        module, _, function = arch.partition(":")
        if not module or not function.isidentifier():
            problems.append(("model.arch", f"'package.module:function' for a custom model, got {arch!r}"))
    elif arch not in archs.ARCHS:
        problems.append(("model.arch", expected_one_of(arch, [*archs.HAND_WRITTEN, "package.module:function"])))
        return problems
    info = archs.get(arch)
    if config["image_size"] < info.min_image_size:
        problems.append(("image_size", f"at least {info.min_image_size} px for {arch}, got {config['image_size']}"))
    elif info.image_size is not None and model["weights"] == "none" and config["image_size"] != info.image_size:
        problems.append(("image_size", f"{info.image_size} px: {arch} takes only that size, got {config['image_size']}"))
    freeze_problem = freezing.check_arch(train["freeze"], info)
    if freeze_problem:
        problems.append(freeze_problem)
    dinfo = DATASETS[data["name"]]
    target = target_of(data["name"], data["target"])
    if target not in dinfo.targets:
        problems.append(("dataset.target", expected_one_of(target, dinfo.targets)))
        return problems
    n_classes = dinfo.targets[target] or data["n_classes"]
    if dinfo.classes_from_config:
        if data["n_classes"] is None:
            problems.append(("dataset.n_classes", "the number of classes of a synthetic dataset"))
        elif data["priors"] is not None and len(data["priors"]) != data["n_classes"]:
            problems.append(("dataset.priors", f"{data['n_classes']} priors, one per class"))
    elif data["n_classes"] is not None or data["priors"] is not None:
        problems.append(("dataset.n_classes", f"null: {data['name']} has its own classes (they are set only for name: synthetic)"))
    if dinfo.needs_path and not data["path"]:
        problems.append(("dataset.path", "the folder holding train/<class>/ and test/<class>/"))
    if dinfo.has_test_split and data["limit"] is not None:
        problems.append(("dataset.limit", f"null: limit takes the first N images of datasets without a test split, not {data['name']}"))
    if dinfo.has_test_split and data["split"] is not None:
        problems.append(("dataset.split", f"null: {data['name']} has an official test split (use val_fraction)"))
    if not dinfo.has_test_split and data["split_method"] == "greedy":
        problems.append(
            (
                "dataset.split_method",
                f"stratified or random: the greedy fill splits an official train pool into train/val, {data['name']} has none",
            )
        )
    if not dinfo.has_test_split and data["train_resize"] is not None:
        problems.append(("dataset.train_resize", f"null: {data['name']} cuts its test split from the same pool as train"))
    if not dinfo.has_test_split and data["split"] is None:
        problems.append(("dataset.split", f"train/val/test fractions: {data['name']} has no official test split"))
    imbalance = data["imbalance"]
    # The minority is a group (pets: cat or dog) where the target's classes have groups, else a class by name.
    groups = dinfo.groups.get(target) or (dinfo.classes(target, n_classes) if dinfo.class_names else None)
    if imbalance is not None and groups is not None and imbalance["minority"] not in groups:
        problems.append(("dataset.imbalance.minority", expected_one_of(imbalance["minority"], sorted(set(groups)))))
    if n_classes:  # 0: the classes are known only once the data loads, where the loss checks again
        try:
            LOSSES[train["loss"]].outputs(n_classes)  # the loss registry says which class counts it takes
        except ValueError as exc:
            problems.append(("train.loss", f"cross_entropy: {exc} ({data['name']}/{target}): bce needs a binary target"))
    if model["hidden"] == [] and model["dropout"] > 0:
        problems.append(("model.dropout", "0 when model.hidden is empty (there is no new hidden layer to drop)"))
    return problems


def check_seeds(checker: Checker, value: Any, path: KeyPath) -> list[int]:
    if not (isinstance(value, list) and value and all(is_int(s) and 0 <= s <= SEED_MAX for s in value)):
        raise checker.error(f"got {value!r}, expected a non-empty list of integer seeds in [0, {SEED_MAX}]", path)
    if len(set(value)) != len(value):
        raise checker.error(f"got {value!r}, expected distinct seeds", path)
    return value
