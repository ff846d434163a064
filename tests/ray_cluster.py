"""A real multi-node Ray cluster on this machine, for tests: started and stopped by process group.

Each node is `ray start --block` in its own session (its pid is its process
group); stopping signals that group only, TERM then KILL, never `ray stop` or
anything by name. Every node gets its own ports, so nodes share one host.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cluster_env() -> dict[str, str]:
    return {**os.environ, "RAY_AUTH_MODE": "token", "PYTHONUNBUFFERED": "1"}


@dataclass
class Node:
    name: str
    process: subprocess.Popen

    @property
    def pgid(self) -> int:
        return self.process.pid  # start_new_session: the node's pid is its group

    def kill(self, grace_s: float = 3.0) -> None:
        """TERM the node's process group, then KILL what is left (the head may ignore TERM)."""
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=wait)
                if sig == signal.SIGTERM:
                    os.killpg(self.pgid, signal.SIGKILL)  # children the node left behind
                return
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                return


@dataclass
class Cluster:
    temp_dir: Path
    port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, name: str, args: list[str], cpus: int, gpus: int | None = None, wrap: tuple[str, ...] = ()) -> Node:
        ports = [free_port() for _ in range(6)]
        # One temp dir per node under the cluster's: nodes of one session on one
        # host would otherwise share socket paths and crash each other.
        temp_dir = self.temp_dir / name
        temp_dir.mkdir(parents=True, exist_ok=True)
        command = [
            *wrap, RAY, "start", "--block", f"--num-cpus={cpus}", f"--resources={json.dumps({name: 1})}",
            *([f"--num-gpus={gpus}"] if gpus is not None else []),
            f"--temp-dir={temp_dir}", "--disable-usage-stats", "--node-ip-address=127.0.0.1", f"--node-manager-port={ports[0]}",
            f"--object-manager-port={ports[1]}", f"--dashboard-agent-listen-port={ports[2]}",
            f"--dashboard-agent-grpc-port={ports[3]}", f"--metrics-export-port={ports[4]}",
            f"--runtime-env-agent-port={ports[5]}", *args,
        ]  # fmt: skip
        log = open(self.temp_dir / f"{name}.log", "w")
        process = subprocess.Popen(command, env=cluster_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        node = Node(name, process)
        self.nodes.append(node)
        return node

    # `gpus`: GPUs a node declares (Ray hands out their ids and shares; none need exist); None: Ray detects them.
    def start_head(self, cpus: int = 0, gpus: int | None = None) -> Node:
        return self._start("head", ["--head", f"--port={self.port}", "--include-dashboard=false"], cpus, gpus)

    # `wrap`: a command the node's `ray start` runs under (it must exec it, keeping the pid: its process group).
    def add_worker(self, name: str, cpus: int = 1, gpus: int | None = None, wrap: tuple[str, ...] = ()) -> Node:
        return self._start(name, [f"--address={self.address}"], cpus, gpus, wrap)

    def alive_nodes(self) -> int:
        probe = (f"import ray; ray.init(address={self.address!r}, logging_level='ERROR'); "
                 "print(sum(1 for n in ray.nodes() if n['Alive']))")  # fmt: skip
        proc = subprocess.run([sys.executable, "-c", probe], env=cluster_env(), capture_output=True, text=True, timeout=60)
        try:
            return int(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return 0

    def node_ids(self) -> dict[str, str]:
        """Node name (its custom resource) -> Ray NodeID, for the nodes alive now."""
        probe = (
            f"import ray, json; ray.init(address={self.address!r}, logging_level='ERROR'); "
            "print(json.dumps({k: n['NodeID'] for n in ray.nodes() if n['Alive'] for k in n['Resources']}))"
        )
        proc = subprocess.run([sys.executable, "-c", probe], env=cluster_env(), capture_output=True, text=True, timeout=60)
        ids = json.loads(proc.stdout.strip().splitlines()[-1])
        return {node.name: ids[node.name] for node in self.nodes if node.name in ids}

    def wait_for(self, count: int, timeout_s: float = 90) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.alive_nodes() == count:
                return
            time.sleep(1)
        raise TimeoutError(f"the cluster did not reach {count} alive nodes in {timeout_s} s")

    def stop(self) -> None:
        for node in reversed(self.nodes):  # workers first, the head last
            node.kill()
