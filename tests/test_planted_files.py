"""Files a hostile neighbour or a second driver leaves in results/ or --storage: never a hang, a crash or a write elsewhere."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from helpers import TINY_GRID
from test_store import fake_row

from tlbench import checkpoint
from tlbench.spec import Grid
from tlbench.store import Store
from tlbench.trial_claims import Claims


@pytest.fixture
def trials(write_grid):
    return Grid.load(write_grid(TINY_GRID)).expand()


def finishes(call, *args, timeout_s: float = 10.0):
    """call(*args) in a thread: its result, or a failure (not a hang of the whole suite) where it blocks."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = call(*args)
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"{getattr(call, '__name__', call)} blocked on a FIFO"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def unblock(fifo: Path) -> None:
    """Open a FIFO's write end, so a reader the code under test left blocked on it returns (the suite can exit)."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


# -- 1: a FIFO is never read -----------------------------------------------------------


def test_a_fifo_kept_row_is_reported_not_read(tmp_path, trials):
    store = Store(tmp_path)
    store.trials_dir.mkdir(parents=True)
    fifo = store.trials_dir / f".unwritten-{trials[0].trial_id}.json"
    os.mkfifo(fifo)
    try:
        written, failed = finishes(store.write_unwritten)
    finally:
        unblock(fifo)
    assert written == [] and [(p, "not a regular file" in why) for p, why in failed] == [(fifo, True)]


def test_a_fifo_claim_is_no_holder_and_does_not_block_taking(tmp_path):
    claims = Claims(tmp_path)
    claims.folder.mkdir(parents=True)
    os.mkfifo(claims.path("t1"))
    try:
        assert finishes(claims.holder, "t1") is None
        assert finishes(claims.take, "t1") is True  # no holder to wait for: moved aside without being read, and taken
    finally:
        unblock(claims.path("t1"))
    assert claims.holder("t1")["driver"] == claims.me["driver"]
    claims.release_all()


def test_a_fifo_state_file_is_ignored_by_the_reader_and_the_driver(tmp_path, capsys):
    from tlbench.scheduler import STATE_FILE, earlier_checkpoints

    folder = tmp_path / "tlbench-1" / "0123456789abcdef" / "checkpoint_000001"
    folder.mkdir(parents=True)
    os.mkfifo(folder / STATE_FILE)
    try:
        assert finishes(checkpoint.read, folder / STATE_FILE) is None
        assert "ignoring unreadable checkpoint" in capsys.readouterr().err
        assert finishes(earlier_checkpoints, str(tmp_path)) == {}
    finally:
        unblock(folder / STATE_FILE)
    assert "not a regular file" in capsys.readouterr().err
