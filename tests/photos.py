"""Real photos for equivalence tests: centre crops of coco128 images from the shared data folder, never resampled.

The photos are read in place from ``$FPN_ZOO_SHARED/data`` (default: the checkout's sibling ``shared/data``); a test
that asks for them is skipped, with the reason, when the folder is missing.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(os.environ.get("FPN_ZOO_SHARED", Path(__file__).resolve().parents[2] / "shared"))
_COCO128 = SHARED / "data" / "coco128"


@functools.cache
def _busiest_coco128(size: tuple[int, int]) -> tuple[Path, ...]:
    """coco128 images at least ``size``, most non-crowd objects centred inside their central ``size`` crop first."""
    coco = json.loads((_COCO128 / "annotations" / "instances_train2017.json").read_text())
    h, w = size
    ranked = []
    for img in coco["images"]:
        if img["height"] < h or img["width"] < w:
            continue
        top, left = (img["height"] - h) // 2, (img["width"] - w) // 2
        inside = 0
        for a in coco["annotations"]:
            if a["image_id"] != img["id"] or a["iscrowd"]:
                continue
            x, y, bw, bh = a["bbox"]
            cx, cy = x + bw / 2, y + bh / 2
            inside += left <= cx < left + w and top <= cy < top + h
        ranked.append((-inside, img["file_name"]))
    return tuple(_COCO128 / "images" / name for _, name in sorted(ranked))


def real_photos(n: int = 2, size: tuple[int, int] = (320, 480)) -> list[torch.Tensor]:
    """``n`` real coco128 photos with many objects, centre-cropped (no resampling) to ``size``, uint8 RGB ``(3, H, W)``.

    The same ``n`` and ``size`` always give the same photos.
    """
    from PIL import Image

    if not (_COCO128 / "annotations" / "instances_train2017.json").is_file():
        pytest.skip(f"real photos: {_COCO128} not found (../shared/data is missing; set FPN_ZOO_SHARED)")
    paths = _busiest_coco128(tuple(size))
    if len(paths) < n:
        raise ValueError(f"only {len(paths)} coco128 photos are at least {size[0]}x{size[1]}, asked for {n}")
    h, w = size
    out = []
    for path in paths[:n]:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        top, left = (rgb.shape[0] - h) // 2, (rgb.shape[1] - w) // 2
        crop = rgb[top : top + h, left : left + w]
        out.append(torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).contiguous())
    return out


def as_float(image: torch.Tensor) -> torch.Tensor:
    """A uint8 photo as the zoo's and torchvision's models take it: float in [0, 1]."""
    return image.float() / 255


def assert_same_detections(
    expected: dict[str, torch.Tensor],
    got: dict[str, torch.Tensor],
    *,
    score_atol: float = 1e-4,
    box_atol: float = 1e-2,
    min_detections: int = 10,
    score_thresh: float | None = None,
) -> None:
    """Every detection has a twin: same label, score within ``score_atol``, box within ``box_atol`` pixels.

    Two implementations that agree to float rounding may still disagree on a detection whose score sits within
    rounding of the score threshold, or order two scores within rounding of each other differently. So with
    ``score_thresh`` given, detections within ``10 * score_atol`` of it are left out on both sides, and detections
    are paired by value rather than by position (the scores, sorted, must agree as well).
    """
    if score_thresh is not None:
        margin = score_thresh + 10 * score_atol
        expected = {k: v[expected["scores"] > margin] for k, v in expected.items()}
        got = {k: v[got["scores"] > margin] for k, v in got.items()}
    n = len(expected["boxes"])
    assert n >= min_detections, f"the reference gave {n} detections; the test needs at least {min_detections}"
    assert len(got["boxes"]) == n, f"{len(got['boxes'])} detections, the reference has {n}"
    torch.testing.assert_close(got["scores"], expected["scores"], atol=score_atol, rtol=0)
    free = set(range(n))
    for i in range(n):
        twins = [
            j
            for j in sorted(free)
            if got["labels"][j] == expected["labels"][i]
            and abs(float(got["scores"][j] - expected["scores"][i])) <= score_atol
            and float((got["boxes"][j] - expected["boxes"][i]).abs().max()) <= box_atol
        ]
        assert twins, (
            f"reference detection {i} (label {int(expected['labels'][i])}, score {float(expected['scores'][i]):.6f}, "
            f"box {expected['boxes'][i].tolist()}) has no twin"
        )
        free.remove(twins[0])
