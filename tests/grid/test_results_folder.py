"""`--results` naming something that is not a folder: exit 2 with a message naming it, for every command, before
anything runs (read as empty, `list` called every trial pending and `report` raised)."""

from __future__ import annotations

import os

import pytest

from tlbench.grid import cli
from tlbench.report import build as report


def _file(results):
    results.write_text("not a folder")


def _fifo(results):
    os.mkfifo(results)


def _file_in_place_of_trials(results):
    results.mkdir()
    (results / "trials").write_text("not a folder")


def _below_a_file(results):
    results.parent.joinpath("file").write_text("x")
    return results.parent / "file" / "results"


PLANTS = {"a file": _file, "a FIFO": _fifo, "a file as trials/": _file_in_place_of_trials, "below a file": _below_a_file}
COMMANDS = [["list"], ["plan"], ["status"], ["run", "--dry-run"], ["run"]]


def _run(command, grid, results, tmp_path):
    if command == ["report"]:
        return report.main(["--grid", str(grid), "--results", str(results), "--out", str(tmp_path / "out")])
    return cli.main([*command, "--grid", str(grid), "--results", str(results)])


@pytest.mark.parametrize("plant", PLANTS)
@pytest.mark.parametrize("command", [*COMMANDS, ["report"]], ids=" ".join)
def test_results_that_are_not_a_folder_exit_2_naming_it(tiny_grid, tmp_path, capsys, plant, command):
    results = tmp_path / "results"
    results = PLANTS[plant](results) or results
    assert _run(command, tiny_grid, results, tmp_path) == 2
    out, err = capsys.readouterr()
    assert "error: --results: " in err and "not a folder" in err and "Traceback" not in err and out == ""
    assert not (tmp_path / "out").exists()


def test_a_link_to_a_results_folder_is_one(tiny_grid, tmp_path, capsys):
    (tmp_path / "real").mkdir()
    (tmp_path / "results").symlink_to(tmp_path / "real")
    assert cli.main(["list", "--grid", str(tiny_grid), "--results", str(tmp_path / "results")]) == 0
    assert "pending" in capsys.readouterr().out
