"""Any torchvision classification model by name: the torch-free table the driver reads, the head found
generically, the report archs' facts unchanged, and names checked at grid load."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from helpers import TINY_GRID

from tlbench.grid import Grid, GridError
from tlbench.registries import archs, torchvision_archs
from tlbench.trial import networks as models
from tlbench.trial.config import ModelConfig


@pytest.mark.slow
def test_the_arch_table_is_what_the_installed_torchvision_gives():
    """The shipped table cannot drift: regenerated from the installed torchvision, it is the same."""
    assert torchvision_archs.generate() == json.loads(torchvision_archs.PATH.read_text())


@pytest.mark.parametrize("arch, hidden, size, head", [
    ("mobilenet_v3_small", [], 32, "classifier.3"),
    ("mobilenet_v3_small", [8], 32, "classifier"),  # an MLP classifier is replaced whole
    ("convnext_tiny", [8], 32, "classifier.2"),  # its classifier also holds a norm and a flatten: only the Linear goes
    ("googlenet", [], 64, "fc"),  # auxiliary classifiers dropped: train mode returns the logits alone
])  # fmt: skip
@pytest.mark.slow
def test_a_torchvision_arch_outside_the_reports_builds_and_trains_only_its_head(arch, hidden, size, head):
    torch.manual_seed(0)
    built = models.build(ModelConfig(arch=arch, weights="none", hidden=tuple(hidden), dropout=0.1), 3)
    assert built.head == head
    plan = models.freeze_plan("head", built)
    trainable = models.apply_stage(built, plan, 0)
    assert trainable == models.count_params(built.module.get_submodule(head))
    models.set_train_mode(built, plan)
    out = built.module(torch.randn(2, 3, size, size))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3)
    out.pow(2).mean().backward()
    assert all((p.grad is not None) == p.requires_grad for p in built.module.parameters())


def test_a_network_without_a_linear_head_is_named():
    with pytest.raises(ValueError, match="no Linear layer with 1000 outputs.*SqueezeNet"):
        models.find_head(models.empty_model("squeezenet1_0"))
    assert "squeezenet1_0" in archs.UNSUPPORTED and "squeezenet1_0" not in archs.ARCHS


def test_weights_names_come_from_the_archs_enum():
    assert "IMAGENET1K_V1" in models.weights_names("mobilenet_v3_small")
    with pytest.raises(ValueError, match="mobilenet_v3_small has no such weights.*IMAGENET1K_V1"):
        models.weights_enum("mobilenet_v3_small", "IMAGENET1K_V2")


def test_a_grid_naming_any_torchvision_arch_is_planned_without_torch(write_grid):
    """`grid list` / `plan` stay torch-free: the names, the cost and the GPU share come from the shipped table."""
    path = write_grid(TINY_GRID.replace('"tlbench.tiny:small_cnn"', "efficientnet_b0").replace("freeze: none,", "freeze: head,"))
    code = (
        f"import sys; from tlbench.grid import Grid; from tlbench.registries import archs\nfrom tlbench.plan import cost\n"
        f"trials = Grid.load({str(path)!r}).expand()\n"
        f"assert trials and all(t.config['model']['arch'] == 'efficientnet_b0' for t in trials)\n"
        f"print(cost.gflops_per_image(trials[0].config), cost.trial_cost(trials[0].config)['gpu_hours'] > 0, "
        f"archs.get('efficientnet_b0').gpu_share, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [f"{0.772 * (32 / 224) ** 2}", "True", "0.25", "False"]


@pytest.mark.parametrize("arch, freeze, words", [
    ("mobilenet_v3_smal", "head", ["mobilenet_v3_smal", "did you mean 'mobilenet_v3_small'", "list_models"]),
    ("squeezenet1_0", "head", ["squeezenet1_0", "no Linear layer with 1000 outputs"]),
    ("mobilenet_v3_small", "{last: 2}", ["{last: l}", "mobilenet_v3_small has no such order"]),
    ("mobilenet_v3_small", "{gradual: {every: 1}}", ["gradual.blocks", "mobilenet_v3_small has no default order"]),
])  # fmt: skip
def test_arch_mistakes_are_refused_at_load(write_grid, arch, freeze, words):
    path = write_grid(TINY_GRID.replace('"tlbench.tiny:small_cnn"', arch).replace("freeze: none,", f"freeze: {freeze},"))
    with pytest.raises(GridError) as caught:
        Grid.load(path).expand()
    for word in words:
        assert word in str(caught.value), str(caught.value)
