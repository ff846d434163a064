"""The frozen-feature cache: compute a frozen prefix of the network once, train the rest on it.

Most trials of the reports train only the last part of a network, yet would
recompute the same frozen features every epoch. Where everything up to some
point of the network's forward pass is frozen and deterministic, the output at
that point is computed once per (arch, weights, cut, pool, size, resize,
normalisation, precision) and kept under `<data>/.tlbench-cache/features/`,
shared by every trial and rerun that needs the same features.

- The cut is found on the network's traced graph (torch.fx, with torchvision's
  node-path tracer, which knows torchvision's own ops): the latest point where
  one tensor carries everything the rest of the forward pass needs, and
  nothing before it trains (in this trial's first stage) or is random
  (dropout, as a module or a function, stochastic depth, random ops). Frozen
  BatchNorm is in eval mode (`models.set_train_mode`), so deterministic.
- fx bakes `self.training` into a graph at trace time, so the network is traced
  twice, in train and in eval mode: the prefix must be the same in both, and
  the suffix runs the graph of the mode the network is in. Dropout and
  anything random after the cut run live.
- A network that cannot be traced (control flow on tensor values) runs
  uncached, and the row says why.
- A horizontal flip is cached as both views; the step picks one per image with
  the same random draw the pixel path would use, so results match.
- Random crops, rotations and colour jitter change the input every epoch, and
  gradual unfreezing moves the cut: those trials run uncached and say why.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import fx, nn
from torchvision.models.feature_extraction import NodePathTracer

from . import pipeline
from .data import CACHE_DIR, ImageSet
from .models import Built, FreezePlan
from .trial_config import TrainConfig, TrialConfig

# Layers whose output in train mode is random, or depends on the rest of the batch.
_RANDOM_MODULES: tuple[type[nn.Module], ...] = (
    nn.modules.dropout._DropoutNd, nn.RReLU, torchvision.ops.StochasticDepth, torchvision.ops.DropBlock2d,
    torchvision.ops.DropBlock3d,
)  # fmt: skip
_RANDOM_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset({
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout, F.rrelu,
    torch.dropout, torch.bernoulli, torch.rand, torch.rand_like, torch.randn, torch.randn_like, torch.randint,
    torch.randint_like, torch.randperm, torch.normal, torch.poisson, torch.multinomial,
    torchvision.ops.stochastic_depth, torchvision.ops.drop_block2d, torchvision.ops.drop_block3d,
})  # fmt: skip
_DROPOUT_FUNCTIONS = frozenset(
    {
        F.dropout,
        F.dropout1d,
        F.dropout2d,
        F.dropout3d,
        F.alpha_dropout,
        F.feature_alpha_dropout,
        torch.dropout,
        torchvision.ops.stochastic_depth,
    }
)  # the identity at p = 0
_RANDOM_METHODS = frozenset(
    {"bernoulli", "bernoulli_", "uniform_", "normal_", "random_", "exponential_", "geometric_", "cauchy_", "log_normal_", "multinomial"}
)


@dataclass
class Cut:
    name: str  # where, for people: the module (or op) the trained part starts with
    key: str  # where, for the cache: the traced node whose output is cached
    prefix: nn.Module  # pixels -> features (the frozen part)
    suffix: nn.Module  # features -> logits (the rest, in the network's current mode)


class Suffix(nn.Module):
    """The graph after the cut, in the mode the whole network is in.

    `models.set_train_mode` and `evaluate` set the network's mode; its
    submodules are shared with these graphs, and the network's own flag picks
    the train or the eval graph (fx baked `self.training` into each)."""

    def __init__(self, network: nn.Module, train_graph: fx.Graph, eval_graph: fx.Graph):
        super().__init__()
        self.train_graph = fx.GraphModule(network, train_graph)
        self.eval_graph = fx.GraphModule(network, eval_graph)
        self._network = [network]  # in a list: not a submodule, its parameters are not ours twice

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (self.train_graph if self._network[0].training else self.eval_graph)(features)


def find_cut(built: Built, plan: FreezePlan, train: TrainConfig, image_size: int) -> Cut | str:
    """Where to cut, or why this trial cannot use the cache."""
    if len(plan.stages) > 1:
        return "gradual unfreezing moves the cut every stage"
    if train.augment == "strong":
        return "random crops, rotations and colour jitter change the input every epoch"
    if train.train_mode_epochs is not None:
        return "frozen BatchNorm layers re-estimate their statistics (train.train_mode_epochs)"
    if train.augment_val:
        return "the validation split is augmented (train.augment_val)"
    network, trains = built.module, plan.trains(0)
    if not any(trains(name) for name, _ in network.named_parameters()):
        return "nothing trains"
    try:
        train_graph, eval_graph = Traced(network, True), Traced(network, False)
    except Exception as exc:  # fx's TraceError, or whatever the forward raised on a proxy
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"cannot trace {built.arch}: {type(exc).__name__}: {reason}"
    blocked = [_blocks(node, network, trains) for node in train_graph.nodes]
    end = blocked.index(True) if True in blocked else len(blocked) - 1  # the output node
    agree = train_graph.agrees_with(eval_graph)
    candidates = sorted(i for i in train_graph.single_tensor_points(end) if i < agree and i in eval_graph.single_tensor_points(end))
    for index in reversed(candidates):
        if index == 0:
            return "the first layer trains"
        prefix = train_graph.prefix(network, index)  # the same ops as the eval graph's, by `agree`
        probe = torch.zeros(2, 3, image_size, image_size, device=next(network.parameters()).device)
        modes = {m: m.training for m in network.modules()}
        try:
            with torch.no_grad():
                out = prefix.eval()(probe)
        finally:
            for module, mode in modes.items():
                module.training = mode
        if not (isinstance(out, torch.Tensor) and out.dim() >= 1 and out.shape[0] == 2):
            continue  # not one tensor with a row per image: cut earlier
        name = train_graph.name_after(index)
        if out[0].numel() > probe[0].numel():  # features bigger than the image would cost more to cache than to recompute
            return f"the features at the cut ({name}) are larger than the image"
        suffix = Suffix(network, train_graph.suffix(index), eval_graph.suffix(index))
        return Cut(name, f"fx:{train_graph.qualname(train_graph.nodes[index])}", prefix, suffix)
    return "the first layer trains"


class Traced:
    """A network's fx graph in one mode, its nodes in execution order, named by module path."""

    def __init__(self, network: nn.Module, training: bool):
        ops = [c for _, c in inspect.getmembers(torchvision.ops, inspect.isclass) if issubclass(c, nn.Module)]
        tracer = NodePathTracer(autowrap_modules=(math, torchvision.ops), leaf_modules=ops)
        modes = {m: m.training for m in network.modules()}
        network.train(training)
        try:
            self.graph = tracer.trace(network)
        finally:
            for module, mode in modes.items():
                module.training = mode
        self.names = tracer.node_to_qualname
        self.nodes = list(self.graph.nodes)

    def qualname(self, node: fx.Node) -> str:
        return self.names.get(node, node.name)

    def signature(self, node: fx.Node) -> tuple[Any, ...]:
        def named(a: Any) -> Any:
            return fx.node.map_arg(a, self.qualname)

        return node.op, str(node.target), self.qualname(node), repr(named(node.args)), repr(named(node.kwargs))

    def agrees_with(self, other: Traced) -> int:
        """How many leading nodes the two graphs run alike."""
        count = 0
        for a, b in zip(self.nodes, other.nodes):
            if self.signature(a) != other.signature(b):
                break
            count += 1
        return count

    def single_tensor_points(self, end: int) -> set[int]:
        """Positions before `end` after which only that node's output is still needed (parameters aside)."""
        position = {node: i for i, node in enumerate(self.nodes)}
        last_use = {node: max((position[u] for u in node.users), default=-1) for node in self.nodes}
        live: set[fx.Node] = set()
        points = set()
        for i, node in enumerate(self.nodes[:end]):
            if node.op != "get_attr":  # a parameter or buffer: the suffix can read it again
                live.add(node)
            live = {n for n in live if last_use[n] > i}
            if live == {node}:
                points.add(i)
        return points

    def prefix(self, network: nn.Module, index: int) -> fx.GraphModule:
        graph, env = fx.Graph(), {}
        for node in self.nodes[: index + 1]:
            env[node] = graph.node_copy(node, lambda n: env[n])
        graph.output(env[self.nodes[index]])
        module = fx.GraphModule(network, graph)
        module.graph.eliminate_dead_code()  # what only the rest needed
        module.recompile()
        return module

    def suffix(self, index: int) -> fx.Graph:
        graph = fx.Graph()
        env = {self.nodes[index]: graph.placeholder("features")}
        for node in self.nodes[index + 1 :]:
            for used in node.all_input_nodes:  # parameters read before the cut are read again after it
                if used not in env:
                    env[used] = graph.node_copy(used, lambda n: env[n])
            env[node] = graph.node_copy(node, lambda n: env[n])
        return graph

    def name_after(self, index: int) -> str:
        """The outermost module that the part after the cut starts and holds whole: `fc`, `layer3`, `classifier.2`."""
        before = [self.qualname(n) for n in self.nodes[1 : index + 1]]
        after = next((n for n in self.nodes[index + 1 :] if n.op != "get_attr"), self.nodes[-1])
        parts = self.qualname(after).split(".")
        for depth in range(1, len(parts) + 1):
            path = ".".join(parts[:depth])
            if not any(b == path or b.startswith(path + ".") for b in before):
                return path
        return self.qualname(after)


def _blocks(node: fx.Node, network: nn.Module, trains: Callable[[str], bool]) -> bool:
    """Whether the cut must come before this node: it trains, or its output is random or batch-dependent.

    Dropout and stochastic depth with p = 0 (a ViT's, ConvNeXt's first block) are the identity."""
    if node.op == "call_module":
        module = network.get_submodule(str(node.target))
        if any(trains(f"{node.target}.{name}") for name, _ in module.named_parameters()):
            return True
        batch_stats = isinstance(module, nn.modules.batchnorm._BatchNorm) and not module.track_running_stats
        return (isinstance(module, _RANDOM_MODULES) and getattr(module, "p", None) != 0) or batch_stats
    if node.op == "get_attr":
        target = str(node.target)
        return any(trains(name) for name, _ in network.named_parameters() if name == target or name.startswith(target + "."))
    if node.op == "call_function":
        if node.target is F.batch_norm:  # functional BatchNorm on batch statistics
            return bool(node.kwargs.get("training", node.args[5] if len(node.args) > 5 else False))
        p = node.kwargs.get("p", node.args[1] if len(node.args) > 1 else None)
        return node.target in _RANDOM_FUNCTIONS and not (node.target in _DROPOUT_FUNCTIONS and p == 0)
    if node.op == "call_method":
        return node.target in _RANDOM_METHODS
    return False


class FeatureInputs:
    """Model inputs from cached features: a drop-in for the pixel path in Runner."""

    def __init__(
        self,
        cut: Cut,
        sets: list[ImageSet],
        config: TrialConfig,
        root: Path,
        device: torch.device,
        precision: str,
        autocast: Any,
        channels_last: bool,
    ):
        """`sets`: the trial's train, val and test sets, in that order."""
        self.device = device
        train, model = config.train, config.model
        # A flipped view only of pools that train (train, and val where lr_probe trains on it): the test pool is only evaluated.
        training_pools = {images.pool_key for images in sets[:2]} if train.augment == "hflip" else set()
        identity = {
            "arch": model.arch, "weights": model.weights, "hidden": list(model.hidden),
            # random weights differ per seed; pretrained ones do not
            "seed": config.seed if model.weights == "none" else None,
            "cut": cut.key, "normalize": train.normalize,
            # the precision actually used, and where: bf16 features from a GPU are not a CPU's fp32 ones
            "precision": precision, "device": device.type, "channels_last": channels_last, "torch": torch.__version__,
        }  # fmt: skip
        self.features: dict[str, dict[str, torch.Tensor]] = {}
        self.built_now = False
        prefix = cut.prefix.eval()  # shares the network's modules: the next epoch's set_train_mode sets them again
        for images in sets:
            if images.pool_key in self.features:
                continue
            self.features[images.pool_key] = {}
            for view in ("plain", "flip") if images.pool_key in training_pools else ("plain",):
                what = json.dumps({**identity, "pool": images.pool_key, "view": view}, sort_keys=True)
                key = hashlib.sha256(what.encode()).hexdigest()[:24]
                path = root / CACHE_DIR / "features" / f"{key}.npy"
                if not path.exists():  # the prefix runs only here, its weights in the build's layout
                    prefix.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
                    _build(prefix, images, view, train.normalize, path, device, autocast, channels_last)
                    self.built_now = True
                self.features[images.pool_key][view] = torch.from_numpy(np.load(path, mmap_mode="c"))

    def batch(self, images: ImageSet, positions: torch.Tensor, aug: str, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        views = self.features[images.pool_key]
        index = images.index.index_select(0, positions)
        where = views["plain"].device  # the card, where `place` put the features, or the host
        index = pipeline.to_device(index, where)
        x = views["plain"].index_select(0, index)
        if aug == "hflip":  # the same draw as pipeline.augment's, so the pixel path and this one agree
            flip = pipeline.to_device(torch.rand(len(index), generator=gen) < 0.5, where)
            x = torch.where(flip.view(-1, *[1] * (x.dim() - 1)), views["flip"].index_select(0, index), x)
        return pipeline.to_device(x, self.device), pipeline.to_device(images.labels.index_select(0, positions), self.device)

    def place(self, budget_bytes: int) -> str:
        """Copy the features to the card once where they fit in `budget_bytes`: a step then copies nothing."""
        if self.device.type == "cpu":
            return "host"
        tensors = [t for views in self.features.values() for t in views.values()]
        needed = sum(t.numel() * t.element_size() for t in tensors)
        if needed > budget_bytes:
            return f"features staged ({needed / 2**20:.0f} MB > {budget_bytes / 2**20:.0f} MB for data on the card)"
        for views in self.features.values():
            for view, tensor in views.items():
                views[view] = tensor.to(self.device)
        return f"features on card ({needed / 2**20:.0f} MB)"


@torch.no_grad()
def _build(
    prefix: nn.Module, images: ImageSet, view: str, normalize: str, path: Path, device: torch.device, autocast: Any, channels_last: bool
) -> None:
    """The prefix's output for every image of the pool, written atomically."""
    pool = images.pool
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        out = None
        for start in range(0, len(pool), 256):
            x = images.resized(pipeline.to_device(pool[start : start + 256], device))  # small images kept small
            if view == "flip":
                x = x.flip(-1)
            with autocast():
                f = prefix(pipeline.normalize(x, normalize, channels_last)).float().cpu()
            if out is None:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(pool), *f.shape[1:]))
            out[start : start + len(f)] = f.contiguous().numpy()
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
