"""A tiny, learnable COCO-format dataset written on the fly, for fast tests of training and evaluation.

Each image is a dark background with a few non-overlapping filled rectangles; a rectangle's colour is its category
(``"red"``, ``"green"``, ...), so a detector can learn the task in a few iterations. The last image has no boxes (a
negative); optionally the first holds a crowd region (``iscrowd=1``), a grid of small squares.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["COLOURS", "write_synthetic_coco"]

COLOURS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (220, 40, 40)),
    ("green", (40, 180, 60)),
    ("blue", (40, 80, 220)),
    ("yellow", (230, 210, 40)),
    ("magenta", (200, 50, 200)),
    ("cyan", (40, 200, 210)),
    ("orange", (240, 140, 30)),
    ("white", (245, 245, 245)),
)
"""Category names and RGB colours, in label order; ``num_classes`` takes the first ones."""

_BACKGROUND = (48, 48, 48)
_MAX_BOXES = 3
_GAP = 2  # pixels between rectangles, so no box's colour bleeds into another's


def _check(num_images: int, num_classes: int, image_size: tuple[int, int], category_ids: Sequence[int] | None) -> None:
    if not isinstance(num_images, int) or isinstance(num_images, bool) or num_images < 2:
        raise ValueError(f"num_images must be an integer >= 2 (the last image is a negative), got {num_images!r}.")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or not 1 <= num_classes <= len(COLOURS):
        raise ValueError(f"num_classes must be an integer in [1, {len(COLOURS)}] (a colour each), got {num_classes!r}.")
    if len(image_size) != 2 or any(not isinstance(s, int) or s < 32 for s in image_size):
        raise ValueError(f"image_size is (height, width) with both integers >= 32, got {image_size!r}.")
    if category_ids is not None:
        ids = list(category_ids)
        if len(ids) != num_classes or len(set(ids)) != len(ids) or any(not isinstance(i, int) or i < 1 for i in ids):
            raise ValueError(
                f"category_ids must be {num_classes} distinct positive integers (one per class), got {category_ids!r}."
            )


def _apart(box: list[int], other: list[int]) -> bool:
    (x, y, w, h), (a, b, c, d) = box, other
    return x + w + _GAP <= a or a + c + _GAP <= x or y + h + _GAP <= b or b + d + _GAP <= y


def _place(rng: np.random.Generator, height: int, width: int, taken: list[list[int]], lo: int, hi: int) -> list[int]:
    """A random [x, y, w, h] box that keeps _GAP pixels from every box in ``taken``, or [] if none was found."""
    for _ in range(100):
        w, h = (int(v) for v in rng.integers(lo, hi + 1, size=2))
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        if all(_apart([x, y, w, h], other) for other in taken):
            return [x, y, w, h]
    return []


def _annotation(ann_id: int, image_id: int, category_id: int, box: list[int], crowd: bool) -> dict[str, Any]:
    x, y, w, h = box
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [float(v) for v in box],
        "area": float(w * h),
        "iscrowd": int(crowd),
        "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
    }


def write_synthetic_coco(
    out_dir: str | os.PathLike[str],
    *,
    num_images: int = 8,
    num_classes: int = 3,
    image_size: tuple[int, int] = (96, 128),
    seed: int = 0,
    category_ids: Sequence[int] | None = None,
    crowd: bool = False,
    image_format: Literal["png", "jpg"] = "png",
) -> tuple[Path, Path]:
    """Write a tiny COCO-format detection dataset: ``out_dir/annotations.json`` and ``out_dir/images/``.

    Boxes take categories in turn, so every class appears once there are enough boxes; positions and sizes come
    from ``seed``, so the same arguments write the same dataset. Existing files of the same names are overwritten.

    Args:
        out_dir: Folder to write into (created if missing).
        num_images: Images in all, >= 2; the last one has no boxes.
        num_classes: Categories, 1 to 8, named and coloured as the first entries of
            [`COLOURS`][fpn_zoo.data.synthetic.COLOURS].
        image_size: ``(height, width)`` of every image, each >= 32.
        seed: Seed of the layout.
        category_ids: The categories' ids in the file, e.g. ``(3, 7, 11)`` to exercise non-contiguous ids;
            ``None`` gives ``1..num_classes``.
        crowd: Add a crowd annotation (``iscrowd=1``) over a grid of small squares to the first image.
        image_format: ``"png"`` (lossless, exact colours) or ``"jpg"``.

    Returns:
        ``(ann_file, image_dir)``, the two arguments of [`fpn_zoo.data.CocoDetection`][fpn_zoo.data.coco.CocoDetection].

    Raises:
        ValueError: If an argument is out of range.

    Examples:
        >>> import tempfile
        >>> from fpn_zoo.data import CocoDetection, write_synthetic_coco
        >>> ann_file, image_dir = write_synthetic_coco(tempfile.mkdtemp(), num_images=3, crowd=True)
        >>> ds = CocoDetection(ann_file, image_dir)
        >>> len(ds), ds.report.notes["images_without_boxes"], ds.report.notes["crowd_annotations"]
        (3, 1, 1)
    """
    _check(num_images, num_classes, image_size, category_ids)
    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format={image_format!r} is not valid; choose from ('png', 'jpg').")
    ids = list(category_ids) if category_ids is not None else list(range(1, num_classes + 1))
    height, width = image_size
    rng = np.random.default_rng(seed)
    root = Path(out_dir)
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    lo, hi = max(6, min(height, width) // 8), min(height, width) // 2
    images, annotations, turn = [], [], 0
    for image_id in range(1, num_images + 1):
        canvas = Image.new("RGB", (width, height), _BACKGROUND)
        draw = ImageDraw.Draw(canvas)
        taken: list[list[int]] = []
        if crowd and image_id == 1:
            region = _place(rng, height, width, taken, hi // 2, hi)
            cell = max(3, region[2] // 6)
            for cx in range(region[0], region[0] + region[2] - cell + 1, 2 * cell):
                for cy in range(region[1], region[1] + region[3] - cell + 1, 2 * cell):
                    draw.rectangle([cx, cy, cx + cell - 1, cy + cell - 1], fill=COLOURS[0][1])
            taken.append(region)
            annotations.append(_annotation(len(annotations) + 1, image_id, ids[0], region, crowd=True))
        count = 0 if image_id == num_images else int(rng.integers(1, _MAX_BOXES + 1))
        for _ in range(count):
            box = _place(rng, height, width, taken, lo, hi)
            if not box:
                continue
            label = turn % num_classes
            turn += 1
            x, y, w, h = box
            draw.rectangle([x, y, x + w - 1, y + h - 1], fill=COLOURS[label][1])  # inclusive corners: w x h pixels
            taken.append(box)
            annotations.append(_annotation(len(annotations) + 1, image_id, ids[label], box, crowd=False))
        file_name = f"{image_id:06d}.{image_format}"
        canvas.save(image_dir / file_name, **({"quality": 95} if image_format == "jpg" else {}))
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
    categories = [{"id": ids[k], "name": COLOURS[k][0], "supercategory": "shape"} for k in range(num_classes)]
    dataset = {
        "info": {"description": f"fpn_zoo synthetic rectangles (seed {seed})"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    ann_file = root / "annotations.json"
    ann_file.write_text(json.dumps(dataset, indent=1), encoding="utf-8")
    return ann_file, image_dir
