"""The grid file reference, docs/grid-file.md, written from the schema and the registries.

    python -m tlbench.grid.reference > docs/grid-file.md

Every config key comes from `schema.FIELDS` (type, default, unit, meaning, allowed words, and its check in the
words its error message uses), every word a registry holds from that registry, the keys of the file's own
levels from the tuples the loader checks against. What only prose can say (what a top-level key or a table key
is for) is written here, one line per key; `tests/grid/test_reference.py` regenerates the page and compares, and
fails on a key that has no line here. Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from tlbench.grid import tables
from tlbench.grid.grid_file import DEFAULT_SEEDS, SOURCE_KEYS, TOP_LEVEL_KEYS
from tlbench.grid.schema import EXPERIMENT_KEYS, FIELDS, REQUIRED, SECTIONS, Field
from tlbench.grid.trials import VARIANT_AXIS
from tlbench.registries import archs, freezing
from tlbench.registries.augmentations import AUGMENTATIONS
from tlbench.registries.datasets import DATASETS

COMMAND = "python -m tlbench.grid.reference > docs/grid-file.md"

TOP_LEVEL = {
    "defaults": f"config keys every experiment starts from, and `seeds` (the seeds of an experiment that names none; default {DEFAULT_SEEDS})",
    "experiments": "a non-empty list of experiments: each sets config keys over the defaults and names the axes it varies",
    "tables": "the tables the report reproduces: which trials feed each row, the numbers the report states, its claims",
    "profiles": "named sets of config keys (and `seeds`) laid over every trial by `--profile NAME`; `full`, where no profile "
    "has that name, lays nothing",
}
EXPERIMENT = {
    "name": "the experiment's name, also a file name: unique where case does not count",
    "source": f"where it comes from: {{{', '.join(SOURCE_KEYS)}}}; `report` (the report's file name) is required",
    "notes": "a list of strings: the choices the report leaves open and how this experiment makes them",
    "seeds": "its seeds, over the defaults' (integers in [0, 2**32-1], distinct)",
    "axes": f"dotted config key -> list of values, or `{VARIANT_AXIS}: [{{name: label, set: {{dotted key: value, ...}}}}]`; "
    "the experiment's trials are the cartesian product of its axes, times its seeds",
}
TABLE = {
    "id": "names tables/<id>.csv and its figures: a safe file name, unique where case does not count",
    "title": "the table's title in the report",
    "metrics": "a non-empty list of the result fields shown as columns (see Metrics)",
    "rows": "a non-empty list of rows (see Rows)",
    "notes": "a list of strings printed under the table",
    "extras": f"what the report adds beside the table: {', '.join(tables.TABLE_EXTRAS)}",
    "claims": "the report's claims about this table (see Claims)",
}
METRIC = {
    "key": "a result field (one of the metric keys below)",
    "label": "the column's heading (default: the field's own label)",
    "scale": "a factor applied before showing, in [1e-12, 1e12] (100: percent; 1e-6: millions); default 1",
    "digits": f"digits after the point, 0 to {tables.MAX_DIGITS}; default 4",
    "compare": "false: the reported number is shown beside ours but never judged (a wall time on other hardware)",
}
ROW = {
    "label": "the row's label; two rows share one only as two readings of one reported number",
    "experiment": "the experiment whose trials feed the row",
    "where": "axis -> value: the experiment's trials the row takes (a variant by its name)",
    "reported": "metric key -> the number the report states (or null)",
    "reading": f"which reading of the report the row reproduces: {', '.join(tables.READINGS)}",
    "note": "a string shown with the row",
    "reported_per_class": f"{{class: {{{', '.join(tables.PER_CLASS_KEYS)}}}}} as the report states them (needs extras: [per_class])",
    "reported_confusion": "the report's confusion matrix, rows true and columns predicted (needs extras: [confusion])",
    "reported_runs": "each reported number is the mean of this many of the authors' runs (default 1)",
    "averages": "open axes of the experiment the row averages over on purpose (else an open axis whose values differ is refused)",
}
CLAIM = {
    "claim": "the report's words",
    "row_a": "the label of the row claimed better",
    "row_b": "the label of the row it is compared with",
    "metric": "one of the table's metric keys (default its first)",
    "better": f"{' or '.join(tables.CLAIM_BETTER)} (which is better on the metric)",
    "untested": "why the claim is listed and never tested (a statement of no difference); its rows are then optional",
}

# Values no check accepts, by kind: a check refusing one says what it expected, which is its rule in words.
REFUSED: dict[str, tuple[Any, ...]] = {
    "int": (-(2**63),),
    "float": (-math.inf,),
    "str": ("",),
    "list[int]": ([], [0], [-1]),
    "list[float]": ([], [0.0], [-1.0]),
    "freeze": ("",),
    "imbalance": ({},),
    "counts": ({},),
}


def check_text(field: Field) -> str:
    """What the field's check expects, in the words of its error message ('' where it has none)."""
    if field.check is None:
        return ""
    for value in REFUSED.get(field.kind, ()):
        expected = field.check(value)
        if expected:
            return expected
    raise ValueError(f"no value of REFUSED[{field.kind!r}] fails {field.check}: add one it refuses")


def shown(value: Any) -> str:
    """A value as a grid file spells it (YAML flow style)."""
    if value is REQUIRED:
        return "required"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {shown(v)}" for k, v in value.items()) + "}"
    return str(value)


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]


def key_table(keys: Iterable[str], described: dict[str, str]) -> list[str]:
    """The keys the loader accepts, in its order, each with its line here; a key without one is an error to fix here."""
    missing = [k for k in keys if k not in described]
    if missing:
        raise ValueError(f"tlbench/grid/reference.py says nothing of {', '.join(missing)}: add a line for each")
    return table(["key", "what it holds"], ([f"`{k}`", described[k]] for k in keys))


def field_row(dotted: str, field: Field) -> list[str]:
    kind = f"{field.kind} or null" if field.nullable else field.kind
    meaning = field.doc
    if not field.hashed and "trial id" not in meaning:
        meaning += ". Never part of the trial id"
    elif field.hashed and not field.hashed_at_default:
        meaning += ". At its default, not part of the trial id (added after results were published)"
    words = ", ".join(f"`{w}`" for w in field.choices) if field.choices else ""
    default = "required" if field.default is REQUIRED else f"`{shown(field.default)}`"
    return [f"`{dotted}`", kind, default, field.unit, meaning, words, check_text(field)]


def config_keys() -> list[str]:
    lines = ["## Config keys", "",
             "Any level (`defaults`, an experiment, an axis value, a profile, `--set`) may set these; nested "
             "(`train: {lr: 0.01}`) or dotted (`train.lr: 0.01`). Every key is a result column of the same dotted name. "
             "Cross-key rules (an arch's smallest input, a dataset's targets, a split only where there is no test split) "
             "are checked on each resolved trial config when the grid loads.", ""]  # fmt: skip
    header = ["key", "type", "default", "unit", "meaning", "words", "check"]
    top = [field_row(k, f) for k, f in FIELDS.items() if "." not in k]
    lines += ["### Top level", "", *table(header, top), ""]
    for section in SECTIONS:
        rows = [field_row(k, f) for k, f in FIELDS.items() if k.startswith(section + ".")]
        lines += [f"### {section}", "", *table(header, rows), ""]
    return lines


def registry_words() -> list[str]:
    lines = ["## Words the registries hold", ""]
    lines += ["### Datasets (`dataset.name`)", ""]
    lines += table(["name", "targets (classes; 0: read from the data)", "default target", "official test split", "needs dataset.path"],
                   ([f"`{d.name}`", ", ".join(f"{t} ({n})" for t, n in d.targets.items()), f"`{d.default_target}`",
                     _yes(d.has_test_split), _yes(d.needs_path)] for d in DATASETS.entries()))  # fmt: skip
    lines += ["", "### Archs (`model.arch`)", ""]
    lines += table(["name", "head", "forward GFLOPs at 224 px", "GPU share", "children for {last: l}", "gradual blocks"],
                   ([f"`{a.name}`", f"`{a.head}`", f"{a.gflops_224:g}", f"{a.gpu_share:g}", _yes(a.children is not None),
                     ", ".join(a.blocks)] for a in map(archs.get, archs.HAND_WRITTEN)))  # fmt: skip
    others = len(archs.ARCHS.names()) - len(archs.HAND_WRITTEN)
    lines += ["", f"Also any other torchvision classification model with a Linear head ({others} more: "
              "`torchvision.models.list_models()`, facts in tlbench/registries/torchvision_archs.json); not those without one: "
              f"{', '.join(f'`{n}`' for n in sorted(archs.UNSUPPORTED))}. A custom network: `package.module:function`, a function "
              "returning (module, dotted path of its head).", ""]  # fmt: skip
    lines += ["### Freeze strategies (`train.freeze`)", ""]
    lines += table(["spelling", "what trains", "example"],
                   ([f"`{s.name}`" if s.is_word else f"`{{{s.name}: {s.shape}}}`", s.doc,
                     f"`{s.name if s.is_word else shown({s.name: s.example})}`"] for s in freezing.STRATEGIES.entries()))  # fmt: skip
    lines += ["", "### Augmentations (`train.augment`)", ""]
    lines += table(["word", "what it does"], ([f"`{a.name}`", a.doc] for a in AUGMENTATIONS.entries()))
    for dotted in ("train.optimizer", "train.loss"):
        field = FIELDS[dotted]
        lines += ["", f"### `{dotted}`", "", f"{', '.join(f'`{w}`' for w in field.choices or ())}: {field.doc}"]
    return [*lines, ""]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def file_layout() -> list[str]:
    lines = [
        "## The file",
        "",
        "A YAML mapping with these keys (only `experiments` is required):",
        "",
        *key_table(TOP_LEVEL_KEYS, TOP_LEVEL),
        "",
    ]
    lines += ["### An experiment", "", "Its own keys, beside any config key:", "", *key_table(EXPERIMENT_KEYS, EXPERIMENT), ""]
    lines += ["### Tables", "", "A table:", "", *key_table(tables.TABLE_KEYS, TABLE), ""]
    metric_keys = "Metric keys: " + ", ".join(f"`{k}`" for k in tables.METRICS) + "."
    lines += ["#### Metrics", "", *key_table(tables.METRIC_KEYS, METRIC), "", metric_keys, ""]
    lines += ["#### Rows", "", *key_table(tables.ROW_KEYS, ROW), ""]
    lines += ["#### Claims", "", "Tested with Welch's t-test on our seeds:", "", *key_table(tables.CLAIM_KEYS, CLAIM), ""]
    return lines


def precedence() -> list[str]:
    return ["## Precedence", "",
            "Lowest first: **defaults < experiment < axis value < profile < --set**. A later layer's value replaces an "
            "earlier one key by key; a mapping value such as a freeze strategy replaces whole. Seeds likewise: "
            "`--set seeds=[...]`, else the profile's, else the experiment's, else the defaults'. A trial's id is a hash of "
            "its resolved config (seed included), so experiments that resolve to one config share its trials.", ""]  # fmt: skip


def render() -> str:
    lines = ["# Grid file reference", "",
             f"Generated from tlbench/grid/schema.py and the registries by `{COMMAND}`: edit those, not this page "
             "(tests/grid/test_reference.py fails when it is stale).", "",
             "**A grid file is code**, like a Python script: a custom arch (`model.arch: \"package.module:function\"`) names a "
             "module that `grid run` imports. `grid list`, `plan`, `status` and the report never import it. Run only grid "
             "files you would run as scripts.", ""]  # fmt: skip
    lines += file_layout() + precedence() + config_keys() + registry_words()
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()
