"""The arch registry: everything tlbench knows about a network it can fine-tune, one entry per name.

    archs.get("resnet18")   # an Arch; a misspelt name raises UnknownName listing the valid ones

Three kinds of entry:
- the four archs of the reports (and ResNet34), written here by hand: their children and blocks give 002's
  "last l layers" and gradual unfreezing, and their costs were measured;
- every other torchvision classification model, read from `torchvision_archs.json` (written by
  `python -m tlbench.registries.torchvision_archs` from the installed torchvision, so this stays torch-free);
- a custom network, `package.module:function`, whose function returns (module, head path).

What is not here because it is found, not stored: the head of a torchvision model
(`networks.find_head`, recorded in the JSON) and the frozen-feature cache's cut, traced from the
network (`features.find_cut`). Adding a torchvision model needs nothing; adding a hand-tuned entry
is one `ARCHS.register(Arch(...))` below, checked by `tests/registries/test_registries.py`.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

from tlbench.registries.registry import Registry

# Training images per second on one GPU at 224 px for archs without a measured rate: the report
# archs run 3,600-7,700 forward GFLOP/s of images, depthwise and attention networks run below their
# FLOPs, so the lower end, and never past AlexNet's rate (tiny networks are bound by per-step
# overhead, not FLOPs). A guess, like the measured rates: `grid plan` says so.
GPU_FORWARD_GFLOPS_PER_S = 3600.0
GPU_MAX_IMAGES_PER_S = 2500.0
CUSTOM_GFLOPS_224 = 2.0  # a guess for custom archs, whose cost nothing tells us

# Root children that hold no weights: a "last l" that adds only these adds nothing.
PARAMETERLESS_CHILDREN = frozenset({"relu", "maxpool", "avgpool"})


@dataclass(frozen=True)
class Arch:
    """Static facts about one architecture."""

    name: str  # the grid file's `model.arch`
    head: str  # dotted path of the last Linear, replaced by a task head
    classifier: str  # dotted path replaced when the head has hidden layers
    min_image_size: int  # smallest input side the feature extractor accepts, px
    # Forward GFLOPs per image at 224 px, 2 per multiply-add as torch's FlopCounterMode counts
    # (torchvision's published "GFLOPS" count multiply-adds, half as many).
    gflops_224: float
    gpu_images_per_s: float  # training images per second on one A10G/T4-class GPU at 224 px, bf16
    gpu_share: float  # default fraction of one GPU per trial (on paper, see docs/cluster.md)
    # Children of the root module in forward order, for 002's "last l layers"
    # (None: the arch has no such ordering that the reports used).
    children: tuple[str, ...] | None = None
    blocks: tuple[str, ...] = ()  # blocks that gradual unfreezing opens, head side first
    image_size: int | None = None  # the one input side the network accepts (a ViT at random init); None: any
    aux_logits: bool = False  # auxiliary classifiers, dropped when built (GoogLeNet, Inception v3)
    custom: bool = False  # built by a `package.module:function` of the user's


def default_gpu_share(gflops_224: float) -> float:
    """A GPU share on paper for an arch outside the reports, by its forward GFLOPs at 224 px.

    The same thresholds reproduce the report archs' hand-set shares (AlexNet 1.4 and ResNet18
    3.6 GFLOPs: 0.25; ResNet50 8.2 and VGG16 30.9: 0.5); past 40 GFLOPs (ViT-L, RegNetY-128GF,
    EfficientNet-V2-L) a trial gets a whole card. `--gpus-per-trial` overrides it."""
    return 0.25 if gflops_224 < 5 else 0.5 if gflops_224 < 40 else 1.0


def default_gpu_images_per_s(gflops_224: float) -> float:
    return min(GPU_MAX_IMAGES_PER_S, GPU_FORWARD_GFLOPS_PER_S / gflops_224)


ARCHS: Registry[Arch] = Registry("arch")

_RESNET_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")
_RESNET_BLOCKS = ("layer4", "layer3", "layer2", "layer1")

# The reports' archs. GPU rates: measured on an A10G/T4-class card with bf16.
ARCHS.register(
    Arch(
        "alexnet", head="classifier.6", classifier="classifier", min_image_size=63, gflops_224=1.43, gpu_images_per_s=2500.0, gpu_share=0.25
    )
)
ARCHS.register(
    Arch(
        "vgg16",
        head="classifier.6",
        classifier="classifier",
        min_image_size=32,
        gflops_224=30.94,
        gpu_images_per_s=250.0,
        gpu_share=0.5,
        # VGG16's five conv blocks, deepest first (features.N indices of their convs).
        blocks=("features.24", "features.17", "features.10", "features.5", "features.0"),
    )
)
ARCHS.register(
    Arch(
        "resnet18",
        head="fc",
        classifier="fc",
        min_image_size=32,
        gflops_224=3.63,
        gpu_images_per_s=1400.0,
        gpu_share=0.25,
        children=_RESNET_CHILDREN,
        blocks=_RESNET_BLOCKS,
    )
)
ARCHS.register(Arch("resnet50", head="fc", classifier="fc", min_image_size=32, gflops_224=8.18, gpu_images_per_s=450.0,
                    gpu_share=0.5, children=_RESNET_CHILDREN, blocks=_RESNET_BLOCKS))  # fmt: skip
# Not in the reports: ResNet34 by hand, so `{last: l}` and gradual unfreezing know its children and blocks.
# Its GPU rate is not measured: the FLOPs rule gives it, as for any other torchvision model.
ARCHS.register(Arch("resnet34", head="fc", classifier="fc", min_image_size=32, gflops_224=7.328,
                    gpu_images_per_s=default_gpu_images_per_s(7.328), gpu_share=default_gpu_share(7.328),
                    children=_RESNET_CHILDREN, blocks=_RESNET_BLOCKS))  # fmt: skip
# The entries above: named first in messages, and `tests/registries/test_registries.py` checks their module paths on the network.
HAND_WRITTEN = ARCHS.names()

TORCHVISION_TABLE = Path(__file__).with_name("torchvision_archs.json")


def _register_torchvision() -> dict[str, str]:
    """Every other torchvision classification model with a Linear head; returns those without one, with why."""
    table = json.loads(TORCHVISION_TABLE.read_text())
    for name, a in table["archs"].items():
        if name not in ARCHS:
            ARCHS.register(Arch(name, head=a["head"], classifier=a["classifier"], min_image_size=a["min_image_size"],
                                gflops_224=a["gflops_224"], gpu_images_per_s=default_gpu_images_per_s(a["gflops_224"]),
                                gpu_share=default_gpu_share(a["gflops_224"]), image_size=a["image_size"],
                                aux_logits=a["aux_logits"]))  # fmt: skip
    return table["unsupported"]


UNSUPPORTED = _register_torchvision()


def is_custom(arch: str) -> bool:
    return ":" in arch


def custom_shape_problem(arch: str) -> str | None:
    """What a custom arch's string should look like where it does not (`package.module:function`), or None.

    Only its shape: the commands that only read (`list`, `plan`, `status`, the report) never import it."""
    module, _, function = arch.partition(":")
    if all(part.isidentifier() for part in module.split(".")) and function.isidentifier():
        return None
    return f"'package.module:function' for a custom model (dotted names), got {arch!r}"


def import_problem(arch: str) -> str | None:
    """Import a custom arch's module, on the driver before any trial starts (`grid run`'s preflight), so a typo
    fails now and not in a worker hours in; why it failed, or None.

    Importing runs the module's code: only `run` does it (a grid file is code, like a script; see docs/reliability.md,
    the trust boundary). The function is not called: that would build the network, which may be costly."""
    module, _, function = arch.partition(":")
    try:
        found = getattr(importlib.import_module(module), function, None)
    except Exception as exc:  # ImportError, or whatever the module raised while importing
        return f"an importable module: importing {module} failed ({type(exc).__name__}: {exc})"
    return None if callable(found) else f"a function {function} in {module} (it has no such callable)"


def is_known(arch: str) -> bool:
    return is_custom(arch) or arch in ARCHS


def get(arch: str) -> Arch:
    """The entry of a registered arch, or the defaults of a custom one (`package.module:function`)."""
    if is_custom(arch):
        return Arch(arch, head="", classifier="", min_image_size=1, gflops_224=CUSTOM_GFLOPS_224,
                    gpu_images_per_s=default_gpu_images_per_s(CUSTOM_GFLOPS_224), gpu_share=0.25, custom=True)  # fmt: skip
    return ARCHS[arch]
