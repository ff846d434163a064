"""On a cluster of more than one node, a `--storage` path that some node does not see is refused before anything
is submitted (exit 2, naming the node, `--storage <shared path | s3://...>` and `--no-checkpoints`); Ray itself
would fail each trial there at its first checkpoint, after the grid started.

The node that does not see it is a worker started in a mount namespace of its own, with an empty tmpfs over
the storage folder: what a node-local path on another machine looks like. Needs root for that namespace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from helpers import TINY_GRID
from ray_cluster import Cluster, cluster_env

pytestmark = pytest.mark.slow


def hidden_under_tmpfs(folder: Path) -> tuple[str, ...]:
    """A wrapper for a node's command: its own mount namespace, where `folder` is an empty tmpfs."""
    return ("unshare", "--mount", "sh", "-c", 'mount -t tmpfs tmpfs "$0" && exec "$@"', str(folder))


@pytest.fixture
def cluster_with_a_blind_worker():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare (a mount namespace for the worker that does not see the storage)")
    root = Path(tempfile.mkdtemp(prefix="tlray-", dir="/tmp"))  # short: Ray's socket paths live under it
    storage = root / "storage"
    storage.mkdir()
    cluster = Cluster(root / "ray")
    try:
        cluster.start_head(cpus=0)
        cluster.add_worker("w1", cpus=1)
        cluster.add_worker("w2", cpus=1, wrap=hidden_under_tmpfs(storage))
        cluster.wait_for(3)
        yield cluster, root, storage
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_storage_path_one_node_does_not_see_is_refused_before_anything_is_submitted(cluster_with_a_blind_worker):
    cluster, root, storage = cluster_with_a_blind_worker
    grid = root / "grid.yaml"
    grid.write_text(textwrap.dedent(TINY_GRID))
    results = root / "results"
    command = [sys.executable, "-m", "tlbench.grid", "run", "--grid", str(grid), "--results", str(results),
               "--data", str(root / "data"), "--address", cluster.address, "--storage", str(storage), "--set", "epochs=2"]  # fmt: skip
    proc = subprocess.run(command, env=cluster_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    ids = cluster.node_ids()
    assert f"{storage} is not seen by every node of this 3-node cluster (not by node {ids['w2'][:8]} at " in proc.stderr
    assert ids["w1"][:8] not in proc.stderr and ids["head"][:8] not in proc.stderr
    assert "--storage <shared path | s3://...>" in proc.stderr and "--no-checkpoints" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(results.glob("trials/*.parquet")), "a trial ran"
    assert not list(storage.iterdir()), "the probe's marker was left behind"
