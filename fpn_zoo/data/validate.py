"""Checking a COCO detection file before training on it, item by item, and keeping only what is valid.

[`read_annotation_file`][fpn_zoo.data.validate.read_annotation_file] refuses what cannot be COCO at all;
[`validate_coco`][fpn_zoo.data.validate.validate_coco] walks categories, images and annotations, counts every problem
into a [`DatasetReport`][fpn_zoo.data.report.DatasetReport] and returns the valid subset. Pure JSON work except for the
image-file check, which opens each file's header (see [`validate_coco`][fpn_zoo.data.validate.validate_coco]).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from fpn_zoo.data.report import MAX_EXAMPLES, DatasetError, DatasetReport
from fpn_zoo.voice import option

__all__ = ["BOX_TOLERANCE", "Validated", "read_annotation_file", "validate_coco"]

BOX_TOLERANCE = 1.0
"""Pixels a box may reach outside its image and still count as valid; such overhangs are clipped in training targets.

One pixel absorbs the classic off-by-one of converted data (1-based inclusive VOC corners give ``x + w == W + 1``)
and float rounding, while a larger overhang usually means a wrong coordinate format and is reported instead.
"""

_TOP_LEVEL = ("images", "annotations", "categories")
_IMAGE_KEYS = ("id", "file_name", "width", "height")
_CATEGORY_KEYS = ("id", "name")
_ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox")


@dataclass(frozen=True)
class Validated:
    """The valid part of an annotation file and the report of what was left out.

    Attributes:
        dataset: The file's JSON with offending items removed and ``iscrowd``/``area`` filled in where missing,
            ready for ``pycocotools.coco.COCO``.
        report: What was found.
    """

    dataset: dict[str, Any]
    report: DatasetReport


def read_annotation_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a COCO annotation file, refusing files that are not JSON or lack the top-level lists.

    Args:
        path: The ``.json`` file.

    Returns:
        The parsed JSON object.

    Raises:
        FileNotFoundError: If there is no such file.
        DatasetError: If the file is not JSON, or not an object with ``images``, ``annotations`` and ``categories``
            lists. No ``on_invalid`` mode mends these: there are no items to skip.

    Examples:
        >>> import tempfile
        >>> from fpn_zoo.data import write_synthetic_coco
        >>> from fpn_zoo.data.validate import read_annotation_file
        >>> ann_file, _ = write_synthetic_coco(tempfile.mkdtemp(), num_images=2)
        >>> sorted(read_annotation_file(ann_file))
        ['annotations', 'categories', 'images', 'info', 'licenses']
    """
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise FileNotFoundError(f"No annotation file at '{name}'; pass the path of a COCO-format .json file.")
    try:
        with open(name, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"'{name}' is not valid JSON ({exc}); expected a COCO-format annotation file.") from None
    if not isinstance(data, dict):
        raise DatasetError(
            f"'{name}' holds a JSON {type(data).__name__}; a COCO annotation file is an object with "
            "'images', 'annotations' and 'categories' lists."
        )
    missing = [key for key in _TOP_LEVEL if key not in data]
    not_lists = [key for key in _TOP_LEVEL if key in data and not isinstance(data[key], list)]
    if missing or not_lists:
        found = ", ".join(repr(k) for k in data) or "none"
        parts = [f"missing top-level keys {missing}" if missing else "", f"{not_lists} not lists" if not_lists else ""]
        raise DatasetError(
            f"'{name}' is not a COCO detection file: {'; '.join(p for p in parts if p)} (found keys: {found}). It "
            f"needs 'images', 'annotations' and 'categories' lists; {option('on_invalid', 'skip')} cannot mend this, "
            "as there are no items to drop."
        )
    return data


class _Collector:
    def __init__(self) -> None:
        self.problems: Counter[str] = Counter()
        self.examples: defaultdict[str, list[str]] = defaultdict(list)
        self.notes: Counter[str] = Counter()

    def problem(self, kind: str, example: str) -> None:
        self.problems[kind] += 1
        if len(self.examples[kind]) < MAX_EXAMPLES:
            self.examples[kind].append(example)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _entry_error(entry: Any, keys: tuple[str, ...], checks: dict[str, tuple[Any, str]]) -> str | None:
    """Why an entry is malformed, or None; ``checks`` maps a key to (predicate, what a valid value is)."""
    if not isinstance(entry, dict):
        return f"is a JSON {type(entry).__name__}, not an object"
    missing = [key for key in keys if key not in entry]
    if missing:
        return f"lacks {', '.join(repr(k) for k in missing)}"
    for key, (valid, expected) in checks.items():
        if key in entry and not valid(entry[key]):
            return f"has {key}={_short(entry[key])}; expected {expected}"
    return None


def _label(kind: str, index: int, entry: Any) -> str:
    if isinstance(entry, dict) and _is_int(entry.get("id")):
        return f"{kind} id {entry['id']}"
    return f"{kind}s[{index}]"


def _check_image_file(path: Path, width: int, height: int) -> tuple[str, str] | None:
    if not path.is_file():
        return "image_file_missing", f"no file at '{path}'"
    try:
        # Reading the header and verify() are cheap (~0.1 ms); a full decode is left to __getitem__.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                size = img.size
                img.verify()
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        return "image_unreadable", f"'{path}' cannot be read ({exc})"
    if size != (width, height):
        return "image_size_mismatch", f"'{path}' is {size[0]}x{size[1]} but the json says {width}x{height}"
    return None


def _validate_categories(entries: list[Any], out: _Collector) -> tuple[list[dict[str, Any]], set[int]]:
    kept: list[dict[str, Any]] = []
    seen: set[int] = set()
    dropped_ids: set[int] = set()
    checks = {"id": (_is_int, "an int"), "name": (lambda v: isinstance(v, str) and v != "", "a non-empty string")}
    for i, cat in enumerate(entries):
        error = _entry_error(cat, _CATEGORY_KEYS, checks)
        if error:
            out.problem("category_bad_entry", f"{_label('category', i, cat)} {error}")
            if isinstance(cat, dict) and _is_int(cat.get("id")):
                dropped_ids.add(cat["id"])
        elif cat["id"] in seen:
            out.problem("duplicate_category_id", f"categories[{i}] ({cat['name']!r}) repeats id {cat['id']}")
        else:
            seen.add(cat["id"])
            kept.append(cat)
    # An id whose first entry was dropped but a later one kept belongs to the kept one.
    return kept, dropped_ids - seen


def _validate_images(
    entries: list[Any], image_dir: Path, check_files: bool, out: _Collector
) -> tuple[list[dict[str, Any]], set[int]]:
    kept: list[dict[str, Any]] = []
    seen: set[int] = set()
    dropped_ids: set[int] = set()
    positive = (lambda v: _is_int(v) and v > 0, "a positive int")
    checks = {
        "id": (_is_int, "an int"),
        "file_name": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
        "width": positive,
        "height": positive,
    }
    for i, img in enumerate(entries):
        error = _entry_error(img, _IMAGE_KEYS, checks)
        if error:
            out.problem("image_bad_entry", f"{_label('image', i, img)} {error}")
            if isinstance(img, dict) and _is_int(img.get("id")):
                dropped_ids.add(img["id"])
            continue
        image_id = img["id"]
        if image_id in seen:
            out.problem("duplicate_image_id", f"images[{i}] ('{img['file_name']}') repeats id {image_id}")
            continue
        found = _check_image_file(image_dir / img["file_name"], img["width"], img["height"]) if check_files else None
        if found:
            out.problem(found[0], f"image id {image_id}: {found[1]}")
            dropped_ids.add(image_id)
            continue
        seen.add(image_id)
        kept.append(img)
    # An id whose first entry was dropped but a later one kept belongs to the kept one.
    return kept, dropped_ids - seen


def _box_problem(bbox: list[float], width: int, height: int) -> tuple[str, str] | None:
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return "box_degenerate", f"bbox {_short(bbox)} has width {w:g} and height {h:g}"
    tol = BOX_TOLERANCE
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        corners = f"[{x:g}, {y:g}, {x + w:g}, {y + h:g}]"
        return "box_outside_image", f"bbox {_short(bbox)} spans x1, y1, x2, y2 = {corners} in a {width}x{height} image"
    # An overhang within the tolerance is clipped; a sliver that lies wholly in it would clip to nothing.
    if min(x + w, width) <= max(x, 0) or min(y + h, height) <= max(y, 0):
        return "box_degenerate", f"bbox {_short(bbox)} is empty once clipped to the {width}x{height} image"
    return None


def _validate_annotations(
    entries: list[Any],
    sizes: dict[int, tuple[int, int]],
    category_ids: set[int],
    dropped: tuple[set[int], set[int]],
    out: _Collector,
) -> list[dict[str, Any]]:
    """The valid annotations; ``sizes`` maps kept image ids to (width, height), ``dropped`` holds the ids of dropped
    images and categories, whose annotations go with them."""
    dropped_images, dropped_categories = dropped
    checks = {
        "id": (_is_int, "an int"),
        "image_id": (_is_int, "an int"),
        "category_id": (_is_int, "an int"),
        "bbox": (lambda v: isinstance(v, list) and len(v) == 4 and all(map(_is_number, v)), "4 finite numbers"),
        "iscrowd": (lambda v: v in (0, 1), "0 or 1"),
        "area": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    }
    kept: list[dict[str, Any]] = []
    seen: set[int] = set()
    for i, ann in enumerate(entries):
        error = _entry_error(ann, _ANNOTATION_KEYS, checks)
        if error:
            out.problem("annotation_bad_entry", f"{_label('annotation', i, ann)} {error}")
            continue
        where = f"annotation id {ann['id']} (image {ann['image_id']})"
        if ann["id"] in seen:
            out.problem("duplicate_annotation_id", f"annotations[{i}] repeats id {ann['id']}")
            continue
        seen.add(ann["id"])
        if ann["image_id"] in dropped_images or ann["category_id"] in dropped_categories:
            out.notes["dropped_with_parent"] += 1
            continue
        if ann["image_id"] not in sizes:
            out.problem("annotation_unknown_image", f"{where}: no image has id {ann['image_id']}")
            continue
        if ann["category_id"] not in category_ids:
            out.problem("annotation_unknown_category", f"{where}: no category has id {ann['category_id']}")
            continue
        found = _box_problem(ann["bbox"], *sizes[ann["image_id"]])
        if found:
            out.problem(found[0], f"{where}: {found[1]}")
            continue
        x, y, w, h = ann["bbox"]
        width, height = sizes[ann["image_id"]]
        if x < 0 or y < 0 or x + w > width or y + h > height:
            out.notes["boxes_clipped"] += 1
        kept.append(_complete(ann, out))
    return kept


def validate_coco(
    data: dict[str, Any],
    image_dir: str | os.PathLike[str],
    *,
    source: str = "<annotations>",
    check_images: bool = True,
    dropped: bool = False,
) -> Validated:
    """Check every category, image and annotation of a COCO detection file, and keep the valid ones.

    Problems (each offending item counted once, under the first problem found): malformed entries, duplicate ids,
    image files that are missing, unreadable or of another size than the json says, annotations of unknown images or
    categories, boxes with zero or negative width or height, and boxes reaching more than
    [`BOX_TOLERANCE`][fpn_zoo.data.validate.BOX_TOLERANCE] pixels outside their image. Annotations of a dropped image or
    category go with it (note ``dropped_with_parent``).

    Image files are checked here by reading their header and ``PIL.Image.verify()`` (about 0.1 ms a file): that
    finds missing, empty, non-image and wrongly sized files and corrupt PNG chunks before training starts. A full
    decode would also find truncated JPEG data but costs as much as loading the dataset once more (minutes on COCO),
    so that is left to ``CocoDetection.__getitem__``, which names the file when decoding fails.

    Args:
        data: The parsed file, as [`read_annotation_file`][fpn_zoo.data.validate.read_annotation_file] returns it.
        image_dir: Folder the images' ``file_name`` values are relative to.
        source: Name of the file, for the report.
        check_images: Open every image file's header; ``False`` trusts the files (no file I/O at all).
        dropped: Whether the caller will drop the offending items (sets ``report.dropped``, which words the summary).

    Returns:
        The valid subset, with ``iscrowd`` and ``area`` filled in where missing (``COCOeval`` reads both), and the
        report.

    Examples:
        >>> import tempfile
        >>> from fpn_zoo.data import write_synthetic_coco
        >>> from fpn_zoo.data.validate import read_annotation_file, validate_coco
        >>> ann_file, image_dir = write_synthetic_coco(tempfile.mkdtemp(), num_images=4)
        >>> data = read_annotation_file(ann_file)
        >>> data["annotations"][0]["bbox"][2] = 0
        >>> validate_coco(data, image_dir).report.problems
        {'box_degenerate': 1}
    """
    out = _Collector()
    categories, dropped_categories = _validate_categories(data["categories"], out)
    images, dropped_images = _validate_images(data["images"], Path(image_dir), check_images, out)
    sizes = {img["id"]: (img["width"], img["height"]) for img in images}
    category_ids = {c["id"] for c in categories}
    annotations = _validate_annotations(
        data["annotations"], sizes, category_ids, (dropped_images, dropped_categories), out
    )
    crowd = [a for a in annotations if a["iscrowd"]]
    if crowd:
        out.notes["crowd_annotations"] = len(crowd)
    boxed = {a["image_id"] for a in annotations if not a["iscrowd"]}
    negatives = sum(1 for img in images if img["id"] not in boxed)
    if negatives:
        out.notes["images_without_boxes"] = negatives
    dataset = {**data, "images": images, "annotations": annotations, "categories": categories}
    report = DatasetReport(
        source=source,
        num_images=len(images),
        num_annotations=len(annotations),
        num_categories=len(categories),
        problems={k: out.problems[k] for k in sorted(out.problems)},
        examples={k: tuple(v) for k, v in sorted(out.examples.items())},
        notes=dict(out.notes),
        dropped=dropped,
    )
    return Validated(dataset, report)


def _complete(ann: dict[str, Any], out: _Collector) -> dict[str, Any]:
    if "iscrowd" in ann and "area" in ann:
        return ann
    out.notes["defaults_filled"] += 1
    w, h = ann["bbox"][2:]
    return {"iscrowd": 0, "area": float(w * h), **ann}  # a copy: the caller's dict stays as the file had it
