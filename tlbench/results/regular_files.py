"""Opening files others may have planted: only regular files, so nothing tlbench reads can hang it, and
never through a link, so nothing tlbench writes lands elsewhere.

Opening a FIFO for reading blocks until someone writes to it, and reading a
device or a folder never ends or fails oddly. `open_regular` opens without
blocking (O_NONBLOCK: a FIFO opens at once), checks on the open descriptor
that it is a regular file (no race between a check and the open), and only
then hands back an ordinary blocking file.

A data or results folder may be shared, so a neighbour can plant a symbolic
link where tlbench is about to write (`<data>/.tlbench-cache/x.lock -> ~/thesis.tex`).
What tlbench creates there is therefore either a lock, opened without following
a link and without truncating (`open_lock`), or a whole file written to a new
temp file beside it and moved into place (`replace_file`): os.replace swaps the
directory entry, a planted link included, never what a link points to. Caches
tlbench wrote itself are read back only as the array they must be (`map_npy`).
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np


class NotRegularFile(ValueError):
    """The path names a FIFO, a device, a socket, a folder (or a link, where links are not followed): not read."""


class UnusableCache(ValueError):
    """A cache file that is not the array expected (truncated, another dtype or shape, a link, not a file): rebuild it."""


def open_regular(path: str | Path, follow_links: bool = True) -> BinaryIO:
    """A regular file opened for binary reading; raises NotRegularFile for anything else (OSError where it cannot open).

    `follow_links=False` for files only tlbench writes (its caches): a link there was planted."""
    fd = _open_no_link(path, os.O_RDONLY | os.O_NONBLOCK | (0 if follow_links else os.O_NOFOLLOW))
    return _regular_file(fd, path, "rb")


def read_regular_text(path: str | Path, follow_links: bool = True) -> str:
    """A regular file's text (UTF-8); raises NotRegularFile for anything else, as `open_regular`."""
    with open_regular(path, follow_links) as fh:
        return fh.read().decode("utf-8")


def is_regular(path: str | Path) -> bool:
    """Whether a path is itself a regular file (a symlink is not followed): for skipping what a listing found."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def open_lock(path: str | Path) -> BinaryIO:
    """A lock file to flock, created where absent: never truncated (two trials share it), never opened through a
    link, and only a regular file; raises NotRegularFile otherwise. Read-write: flock over NFS needs it."""
    fd = _open_no_link(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK)
    return _regular_file(fd, path, "rb+")


def replace_file(path: str | Path, content: bytes | str | Callable[[BinaryIO], object]) -> None:
    """Write a whole file: bytes, text (UTF-8), or what `content(file)` writes, into a new file beside `path`, then
    moved onto it. A link planted at `path` is replaced, its target left alone; a reader sees the old file or the new."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    # O_EXCL: a fresh file, never an existing one or a link's target; 0o666 less the umask, as open() creates.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(content):
                content(fh)
            else:
                fh.write(content.encode("utf-8") if isinstance(content, str) else content)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def map_npy(path: str | Path, dtype: np.dtype | type, shape: tuple[int | None, ...]) -> np.ndarray:
    """A cache .npy tlbench wrote, mapped copy-on-write (lazy like a read-only map; torch.from_numpy accepts it).
    A None in `shape` takes any length on that axis (a feature map's size, known only from the file).

    Raises UnusableCache, saying why, for anything but a regular file holding exactly that array (a link, a FIFO,
    a truncated file, another dtype, shape or layout); FileNotFoundError where there is none. The header is read
    as numpy's literal parser reads it: nothing in the file runs code."""
    try:
        fh = open_regular(path, follow_links=False)
    except NotRegularFile as exc:
        raise UnusableCache(str(exc)) from None
    with fh:
        try:
            readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            version = np.lib.format.read_magic(fh)
            if version not in readers:
                raise ValueError(f"npy format version {version}")
            found_shape, fortran_order, found_dtype = readers[version](fh)
        except (ValueError, EOFError, SyntaxError) as exc:
            raise UnusableCache(f"{path} is no .npy array ({exc})") from None
        fits = len(found_shape) == len(shape) and all(want in (None, got) for got, want in zip(found_shape, shape))
        if found_dtype != np.dtype(dtype) or not fits or fortran_order:
            order = ", Fortran order" if fortran_order else ""
            wanted = tuple("any" if n is None else n for n in shape)
            raise UnusableCache(f"{path} holds {found_dtype} {tuple(found_shape)}{order}, expected {np.dtype(dtype)} {wanted}")
        offset, size = fh.tell(), os.fstat(fh.fileno()).st_size
        expected = offset + int(np.prod(found_shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if size != expected:
            raise UnusableCache(f"{path} has {size} bytes, expected {expected} (truncated or overwritten)")
        if expected == offset:  # nothing to map: an empty pool
            return np.empty(found_shape, dtype=dtype)
        return np.memmap(fh, dtype=dtype, mode="c", shape=found_shape, offset=offset)  # the map outlives the closed file


def _open_no_link(path: str | Path, flags: int) -> int:
    """os.open with O_CLOEXEC; a link refused by O_NOFOLLOW is a NotRegularFile naming it."""
    try:
        return os.open(path, flags | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if flags & os.O_NOFOLLOW and exc.errno in (errno.ELOOP, errno.EMLINK):
            raise NotRegularFile(f"{path} is a symbolic link, which tlbench does not follow here; remove it") from None
        raise


def _regular_file(fd: int, path: str | Path, mode: str) -> BinaryIO:
    """The open descriptor as a blocking file object, if it is a regular file; else it is closed and NotRegularFile raised."""
    try:
        kind = os.fstat(fd).st_mode
        if not stat.S_ISREG(kind):
            raise NotRegularFile(f"{path} is not a regular file ({_kind(kind)})")
        os.set_blocking(fd, True)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


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
