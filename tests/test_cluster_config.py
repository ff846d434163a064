"""cluster.yaml (AWS) and cluster-onprem.yaml (Ray's local provider) against Ray's own cluster-config schema."""

from __future__ import annotations

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
