"""Small PNGs of misclassified test images, kept in the result so the report can
draw them without the dataset (001 shows five of its best model's mistakes)."""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
import torch.nn.functional as F

from tlbench.trial.data import ImageSet

KEEP = 5  # images per trial
SIDE = 64  # px, longest side of a thumbnail


def thumbnails(images: ImageSet, labels: np.ndarray, preds: np.ndarray, classes: list[str]) -> list[dict]:
    from PIL import Image

    wrong = np.flatnonzero(labels != preds)[:KEEP]
    out = []
    for i in wrong:
        img = images.images(torch.tensor([int(i)])).float()
        if img.shape[-1] > SIDE:
            img = F.interpolate(img, size=(SIDE, SIDE), mode="bilinear", antialias=True, align_corners=False)
        pixels = img[0].clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        out.append(
            {
                "name": images.names[i],
                "label": classes[labels[i]],
                "pred": classes[preds[i]],
                "png": base64.b64encode(buffer.getvalue()).decode(),
            }
        )
    return out
