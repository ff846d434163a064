"""A grid file is code, results and data are not: a custom arch's module (`model.arch: "module:function"`) is imported
only by `grid run` (its preflight, before any trial starts), never by the commands that only read."""

from __future__ import annotations

import sys
import uuid

import pytest
from helpers import TINY_GRID

from tlbench.grid import Grid, GridError, cli
from tlbench.report import build as report


@pytest.fixture
def evil_grid(write_grid, tmp_path, monkeypatch):
    """(grid file naming `<evil_mod>:build`, marker path): the module writes the marker when imported."""
    name = f"evil_mod_{uuid.uuid4().hex[:8]}"  # a fresh name: an import cached by an earlier test would hide this one's
    marker = tmp_path / "imported"
    (tmp_path / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "from tlbench.tiny import small_cnn\ndef build(weights):\n    return small_cnn(weights)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # as the working folder is for `python -m`
    yield write_grid(TINY_GRID.replace("tlbench.tiny:small_cnn", f"{name}:build")), marker
    sys.modules.pop(name, None)


@pytest.mark.parametrize("command", [["list"], ["list", "--json"], ["plan"], ["status"], ["report"]], ids=" ".join)
def test_reading_commands_never_import_a_custom_arch(evil_grid, tmp_path, command):
    grid_file, marker = evil_grid
    results = tmp_path / "results"
    if command == ["report"]:
        assert report.main(["--grid", str(grid_file), "--results", str(results), "--out", str(tmp_path / "out")]) == 0
    else:
        assert cli.main([*command, "--grid", str(grid_file), "--results", str(results)]) == 0
    assert not marker.exists()


def test_loading_a_grid_imports_no_custom_arch(evil_grid):
    grid_file, marker = evil_grid
    Grid.load(grid_file).expand()
    assert not marker.exists()


def test_run_imports_a_custom_arch_before_any_trial(evil_grid, tmp_path, capsys):
    grid_file, marker = evil_grid
    assert cli.main(["run", "--dry-run", "--grid", str(grid_file), "--results", str(tmp_path / "results")]) == 0
    assert marker.read_text() == "ran" and "would run" in capsys.readouterr().out


@pytest.mark.parametrize("arch, expected", [
    ("no_such_pkg.models:net", r"an importable module: importing no_such_pkg.models failed \(ModuleNotFoundError"),
    ("tlbench.tiny:no_such_function", "a function no_such_function in tlbench.tiny"),
])  # fmt: skip
def test_a_custom_arch_that_does_not_import_stops_run_with_exit_2(write_grid, tmp_path, capsys, arch, expected):
    grid_file = write_grid(TINY_GRID.replace("tlbench.tiny:small_cnn", arch))
    assert cli.main(["list", "--grid", str(grid_file), "--results", str(tmp_path / "results")]) == 0  # its shape is fine
    capsys.readouterr()
    assert cli.main(["run", "--grid", str(grid_file), "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert f"experiment 'tiny': model.arch: got '{arch}', expected" in err and err.count("\n") == 1
    assert __import__("re").search(expected, err)
    assert not (tmp_path / "results" / "trials").exists() or not any((tmp_path / "results" / "trials").iterdir())


@pytest.mark.parametrize("arch", ["my-models:build", "models:", "a..b:build", "models:build(1)"])
def test_a_custom_arch_of_the_wrong_shape_is_refused_at_load(write_grid, arch):
    with pytest.raises(GridError, match=r"grid.yaml:10: experiments\[0\].model.arch: got .*'package.module:function'"):
        Grid.load(write_grid(TINY_GRID.replace("tlbench.tiny:small_cnn", arch)))
