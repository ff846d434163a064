"""train.py reads top to bottom and asks quirks.py, by name, wherever a report trained differently from a plain
loop; the words of train.optimizer and train.loss mean what their registries say, not an if-chain in the loop.
Checked on the source: a quirk's config key read in the loop, or a step buried deeper, fails here."""

from __future__ import annotations

import ast
import inspect
import re

from tlbench.trial import quirks, train
from tlbench.trial.config import TrainConfig

TRAIN = ast.parse(inspect.getsource(train))
FUNCTIONS = {node.name: node for node in TRAIN.body if isinstance(node, ast.FunctionDef)}
# The TrainConfig keys that switch a report's quirk on: only quirks.py reads them.
QUIRK_KEYS = ("train_mode_epochs", "frozen_bn", "head_lr", "block_lr_decay", "optimizer_per_epoch", "augment_val",
              "test_every_epoch", "protocol")  # fmt: skip


def _calls(function: ast.FunctionDef) -> set[str]:
    return {ast.unparse(node.func) for node in ast.walk(function) if isinstance(node, ast.Call)}


def test_the_trainer_is_laid_out_in_the_order_it_runs():
    order = ["run_trial", "build", "fit", "run_epoch", "train_steps", "evaluate", "summarise"]
    lines = [FUNCTIONS[name].lineno for name in order]
    assert lines == sorted(lines), f"train.py's main functions out of reading order: {order}"
    assert {"build", "fit", "summarise"} <= _calls(FUNCTIONS["run_trial"])
    assert "run_epoch" in _calls(FUNCTIONS["fit"])
    assert {"train_steps", "evaluate"} <= _calls(FUNCTIONS["run_epoch"])


def test_the_optimizer_step_is_one_call_below_run_epoch():
    steppers = [name for name, fn in FUNCTIONS.items() if "optimizer.step" in _calls(fn)]
    assert steppers == ["train_steps"] and "train_steps" in _calls(FUNCTIONS["run_epoch"])


def test_the_loop_reads_no_quirks_key_itself():
    assert set(QUIRK_KEYS) <= set(TrainConfig.__dataclass_fields__)
    read = {node.attr for node in ast.walk(TRAIN) if isinstance(node, ast.Attribute) and node.attr in QUIRK_KEYS}
    assert not read, f"train.py reads {sorted(read)}: ask quirks.py by name instead"


def test_the_loop_names_no_optimizer_or_loss_word():
    words = {"adam", "adamw", "sgd", "bce", "cross_entropy", "balanced"}
    named = {node.value for node in ast.walk(TRAIN) if isinstance(node, ast.Constant) and node.value in words}
    assert not named, f"train.py branches on {sorted(named)}: registries/optimizers.py and losses.py give them meaning"


def test_every_quirk_cites_the_line_it_mirrors_and_the_module_lists_it():
    public = [name for name, fn in inspect.getmembers(quirks, inspect.isfunction) if fn.__module__ == quirks.__name__]
    assert public
    for name in public:
        doc = inspect.getdoc(getattr(quirks, name)) or ""
        assert re.search(r"new_main\.py:\d+|report lines? \d+|EXPERIMENTS\.md", doc), f"quirks.{name} cites no line"
        assert re.search(rf"^\s+{name}\b", quirks.__doc__, re.MULTILINE), f"quirks.py's docstring does not list {name}"
    used = {n.attr for n in ast.walk(TRAIN) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "quirks"}
    assert used, "train.py asks quirks.py nothing"
    assert used <= set(public)
