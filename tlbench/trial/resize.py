"""Small images to `image_size` on whatever device holds them, as the decode cache's PIL resize would.

The decode cache keeps a pool of small square images (CIFAR's 32 px) at their
own size rather than 49 times larger at 224 px; a batch is brought to
image_size where it is used, on the card on a GPU. Bilinear with half-pixel
centres is PIL's filter for enlarging, so the result is PIL's within one grey
level (PIL rounds between its two passes; this rounds once).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_side(size: int) -> int:
    """The short side "crop" resizes to before its centre crop: torchvision's Resize(256) + CenterCrop(224), scaled to size."""
    return round(size * 256 / 224)


def upscale(pixels: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """uint8 [B, 3, n, n] (n < size) -> uint8 [B, 3, size, size], by `mode` (squash | crop) as `data.resize_image`."""
    side = size if mode == "squash" else crop_side(size)
    out = F.interpolate(pixels.float(), size=(side, side), mode="bilinear", align_corners=False)
    if side != size:
        left = (side - size) // 2
        out = out[..., left : left + size, left : left + size]
    return out.round_().clamp_(0, 255).to(torch.uint8)
