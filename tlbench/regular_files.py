"""Opening files others may have planted: only regular files, so nothing tlbench reads can hang it.

Opening a FIFO for reading blocks until someone writes to it, and reading a
device or a folder never ends or fails oddly. `open_regular` opens without
blocking (O_NONBLOCK: a FIFO opens at once), checks on the open descriptor
that it is a regular file (no race between a check and the open), and only
then hands back an ordinary blocking file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO


class NotRegularFile(ValueError):
    """The path names a FIFO, a device, a socket or a folder: not read."""


def open_regular(path: str | Path) -> BinaryIO:
    """A regular file opened for binary reading; raises NotRegularFile for anything else (OSError where it cannot open)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"{path} is not a regular file ({_kind(mode)})")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_text(path: str | Path) -> str:
    """A regular file's text (UTF-8); raises NotRegularFile for anything else, as `open_regular`."""
    with open_regular(path) as fh:
        return fh.read().decode("utf-8")


def is_regular(path: str | Path) -> bool:
    """Whether a path is itself a regular file (a symlink is not followed): for skipping what a listing found."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISDIR: "a folder",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a device",
        stat.S_ISBLK: "a device",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a plain file")


def folder_problem(path: str | Path) -> str | None:
    """Why `path` cannot be used as a folder (a file, a FIFO, a dangling link is there, or above it), or None.

    A path not there yet is fine where its nearest existing ancestor is a folder (it can be created)."""
    path = Path(path)
    for place in (path, *path.parents):
        try:
            mode = place.stat().st_mode  # follows links: a link to a folder is a folder
        except (FileNotFoundError, NotADirectoryError):  # not there (or below a file): its parent tells
            if place.is_symlink():
                return f"{place} is a link to nothing, not a folder"
            continue
        except OSError as exc:
            return f"{place} cannot be read as a folder ({exc.strerror or exc})"
        if stat.S_ISDIR(mode):
            return None
        return f"{place} is {_kind(mode) if not stat.S_ISREG(mode) else 'a file'}, not a folder"
    return None
