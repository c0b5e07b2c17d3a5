"""What validating a COCO annotation file found: problems that drop items, and facts worth knowing.

[`DatasetReport`][fpn_zoo.data.report.DatasetReport] counts each kind of problem and keeps a few examples;
[`DatasetReport.summary`][fpn_zoo.data.report.DatasetReport.summary] is the text that
[`DatasetError`][fpn_zoo.data.report.DatasetError] carries (``on_invalid="error"``) or that
[`DatasetWarning`][fpn_zoo.data.report.DatasetWarning] shows (``on_invalid="skip"``). The kinds, what they mean and how
to fix them live in one table, [`PROBLEM_KINDS`][fpn_zoo.data.report.PROBLEM_KINDS].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from fpn_zoo.voice import offers, option

__all__ = ["NOTE_KINDS", "PROBLEM_KINDS", "DatasetError", "DatasetReport", "DatasetWarning"]

MAX_EXAMPLES = 3
"""Examples kept per problem kind: enough to find the pattern, few enough to read."""


@dataclass(frozen=True)
class _Kind:
    what: str
    fix: str


# One row per problem kind, in the order the summary lists them. ``what`` reads after a count ("3 <what>").
PROBLEM_KINDS: Mapping[str, _Kind] = {
    "image_bad_entry": _Kind(
        "image entries missing keys or holding invalid values",
        "give every image an int 'id', a 'file_name' string and positive int 'width' and 'height'",
    ),
    "duplicate_image_id": _Kind(
        "image entries repeating an id already used (the first entry is kept)",
        "give every image a unique 'id'",
    ),
    "image_file_missing": _Kind(
        "images whose file is not in image_dir",
        "check image_dir and the 'file_name' values (they are relative to image_dir)",
    ),
    "image_unreadable": _Kind(
        "image files that Pillow cannot open or verify",
        "re-download or re-encode the files (JPEG, PNG, BMP, TIFF and WebP work)",
    ),
    "image_size_mismatch": _Kind(
        "images whose file size differs from the json's width and height",
        "annotations are in stored-pixel coordinates (EXIF orientation is not applied); fix 'width'/'height' or "
        "the file",
    ),
    "category_bad_entry": _Kind(
        "category entries missing keys or holding invalid values",
        "give every category an int 'id' and a 'name' string",
    ),
    "duplicate_category_id": _Kind(
        "category entries repeating an id already used (the first entry is kept)",
        "give every category a unique 'id'",
    ),
    "annotation_bad_entry": _Kind(
        "annotation entries missing keys or holding invalid values",
        "give every annotation an int 'id', 'image_id' and 'category_id', a 'bbox' of 4 finite numbers "
        "[x, y, width, height], and 'iscrowd' 0 or 1 where present",
    ),
    "duplicate_annotation_id": _Kind(
        "annotations repeating an id already used (pycocotools would keep only one of them)",
        "give every annotation a unique 'id'",
    ),
    "annotation_unknown_image": _Kind(
        "annotations whose image_id is not an image of the file",
        "add the image entries or remove the annotations",
    ),
    "annotation_unknown_category": _Kind(
        "annotations whose category_id is not in 'categories'",
        "add the categories or remove the annotations",
    ),
    "box_degenerate": _Kind(
        "boxes with zero or negative width or height",
        "boxes are [x, y, width, height] in pixels (not [x1, y1, x2, y2]); fix or remove them",
    ),
    "box_outside_image": _Kind(
        "boxes reaching more than 1 pixel outside their image",
        "boxes are [x, y, width, height] in pixels of the stored image; check the coordinate format and the "
        "image's 'width'/'height'",
    ),
}
"""Every problem kind `DatasetReport` counts, with what it means and how to fix it."""

NOTE_KINDS: Mapping[str, str] = {
    "crowd_annotations": "crowd annotations (iscrowd=1): kept in .coco for evaluation, left out of training targets",
    "images_without_boxes": "images without non-crowd boxes: kept as negatives (empty targets)",
    "boxes_clipped": "boxes overhanging their image by at most 1 pixel: clipped to the image in training targets",
    "defaults_filled": "annotations without 'iscrowd' or 'area': filled in with 0 and the box area",
    "dropped_with_parent": "annotations dropped because their image or category entry was dropped",
}
"""Facts counted alongside the problems; none of them stops loading."""


class DatasetError(ValueError):
    """An annotation file that cannot be loaded as it is; the message says what is wrong and how to go on.

    Attributes:
        report: The full [`DatasetReport`][fpn_zoo.data.report.DatasetReport], or ``None`` when the file could not be
            read as COCO at all (not JSON, or without the top-level 'images', 'annotations' and 'categories' lists),
            which no skipping mends.
    """

    def __init__(self, message: str, report: DatasetReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class DatasetWarning(UserWarning):
    """Items of an annotation file were dropped (``on_invalid="skip"``); the message is the report's summary."""


@dataclass(frozen=True)
class DatasetReport:
    """Counts and examples of what validation found in one annotation file.

    Each offending item is counted once, under the first problem found in it.

    Attributes:
        source: The annotation file.
        num_images: Images kept (loadable after dropping the offending items).
        num_annotations: Annotations kept, crowd annotations included.
        num_categories: Categories kept.
        problems: Count per problem kind (keys of [`PROBLEM_KINDS`][fpn_zoo.data.report.PROBLEM_KINDS]); only kinds that
            occurred.
        examples: Up to three examples per problem kind.
        notes: Count per non-fatal fact (keys of [`NOTE_KINDS`][fpn_zoo.data.report.NOTE_KINDS]); only facts that
            occurred.
        dropped: Whether the offending items were dropped (``on_invalid="skip"``) rather than refused.

    Examples:
        >>> from fpn_zoo.data import DatasetReport
        >>> report = DatasetReport("a.json", 2, 5, 3, problems={"box_degenerate": 1},
        ...                        examples={"box_degenerate": ("annotation id 7 (image 1): bbox [0, 0, 0, 4]",)})
        >>> report.ok, report.num_problems
        (False, 1)
    """

    source: str
    num_images: int
    num_annotations: int
    num_categories: int
    problems: Mapping[str, int] = field(default_factory=dict)
    examples: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    notes: Mapping[str, int] = field(default_factory=dict)
    dropped: bool = False

    @property
    def ok(self) -> bool:
        """True when no problem was found (notes may still be present)."""
        return not self.problems

    @property
    def num_problems(self) -> int:
        """Offending items in all."""
        return sum(self.problems.values())

    def summary(self) -> str:
        """Multi-line text: counts per problem with examples and fixes, then the notes.

        Examples:
            >>> from fpn_zoo.data import DatasetReport
            >>> print(DatasetReport("a.json", 4, 9, 3, notes={"images_without_boxes": 1}).summary())
            'a.json': 4 images, 9 annotations, 3 categories; no problems.
              note: 1 images without non-crowd boxes: kept as negatives (empty targets)
        """
        kept = f"{self.num_images} images, {self.num_annotations} annotations, {self.num_categories} categories"
        if self.ok:
            head = f"'{self.source}': {kept}; no problems."
        elif self.dropped:
            skip = option("on_invalid", "skip")
            head = f"'{self.source}': dropped {self.num_problems} invalid items ({skip}); kept {kept}."
        else:
            head = f"'{self.source}' has {self.num_problems} invalid items:"
        lines = [head]
        for kind, row in PROBLEM_KINDS.items():
            if kind not in self.problems:
                continue
            lines.append(f"  {kind}: {self.problems[kind]} {row.what}")
            lines.extend(f"    e.g. {example}" for example in self.examples.get(kind, ()))
            lines.append(f"    fix: {row.fix}")
        if not self.ok and not self.dropped:
            if offers("on_invalid"):
                lines.append(
                    f"Fix the file, or pass {option('on_invalid', 'skip')} to drop these items (and the annotations of "
                    "dropped images and categories) and load the rest with a warning."
                )
            else:
                lines.append("Fix the file.")
        lines.extend(f"  note: {self.notes[kind]} {what}" for kind, what in NOTE_KINDS.items() if self.notes.get(kind))
        return "\n".join(lines)
