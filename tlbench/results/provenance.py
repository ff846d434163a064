"""Where a number came from: the code's commit, the software and the machine that produced each row.

    repository_state(grid file) -> {git_commit, git_dirty}      on the driver, once per run
    environment()               -> versions, accelerator, packages_sha256   in the worker, once per process

Both end up as columns of every trial row (`execute.trial_row`); the report
names the commits and machines behind its numbers and warns where a table
mixes several. No Ray and no torch at import: the driver imports this module.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

GIT_TIMEOUT_S = 10.0
# git reads the repository's own config, and some of its settings run commands during `status`:
# these switch off the fsmonitor hook and hooks, and keep `status` from writing the index. Clean
# filters named in the tree's .gitattributes are switched off too where git honours GIT_ATTR_SOURCE (2.40+).
_GIT_SAFE = ["-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "core.untrackedCache=false",
             "--no-optional-locks"]  # fmt: skip
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's empty tree: no in-tree .gitattributes, so no filters


def repository_state(path: str | Path) -> dict[str, Any]:
    """The commit checked out in the git repository holding `path`, and whether its tracked files differ from it.

    {git_commit: None, git_dirty: None} where `path` is not in a repository or git is not installed."""
    folder = Path(path).resolve()
    folder = folder if folder.is_dir() else folder.parent
    commit = _git(folder, "rev-parse", "--verify", "--quiet", "HEAD")
    if not commit:
        return {"git_commit": None, "git_dirty": None}
    # Tracked files only: an untracked results/ or data/ folder beside the grid does not make the code dirty.
    changes = _git(folder, "status", "--porcelain", "--untracked-files=no", "--ignore-submodules=all")
    return {"git_commit": commit, "git_dirty": None if changes is None else bool(changes)}


def _git(folder: Path, *args: str) -> str | None:
    env = {**os.environ, "GIT_ATTR_SOURCE": _EMPTY_TREE, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        done = subprocess.run(["git", *_GIT_SAFE, "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, env=env, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):  # no git, or a repository on a hung network disk
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def environment() -> dict[str, Any]:
    """This process's software and hardware, as row columns. Cached: it cannot change within a worker."""
    return {
        "python_version": platform.python_version(),
        "numpy_version": _version("numpy"), "pandas_version": _version("pandas"), "ray_version": _version("ray"),
        **_torch_builds(), "accelerator": accelerator(), "packages_sha256": packages_sha256(),
    }  # fmt: skip


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch_builds() -> dict[str, str | None]:
    """The CUDA and cuDNN torch was built with (None on a CPU-only build or without torch)."""
    try:
        import torch
    except ImportError:
        return {"cuda_version": None, "cudnn_version": None}
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"cuda_version": torch.version.cuda, "cudnn_version": None if cudnn is None else str(cudnn)}


def accelerator() -> str:
    """The GPU the trials of this process run on, else the CPU's model name."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(torch.cuda.current_device())
    except ImportError:
        pass
    return cpu_model()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def packages_sha256() -> str:
    """A hash of every installed distribution and its version: two rows with equal hashes ran on equal packages."""
    names = sorted({f"{(d.metadata['Name'] or '').lower().replace('_', '-')}=={d.version}" for d in importlib.metadata.distributions()})
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def describe(commit: str | None, dirty: bool | None) -> str:
    """A commit as a reader sees it: short hash, marked where the tree had changes."""
    if commit is None:
        return "no git commit"
    return commit[:12] + (" (dirty)" if dirty else "")
