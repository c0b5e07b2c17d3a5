"""Batching detection samples: images keep their own sizes, so a batch is two lists, not stacked tensors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["collate_detection"]


def collate_detection(batch: Sequence[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[list[torch.Tensor], list[dict]]:
    """Turn ``[(image, target), ...]`` into ``([image, ...], [target, ...])``, the detectors' training input.

    Pass it as ``DataLoader(..., collate_fn=collate_detection)``; the default collate would try to stack images of
    different sizes and targets with different box counts.

    Args:
        batch: Samples as [`fpn_zoo.data.CocoDetection`][fpn_zoo.data.coco.CocoDetection] returns them.

    Returns:
        The images and the targets, each as a list in batch order.

    Raises:
        ValueError: If the batch is empty or a sample is not an ``(image, target)`` pair.

    Examples:
        >>> import torch
        >>> from fpn_zoo.data import collate_detection
        >>> images, targets = collate_detection([(torch.zeros(3, 4, 5), {"image_id": 1}), (torch.zeros(3, 6, 2), {})])
        >>> [tuple(i.shape) for i in images], targets[0]
        ([(3, 4, 5), (3, 6, 2)], {'image_id': 1})
    """
    if len(batch) == 0:
        raise ValueError("collate_detection got an empty batch; a batch needs at least one (image, target) pair.")
    images, targets = [], []
    for i, sample in enumerate(batch):
        if not isinstance(sample, (tuple, list)) or len(sample) != 2:
            kind = f"a {len(sample)}-tuple" if isinstance(sample, (tuple, list)) else f"a {type(sample).__name__}"
            raise ValueError(f"Sample {i} of the batch is {kind}; expected an (image, target) pair.")
        images.append(sample[0])
        targets.append(sample[1])
    return images, targets
