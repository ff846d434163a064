"""What tlbench knows about architectures and datasets, without importing torch.

The grid file is validated against these tables before anything runs, so they
must stay importable in a process that has no torch (the driver, `grid list`).
`models.py` and `data.py` implement exactly these names; a test checks that the
two sides agree.

Archs: the four of the reports (`ARCHS`, by hand: their children and blocks
give 002's "last l" and gradual unfreezing) and every other torchvision
classification model (`TORCHVISION`, read from `torchvision_archs.json`, which
`python -m tlbench.torchvision_archs` writes from the installed torchvision).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class ArchInfo:
    """Static facts about one torchvision architecture."""

    head: str  # dotted path of the last Linear, replaced by a task head
    classifier: str  # dotted path replaced when the head has hidden layers
    min_image_size: int  # smallest input side the feature extractor accepts, px
    gpu_share: float  # default fraction of one GPU per trial (on paper, see README)
    # Children of the root module in forward order, for 002's "last l layers"
    # (None: the arch has no such ordering that the reports used).
    children: tuple[str, ...] | None = None
    # Blocks that gradual unfreezing opens, head side first.
    blocks: tuple[str, ...] = ()
    gflops_224: float | None = None  # forward GFLOPs per image at 224 px (2 per multiply-add; see cost.py)
    image_size: int | None = None  # the one input side the network accepts (a ViT at random init); None: any
    aux_logits: bool = False  # auxiliary classifiers, dropped when built (GoogLeNet, Inception v3)


_RESNET_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")
_RESNET_BLOCKS = ("layer4", "layer3", "layer2", "layer1")

ARCHS: dict[str, ArchInfo] = {
    "alexnet": ArchInfo(head="classifier.6", classifier="classifier", min_image_size=63, gpu_share=0.25),
    "vgg16": ArchInfo(
        head="classifier.6",
        classifier="classifier",
        min_image_size=32,
        gpu_share=0.5,
        # VGG16's five conv blocks, deepest first (features.N indices of their convs).
        blocks=("features.24", "features.17", "features.10", "features.5", "features.0"),
    ),
    "resnet18": ArchInfo(
        head="fc", classifier="fc", min_image_size=32, gpu_share=0.25, children=_RESNET_CHILDREN, blocks=_RESNET_BLOCKS
    ),
    "resnet50": ArchInfo(
        head="fc", classifier="fc", min_image_size=32, gpu_share=0.5, children=_RESNET_CHILDREN, blocks=_RESNET_BLOCKS
    ),
}

# A custom arch is "package.module:function"; its function returns
# (module, head_path). It gets these defaults.
CUSTOM_ARCH = ArchInfo(head="", classifier="", min_image_size=1, gpu_share=0.25)


def default_gpu_share(gflops_224: float) -> float:
    """A GPU share on paper for an arch outside the reports, by its forward GFLOPs at 224 px.

    The same thresholds reproduce the report archs' hand-set shares (AlexNet 1.4 and ResNet18
    3.6 GFLOPs: 0.25; ResNet50 8.2 and VGG16 30.9: 0.5); past 40 GFLOPs (ViT-L, RegNetY-128GF,
    EfficientNet-V2-L) a trial gets a whole card. `--gpus-per-trial` overrides it."""
    return 0.25 if gflops_224 < 5 else 0.5 if gflops_224 < 40 else 1.0


def _torchvision_archs() -> tuple[dict[str, ArchInfo], dict[str, str]]:
    table = json.loads(Path(__file__).with_name("torchvision_archs.json").read_text())
    archs = {
        name: ArchInfo(head=a["head"], classifier=a["classifier"], min_image_size=a["min_image_size"],
                       gpu_share=default_gpu_share(a["gflops_224"]), gflops_224=a["gflops_224"],
                       image_size=a["image_size"], aux_logits=a["aux_logits"])
        for name, a in table["archs"].items()
    }  # fmt: skip
    archs.update({name: replace(info, gflops_224=table["archs"][name]["gflops_224"]) for name, info in ARCHS.items()})
    return archs, table["unsupported"]


# Every torchvision classification model with a Linear head, the report archs as set above;
# UNSUPPORTED: those without one, with why.
TORCHVISION, UNSUPPORTED = _torchvision_archs()


def arch_info(arch: str) -> ArchInfo:
    if is_custom_arch(arch):
        return CUSTOM_ARCH
    return TORCHVISION[arch]


def is_known_arch(arch: str) -> bool:
    return is_custom_arch(arch) or arch in TORCHVISION


def is_custom_arch(arch: str) -> bool:
    return ":" in arch


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one dataset: its targets, and the shape of its synthetic twin."""

    targets: dict[str, int]  # target name -> number of classes (0: read from the data)
    default_target: str | None
    has_test_split: bool  # an official test split; else `dataset.split` carves one
    # Per target: class priors of the real data, so the synthetic twin has the
    # same imbalance. None: uniform.
    priors: dict[str, tuple[float, ...]] = field(default_factory=dict)
    # Per target: group name of each class (pets breeds -> species), used by
    # `dataset.imbalance`. None: a class is its own group.
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)


# Oxford-IIIT Pet breeds in torchvision's label order (alphabetical, case-insensitive);
# capitalised names are cats, as in the dataset's own convention.
PET_BREEDS = (
    "Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle", "Bengal",
    "Birman", "Bombay", "boxer", "British_Shorthair", "chihuahua", "Egyptian_Mau", "english_cocker_spaniel",
    "english_setter", "german_shorthaired", "great_pyrenees", "havanese", "japanese_chin", "keeshond",
    "leonberger", "Maine_Coon", "miniature_pinscher", "newfoundland", "Persian", "pomeranian", "pug",
    "Ragdoll", "Russian_Blue", "saint_bernard", "samoyed", "scottish_terrier", "shiba_inu",
    "Siamese", "Sphynx", "staffordshire_bull_terrier", "wheaten_terrier", "yorkshire_terrier",
)  # fmt: skip
PET_SPECIES_OF_BREED = tuple("cat" if b[0].isupper() else "dog" for b in PET_BREEDS)

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby",
    "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male",
    "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)  # fmt: skip

# Pets trainval: 1,188 cat and 2,492 dog images (~100 per breed per split).
_PET_SPECIES_PRIORS = (1188 / 3680, 2492 / 3680)

DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(targets={"class": 10}, default_target="class", has_test_split=True),
    "oxford_pets": DatasetInfo(
        targets={"species": 2, "breed": 37},
        default_target="breed",
        has_test_split=True,
        priors={"species": _PET_SPECIES_PRIORS},
        groups={"breed": PET_SPECIES_OF_BREED, "species": ("cat", "dog")},
    ),
    "celeba30k": DatasetInfo(
        targets={a: 2 for a in CELEBA_ATTRIBUTES},
        default_target="Male",
        has_test_split=False,
        # 000 states 17,320 female / 12,680 male in its 30k images.
        priors={"Male": (17320 / 30000, 12680 / 30000)},
    ),
    "celeba_hq": DatasetInfo(
        targets={"gender": 2},
        default_target="gender",
        has_test_split=False,
        # CelebA-HQ is ~63% female (18,943 / 30,000): open, recorded in the grid notes.
        priors={"gender": (0.63, 0.37)},
    ),
    "imagefolder": DatasetInfo(targets={"class": 0}, default_target="class", has_test_split=True),
    "synthetic": DatasetInfo(targets={"class": 0}, default_target="class", has_test_split=True),
}

OPTIMIZERS = ("adam", "adamw", "sgd")
LOSSES = ("cross_entropy", "bce")
CLASS_WEIGHTS = ("none", "balanced")
SAMPLERS = ("uniform", "oversample")
AUGMENTS = ("none", "hflip", "strong")
NORMALIZE = ("imagenet", "half")
RESIZE = ("squash", "crop")
WEIGHTS = ("imagenet", "none")  # and any torchvision weights enum name of the arch
SPLIT_METHODS = ("stratified", "random", "greedy")
PRECISIONS = ("auto", "fp32", "bf16")
PROTOCOLS = ("standard", "lr_probe")
SOURCES = ("real", "synthetic")

# Freeze strategies: a word, or a mapping with one of these keys.
FREEZE_WORDS = ("head", "none", "bn")
FREEZE_KEYS = ("last", "trainable", "frozen", "gradual")

# Root children that hold no weights: a "last l" that adds only these adds nothing.
PARAMETERLESS_CHILDREN = frozenset({"relu", "maxpool", "avgpool"})
