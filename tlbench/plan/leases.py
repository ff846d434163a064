"""Trial leases: which driver runs which trial, so two drivers on one results folder split the work.

(Each lease is a "claim" file under results/claims/, a name kept because folders already hold them;
the report's claims, tested on seeds, are another thing: tlbench/report/claims.py.)

    <results>/claims/<trial_id>.lock   {"host", "pid", "started", "driver"}

A driver takes a trial's claim (a file created with O_CREAT|O_EXCL, atomic on
a local disk and on NFSv3+) just before it hands the trial to Ray, and frees
it once the trial's row is written or when it exits. A claim whose driver is
gone is stale and taken over:
- same host: its pid is not running, or runs a process started at another
  time (the pid was reused); a claim of pid 1 or without its start time is
  judged by its age, as below;
- a claim whose pid is no process id (not an integer, below 1, past a pid_t)
  was not written by a driver: stale at once, with a warning naming its file;
- another host: its file was not touched for `STALE_AFTER_S`; a live driver
  touches every claim it holds each `HEARTBEAT_S` (a thread), so only a dead
  driver, or a host whose clock is that far off, leaves one that old.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from tlbench.results.regular_files import read_regular_text

HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0


def process_start(pid: int) -> str | None:
    """When a process started (clock ticks since boot, from /proc), to tell a reused pid; None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, after the command name (which may hold spaces)


MAX_PID = 2**31 - 1  # a pid_t: os.kill raises OverflowError past it


def _pid_shaped(pid: Any) -> bool:
    """Whether a claim's pid is one a process can have (0 and negatives would signal a whole process group)."""
    return type(pid) is int and 1 <= pid <= MAX_PID


def pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


class Leases:
    """The leases (claim files) of one driver on one results folder."""

    def __init__(self, results: Path, heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S):
        self.folder = Path(results) / "claims"
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "started": process_start(os.getpid()), "driver": uuid.uuid4().hex}
        self.held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks and searcher with the experiment's state: without the lock and the thread."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_stop", "_beat")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock, self._stop, self._beat = threading.Lock(), threading.Event(), None

    def path(self, trial_id: str) -> Path:
        return self.folder / f"{trial_id}.lock"

    def take(self, trial_id: str) -> bool:
        """Claim a trial for this driver; False where a live driver holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(trial_id)
        for _ in range(3):  # a stale claim moved aside, then the race for the free name again
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder(trial_id)
                if holder is not None and not self.stale(holder, path):
                    return False
                self._remove_stale(path, holder)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(self.me, fh)
            with self._lock:
                self.held.add(trial_id)
            self._start_heartbeat()
            return True
        return False

    def holder(self, trial_id: str) -> dict[str, Any] | None:
        """Who holds a claim (None: no claim, or one unreadable, e.g. being written this instant)."""
        try:
            holder = json.loads(read_regular_text(self.path(trial_id)))  # a planted FIFO must not block the driver
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def stale(self, holder: dict[str, Any] | None, path: Path) -> bool:
        """Whether the driver behind a claim is gone (see the module's rules)."""
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            return False  # gone already: the next O_EXCL decides
        if holder is None:  # unreadable: only its age tells (a claim is written the moment it is created)
            return age > self.stale_after_s
        pid = holder.get("pid")
        if not _pid_shaped(pid):  # no driver wrote it (a driver writes its own pid): nothing to wait for
            _warn(f"warning: claim file {path} is malformed (pid {pid!r} is not a process id): taken as stale")
            return True
        # pid 1 (init, or a driver that is a container's first process) always runs: only the age tells
        if holder.get("host") == self.me["host"] and pid > 1:
            if not pid_running(pid):
                return True
            started = process_start(pid)
            if started is not None and holder.get("started") is not None:  # without both, a reused pid looks alive
                return started != holder["started"]
        return age > self.stale_after_s

    def live(self) -> dict[str, dict[str, Any]]:
        """trial_id -> holder of every claim a live driver holds now: the trials being run (or about to start)."""
        try:
            paths = [p for p in self.folder.glob("*.lock") if p.is_file()]
        except OSError:
            return {}
        found = {}
        for path in paths:
            holder = self.holder(path.stem)
            if holder is not None and not self.stale(holder, path):
                found[path.stem] = holder
        return found

    def _remove_stale(self, path: Path, judged: dict[str, Any] | None) -> None:
        """Move a stale claim aside; put it back if, in between, another driver had replaced it with a live one."""
        aside = path.with_name(f".stale-{path.stem}-{uuid.uuid4().hex[:8]}")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            return
        try:
            moved = json.loads(read_regular_text(aside))
        except (OSError, ValueError):
            moved = None
        if moved != judged:  # a fresh claim, taken after we looked: restore it unless the name is taken again
            try:
                os.link(aside, path)
            except OSError:
                pass
        aside.unlink(missing_ok=True)

    def release(self, trial_id: str) -> None:
        """Free a claim this driver holds (never another driver's).

        Never raises: a claim that cannot be removed (a read-only disk) goes stale once this driver exits."""
        with self._lock:
            if trial_id not in self.held:
                return
            self.held.discard(trial_id)
        holder = self.holder(trial_id)
        if holder is None or holder.get("driver") == self.me["driver"]:
            try:
                self.path(trial_id).unlink(missing_ok=True)
            except OSError as exc:
                _warn(
                    f"warning: cannot free the claim {self.path(trial_id)} ({exc.strerror or exc}); "
                    f"another driver takes it over once this one exits"
                )

    def release_all(self) -> None:
        self._stop.set()
        for trial_id in list(self.held):
            self.release(trial_id)

    def _start_heartbeat(self) -> None:
        if self._beat is None:
            self._beat = threading.Thread(target=self._heartbeat, name="tlbench-claims", daemon=True)
            self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._lock:
                held = list(self.held)
            for trial_id in held:
                try:
                    os.utime(self.path(trial_id), follow_symlinks=False)  # a link swapped in: never touch its target
                except OSError:
                    pass


def _warn(message: str) -> None:
    """A message on stderr that cannot itself raise (a closed stderr must not end the grid inside Tune)."""
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
