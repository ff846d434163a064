"""The frozen-feature cache: compute a frozen prefix of the network once, train the rest on it.

Most trials of the reports train only the last part of a network, yet would
recompute the same frozen features every epoch. Where everything up to some
point of the network's forward pass is frozen and deterministic, the output at
that point is computed once and kept under `<data>/.tlbench-cache/features/`,
shared by every trial and rerun that needs the same features. The file's key is
what the features are a function of (`fingerprint`): the prefix's traced code,
the modules it calls and every tensor it reads, the pool's pixels (its key and
shape: source files, size, resize), the normalisation, the precision, device
and memory format, and the torch and torchvision versions -- not the arch's
name, which a custom arch keeps when its code or weights change.

- The cut is found on the network's traced graph (torch.fx, with torchvision's
  node-path tracer, which knows torchvision's own ops): the latest point where
  one tensor carries everything the rest of the forward pass needs, and
  nothing before it trains (in this trial's first stage) or is random
  (dropout, as a module or a function, stochastic depth, random ops). The
  network is traced in the modes its first epoch runs in: frozen BatchNorm is
  in eval mode (`networks.set_train_mode`), so deterministic. A trial that cannot
  cut says what stops it (the op, and where the cut before it fails).
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
- A cache file is used only if it is a regular file holding exactly what a build
  writes (float32, a row per image of the pool, the features' shape); anything
  else (planted, truncated, of another shape) is rebuilt with a warning naming it.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import fx, nn
from torchvision.models.feature_extraction import NodePathTracer

from tlbench.registries.augmentations import AUGMENTATIONS
from tlbench.results.regular_files import map_npy
from tlbench.trial import networks, pipeline
from tlbench.trial.config import TrainConfig, TrialConfig
from tlbench.trial.data import CACHE_DIR, DataError, ImageSet
from tlbench.trial.networks import Built, FreezePlan

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
    shape: tuple[int, ...]  # the features of one image


class Suffix(nn.Module):
    """The graph after the cut, in the mode the whole network is in.

    `networks.set_train_mode` and `evaluate` set the network's mode; its
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
    """Where to cut, or why this trial cannot use the cache.

    The work is bounded whatever the outcome: two traces and one forward pass of the frozen part, on
    two probe images, however many cut points it rejects."""
    reason = _config_reason(plan, train)
    if reason:
        return reason
    network, trains = built.module, plan.trains(0)
    if not any(trains(name) for name, _ in network.named_parameters()):
        return "nothing trains"
    try:
        with _first_stage_modes(built, plan):  # as the first epoch runs it: frozen BatchNorm in eval mode
            train_graph = Traced(network)
            stops = [_stop(node, train_graph.qualname(node), network, trains) for node in train_graph.nodes]  # reads modes
        with _modes_kept(network):
            network.eval()
            eval_graph = Traced(network)
    except Exception as exc:  # fx's TraceError, or whatever the forward raised on a proxy
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"cannot trace {built.arch}: {type(exc).__name__}: {reason}"
    end, stop = _first_stop(train_graph, eval_graph, stops)
    candidates = sorted(train_graph.single_tensor_points(end) & eval_graph.single_tensor_points(end) - {0})
    if not candidates:
        return "the first layer trains" if stop.trains else f"{stop.why}, and there is no point before it to cut at"
    probe = torch.zeros(2, 3, image_size, image_size, device=next(network.parameters()).device)
    outputs = eval_graph.outputs(network, probe, set(candidates))
    for index in reversed(candidates):
        out = outputs[index]
        if not (isinstance(out, torch.Size) and len(out) >= 1 and out[0] == 2):
            continue  # not one tensor with a row per image: cut earlier
        name = train_graph.name_after(index)
        if math.prod(out[1:]) > probe[0].numel():  # features bigger than the image would cost more to cache than to recompute
            if stop.trains:
                return f"the features at the cut ({name}) are larger than the image"
            return f"{stop.why}, and the cut before it ({name}) would cache features larger than the image"
        prefix = train_graph.prefix(network, index)  # the same ops as the eval graph's, by `_first_stop`
        suffix = Suffix(network, train_graph.suffix(index), eval_graph.suffix(index))
        return Cut(name, f"fx:{train_graph.qualname(train_graph.nodes[index])}", prefix, suffix, tuple(out[1:]))
    return "the first layer trains" if stop.trains else f"{stop.why}, and there is no point before it to cut at"


def _config_reason(plan: FreezePlan, train: TrainConfig) -> str | None:
    """Why the trial's config alone rules the cache out, if it does."""
    if len(plan.stages) > 1:
        return "gradual unfreezing moves the cut every stage"
    if not AUGMENTATIONS[train.augment].cacheable:
        return "random crops, rotations and colour jitter change the input every epoch"
    if train.train_mode_epochs is not None:
        return "frozen BatchNorm layers re-estimate their statistics (train.train_mode_epochs)"
    if train.frozen_bn == "train":
        return "frozen BatchNorm layers re-estimate their statistics (train.frozen_bn: train)"
    if train.augment_val:
        return "the validation split is augmented (train.augment_val)"
    return None


@contextmanager
def _modes_kept(network: nn.Module) -> Iterator[None]:
    """Whatever the body sets of the modules' modes and the parameters' requires_grad is undone after it."""
    modes = {m: m.training for m in network.modules()}
    grads = {p: p.requires_grad for p in network.parameters()}
    try:
        yield
    finally:
        for module, mode in modes.items():
            module.training = mode
        for param, grad in grads.items():
            param.requires_grad_(grad)


@contextmanager
def _first_stage_modes(built: Built, plan: FreezePlan) -> Iterator[None]:
    """The network in the modes its first training epoch runs in (train, frozen BatchNorm in eval: `networks.set_train_mode`)."""
    with _modes_kept(built.module):
        networks.apply_stage(built, plan, 0)  # set_train_mode reads what trains from requires_grad
        networks.set_train_mode(built, plan, 0)
        yield


@dataclass
class Stop:
    """Why the cut must come before a node."""

    why: str  # for people: "blocks.1.bernoulli_ is random in train mode"
    trains: bool  # the node trains (rather than being random, batch-dependent or mode-dependent)


def _first_stop(train_graph: Traced, eval_graph: Traced, stops: list[Stop | None]) -> tuple[int, Stop]:
    """The first node the cut must come before, and why: one that trains or is random, or where the graphs of
    train and eval mode part (the prefix runs in eval mode when built, the network in train mode when training)."""
    end = next((i for i, s in enumerate(stops) if s), len(stops) - 1)  # the output node at the latest
    stop = stops[end] or Stop("the network's output", trains=True)
    agree = train_graph.agrees_with(eval_graph)
    if agree < end:
        if stop.trains:  # else the random op just after is what makes the modes part, most likely: name it
            stop = Stop(f"{train_graph.qualname(train_graph.nodes[agree])} runs differently in train mode than in eval mode", False)
        end = agree
    return end, stop


class Traced:
    """A network's fx graph in one mode, its nodes in execution order, named by module path."""

    def __init__(self, network: nn.Module):
        """Traced in the modes the network's modules are in now."""
        tracer = NodePathTracer(autowrap_modules=(math, torchvision.ops), leaf_modules=_leaf_ops())
        self.graph = tracer.trace(network)
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

    def outputs(self, network: nn.Module, probe: torch.Tensor, wanted: set[int]) -> dict[int, torch.Size | None]:
        """The output shape at each wanted position (None: not one tensor), from one eval-mode pass up to the last of them."""
        last, shapes = max(wanted), {}
        nodes = {node: i for i, node in enumerate(self.nodes)}

        class Recorder(fx.Interpreter):
            def run_node(self, node: fx.Node) -> Any:
                out = super().run_node(node)
                i = nodes[node]
                if i in wanted:
                    shapes[i] = out.shape if isinstance(out, torch.Tensor) else None
                if i == last:
                    raise _Done
                return out

        with _modes_kept(network), torch.no_grad():
            network.eval()
            try:
                Recorder(network, graph=self.graph).run(probe)
            except _Done:
                pass
        return shapes

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


def _stop(node: fx.Node, where: str, network: nn.Module, trains: Callable[[str], bool]) -> Stop | None:
    """Why the cut must come before this node, if it must: it trains, or its output is random or batch-dependent.

    Read with the network in its first epoch's modes. Dropout and stochastic depth with p = 0 (a ViT's,
    ConvNeXt's first block) are the identity."""
    if node.op == "call_module":  # a leaf (torch.nn, torchvision.ops): what runs inside it is not in the graph
        target = str(node.target)
        module = network.get_submodule(target)
        if any(trains(f"{target}.{name}") for name, _ in module.named_parameters()):
            return Stop(f"{target} trains", trains=True)
        for path, sub in module.named_modules(prefix=target):
            kind = type(sub).__name__
            if isinstance(sub, _RANDOM_MODULES) and sub.training and getattr(sub, "p", None) != 0:
                return Stop(f"{path} ({kind}) is random in train mode", trains=False)
            if isinstance(sub, nn.modules.batchnorm._BatchNorm) and _batch_statistics(sub):
                return Stop(f"{path} ({kind}) normalises with each batch's statistics", trains=False)
        return None
    if node.op == "get_attr":
        target = str(node.target)
        if any(trains(name) for name, _ in network.named_parameters() if name == target or name.startswith(target + ".")):
            return Stop(f"{target} trains", trains=True)
        return None
    where = _describe(node, where)
    if node.op == "call_function":
        if node.target is F.batch_norm and node.kwargs.get("training", node.args[5] if len(node.args) > 5 else False):
            return Stop(f"{where} normalises with each batch's statistics", trains=False)
        p = node.kwargs.get("p", node.args[1] if len(node.args) > 1 else None)
        if node.target in _RANDOM_FUNCTIONS and not (node.target in _DROPOUT_FUNCTIONS and p == 0):
            return Stop(f"{where} is random in train mode", trains=False)
    if node.op == "call_method" and node.target in _RANDOM_METHODS:
        return Stop(f"{where} is random in train mode", trains=False)
    return None


def _batch_statistics(bn: nn.modules.batchnorm._BatchNorm) -> bool:
    """Whether a BatchNorm layer normalises with the batch's statistics, as its forward decides."""
    return bn.training or (bn.running_mean is None and bn.running_var is None)


def _describe(node: fx.Node, where: str) -> str:
    """A function or method node for people: where it runs, and what (`blocks.1.bernoulli_`, `stem.add_noise (rand)`)."""
    op = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return where if where.rsplit(".", 1)[-1] == op else f"{where} ({op})"


class _Done(Exception):
    """Ends an interpreter's pass early: what was wanted has been seen."""


@functools.cache
def _leaf_ops() -> list[type[nn.Module]]:
    """torchvision's op modules, kept whole in traced graphs (with torch.nn's)."""
    return [c for _, c in inspect.getmembers(torchvision.ops, inspect.isclass) if issubclass(c, nn.Module)]


class FeatureInputs:
    """Model inputs from cached features: a drop-in for the pixel path (pipeline.PixelInputs), chosen by speed_path.py."""

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
        train = config.train
        prefix = cut.prefix.eval()  # shares the network's modules: the next epoch's set_train_mode sets them again
        # What the features are a function of: the prefix (its code, modules, weights), the pixels (the pool's key), how
        # pixels become inputs, and the numerics -- not the arch's name, which a custom arch keeps when its code changes.
        identity = {
            "prefix": fingerprint(prefix), "normalize": train.normalize, "normalization": _normalization(train.normalize),
            # the precision actually used, and where: bf16 features from a GPU are not a CPU's fp32 ones
            "precision": precision, "device": device.type, "channels_last": channels_last,
            "torch": torch.__version__, "torchvision": torchvision.__version__,
        }  # fmt: skip
        self.features: dict[str, dict[str, torch.Tensor]] = {}
        self.built_now = False
        for images, views in cached_views(sets, train.augment):
            self.features[images.pool_key] = {}
            for view in views:
                pool = {"pool": images.pool_key, "pool_shape": list(images.pool.shape), "view": view}
                key = hashlib.sha256(json.dumps({**identity, **pool}, sort_keys=True).encode()).hexdigest()[:24]
                path = root / CACHE_DIR / "features" / f"{key}.npy"
                shape = (len(images.pool), *cut.shape)
                features = _cached(path, shape)
                if features is None:  # the prefix runs only here, its weights in the build's layout
                    prefix.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
                    _build(prefix, images, view, train.normalize, path, device, autocast, channels_last)
                    self.built_now = True
                    features = _built(path, shape)
                self.features[images.pool_key][view] = features

    def epoch(self, images: ImageSet, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pool rows and labels of `order` (pipeline.epoch_rows), the rows where the features are."""
        return pipeline.epoch_rows(images, order, self.features[images.pool_key]["plain"].device, self.device)

    def batch_of(
        self, images: ImageSet, rows: torch.Tensor, labels: torch.Tensor, aug: str, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached features of these pool rows (a slice of `epoch`'s), flipped where drawn, and their labels."""
        views = self.features[images.pool_key]
        x = views["plain"].index_select(0, rows)  # on the card, where `place` put the features, or the host
        if aug == "hflip":  # the same draw as pipeline.augment's, so the pixel path and this one agree
            flip = pipeline.to_device(torch.rand(len(rows), generator=gen) < 0.5, rows.device)
            x = torch.where(flip.view(-1, *[1] * (x.dim() - 1)), views["flip"].index_select(0, rows), x)
        return pipeline.to_device(x, self.device), labels

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


def cached_views(sets: list[ImageSet], augment: str) -> list[tuple[ImageSet, tuple[str, ...]]]:
    """Each distinct pool of the trial's train, val and test sets (in that order), with the views its cache holds:
    a flipped one too only for pools that train (train, and val where lr_probe trains on it), as the test pool
    is only evaluated."""
    training_pools = {images.pool_key for images in sets[:2]} if augment == "hflip" else set()
    pools = {images.pool_key: images for images in sets}  # sets of one key share its pool; in first-seen order
    return [(images, ("plain", "flip") if key in training_pools else ("plain",)) for key, images in pools.items()]


def build_images(sets: list[ImageSet], augment: str) -> int:
    """How many images the cache's build runs the prefix over: each pool once per view."""
    return sum(len(images.pool) * len(views) for images, views in cached_views(sets, augment))


def fingerprint(prefix: fx.GraphModule) -> str:
    """A hash of what the prefix computes: its generated code, the type and settings of every module it
    calls, the source of any non-torch code it calls whole, and every tensor it reads (weights, buffers,
    constants). Hashing the weights costs a fraction of a second beside building the features."""
    digest = hashlib.sha256(prefix.code.encode())
    for name, module in prefix.named_modules():
        kind = type(module)
        digest.update(f"module {name} {kind.__module__}.{kind.__qualname__}({module.extra_repr()})\n".encode())
        digest.update(_source(kind).encode())
    for node in prefix.graph.nodes:
        if node.op == "call_function":
            digest.update(_source(node.target).encode())
    tensors = dict(prefix.named_parameters())
    tensors.update(prefix.named_buffers())
    for node in prefix.graph.nodes:
        value = _attribute(prefix, str(node.target)) if node.op == "get_attr" else None
        if isinstance(value, torch.Tensor):  # fx keeps tensor constants as plain attributes
            tensors.setdefault(str(node.target), value)
    for name, tensor in sorted(tensors.items()):
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"tensor {name} {data.dtype} {list(tensor.shape)}\n".encode())
        digest.update(data.view(torch.uint8).numpy())
    return digest.hexdigest()


_LIBRARIES = frozenset({"torch", "torchvision", "math", "operator", "_operator", "builtins"})


def _source(code: Any) -> str:
    """The source of a class or function from outside torch (a custom leaf module, an fx-wrapped function): its
    behaviour is not in the traced graph. Library code is keyed by the libraries' versions instead."""
    module = getattr(code, "__module__", None) or ""
    if module.split(".")[0] in _LIBRARIES:
        return ""
    try:
        return inspect.getsource(code)
    except (OSError, TypeError):  # defined where no source is kept: its name must do
        return f"{module}.{getattr(code, '__qualname__', repr(code))}"


def _attribute(module: nn.Module, target: str) -> Any:
    for part in target.split("."):
        module = getattr(module, part, None)
    return module


def _normalization(kind: str) -> list[float]:
    """What `pipeline.normalize` makes of pixel values 0 and 255 per channel: it is affine, so this is all of it."""
    pixels = torch.tensor([0, 255], dtype=torch.uint8).expand(1, 3, 1, 2)
    return pipeline.normalize(pixels, kind, False).flatten().tolist()


def _cached(path: Path, shape: tuple[int, ...]) -> torch.Tensor | None:
    """The features cached at `path`, or None where there are none yet or they are unusable (then with a
    warning naming the file: the caller rebuilds it, which replaces whatever is there)."""
    try:
        return _read(path, shape)
    except FileNotFoundError:
        return None
    except (ValueError, OSError) as exc:  # planted, truncated, of another shape or dtype: never used as features
        warnings.warn(f"rebuilding the feature cache {path}: {exc}", stacklevel=3)
        return None


def _built(path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    """The features just built at `path` (another trial may have replaced them since, with its own build of them)."""
    try:
        return _read(path, shape)
    except (ValueError, OSError) as exc:
        raise DataError(f"the feature cache {path} cannot be read back after building it: {exc}") from None


def _read(path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    """The float32 array of this shape that `_build` wrote, mapped copy-on-write (`regular_files.map_npy`: a regular
    file only, never through a link, its header checked before mapping, so a file of too few rows fails here rather
    than as an IndexError mid-training); anything else raises ValueError."""
    return torch.from_numpy(map_npy(path, np.float32, shape))


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
        try:
            os.replace(tmp, path)  # atomic, and over whatever was planted there but a folder
        except OSError as exc:
            raise DataError(f"cannot replace the feature cache {path} ({exc}): remove it") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
