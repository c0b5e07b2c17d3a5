"""Drawing detections onto images (used by ``fpn-zoo predict``)."""

from __future__ import annotations

import colorsys
import os

import numpy as np
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes

__all__ = ["draw_detections", "label_color", "save_png"]

_GOLDEN_RATIO = 0.618033988749895


def label_color(label: int) -> tuple[int, int, int]:
    """A saturated RGB colour for a class label, the same on every image and every run.

    Consecutive labels get well-separated hues (golden-ratio steps around the colour wheel).

    Examples:
        >>> label_color(1) == label_color(1), label_color(1) != label_color(2)
        (True, True)
    """
    r, g, b = colorsys.hsv_to_rgb((label * _GOLDEN_RATIO) % 1.0, 0.85, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def draw_detections(image: torch.Tensor, boxes: torch.Tensor, labels: list[int], captions: list[str]) -> torch.Tensor:
    """Draw boxes with captions onto an image.

    Args:
        image: ``(3, H, W)`` float image in ``[0, 1]`` (the model's input format).
        boxes: ``(N, 4)`` boxes ``x1, y1, x2, y2`` in pixels of ``image``.
        labels: Class label of each box; it picks the box colour.
        captions: Text drawn above each box, e.g. ``"person 0.98"``.

    Returns:
        The drawn image as a ``(3, H, W)`` uint8 tensor on the CPU.

    Examples:
        >>> out = draw_detections(torch.zeros(3, 20, 30), torch.tensor([[2.0, 3.0, 20.0, 15.0]]), [1], ["person 0.9"])
        >>> out.shape, out.dtype
        (torch.Size([3, 20, 30]), torch.uint8)
    """
    canvas = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    if len(boxes) == 0:
        return canvas
    # Lines of about 1/300 of the longer side stay visible on large photos without hiding small objects.
    width = max(1, round(max(canvas.shape[1:]) / 300))
    return draw_bounding_boxes(
        canvas,
        boxes.detach().cpu().float(),
        labels=captions,
        colors=[label_color(int(label)) for label in labels],
        width=width,
    )


def save_png(image: torch.Tensor, path: str | os.PathLike[str]) -> None:
    """Write a ``(3, H, W)`` uint8 tensor as a PNG file.

    Examples:
        >>> save_png(torch.zeros(3, 4, 4, dtype=torch.uint8), "x.png")  # doctest: +SKIP
    """
    Image.fromarray(np.ascontiguousarray(image.permute(1, 2, 0).numpy())).save(path, format="PNG")
