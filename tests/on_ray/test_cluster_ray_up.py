"""The cluster workflow of docs/cluster.md, as a user runs it: the on-prem commands that page lists (read from it) --
`ray up` on the shipped cluster-onprem.yaml, `ray exec` of `ray status`, a grid run and the report,
`ray rsync-down`, `ray down` -- against three hosts made on this machine.

Each host (a head and two workers) is a network namespace of its own (10.231.0.10-12 on a bridge this test
creates; nothing else is reachable from them) running an SSH daemon in its own PID, mount and UTS namespace, so
the YAML's `ray stop` sees only that host's processes, `~` and `/tmp` are the host's own, and `hostname` names it.
The filled-in copy changes only the addresses and the SSH auth (root, a key made here); it is written as
`cluster-onprem.local.yaml` into a fresh git repository of this checkout's files, which `ray up` syncs.

Test-only substitutes (the hosts have no network; none of them is in the YAML):
- each host's `~/venv` is made beforehand from this interpreter (less its own old setuptools), and a `.pth`
  file in it adds this venv's site-packages (torch, Ray, setuptools, ...), so the YAML's `python3.11 -m venv`
  is skipped by its own `test -d`; its `bin/ray` is this venv's `ray` command, run by the host's venv;
- `~/.config/pip/pip.conf` on each host: no package index, no build isolation (setuptools comes from the .pth),
  so the YAML's `pip install -e ~/tlbench` runs offline;
- this interpreter's and this venv's folders, where they are below /root or /tmp, are bind-mounted into each host's own;
- `/mnt` on every host is one folder of this test: the shared mount (NFS on real machines) for `--storage`.

Needs root, `ip`, `unshare`, sshd (openssh-server), ssh and rsync; skips with the reason otherwise.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import TINY_GRID

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NET, BRIDGE = "10.231.0", "tlb22br0"
HOSTS = {"head": 10, "w1": 11, "w2": 12}
RAY_BIN = Path(sys.executable).with_name("ray")
# Ray's own processes, by what their command lines hold (the ssh sessions and shells around them do not).
RAY_PROCESS = re.compile(r"raylet|gcs_server|ray::|default_worker\.py|dashboard|log_monitor|autoscaler|runtime_env|ray_client")


def why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network, PID and mount namespaces)"
    for tool in ("ip", "unshare", "ssh", "ssh-keygen", "rsync", "/usr/sbin/sshd"):
        if not shutil.which(tool):
            return f"needs {tool} (apt-get install openssh-server rsync iproute2)"
    probe = subprocess.run(["ip", "netns", "add", "tlb22-probe"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", "tlb22-probe"], capture_output=True)
    return None


# Folders each host has its own of: what lies below them here is hidden on a host unless bound in.
HOST_OWN = ("/root", "/tmp")


def hidden_on_hosts() -> list[tuple[str, str]]:
    """(folder, path below it) of this interpreter's and this venv's folders that a host's own /root or /tmp would
    hide: pyenv lives under /root, and a clone (CI's, say) may keep its venv under /tmp."""
    paths = {Path(sys.base_prefix).resolve(), Path(sysconfig.get_paths()["purelib"]).resolve()}
    return sorted((top, str(p.relative_to(top))) for p in paths for top in HOST_OWN if p.is_relative_to(top))


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check)


class Hosts:
    """The three hosts: network, SSH daemons, and each host's files under `root/hosts/<name>`."""

    def __init__(self, root: Path):
        self.root, self.daemons = root, {}
        self.shared = root / "shared"
        self.key = root / "id_ed25519"

    def home(self, name: str) -> Path:
        return self.root / "hosts" / name / "root"

    def ip(self, name: str) -> str:
        return f"{NET}.{HOSTS[name]}"

    @staticmethod
    def remove_leftovers() -> None:
        """A killed run's bridge and namespaces (their veths go with them); only called under the hosts' lock."""
        for line in sh("ip", "netns", "list").stdout.splitlines():
            if line.startswith("tlb22-"):
                sh("ip", "netns", "del", line.split()[0], check=False)
        sh("ip", "link", "del", BRIDGE, check=False)

    def start(self) -> None:
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{NET}.1/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.root / "host_key"))
        (self.root / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        self.shared.mkdir()
        for name in HOSTS:
            self._network(name)
            self._files(name)
            self._daemon(name)

    def _network(self, name: str) -> None:
        ns, veth = f"tlb22-{name}", f"tlb22v-{name}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", veth, "master", BRIDGE, "up")
        for command in (
            ["ip", "addr", "add", f"{self.ip(name)}/24", "dev", "eth0"],
            ["ip", "link", "set", "eth0", "up"],
            ["ip", "link", "set", "lo", "up"],
            # A route for Ray to find its node address by (it asks which source address would reach the
            # internet); with no gateway, nothing leaves the bridge.
            ["ip", "route", "add", "default", "dev", "eth0"],
        ):
            sh("ip", "netns", "exec", ns, *command)

    def _files(self, name: str) -> None:
        home = self.home(name)
        home.mkdir(parents=True)
        (home.parent / "tmp").mkdir()
        subprocess.run([sys.executable, "-m", "venv", str(home / "venv")], check=True, capture_output=True)
        # The venv's own old setuptools (from ensurepip) would shadow this venv's, which builds editable wheels.
        subprocess.run(
            [home / "venv" / "bin" / "python", "-m", "pip", "uninstall", "-q", "-y", "setuptools"], check=True, capture_output=True
        )
        (home / ".bashrc").touch()  # as on any host
        # Ray's command, as pip would have installed it with Ray (the host sees this venv as /root/venv).
        ray = RAY_BIN.read_text().split("\n", 1)[1]
        (home / "venv" / "bin" / "ray").write_text("#!/root/venv/bin/python\n" + ray)
        (home / "venv" / "bin" / "ray").chmod(0o755)
        # The venv's interpreter is the base one; this venv's packages come through a .pth file.
        site = home / "venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
        (site / "tlbench-test-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        (home / ".config" / "pip").mkdir(parents=True)
        # pip's quirk: `no-build-isolation = false` is what turns build isolation off.
        (home / ".config" / "pip" / "pip.conf").write_text("[global]\nno-index = true\nno-build-isolation = false\n")
        (home.parent / "sshd_config").write_text(
            textwrap.dedent(f"""\
                ListenAddress {self.ip(name)}
                HostKey {self.root / "host_key"}
                PermitRootLogin prohibit-password
                AuthorizedKeysFile {self.root / "authorized_keys"}
                StrictModes no
                UsePAM no
                PidFile {home.parent / "sshd.pid"}
                Subsystem sftp internal-sftp
            """)
        )

    def _daemon(self, name: str) -> None:
        home = self.home(name)
        # Inside the host's own mount namespace: its own /root and /tmp (this interpreter's and venv's folders bound in),
        # /tmp (Ray's sessions) and the shared /mnt. Then sshd, under a shell as PID 1 that reaps orphans.
        own = {"/root": home, "/tmp": home.parent / "tmp"}
        binds = "\n".join(f"mkdir -p {own[top] / rel} && mount --bind {top}/{rel} {own[top] / rel}" for top, rel in hidden_on_hosts())
        script = f"""
            set -e
            hostname tlb22-{name}
            {binds}
            mount --rbind {home} /root
            mount --bind {self.shared} /mnt
            mount --rbind {home.parent / "tmp"} /tmp
            mkdir -p /run/sshd
            /usr/sbin/sshd -D -e -f {home.parent / "sshd_config"} &
            wait
        """
        log = open(home.parent / "sshd.log", "w")
        command = [
            "ip",
            "netns",
            "exec",
            f"tlb22-{name}",
            "unshare",
            "--pid",
            "--mount",
            "--uts",
            "--fork",
            "--mount-proc",
            "bash",
            "-c",
            script,
        ]
        self.daemons[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def init_pid(self, name: str) -> int | None:
        """The host's PID 1 (unshare's child), as this machine numbers it."""
        unshare = self.daemons[name].pid
        try:
            children = Path(f"/proc/{unshare}/task/{unshare}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def ray_processes(self, name: str) -> list[str]:
        """Command lines of Ray's processes in the host's PID namespace."""
        init = self.init_pid(name)
        if init is None:
            return []
        ns = os.readlink(f"/proc/{init}/ns/pid")
        found = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and os.readlink(proc / "ns" / "pid") == ns:
                    line = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    if RAY_PROCESS.search(line):
                        found.append(line.strip())
            except OSError:
                continue
        return found

    def wait_for_sshd(self, timeout_s: float = 30) -> None:
        deadline = time.time() + timeout_s
        for name in HOSTS:
            while True:
                probe = subprocess.run(
                    ["ssh", "-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                     "-o", "ConnectTimeout=2", "-o", "BatchMode=yes", f"root@{self.ip(name)}", "hostname"],
                    capture_output=True, text=True,
                )  # fmt: skip
                if probe.returncode == 0 and probe.stdout.strip() == f"tlb22-{name}":
                    break
                if time.time() > deadline:
                    log = (self.home(name).parent / "sshd.log").read_text()
                    raise TimeoutError(f"sshd on {name} did not answer: {probe.stderr} {log}")
                time.sleep(0.5)

    def stop(self) -> None:
        for name, daemon in self.daemons.items():
            init = self.init_pid(name)
            if init is not None:
                os.kill(init, signal.SIGKILL)  # the PID namespace's init: the kernel kills all of the host's processes
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait(timeout=20)
        for name in HOSTS:
            sh("ip", "netns", "del", f"tlb22-{name}", check=False)  # its veth pair goes with it
        sh("ip", "link", "del", BRIDGE, check=False)


def checkout_copy(into: Path) -> Path:
    """A fresh repository of this checkout's files (tracked and untracked, not ignored), as a user's clone."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, into / name)
    (into / "grid" / "tiny.yaml").write_text(textwrap.dedent(TINY_GRID))
    for command in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "snapshot"]):
        subprocess.run(["git", *command], cwd=into, check=True, capture_output=True)
    return into


def filled_in(clone: Path, hosts: Hosts) -> Path:
    """The shipped cluster-onprem.yaml with only the addresses and the SSH auth changed, under its ignored name."""
    config = yaml.safe_load((clone / "cluster-onprem.yaml").read_text())
    config["provider"].update(head_ip=hosts.ip("head"), worker_ips=[hosts.ip("w1"), hosts.ip("w2")])
    config["auth"] = {"ssh_user": "root", "ssh_private_key": str(hosts.key)}
    path = clone / "cluster-onprem.local.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def hosts():
    reason = why_not()
    if reason:
        pytest.skip(reason)
    # The hosts' names and addresses are fixed: two runs of this test on one machine (two checkouts' suites) would
    # tear down each other's network. Each run holds this machine-wide lock while its hosts exist; under it, a
    # bridge or namespace left by a run that was killed is nobody's and is removed first.
    with open("/var/tmp/tlb22-hosts.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        Hosts.remove_leftovers()
        # Not under /tmp: each host has its own /tmp, which would hide this folder from it.
        root = Path(tempfile.mkdtemp(prefix="tlb22-", dir="/var/tmp"))
        made = Hosts(root)
        try:
            made.start()
            made.wait_for_sshd()
            yield made
        finally:
            made.stop()
            shutil.rmtree(root, ignore_errors=True)


class Laptop:
    """The user's machine: `ray` commands run from the clone, with a home and Ray temp folder of the test's own."""

    def __init__(self, clone: Path, config: Path, root: Path):
        self.clone, self.config, self.log = clone, config, []
        home = root / "laptop"
        (home / "tmp").mkdir(parents=True)
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, "HOME": str(home),
                    "RAY_TMPDIR": str(home / "tmp"), "PATH": f"{RAY_BIN.parent}:{os.environ['PATH']}"}  # fmt: skip
        self.env.pop("PYTHONPATH", None)

    def ray(self, *args: str, timeout: float = 600) -> str:
        process = subprocess.Popen([str(RAY_BIN), *args], cwd=self.clone, env=self.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
        try:
            out, _ = process.communicate(timeout=timeout)
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # ssh control masters it left
            except ProcessLookupError:
                pass
        self.log.append(f"$ ray {' '.join(args)}\n{out}")
        print(self.log[-1])
        assert process.returncode == 0, f"ray {args[0]} exited {process.returncode}:\n{out[-4000:]}"
        return out

    def exec(self, command: str, timeout: float = 600) -> str:
        return self.ray("exec", str(self.config), command, timeout=timeout)


CLUSTER_DOC = REPO / "docs" / "cluster.md"  # the cluster page; the README links it


def documented_steps() -> list[list[str]]:
    """The on-prem commands docs/cluster.md lists, in order, split as a shell would."""
    text = CLUSTER_DOC.read_text().split("On your own machines", 1)[1]
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def as_the_test_runs(args: list[str], hosts: Hosts) -> list[str]:
    """A step of docs/cluster.md with what the test adds: -y (no prompt), a tiny grid of 2 epochs, results into its folder."""
    if args[0] in ("up", "down"):
        return [args[0], "-y", *(["--no-config-cache"] if args[0] == "up" else []), *args[1:]]
    if args[0] == "exec" and "tlbench.grid run" in args[-1]:
        return [*args[:-1], args[-1] + " --grid grid/tiny.yaml --set epochs=2"]
    if args[0] == "exec" and "tlbench.report" in args[-1]:
        return [*args[:-1], args[-1] + " --grid grid/tiny.yaml"]
    if args[0] == "rsync-down":
        return [*args[:-1], str(hosts.root / "results") + "/"]
    return args


def wait_for_workers(laptop: Laptop, count: int, timeout_s: float = 300) -> str:
    deadline = time.time() + timeout_s
    while True:
        status = laptop.exec("ray status", timeout=120)  # through token auth: the YAML's login shell sets it
        healthy = status.split("Healthy:", 1)[-1].split("Pending:", 1)[0]
        if sum(int(n) for n in re.findall(r"(\d+) local\.cluster\.node", healthy)) == count + 1:
            return status
        if time.time() > deadline:
            raise TimeoutError(f"{count} workers did not join in {timeout_s} s:\n{status}")
        time.sleep(5)


# ~4 min on 2 cores: three venvs, `ray up` and two workers' setup, the grid, and a minute for the workers'
# raylets to notice their head is gone after `ray down`.
@pytest.mark.timeout(900)
def test_ray_up_run_report_rsync_down_ray_down_on_three_hosts(hosts):
    clone = checkout_copy(hosts.root / "tlbench")
    laptop = Laptop(clone, filled_in(clone, hosts), hosts.root)
    steps = documented_steps()
    assert [step[:2] for step in steps] == [["cp", "cluster-onprem.yaml"], ["ray", "get-auth-token"], ["ray", "up"],
        ["ray", "exec"], ["ray", "exec"], ["ray", "exec"], ["ray", "rsync-down"], ["ray", "down"]], steps  # fmt: skip
    out = {}
    for step in steps[1:]:  # the first, `cp` then fill in, is filled_in's
        args = [str(laptop.config) if arg == "cluster-onprem.local.yaml" else arg for arg in step[1:]]
        if args[0] == "exec" and args[-1] == "ray status":
            wait_for_workers(laptop, 2)  # through token auth: the YAML's login shell sets it
            continue
        args = as_the_test_runs(args, hosts)
        out[" ".join(args[:1] + args[2:])] = laptop.ray(*args)
    assert any("summary: 4 ok of 4 run" in text for command, text in out.items() if "tlbench.grid run" in command), out.keys()

    files = sorted(p for p in (hosts.root / "results" / "trials").glob("*.parquet") if not p.name.startswith(("_", ".")))
    rows = pd.concat(pd.read_parquet(p) for p in files)  # one file per trial (the index, _index.parquet, left out)
    print(rows[["trial_id", "status", "hostname", "git_dirty"]].to_string())
    assert len(rows) == 4 and set(rows["status"]) == {"ok"}
    assert set(rows["hostname"]) <= {"tlb22-w1", "tlb22-w2"}, "a trial ran on the head"
    assert rows["git_dirty"].tolist() == [False] * 4 and rows["git_commit"].notna().all()
    assert "<table" in (hosts.root / "results" / "report" / "index.html").read_text()
    assert list((hosts.shared / "tlbench").glob("tlbench-*/*/checkpoint_*")), "no checkpoint reached the shared storage"
    deadline = time.time() + 150  # the head's Ray stops at once; a worker's when it has lost its head for a minute
    while (left := {name: hosts.ray_processes(name) for name in HOSTS}) and any(left.values()) and time.time() < deadline:
        time.sleep(3)
    assert not any(left.values()), f"Ray processes left after `ray down`: {left}"
