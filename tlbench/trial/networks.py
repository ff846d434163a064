"""Networks: build an arch with its task head, and decide what trains when.

    build(model config, n_outputs) -> Built(module, head path)
    freeze_plan(freeze config, built) -> FreezePlan (what trains at each epoch)
    param_groups(built, lr, block_lr_decay) -> optimizer groups

Arch names are torchvision's: any classification model of
`torchvision.models.list_models`; `archs` holds their static facts (the report
archs and ResNet34 by hand, the rest in `torchvision_archs.json`, written from
`find_head` by `python -m tlbench.registries.torchvision_archs`). A custom arch
"package.module:function" names a function(weights) that returns (module, head
path): its head is replaced like any other.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import torch
from torch import nn

from tlbench.registries import archs, freezing
from tlbench.registries.freezing import FreezePlan, under
from tlbench.trial.config import Freeze, ModelConfig


class WeightsMissing(RuntimeError):
    """Pretrained weights are not in the torch hub cache and could not be downloaded."""


@dataclass
class Built:
    module: nn.Module
    arch: str
    head: str  # dotted path of the new task head; it always trains
    info: archs.Arch


def build(model: ModelConfig, n_outputs: int) -> Built:
    arch, weights = model.arch, model.weights
    if archs.is_custom(arch):
        module, head = _custom(arch, weights)
        info = replace(archs.get(arch), head=head, classifier=head)
    else:
        info = archs.get(arch)
        module = _torchvision(arch, weights, info.aux_logits)
    head = info.head if not model.hidden else info.classifier
    in_features = _in_features(module.get_submodule(head))
    _set_submodule(module, head, _new_head(in_features, model.hidden, model.dropout, n_outputs))
    return Built(module, arch, head, info)


def weights_names(arch: str) -> list[str]:
    """The weights names `model.weights` accepts for a torchvision arch: none, imagenet, DEFAULT and its enum's members."""
    from torchvision import models

    return ["none", "imagenet", "DEFAULT", *(w.name for w in models.get_model_weights(arch))]


def weights_enum(arch: str, weights: str) -> Any:
    """The torchvision weights enum member that `model.weights` names (None: random init).

    `imagenet` is an alias of DEFAULT (whatever torchvision ships as best); a
    report that names its weights (002: IMAGENET1K_V1) says so by name."""
    from torchvision import models

    if weights == "none":
        return None
    enum = models.get_model_weights(arch)
    name = "DEFAULT" if weights == "imagenet" else weights
    if name == "DEFAULT":
        return enum.DEFAULT
    if name not in enum.__members__:
        raise ValueError(f"model.weights {weights!r}: {arch} has no such weights; valid: {', '.join(weights_names(arch))}")
    return enum[name]


def _torchvision(arch: str, weights: str, aux_logits: bool = False) -> nn.Module:
    from torchvision import models

    # Networks with auxiliary classifiers (GoogLeNet, Inception v3) return a tuple in train mode;
    # torchvision's builders drop the auxiliaries on request, after loading weights that have them.
    kwargs = {"aux_logits": False} if aux_logits else {}
    enum = weights_enum(arch, weights)
    if enum is None:
        return models.get_model(arch, weights=None, **kwargs)
    try:
        state = enum.get_state_dict(progress=False, check_hash=False)
    except Exception as exc:  # offline: URLError and friends
        hub = torch.hub.get_dir()
        raise WeightsMissing(
            f"ImageNet weights {enum} for {arch} are not cached and could not be downloaded ({type(exc).__name__}: {exc}). "
            f"Put {enum.url.rsplit('/', 1)[-1]} (from {enum.url}) in {hub}/checkpoints/ (set TORCH_HOME to move it), "
            f"or run with model.weights: none."
        ) from None
    del state
    # Now cached: the builder reads it from the hub cache and adapts the network to its weights
    # (a ViT's image size, Inception's input transform) as torchvision's own loading does.
    return models.get_model(arch, weights=enum, progress=False, **kwargs)


def _custom(arch: str, weights: str) -> tuple[nn.Module, str]:
    module_name, function = arch.split(":")
    try:
        factory = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"model.arch {arch!r}: cannot import {function} from {module_name} ({exc})") from None
    built = factory(weights=weights)
    if not (isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], nn.Module) and isinstance(built[1], str)):
        raise ValueError(f"model.arch {arch!r}: the function must return (nn.Module, head path), got {type(built).__name__}")
    return built


def _in_features(head: nn.Module) -> int:
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"the head {type(head).__name__} has no Linear layer to take the input width from")
    return linears[0].in_features


def _new_head(in_features: int, hidden: Sequence[int], dropout: float, n_outputs: int) -> nn.Module:
    if not hidden:
        return nn.Linear(in_features, n_outputs)
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, n_outputs))


def _set_submodule(root: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, new)


@cache
def module_names(arch: str) -> frozenset[str]:
    """Every dotted submodule path of an arch, its parameters on the meta device (no memory, no weights)."""
    return frozenset(name for name, _ in empty_model(arch).named_modules() if name)


def empty_model(arch: str) -> nn.Module:
    """A torchvision arch with every parameter on the meta device: its structure, at no memory cost.

    Not `with torch.device("meta")`: some builders (RegNet) compute their widths with
    tensors, and those must hold data."""
    from torchvision import models

    with _parameters_on_meta():
        return models.get_model(arch, weights=None)


@contextmanager
def _parameters_on_meta() -> Iterator[None]:
    register = nn.Module.register_parameter

    def on_meta(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register(self, name, None if param is None else nn.Parameter(param.to("meta"), param.requires_grad))

    nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


# Layers an MLP classifier may hold: its whole container is the classifier that `model.hidden` replaces.
_MLP_LAYERS = (nn.Linear, nn.Dropout, nn.Identity, nn.ReLU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Tanh)


def find_head(module: nn.Module, n_classes: int = 1000) -> tuple[str, str]:
    """(head, classifier): the last Linear in module order with `n_classes` outputs (ImageNet's
    1,000), and the container replaced when `model.hidden` is set: the head's parent where that
    parent is a Sequential of Linear, activation and Dropout layers only (AlexNet's, VGG's,
    MobileNet's `classifier`), else the head itself (ConvNeXt's parent also holds a norm and a
    flatten, which a new MLP must keep)."""
    heads = [name for name, m in module.named_modules() if isinstance(m, nn.Linear) and m.out_features == n_classes]
    if not heads:
        raise ValueError(
            f"no Linear layer with {n_classes} outputs to replace by a task head (a {type(module).__name__} classifies some other way)"
        )
    head = heads[-1]
    parent = head.rpartition(".")[0]
    container = module.get_submodule(parent) if parent else None
    mlp = isinstance(container, nn.Sequential) and all(isinstance(m, _MLP_LAYERS) for m in container)
    return head, parent if mlp else head


# -- what trains --------------------------------------------------------------


def network_of(built: Built) -> freezing.Network:
    """The names a freeze plan reads (`freezing.Network`)."""
    module = built.module
    return freezing.Network(
        arch=built.arch,
        head=built.head,
        children=tuple(built.info.children or ()),
        blocks=built.info.blocks,
        batchnorms=tuple(n for n, m in module.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)),
        modules=frozenset(name for name, _ in module.named_modules() if name),
    )


def freeze_plan(freeze: Freeze, built: Built, frozen_bn: str = "eval") -> FreezePlan:
    """Which parameters train from which epoch on: the strategy's plan (`freezing.STRATEGIES`) on this network,
    with the mode of its frozen BatchNorm layers (`train.frozen_bn`)."""
    return replace(freezing.plan(freeze, network_of(built)), frozen_bn=frozen_bn)


def apply_stage(built: Built, plan: FreezePlan, epoch: int) -> int:
    """Set requires_grad for this epoch; returns the number of trainable parameters."""
    trains = plan.trains(epoch)
    count = 0
    for name, param in built.module.named_parameters():
        param.requires_grad_(trains(name))
        count += param.numel() if param.requires_grad else 0
    return count


def set_train_mode(built: Built, plan: FreezePlan, epoch: int = 0, train_mode_epochs: int | None = None) -> None:
    """Train mode, except BatchNorm layers that do not train: they keep their statistics.

    A frozen layer is frozen whole; letting its running mean drift with the new
    data would change the features the head learns from (and break caching).
    With `train_mode_epochs` k (002's code, see schema), the whole network is in
    train mode for the first k epochs, frozen BatchNorm included, and in eval
    mode after. With the plan's `frozen_bn: train`, plain PyTorch: `model.train()`
    puts every BatchNorm in train mode, frozen or not (004's code is unknown)."""
    if train_mode_epochs is not None:
        built.module.train(epoch < train_mode_epochs)
        return
    built.module.train()
    if plan.frozen_bn == "train":
        return
    for module in built.module.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            frozen = not any(p.requires_grad for p in module.parameters(recurse=False))
            if frozen or plan.freeze_all_bn_stats:
                module.eval()


def param_groups(
    built: Built, lr: float, block_lr_decay: float, head_lr: float | None = None, trains: Callable[[str], bool] | None = None
) -> list[dict[str, Any]]:
    """Optimizer groups: the head at lr, each block further from it at lr * decay^k.

    With `head_lr` (002's intent, schema train.head_lr), the head trains at head_lr and the
    block nearest it at lr, each further one times decay. With decay 1 and no head_lr (the
    defaults) this is one group. Frozen parameters join where they train at a later stage,
    so gradual unfreezing needs no new optimizer (a parameter without grad is skipped).
    `trains` (the plan's `ever_trains`) leaves out those that never do: the optimizer
    skipped them anyway, but looped over them every step, and so did zero_grad (all 161
    of head-only ResNet50's, for the 2 that train), on a card that waits on the host.
    The groups stay as they are (a group may be left empty), so group 0's lr is the same."""
    params = list(built.module.named_parameters())
    keep = trains if trains is not None and any(trains(name) for name, _ in params) else (lambda name: True)
    if block_lr_decay == 1 and head_lr is None:
        return [{"params": [p for name, p in params if keep(name)], "lr": lr}]
    order = [built.head, *built.info.blocks]
    groups: dict[int, list[torch.Tensor]] = {}
    for name, param in params:
        depth = next((k for k, prefix in enumerate(order) if under([prefix])(name)), len(order))
        groups.setdefault(depth, [])
        if keep(name):
            groups[depth].append(param)
    if head_lr is None:
        return [{"params": ps, "lr": lr * block_lr_decay**depth} for depth, ps in sorted(groups.items())]
    return [{"params": ps, "lr": head_lr if depth == 0 else lr * block_lr_decay ** (depth - 1)} for depth, ps in sorted(groups.items())]


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
