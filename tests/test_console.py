"""The `tlbench` console script: each word is the `python -m` command it names, with the same output and status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from tlbench import console

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    # `python -c` through the entry point the console script calls, so the test needs no installed script.
    code = "import sys; from tlbench.console import entry; sys.argv[0] = 'tlbench'; entry()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_pyproject_installs_the_script_at_its_entry_point():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"tlbench": "tlbench.console:entry"}


def test_list_is_grid_list_line_for_line(tiny_grid):
    ours = run("list", "--grid", str(tiny_grid))
    theirs = subprocess.run([sys.executable, "-m", "tlbench.grid", "list", "--grid", str(tiny_grid)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)  # fmt: skip
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout and len(ours.stdout.splitlines()) == 4  # TINY_GRID: 2 lrs x 2 seeds


def test_a_grid_error_keeps_its_message_and_exit_2(write_grid):
    bad = write_grid("defaults: {epochs: -1}\nexperiments: []\n")
    proc = run("status", "--grid", str(bad))
    assert proc.returncode == 2
    assert str(bad) in proc.stderr


@pytest.mark.parametrize("word, prog", [("report", "python -m tlbench.report"), ("bench", "python -m tlbench.bench"),
                                        ("plan", "python -m tlbench.grid")])  # fmt: skip
def test_each_word_reaches_its_command(word, prog):
    proc = run(word, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: {prog}")


def test_no_word_or_an_unknown_one_is_a_usage_error():
    assert console.main([]) == 2
    proc = run("train")
    assert proc.returncode == 2 and "unknown command 'train'" in proc.stderr and "usage: tlbench" in proc.stderr
