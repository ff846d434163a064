"""The freeze strategy registry: what `train.freeze` may say, and which parameters train at each epoch.

    train.freeze: head | none | bn | {last: l} | {trainable: [paths]} | {frozen: [paths]} | {gradual: {...}}

One entry per word or mapping key holds everything about a strategy: the check of its argument (at
grid load), its rules against an arch (a cross-key check), its one canonical spelling (so equal
behaviours hash to one trial id), the module paths it names (checked against the network before a
run) and its plan: from the network's names alone (`Network`), which parameters train from which
epoch on. `trial/networks.py` applies a plan to a torch module. Torch-free: the driver validates with it.

Adding a strategy is one `STRATEGIES.register(Strategy(...))` here, with an `example` argument:
`tests/registries/test_registries.py` checks every strategy's check, canonical spelling and plan on ResNet18,
and `tests/trial/test_trial/networks.py` checks, case by case, that exactly the planned parameters get gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tlbench.registries import archs
from tlbench.registries.archs import ARCHS, PARAMETERLESS_CHILDREN, Arch
from tlbench.registries.registry import Registry, suggest
from tlbench.values import is_int

Predicate = Callable[[str], bool]  # a parameter's dotted name -> does it train


@dataclass(frozen=True)
class Network:
    """What a plan reads of a network: names only."""

    arch: str
    head: str  # dotted path of the task head; it always trains
    children: tuple[str, ...]  # the root's children in forward order, for {last: l}
    blocks: tuple[str, ...]  # default blocks of gradual unfreezing, head side first
    batchnorms: tuple[str, ...]  # dotted paths of every BatchNorm layer
    modules: frozenset[str]  # every module path


@dataclass
class FreezePlan:
    stages: list[tuple[int, Predicate]]  # (first epoch, which parameters train), by epoch
    freeze_all_bn_stats: bool = False  # gradual unfreezing keeps every BN's ImageNet statistics
    frozen_bn: str = "eval"  # train.frozen_bn: train puts frozen BatchNorm in train mode (plain model.train())

    def trains(self, epoch: int) -> Predicate:
        current = self.stages[0][1]
        for start, predicate in self.stages:
            if epoch >= start:
                current = predicate
        return current

    def ever_trains(self, name: str) -> bool:
        """Whether the parameter of this name trains at some stage: one that never does never gets a gradient."""
        return any(predicate(name) for _, predicate in self.stages)


def under(prefixes: list[str] | tuple[str, ...]) -> Predicate:
    return lambda name: any(name == p or name.startswith(p + ".") for p in prefixes)


def _always(name: str) -> bool:
    return True


def _no_problem(arg: Any, *rest: Any) -> Any:
    return None


@dataclass(frozen=True)
class Strategy:
    name: str  # the word, or the mapping's one key
    plan: Callable[[Any, Network], FreezePlan]  # (argument, network) -> stages
    shape: str | None = None  # a mapping's argument, for messages ("l", "[module paths]"); None: a word
    check: Callable[[Any], str | None] = _no_problem  # the argument alone -> what was expected, or None
    # (argument, arch) -> (dotted key, what was expected) where the arch cannot run it, or None.
    check_arch: Callable[[Any, Arch], tuple[str, str] | None] = _no_problem
    canonical: Callable[[Any, Arch], Any] | None = None  # (argument, arch) -> the one spelling of its behaviour
    paths: Callable[[Any], list[str]] = lambda arg: []  # module paths the argument names
    example: Any = None  # a valid argument on ResNet18, for the registry's tests and the messages' readers
    # Only the head trains: no backward pass through the base (the cost model counts a step as 2x forward, not 3x).
    only_head: bool = False
    doc: str = ""  # what trains, in words, for the grid file reference (docs/grid-file.md)

    @property
    def is_word(self) -> bool:
        return self.shape is None


STRATEGIES: Registry[Strategy] = Registry("freeze strategy")


def split(freeze: Any) -> tuple[Strategy, Any]:
    """`head` -> (its entry, None); `{last: 3}` -> (last's entry, 3)."""
    if isinstance(freeze, str):
        return STRATEGIES[freeze], None
    ((kind, arg),) = freeze.items()
    return STRATEGIES[kind], arg


def words() -> list[str]:
    return [s.name for s in STRATEGIES.entries() if s.is_word]


def keys() -> list[str]:
    return [s.name for s in STRATEGIES.entries() if not s.is_word]


def spellings() -> str:
    """Every strategy as a grid file spells it: `head | none | ... | {last: l} | ...`."""
    return " | ".join(s.name if s.is_word else f"{{{s.name}: {s.shape}}}" for s in STRATEGIES.entries())


def check(value: Any) -> str | None:
    """What a grid file's `train.freeze` should have been, or None when it is a valid strategy."""
    expected = f"one of {', '.join(words())}, or a mapping with one key of {', '.join(f'{{{k}: ...}}' for k in keys())}"
    if isinstance(value, str):
        return None if value in words() else expected + suggest(value, words())
    if not isinstance(value, dict) or len(value) != 1:
        return expected
    ((kind, arg),) = value.items()
    if kind not in keys():
        return expected + suggest(kind, keys())
    return STRATEGIES[kind].check(arg)


def check_arch(freeze: Any, arch: Arch) -> tuple[str, str] | None:
    strategy, arg = split(freeze)
    return strategy.check_arch(arg, arch)


def canonical(freeze: Any, arch: Arch) -> Any:
    """One spelling per behaviour, so equal configs hash equal."""
    strategy, arg = split(freeze)
    return strategy.canonical(arg, arch) if strategy.canonical else freeze


KEY = "train.freeze"  # the trial config key whose value is a strategy


def canonical_in(freeze: Any, config: Mapping[str, Any]) -> Any:
    """`freeze`'s one spelling in a trial config, on the arch the config names: what the grid hashes and what
    a table row's `where` is matched by. An arch no registry knows keeps it as written (the config's check says so)."""
    arch = spelling_context(config)
    return canonical(freeze, archs.get(arch)) if archs.is_known(arch) else freeze


def spelling_context(config: Mapping[str, Any]) -> str:
    """What of a config, besides the strategy, its canonical spelling depends on: equal contexts, equal spellings."""
    return config["model"]["arch"]


def only_head_trains(freeze: Any) -> bool:
    """Whether only the task head trains, every epoch, for a canonical spelling (`canonical_in`)."""
    strategy, _ = split(freeze)
    return strategy.only_head


def module_paths(freeze: Any) -> list[str]:
    strategy, arg = split(freeze)
    return strategy.paths(arg)


def missing_module(freeze: Any, arch: str, modules: frozenset[str]) -> str | None:
    """What is wrong where the strategy names a module path the network lacks, or None."""
    strategy, arg = split(freeze)
    for path in strategy.paths(arg):
        if path not in modules:
            top = sorted({n.split(".")[0] for n in modules})
            return f"train.freeze.{strategy.name}: {arch} has no module {path!r}; its top-level modules: {', '.join(top)}"
    return None


def plan(freeze: Any, network: Network) -> FreezePlan:
    problem = missing_module(freeze, network.arch, network.modules)
    if problem:
        raise ValueError(problem)
    strategy, arg = split(freeze)
    return strategy.plan(arg, network)


# -- the strategies ------------------------------------------------------------------------------

STRATEGIES.register(Strategy("head", lambda arg, net: FreezePlan([(0, under([net.head]))]), only_head=True,
                             doc="only the new head trains"))  # fmt: skip
STRATEGIES.register(Strategy("none", lambda arg, net: FreezePlan([(0, _always)]), doc="every parameter trains (full fine-tuning)"))
# BatchNorm-only fine-tuning: the head and every BatchNorm's affine parameters train.
STRATEGIES.register(Strategy("bn", lambda arg, net: FreezePlan([(0, under([net.head, *net.batchnorms]))]),
                             doc="the head and every BatchNorm's affine parameters train"))  # fmt: skip


def _is_count(arg: Any) -> bool:
    return is_int(arg) and arg >= 0


def _last_on_arch(n_last: int, arch: Arch) -> tuple[str, str] | None:
    if arch.children is None:
        with_children = ", ".join(a.name for a in ARCHS.entries() if a.children)
        return "train.freeze", f"{{last: l}} counts the children of {with_children}; {arch.name} has no such order"
    if n_last > len(arch.children):
        return "train.freeze.last", f"at most {len(arch.children)} (the children of {arch.name} before its head), got {n_last}"
    return None


def _last_canonical(n_last: int, arch: Arch) -> Any:
    """002's l=0 and l=1 both train only the head of a ResNet (the last child, avgpool, has no weights)."""
    children = arch.children or ()
    last = children[len(children) - n_last :] if n_last else ()
    return "head" if arch.children is not None and all(c in PARAMETERLESS_CHILDREN for c in last) else {"last": n_last}


def _last_plan(n_last: int, net: Network) -> FreezePlan:
    """002's "last l layers": the head and the last l children of the root before it."""
    last = net.children[len(net.children) - n_last :] if n_last else ()
    return FreezePlan([(0, under([net.head, *last]))])


STRATEGIES.register(Strategy(
    "last", _last_plan, shape="l", check=lambda n_last: None if _is_count(n_last) else "{last: l} with an integer l >= 0",
    check_arch=_last_on_arch, canonical=_last_canonical, example=3,
    doc="002's \"last l layers\": the head and the last l children of the network's root before it (a ResNet's conv1, bn1, "
        "relu, maxpool, layer1..layer4, avgpool); l=0 and l=1 both train only a ResNet's head"))  # fmt: skip


def _paths_check(kind: str) -> Callable[[Any], str | None]:
    def check_paths(arg: Any) -> str | None:
        ok = isinstance(arg, list) and arg and all(isinstance(x, str) for x in arg)
        return None if ok else f"{{{kind}: [module paths]}} with at least one dotted module path"

    return check_paths


STRATEGIES.register(Strategy("trainable", lambda paths, net: FreezePlan([(0, under([net.head, *paths]))]),
                             shape="[module paths]", check=_paths_check("trainable"), paths=list, example=["layer4"],
                             doc="the head and these modules train, everything else is frozen"))  # fmt: skip


def _frozen_plan(paths: list[str], net: Network) -> FreezePlan:
    frozen, head = under(paths), under([net.head])
    return FreezePlan([(0, lambda name: head(name) or not frozen(name))])


STRATEGIES.register(Strategy("frozen", _frozen_plan, shape="[module paths]", check=_paths_check("frozen"), paths=list,
                             example=["conv1", "layer1"], doc="everything but these modules trains (the head always does)"))  # fmt: skip


def _gradual_check(arg: Any) -> str | None:
    if not isinstance(arg, dict) or set(arg) - {"every", "blocks", "first"}:
        return "{gradual: {every: k, blocks: [module paths, head side first], first: epoch}}"
    every, blocks, first = arg.get("every", 1), arg.get("blocks", []), arg.get("first", arg.get("every", 1))
    if not (_is_count(every) and every >= 1):
        return "gradual.every: an integer >= 1 (epochs between unfreezing two blocks)"
    if not _is_count(first):
        return "gradual.first: an integer >= 0 (the 0-based epoch the first block unfreezes; default: every)"
    if not (isinstance(blocks, list) and all(isinstance(x, str) for x in blocks)):
        return "gradual.blocks: a list of module paths"
    return None


def _gradual_canonical(arg: dict[str, Any], arch: Arch) -> Any:
    every = arg.get("every", 1)
    out = {"every": every, "blocks": list(arg.get("blocks") or arch.blocks)}
    if arg.get("first", every) != every:  # the default stays unspelled, so ids from before `first` hold
        out["first"] = arg["first"]
    return {"gradual": out}


def _gradual_plan(arg: dict[str, Any], net: Network) -> FreezePlan:
    """The head, then one more block every `every` epochs, the first at epoch `first`."""
    blocks, every = arg["blocks"], arg["every"]
    first = arg.get("first", every)
    stages = [(0, under([net.head]))] + [(first + (k - 1) * every, under([net.head, *blocks[:k]])) for k in range(1, len(blocks) + 1)]
    return FreezePlan(stages, freeze_all_bn_stats=True)


def _gradual_on_arch(arg: dict[str, Any], arch: Arch) -> tuple[str, str] | None:
    if arg.get("blocks") or arch.blocks:
        return None
    return "train.freeze.gradual.blocks", f"the blocks to unfreeze: {arch.name} has no default order"


STRATEGIES.register(Strategy(
    "gradual", _gradual_plan, shape="{every: k, blocks: [...], first: e}", check=_gradual_check, check_arch=_gradual_on_arch,
    canonical=_gradual_canonical, paths=lambda arg: list(arg.get("blocks") or []), example={"every": 1, "first": 0},
    doc="gradual unfreezing: the head, then one more block every k epochs (blocks head side first, default the arch's), the "
        "first at 0-based epoch e (default k); every BatchNorm keeps its ImageNet statistics"))  # fmt: skip
