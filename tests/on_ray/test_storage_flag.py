"""`--storage`: a relative path, an unknown scheme or a folder that cannot be created ends `grid run` with
exit 2 before Ray starts, naming the accepted forms or the path; never a traceback after the grid started."""

from __future__ import annotations

import pytest

from tlbench.grid import cli as grid_cli
from tlbench.on_ray import driver as scheduler
from tlbench.on_ray import storage


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the test if the run got as far as Ray."""

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started: the storage should have been refused before")

    monkeypatch.setattr(scheduler, "run", refuse)


def run(tiny_grid, tmp_path, value: str) -> list[str]:
    return ["run", "--grid", str(tiny_grid), "--results", str(tmp_path / "r"), "--data", str(tmp_path / "d"), "--storage", value]


@pytest.mark.parametrize(
    "value, says",
    [
        ("ckpts", "'ckpts' is a relative path"),
        ("ftp://host/ckpts", "unknown scheme 'ftp://'"),
        ("file://ckpts", "'file://ckpts' is a relative path"),
    ],
)
def test_a_relative_path_or_unknown_scheme_exits_2_before_ray_with_the_accepted_forms(tiny_grid, tmp_path, capsys, no_ray, value, says):
    assert grid_cli.main(run(tiny_grid, tmp_path, value)) == 2
    err = capsys.readouterr().err
    assert says in err and "--storage" in err and "absolute path" in err and "s3://bucket/path" in err, err
    assert not (tmp_path / "ckpts").exists()


def test_a_storage_folder_that_cannot_be_created_exits_2_naming_it(tiny_grid, tmp_path, capsys, no_ray):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert grid_cli.main(run(tiny_grid, tmp_path, str(blocker / "tlbench"))) == 2
    err = capsys.readouterr().err
    assert f"cannot create {blocker / 'tlbench'}" in err and "Traceback" not in err, err


@pytest.mark.parametrize("value", ["s3://bucket/tlbench", "gs://bucket/x", "file:///tmp/x", "/abs/path", "~/tlbench-ckpts"])
def test_the_accepted_forms_pass(monkeypatch, tmp_path, value):
    monkeypatch.setenv("HOME", str(tmp_path))
    if value.startswith(("/", "file://")):
        value = value.replace("/abs/path", str(tmp_path / "abs")).replace("/tmp/x", str(tmp_path / "x"))
    storage.check_form(value)
    where = storage.local_path(value)
    assert where is None or where.is_dir()


def test_the_default_and_a_home_path_become_absolute(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert storage.location(None, tmp_path / "r") == str((tmp_path / "r" / ".tune").resolve())
    assert storage.location("~/c", tmp_path) == str(tmp_path / "c")
    assert storage.location("s3://b/p", tmp_path) == "s3://b/p"
