"""Detection augmentations built from ``torchvision.transforms.v2``, which moves boxes along with the pixels.

The pipelines take and return ``(image, target)`` with ``target["boxes"]`` a ``tv_tensors.BoundingBoxes`` and
``target["labels"]`` a tensor, as [`fpn_zoo.data.CocoDetection`][fpn_zoo.data.coco.CocoDetection] hands them over. Each
ends with ``SanitizeBoundingBoxes``, which drops boxes that became smaller than one pixel (or empty) together with their
labels, so boxes and labels always stay paired.
"""

from __future__ import annotations

import math
from typing import Any

from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

__all__ = ["ShrinkToFit", "build_eval_transforms", "build_train_transforms"]

# Moderate, label-preserving photometric jitter; hue stays 0 because colour can be what tells classes apart.
_JITTER = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.0}


def _check_size(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}.")


class ShrinkToFit(v2.Transform):
    """Downscale images larger than the model's input size; never enlarge.

    The scale is the detector's own (``GeneralizedRCNNTransform``): ``min(min_size / shorter, max_size / longer)``,
    capped at 1. The model resizes every image again, so this only saves decoding, augmentation and host-to-device
    cost on large images; images already small enough pass through untouched. ``v2.Resize(size, max_size=...)``
    applies the same rule but also enlarges, which would cost instead of save.

    Args:
        min_size: Target of the shorter side, or ``None`` for no limit from it.
        max_size: Limit of the longer side, or ``None`` for no limit from it.

    Examples:
        >>> import torch
        >>> from torchvision import tv_tensors
        >>> from fpn_zoo.data import ShrinkToFit
        >>> image = tv_tensors.Image(torch.rand(3, 600, 1000))
        >>> boxes = tv_tensors.BoundingBoxes([[0.0, 0.0, 500.0, 300.0]], format="XYXY", canvas_size=(600, 1000))
        >>> out, target = ShrinkToFit(min_size=300, max_size=400)(image, {"boxes": boxes})
        >>> tuple(out.shape), target["boxes"].tolist()
        ((3, 240, 400), [[0.0, 0.0, 200.0, 120.0]])
    """

    def __init__(self, *, min_size: int | None = None, max_size: int | None = None) -> None:
        super().__init__()
        _check_size("min_size", min_size)
        _check_size("max_size", max_size)
        self.min_size = min_size
        self.max_size = max_size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        scale = 1.0
        if self.min_size is not None:
            scale = min(scale, self.min_size / min(height, width))
        if self.max_size is not None:
            scale = min(scale, self.max_size / max(height, width))
        if scale >= 1.0:
            return {"size": None}
        return {"size": [max(1, math.floor(height * scale)), max(1, math.floor(width * scale))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["size"] is None:
            return inpt
        return F.resize(inpt, params["size"], antialias=True)

    def extra_repr(self) -> str:
        return f"min_size={self.min_size}, max_size={self.max_size}"


def _sanitize() -> list[v2.Transform]:
    # Clamp first: SanitizeBoundingBoxes also drops boxes poking out of the image, which should be trimmed instead.
    return [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes()]


def build_train_transforms(
    *, hflip: float = 0.5, jitter: bool = False, min_size: int | None = None, max_size: int | None = None
) -> v2.Compose:
    """The training augmentation: optional shrink, horizontal flip, optional colour jitter, box sanitizing.

    Args:
        hflip: Probability of a horizontal flip, in ``[0, 1]``; 0 leaves it out.
        jitter: Add ``ColorJitter`` (brightness, contrast and saturation by up to 20 %, no hue shift).
        min_size: With ``max_size``, shrink large images with [`ShrinkToFit`][fpn_zoo.data.transforms.ShrinkToFit]; pass
            the model's values.
        max_size: See ``min_size``.

    Returns:
        A ``v2.Compose`` called as ``transform(image, target)``.

    Raises:
        ValueError: If ``hflip`` is outside ``[0, 1]`` or a size is not a positive integer.

    Examples:
        >>> import torch
        >>> from torchvision import tv_tensors
        >>> from fpn_zoo.data import build_train_transforms
        >>> t = build_train_transforms(hflip=1.0)
        >>> boxes = tv_tensors.BoundingBoxes([[10.0, 0.0, 30.0, 5.0]], format="XYXY", canvas_size=(8, 100))
        >>> _, target = t(tv_tensors.Image(torch.rand(3, 8, 100)), {"boxes": boxes, "labels": torch.tensor([1])})
        >>> target["boxes"].tolist()
        [[70.0, 0.0, 90.0, 5.0]]
    """
    if isinstance(hflip, bool) or not isinstance(hflip, (int, float)) or not 0.0 <= hflip <= 1.0:
        raise ValueError(f"hflip is a flip probability and must lie in [0, 1], got {hflip!r}.")
    steps: list[v2.Transform] = []
    if min_size is not None or max_size is not None:
        steps.append(ShrinkToFit(min_size=min_size, max_size=max_size))
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(p=float(hflip)))
    if jitter:
        steps.append(v2.ColorJitter(**_JITTER))
    return v2.Compose([*steps, *_sanitize()])


def build_eval_transforms(*, min_size: int | None = None, max_size: int | None = None) -> v2.Compose:
    """The evaluation pipeline: optional shrink (`ShrinkToFit`) and box sanitizing, nothing random.

    Predictions on shrunk images are in shrunk pixels; ``target["orig_size"]`` keeps the original size to scale them
    back for COCO evaluation.

    Args:
        min_size: Shorter-side target of [`ShrinkToFit`][fpn_zoo.data.transforms.ShrinkToFit] (``None`` with
            ``max_size`` for no shrinking).
        max_size: Longer-side limit of [`ShrinkToFit`][fpn_zoo.data.transforms.ShrinkToFit].

    Returns:
        A ``v2.Compose`` called as ``transform(image, target)``.

    Examples:
        >>> from fpn_zoo.data import build_eval_transforms
        >>> [type(t).__name__ for t in build_eval_transforms(max_size=1333).transforms]
        ['ShrinkToFit', 'ClampBoundingBoxes', 'SanitizeBoundingBoxes']
    """
    steps: list[v2.Transform] = []
    if min_size is not None or max_size is not None:
        steps.append(ShrinkToFit(min_size=min_size, max_size=max_size))
    return v2.Compose([*steps, *_sanitize()])
