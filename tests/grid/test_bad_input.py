"""Hostile or careless input to the grid and the report: refused with exit 2 and a message, before Ray starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tracemalloc

import pytest
from helpers import TINY_GRID

from tlbench.grid import Grid, GridError
from tlbench.grid import cli as grid_cli
from tlbench.report import build as report

ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("where", ["top level", "in a table's notes"])
def test_an_alias_bomb_is_refused_in_bounded_time_and_memory(write_grid, where):
    path = write_grid(ALIAS_BOMB if where == "top level" else _bomb_in_notes())
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(GridError, match="expands to more than"):
        Grid.load(path)
    seconds, (_, peak) = time.perf_counter() - start, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seconds < 10 and peak < 100e6, (seconds, peak)  # expanded, it is 9**9 strings: gigabytes


def _bomb_in_notes() -> str:
    """TINY_GRID with the bomb's nine levels as a table's notes, a value no schema check looks into."""
    levels = [line.split(": ", 1)[1] for line in ALIAS_BOMB.splitlines()]
    notes = "\n".join(f"      - {level}" for level in levels)
    return TINY_GRID.replace("    title: tiny\n", "    title: tiny\n    notes:\n" + notes + "\n")


def test_aliases_are_fine_and_keep_their_lines(write_grid):
    text = TINY_GRID.replace("  quick: {seeds: [0], epochs: 1}", "  quick: &q {seeds: [0], epochs: 1}\n  again: *q")
    loaded = Grid.load(write_grid(text))
    assert loaded.profiles["again"] == loaded.profiles["quick"]
    assert loaded.doc.line(("profiles", "again")) == 23 and loaded.doc.line(("profiles", "quick", "epochs")) == 22


@pytest.mark.parametrize("text", ["defaults: &x\n  foo: *x\n", "a: &x [1, *x]\n"])
@pytest.mark.slow
def test_a_self_referencing_anchor_is_refused_with_exit_2(write_grid, text):
    run = cli("tlbench.grid", "list", "--grid", str(write_grid(text)))
    assert run.returncode == 2 and "a cycle" in run.stderr and "Traceback" not in run.stderr, run.stderr


@pytest.mark.slow
def test_deep_nesting_is_refused_not_a_recursion_traceback(write_grid):
    run = cli("tlbench.grid", "list", "--grid", str(write_grid("a: " + "[" * 5000 + "]" * 5000 + "\n")))
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr


@pytest.mark.slow
def test_a_grid_file_not_in_utf8_is_refused_with_its_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(TINY_GRID.replace("test.txt", "caf\xe9.txt").encode("latin-1"))
    run = cli("tlbench.grid", "list", "--grid", str(path))
    assert run.returncode == 2 and "not UTF-8" in run.stderr and f"{path}:8" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert report.main(["--grid", str(path), "--results", str(tmp_path / "r")]) == 2


@pytest.mark.parametrize("key, value, expected", [
    ("dataset.priors", "[.nan, .nan, .nan]", "finite"),
    ("train.weight_decay", ".inf", "finite"),
    ("train.lr", ".nan", "finite"),
    ("train.probe_lrs", "[1.0e-3, .inf]", "finite"),
    ("train.momentum", "-.inf", "finite"),
    ("epochs", "99999999999999999999", "int64"),
    ("seeds", "[4294967296]", "4294967295"),
    ("seeds", "[-1]", "4294967295"),
])  # fmt: skip
def test_values_that_would_give_wrong_numbers_are_refused(tiny_grid, key, value, expected):
    with pytest.raises(GridError, match=expected):
        Grid.load(tiny_grid).expand(overrides=[f"{key}={value}"])


def test_nan_in_the_grid_file_is_refused_with_its_line(write_grid):
    path = write_grid(TINY_GRID.replace("n_test: 60}", "n_test: 60, priors: [.nan, .nan, .nan]}"))
    with pytest.raises(GridError, match=r"grid.yaml:9: experiments\[0\].dataset.priors: got \[nan, nan, nan\], expected a list of finite"):
        Grid.load(path)


def test_the_largest_seed_is_accepted(tiny_grid):
    assert [t.seed for t in Grid.load(tiny_grid).expand(overrides=["seeds=[4294967295]"])] == [4294967295] * 2


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--cpus-per-trial", "-1"),
        ("--cpus-per-trial", "0"),
        ("--gpus-per-trial", "-0.5"),
        ("--gpus-per-trial", "nan"),
        ("--max-failures", "-3"),
    ],
)
def test_resource_flags_out_of_range_exit_2_before_anything_runs(tiny_grid, tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_:
        grid_cli.main(["run", "--grid", str(tiny_grid), "--results", str(tmp_path / "r"), flag, value])
    assert exit_.value.code == 2 and f"argument {flag}: expected" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_report_with_an_unknown_profile_exits_2_naming_the_profiles(tiny_grid, tmp_path, capsys):
    assert report.main(["--grid", str(tiny_grid), "--results", str(tmp_path / "r"), "--profile", "nope"]) == 2
    assert "unknown profile: got 'nope', expected one of full, quick" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_listing_into_a_closed_pipe_ends_quietly(write_grid):
    many = write_grid(TINY_GRID.replace("seeds: [0, 1]", f"seeds: {list(range(1500))}"))
    lister = subprocess.Popen(
        [sys.executable, "-m", "tlbench.grid", "list", "--json", "--grid", str(many)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    first = lister.stdout.readline()
    lister.stdout.close()  # as `| head -1` does: 3000 lines no longer fit the pipe
    _, err = lister.communicate(timeout=60)
    assert first.startswith(b'{"trial_id"') and lister.returncode == 0 and err == b"", err.decode()


@pytest.mark.slow
def test_report_warns_of_a_missing_results_folder_and_of_another_grid_files_results(tiny_grid, write_grid, tmp_path, capsys):
    from helpers import fake_row

    from tlbench.results.store import Store

    assert report.main(["--grid", str(tiny_grid), "--results", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out1")]) == 0
    assert f"results folder {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err
    other = Grid.load(write_grid(TINY_GRID.replace("title: tiny", "title: another tiny"), name="other.yaml"))
    results = tmp_path / "results"
    for spec in other.expand():
        row = fake_row(spec)
        row["grid_sha256"] = other.sha256
        Store(results).write(row, [])
    assert report.main(["--grid", str(tiny_grid), "--results", str(results), "--out", str(tmp_path / "out2")]) == 0
    err = capsys.readouterr().err
    assert f"4 of 4 results were run from another grid file (grid_sha256 {other.sha256}" in err
    assert other.sha256 != Grid.load(tiny_grid).sha256
    assert os.path.exists(tmp_path / "out2" / "index.md")
