"""The grid file: strict validation at load, expansion, precedence and trial ids."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from helpers import TINY_GRID

from tlbench.grid import Grid, GridError

# (what is wrong, the grid text with the mistake, words the message must hold,
#  the text on the line it must name: a string, or (string, nth occurrence))
BAD_GRIDS = [
    ("yaml syntax", TINY_GRID.replace("seeds: [0, 1]", "seeds: [0, 1"), ["YAML syntax error"], None),
    ("unknown top-level key", TINY_GRID + "\nextras: 1\n", ["unknown top-level key 'extras'"], "extras: 1"),
    (
        "unknown section key",
        TINY_GRID.replace("lr: 3.0e-3, batch", "lrr: 3.0e-3, batch"),
        ["unknown key 'lrr'", "did you mean 'lr'"],
        "lrr:",
    ),
    (
        "unknown default key",
        TINY_GRID.replace("  epochs: 1\n  image", "  epoch: 1\n  image", 1),
        ["unknown key 'epoch'", "epochs"],
        "epoch: 1",
    ),
    ("wrong type", TINY_GRID.replace("batch_size: 16", "batch_size: sixteen"), ["batch_size", "expected an integer"], "sixteen"),
    (
        "unknown arch",
        TINY_GRID.replace('"tlbench.tiny:small_cnn"', "resnet19"),
        ["resnet19", "did you mean 'resnet18'", "alexnet"],
        "resnet19",
    ),
    ("unknown dataset", TINY_GRID.replace("name: synthetic", "name: cifar100"), ["cifar100", "cifar10"], "cifar100"),
    (
        "imbalance minority that is not a class",
        TINY_GRID.replace(
            "name: synthetic, n_classes: 3, n_train: 120, n_test: 60", "name: cifar10, imbalance: {minority: kitten, keep: 0.5}"
        ),
        ["dataset.imbalance.minority", "'kitten'", "airplane", "cat"],
        None,
    ),
    ("unknown optimizer", TINY_GRID.replace("freeze: none,", "optimizer: adamm, freeze: none,"), ["adamm", "did you mean 'adam'"], "adamm"),
    ("unknown freeze", TINY_GRID.replace("freeze: none,", "freeze: heads,"), ["heads", "did you mean 'head'"], "heads"),
    ("unknown loss", TINY_GRID.replace("freeze: none,", "loss: mse, freeze: none,"), ["mse", "cross_entropy"], "mse"),
    ("lr <= 0", TINY_GRID.replace("lr: 3.0e-3, batch", "lr: 0, batch"), ["train.lr", "> 0"], "lr: 0,"),
    (
        "fraction out of range",
        TINY_GRID.replace("n_test: 60}", "n_test: 60, train_fraction: 1.5}"),
        ["train_fraction", "(0, 1]"],
        "train_fraction",
    ),
    ("batch size < 1", TINY_GRID.replace("batch_size: 16", "batch_size: 0"), ["batch_size", ">= 1"], "batch_size: 0"),
    (
        "duplicate experiment",
        TINY_GRID.replace("tables:", TINY_GRID.split("experiments:\n")[1].split("tables:")[0] + "tables:"),
        ["duplicate experiment name 'tiny'"],
        ("name: tiny", 2),
    ),
    ("no experiments", "experiments: []\n", ["non-empty list of experiments"], "experiments"),
    (
        "table names a missing experiment",
        TINY_GRID.replace("experiment: tiny, where: {train.lr: 1.0e-3}", "experiment: tinyy, where: {train.lr: 1.0e-3}"),
        ["missing experiment", "tinyy", "did you mean 'tiny'"],
        "tinyy",
    ),
    (
        "table names a missing axis value",
        TINY_GRID.replace("where: {train.lr: 1.0e-3}", "where: {train.lr: 0.5}"),
        ["no value 0.5"],
        "0.5}",
    ),
    ("table names a missing axis", TINY_GRID.replace("where: {train.lr: 1.0e-3}", "where: {train.wd: 0.5}"), ["no axis"], "train.wd"),
    (
        "profile with an unknown key",
        TINY_GRID.replace("quick: {seeds: [0], epochs: 1}", "quick: {seeds: [0], epoks: 1}"),
        ["unknown key 'epoks'"],
        "epoks",
    ),
    (
        "duplicate key",
        TINY_GRID.replace("  epochs: 1\n  image", "  epochs: 1\n  epochs: 2\n  image", 1),
        ["duplicate key 'epochs'"],
        "epochs: 2",
    ),
    (
        "unknown axis",
        TINY_GRID.replace("train.lr: [3.0e-3, 1.0e-3]", "train.lrs: [3.0e-3, 1.0e-3]"),
        ["unknown axis 'train.lrs'"],
        "train.lrs",
    ),
    (
        "too many layers",
        TINY_GRID.replace('"tlbench.tiny:small_cnn"', "resnet18").replace("freeze: none,", "freeze: {last: 12},"),
        ["at most 9", "resnet18"],
        "- name: tiny",
    ),
    (
        "image too small for the arch",
        TINY_GRID.replace('"tlbench.tiny:small_cnn"', "alexnet"),
        ["image_size", "at least 63"],
        "- name: tiny",
    ),
    ("bce on many classes", TINY_GRID.replace("freeze: none,", "loss: bce, freeze: none,"), ["bce needs a binary target"], "- name: tiny"),
]


@pytest.mark.parametrize("case, text, words, line", BAD_GRIDS, ids=[c[0] for c in BAD_GRIDS])
def test_bad_grid_is_refused_with_file_line_and_key(write_grid, case, text, words, line):
    path = write_grid(text)
    with pytest.raises(GridError) as caught:
        Grid.load(path)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    for word in words:
        assert word in message, f"{case}: {word!r} not in {message!r}"
    if line is not None:
        expected = line_of(textwrap.dedent(text), *(line if isinstance(line, tuple) else (line, 1)))
        assert caught.value.line == expected, f"{case}: line {caught.value.line}, expected {expected}: {message}"


def line_of(text: str, needle: str, nth: int) -> int:
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[nth - 1]


@pytest.mark.slow
def test_cli_exits_2_and_writes_nothing_for_a_bad_grid(write_grid, tmp_path):
    path = write_grid(TINY_GRID.replace("batch_size: 16", "batch_size: -3"))
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "tlbench.grid", "run", "--grid", str(path), "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "batch_size" in proc.stderr and str(path) in proc.stderr
    assert not results.exists()


@pytest.mark.parametrize("args, words", [
    (["--set", "train.lrr=0.1"], ["unknown key 'train.lrr'", "did you mean 'train.lr'"]),
    (["--set", "train.lr=-1"], ["train.lr", "> 0"]),
    (["--set", "epochs"], ["KEY=VALUE"]),
    (["--profile", "quik"], ["unknown profile", "did you mean 'quick'"]),
    (["--only", "nothing*"], ["matches no experiment"]),
])  # fmt: skip
@pytest.mark.slow
def test_cli_refuses_bad_selection_flags(tiny_grid, args, words):
    proc = subprocess.run(
        [sys.executable, "-m", "tlbench.grid", "list", "--grid", str(tiny_grid), *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    for word in words:
        assert word in proc.stderr


def test_expansion_is_axes_times_seeds(tiny_grid):
    trials = Grid.load(tiny_grid).expand()
    assert len(trials) == 2 * 2
    assert {(t.axes["train.lr"], t.seed) for t in trials} == {(3e-3, 0), (3e-3, 1), (1e-3, 0), (1e-3, 1)}
    assert len({t.trial_id for t in trials}) == 4


def test_precedence_defaults_experiment_axis_profile_set(write_grid):
    text = """
    defaults: {epochs: 5, image_size: 40, seeds: [0], train: {batch_size: 8, weight_decay: 0.1, momentum: 0.5}}
    experiments:
      - name: e
        source: {report: r.txt}
        dataset: {name: synthetic, n_classes: 2}
        model: {arch: "tlbench.tiny:small_cnn", weights: none}
        epochs: 4
        train: {batch_size: 9, weight_decay: 0.2, lr: 0.5}
        axes: {train.weight_decay: [0.3], train.lr: [0.6]}
    profiles:
      p: {train: {lr: 0.7}, seeds: [3]}
    """
    grid = Grid.load(write_grid(text))
    (trial,) = grid.expand(profile="p", overrides=["seeds=[4]", "image_size=48"])
    config = trial.config
    assert config["train"]["momentum"] == 0.5  # defaults
    assert config["train"]["batch_size"] == 9 and config["epochs"] == 4  # experiment beats defaults
    assert config["train"]["weight_decay"] == 0.3  # axis beats experiment
    assert config["train"]["lr"] == 0.7  # profile beats axis
    assert config["image_size"] == 48 and trial.seed == 4  # --set beats profile
    (plain,) = grid.expand()
    assert plain.config["train"]["lr"] == 0.6 and plain.config["image_size"] == 40 and plain.seed == 0


def test_trial_id_is_the_hash_of_the_config_so_shared_configs_run_once(write_grid):
    one = TINY_GRID.split("tables:")[0]
    second = one.split("experiments:\n")[1].replace("name: tiny", "name: tiny-again")
    grid = Grid.load(write_grid(one + second))
    trials = grid.expand()
    assert len(trials) == 4  # the second experiment resolves to the same configs
    assert all(t.experiments == ("tiny", "tiny-again") for t in trials)
    again = Grid.load(write_grid(one + second, "copy.yaml")).expand()
    assert [t.trial_id for t in trials] == [t.trial_id for t in again]


def test_002_last_one_layer_and_head_only_are_one_trial(write_grid):
    text = """
    experiments:
      - name: e
        source: {report: r.txt}
        dataset: {name: oxford_pets}
        model: {arch: resnet18}
        axes: {train.freeze: [head, {last: 0}, {last: 1}, {last: 2}]}
    """
    trials = Grid.load(write_grid(text)).expand()
    assert len(trials) == 2
    assert trials[1].config["train"]["freeze"] == {"last": 2}


@pytest.mark.slow
def test_list_json_reports_status_from_results(tiny_grid, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tlbench.grid", "list", "--grid", str(tiny_grid), "--json", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 4
    assert {"trial_id", "experiment", "report", "seed", "status"} <= set(rows[0])
    assert {r["status"] for r in rows} == {"pending"} and rows[0]["report"] == "test.txt"
