"""Write `torchvision_archs.json`: the facts about every torchvision classification model that the
torch-free driver needs (grid validation, `grid plan`'s cost, the scheduler's GPU share).

    python -m tlbench.registries.torchvision_archs          # rewrite tlbench/registries/torchvision_archs.json from the installed torchvision

The file is data, not code: `archs.py` reads it with `json`, so `grid list` / `plan` never import
torch. `tests/trial/test_models.py` regenerates it and compares, so it cannot drift from the pinned
torchvision. Per arch:

- `head`, `classifier`: from `networks.find_head` on the network (parameters on the meta device).
- `gflops_224`: forward GFLOPs per image at 224 px, 2 per multiply-add as `cost.py` counts
  (torchvision's `_ops` counts multiply-adds: x2), scaled from its weights' crop size where that is
  not 224 (EfficientNet-B7 is published at 600 px).
- `params`, `min_image_size` (the smallest input side any of its weights accept), `image_size`
  (the one input side its random-init network accepts, for ViTs; null elsewhere), `aux_logits`
  (auxiliary classifiers that torchvision drops on request), `weights` (its enum's names).

Archs without a Linear head (SqueezeNet classifies with a 1x1 convolution) are listed under
`unsupported` with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PATH = Path(__file__).with_name("torchvision_archs.json")


def generate() -> dict[str, Any]:
    import torchvision
    from torchvision import models as tv

    from tlbench.trial.networks import empty_model, find_head

    archs: dict[str, Any] = {}
    unsupported: dict[str, str] = {}
    for name in sorted(tv.list_models(module=tv)):
        module = empty_model(name)
        try:
            head, classifier = find_head(module)
        except ValueError as exc:
            unsupported[name] = str(exc)
            continue
        weights = list(tv.get_model_weights(name))
        at_224 = [w for w in weights if _crop(w) == 224] or weights[:1]
        ops = at_224[0].meta["_ops"] * (224 / _crop(at_224[0])) ** 2
        archs[name] = {
            "head": head,
            "classifier": classifier,
            "gflops_224": round(2 * ops, 3),
            "params": sum(p.numel() for p in module.parameters()),
            "min_image_size": min(w.meta["min_size"][0] for w in weights),
            "image_size": getattr(module, "image_size", None),
            "aux_logits": bool(getattr(module, "aux_logits", False)),
            "weights": [w.name for w in weights],
        }
    return {"torchvision": torchvision.__version__, "archs": archs, "unsupported": unsupported}


def _crop(weights: Any) -> int:
    return int(weights.transforms.keywords.get("crop_size", 224))


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tlbench.registries.torchvision_archs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.parse_args(argv)  # no options: --help explains, anything else is a usage error, before anything is written
    PATH.write_text(json.dumps(generate(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
