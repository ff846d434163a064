"""Provenance: the commit and dirty flag of the grid's repository, the worker's software and machine, in
every row and in the report's header; a table whose numbers mix commits or machines says so."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import re
import subprocess

import pytest
from helpers import TINY_GRID, fake_row

from tlbench.grid import Grid
from tlbench.report import build as report
from tlbench.results import columns, provenance
from tlbench.results.store import TRIAL_SCHEMA, Store
from tlbench.trial.execute import trial_row


def git(folder, *args):
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    folder = tmp_path / "repo"
    folder.mkdir()
    git(folder, "init", "-q")
    git(folder, "config", "user.email", "t@example.com")
    git(folder, "config", "user.name", "t")
    (folder / "grid.yaml").write_text(TINY_GRID)
    git(folder, "add", "grid.yaml")
    git(folder, "commit", "-q", "-m", "grid")
    return folder


def test_the_commit_and_dirty_flag_of_the_repository_holding_the_grid(repo):
    state = provenance.repository_state(repo / "grid.yaml")
    assert state == {"git_commit": git(repo, "rev-parse", "HEAD"), "git_dirty": False}
    (repo / "results").mkdir()  # untracked output beside the grid: the code is still the commit's
    (repo / "results" / "x.parquet").write_text("x")
    assert provenance.repository_state(repo / "grid.yaml")["git_dirty"] is False
    (repo / "grid.yaml").write_text(TINY_GRID + "\n# edited\n")
    assert provenance.repository_state(repo / "grid.yaml")["git_dirty"] is True


def test_a_grid_outside_any_repository_has_no_commit(tmp_path):
    (tmp_path / "grid.yaml").write_text(TINY_GRID)
    assert provenance.repository_state(tmp_path / "grid.yaml") == {"git_commit": None, "git_dirty": None}


def test_reading_the_repository_runs_none_of_its_configured_commands(repo, tmp_path):
    """A repository's config can name commands that `git status` runs (core.fsmonitor): tlbench reads, never runs them."""
    marker = tmp_path / "ran"
    git(repo, "config", "core.fsmonitor", f"touch {marker}; false")
    (repo / "grid.yaml").write_text(TINY_GRID + "\n# edited\n")
    assert provenance.repository_state(repo / "grid.yaml")["git_dirty"] is True
    assert not marker.exists()
    subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True)  # plain git does run it
    assert marker.exists()


def test_the_environment_names_this_process_software_and_machine():
    provenance.environment.cache_clear()  # cached per process: another test may have changed sys.path since
    env = provenance.environment()
    assert env["python_version"] == platform.python_version()
    assert env["numpy_version"] == importlib.metadata.version("numpy")
    assert env["pandas_version"] == importlib.metadata.version("pandas")
    assert env["ray_version"] == importlib.metadata.version("ray")
    assert env["accelerator"] and env["accelerator"] == provenance.accelerator()
    assert re.fullmatch(r"[0-9a-f]{64}", env["packages_sha256"])
    listed = sorted({f"{d.metadata['Name'].lower().replace('_', '-')}=={d.version}" for d in importlib.metadata.distributions()})
    assert env["packages_sha256"] == hashlib.sha256("\n".join(listed).encode()).hexdigest()


def test_every_row_carries_the_provenance_columns(write_grid, tmp_path):
    spec = Grid.load(write_grid(TINY_GRID)).expand()[0]
    row = trial_row(spec, "ok", {"test_acc": 0.5}, {"profile": "full", "git_commit": "a" * 40, "git_dirty": True})
    store = Store(tmp_path)
    store.write(row, [])
    read = store.read()[0].to_pylist()[0]
    for column in (c.name for c in columns.TRIAL_COLUMNS if c.source == "provenance"):
        assert column in TRIAL_SCHEMA.names and column in row
    assert (read["git_commit"], read["git_dirty"]) == ("a" * 40, True)
    assert read["python_version"] == platform.python_version() and read["accelerator"] == provenance.accelerator()
    assert read["packages_sha256"] == provenance.packages_sha256()


def _results(write_grid, tmp_path, commits, machines):
    """The tiny grid's four trials written with the given commit and machine per trial (in expansion order)."""
    grid_path = write_grid(TINY_GRID)
    grid = Grid.load(grid_path)
    store = Store(tmp_path / "results")
    for spec, commit, machine in zip(grid.expand(), commits, machines):
        row = fake_row(spec, test_acc=0.8 + 0.01 * spec.seed)
        row.update(git_commit=commit, git_dirty=False, accelerator=machine)
        store.write(row, [])
    return grid, tmp_path / "results"


def test_a_table_from_one_commit_and_machine_names_them_and_warns_of_nothing(write_grid, tmp_path):
    grid, results = _results(write_grid, tmp_path, ["c" * 40] * 4, ["GPU X"] * 4)
    report.write_report(grid, results, tmp_path / "out", None)
    page = (tmp_path / "out" / "index.md").read_text()
    assert "Code: cccccccccccc (4 trials)." in page and "Machines: GPU X (4 trials)" in page
    assert "Warning: its numbers come from" not in page


@pytest.mark.slow
def test_a_table_mixing_commits_and_machines_warns_and_says_which(write_grid, tmp_path):
    grid, results = _results(write_grid, tmp_path, ["a" * 40, "a" * 40, "b" * 40, "a" * 40], ["GPU X", "GPU X", "GPU X", "CPU Y"])
    summary = report.write_report(grid, results, tmp_path / "out", None)
    page = (tmp_path / "out" / "index.md").read_text()
    assert "Code: aaaaaaaaaaaa (3 trials); bbbbbbbbbbbb (1 trial)." in page
    assert "Warning: its numbers come from 2 commits: aaaaaaaaaaaa; bbbbbbbbbbbb." in page
    assert "Warning: its numbers come from 2 machines: CPU Y; GPU X." in page
    assert any("t-tiny" in notice and "several commits or machines" in notice for notice in summary["notices"])
    assert "its numbers come from 2 commits" in (tmp_path / "out" / "index.html").read_text()
