"""cluster.yaml (AWS) and cluster-onprem.yaml (Ray's local provider) against Ray's own cluster-config schema."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config


@pytest.mark.parametrize("path, provider", [("cluster.yaml", "aws"), ("cluster-onprem.yaml", "local")])
def test_cluster_files_pass_rays_schema(path, provider):
    raw = yaml.safe_load(open(path))
    assert raw["provider"]["type"] == provider
    validate_config(prepare_config(raw))  # raises on any key Ray does not know
    setup = " ".join(raw["setup_commands"])
    assert "pip install" in setup and "~/tlbench" in setup  # every node installs this project and its pinned torch pair


def test_aws_cluster_has_a_cpu_head_and_autoscaling_gpu_workers():
    raw = yaml.safe_load(open("cluster.yaml"))
    head = raw["available_node_types"][raw["head_node_type"]]
    workers = raw["available_node_types"]["gpu_worker"]
    assert head["resources"] == {"CPU": 0} and head["node_config"]["InstanceType"].startswith("m5")
    assert workers["node_config"]["InstanceType"].startswith("g5") and workers["min_workers"] < workers["max_workers"]


def test_a_misspelt_key_is_refused_by_the_schema():
    raw = yaml.safe_load(open("cluster.yaml"))
    raw["available_node_types"]["gpu_worker"]["max_workerz"] = 3
    with pytest.raises(Exception, match="max_workerz"):
        validate_config(prepare_config(raw))


def both() -> tuple[dict, dict]:
    return yaml.safe_load(open("cluster.yaml")), yaml.safe_load(open("cluster-onprem.yaml"))


def test_both_files_share_their_setup_start_commands_mounts_and_excludes():
    aws, onprem = both()
    # AWS's first setup command installs Python 3.11 (on-prem machines have it); the rest is the same.
    assert aws["setup_commands"][1:] == onprem["setup_commands"] and "apt-get" in aws["setup_commands"][0]
    for key in ("head_start_ray_commands", "worker_start_ray_commands", "file_mounts", "rsync_exclude"):
        assert aws[key] == onprem[key], key


def test_every_node_gets_the_token_and_the_head_offers_nothing_to_trials():
    aws, _ = both()
    assert aws["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    head, worker = aws["head_start_ray_commands"][-1], aws["worker_start_ray_commands"][-1]
    assert "RAY_AUTH_MODE=token" in head and "RAY_AUTH_MODE=token" in worker
    assert "--num-cpus=0 --num-gpus=0" in head and "RAY_enable_autoscaler_v2=0" in head
    # `ray down` runs a bare `ray stop` in a login shell: ~/venv/bin must be on its PATH.
    assert any('PATH="$HOME/venv/bin:$PATH" RAY_AUTH_MODE=token' in c and ".bashrc" in c for c in aws["setup_commands"])


def test_a_filled_in_copy_is_ignored_by_git():
    ignored = subprocess.run(["git", "check-ignore", "-q", "cluster-onprem.local.yaml"], capture_output=True)
    assert ignored.returncode == 0


@pytest.mark.skipif(not shutil.which("rsync"), reason="needs rsync (apt-get install rsync)")
def test_the_sync_leaves_out_results_and_data_but_keeps_the_tracked_results_readme(tmp_path):
    source = tmp_path / "src"
    for name in ("results/README.md", "results/_index.parquet", "results/trials/a.parquet", "results/.tune/x",
                 "results/report/index.html", "data/cifar/x", "tlbench/a.py", "README.md"):  # fmt: skip
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text("x")
    excludes = [f"--exclude={pattern}" for pattern in both()[1]["rsync_exclude"]]
    subprocess.run(["rsync", "-a", *excludes, f"{source}/", f"{tmp_path / 'dst'}/"], check=True)
    synced = sorted(str(p.relative_to(tmp_path / "dst")) for p in (tmp_path / "dst").rglob("*") if p.is_file())
    assert synced == ["README.md", "results/README.md", "tlbench/a.py"]
