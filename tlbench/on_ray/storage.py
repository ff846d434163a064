"""Tune's storage (`--storage`), checked before anything is submitted, so a run cannot fail on it late.

Tune writes a trial's checkpoints from the node that runs it, and a retry may read them on another:
the storage must be a path every node sees (a shared mount) or a URI every node reaches (s3://...).
Ray checks that only when a trial first saves a checkpoint (`Unable to set up cluster storage`), so
on a cluster a node-local path fails every trial of more than one epoch, after the grid started.

Two steps: `check_form` (before Ray starts: the form of the flag, and that a path can be created)
and `check_shared` (after connecting, before submitting: every live node sees the path).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from tlbench.grid import GridError

# The URI schemes pyarrow's filesystems (which Tune writes through) know; a local path may also be file://.
URI_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
ACCEPTED = (
    "an absolute path (on a cluster: a mount every node sees, e.g. /mnt/tlbench), file:///abs/path, "
    f"or a URI {', '.join(s + '://bucket/path' for s in URI_SCHEMES[:2])} ({', '.join(URI_SCHEMES)})"
)
FLAG = "--storage"


def location(storage: str | None, results: str | Path) -> str:
    """Tune's storage_path: --storage as given (a path with ~ expanded), else <results>/.tune, absolute."""
    if storage is None:
        return str((Path(results) / ".tune").resolve())
    return storage if "://" in storage else os.path.expanduser(storage)


def local_path(storage: str) -> Path | None:
    """The folder a path or file:// storage names; None for a remote URI."""
    if storage.startswith("file://"):
        return Path(storage.removeprefix("file://"))
    return None if "://" in storage else Path(os.path.expanduser(storage))


def check_form(storage: str | None) -> None:
    """Before Ray starts: refuse a relative path or an unknown scheme, and create a path's folder (exit 2 if it cannot be)."""
    if storage is None:  # <results>/.tune: the results folder was checked writable already
        return
    scheme = storage.split("://", 1)[0] if "://" in storage else None
    if scheme is not None and scheme != "file" and scheme not in URI_SCHEMES:
        raise GridError(f"{storage!r}: unknown scheme {scheme + '://'!r}; use {ACCEPTED}", file=FLAG)
    path = local_path(storage)
    if path is None:
        return
    if not path.is_absolute():  # Tune would resolve it on each node against that node's working folder
        raise GridError(f"{storage!r} is a relative path; use {ACCEPTED}", file=FLAG)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GridError(f"cannot create {path}: {exc.strerror or exc}; pass a folder you can write to", file=FLAG) from None


def check_shared(storage: str, checkpoints: bool) -> None:
    """After connecting: on a cluster of more than one node, a path storage must be one every live node sees.

    A marker written here is looked for from a task on each node, as Ray's own check does later."""
    path = local_path(storage)
    if not checkpoints or path is None:  # without checkpoints no trial writes there; a URI is reached from anywhere
        return
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    sees = ray.remote(num_cpus=0)(_sees)  # made here: importing this module must not import Ray
    nodes = {n["NodeID"]: f"node {n['NodeID'][:8]} at {n['NodeManagerAddress']}" for n in ray.nodes() if n["Alive"]}
    if len(nodes) < 2:
        return
    marker = path / f".tlbench-shared-{uuid.uuid4().hex}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError as exc:
        raise GridError(f"cannot write to {path}: {exc.strerror or exc}; pass a folder you can write to", file=FLAG) from None
    try:
        probes = {
            node: sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(str(marker)) for node in nodes
        }
        blind = sorted({nodes[node] for node, probe in probes.items() if not _answer(ray, probe)})
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise GridError(
            f"{storage} is not seen by every node of this {len(nodes)}-node cluster (not by {', '.join(blind)}): "
            f"a trial's checkpoints would fail on those nodes. Pass --storage <shared path | s3://...> "
            f"(a mount every node sees, or a bucket), or --no-checkpoints",
            file=FLAG,
        )


def _sees(marker: str) -> bool:
    return os.path.exists(marker)


def _answer(ray, probe) -> bool:
    """A node's answer; one that cannot answer in two minutes (dead, or its task failed) counts as not seeing it."""
    try:
        return ray.get(probe, timeout=120)
    except (ray.exceptions.RayError, TimeoutError):
        return False
