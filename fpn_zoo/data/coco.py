"""COCO-format detection data as a torch ``Dataset``: validated on construction, contiguous labels, torchvision targets.

Labels are contiguous training labels: label ``k`` is ``categories[k]`` and ``categories[0]`` is the background, the
convention of [`fpn_zoo.config.ModelConfig`][fpn_zoo.config.ModelConfig]; ``label_to_category_id`` turns predictions
back into the file's own category ids for COCO evaluation.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

from fpn_zoo.data.report import DatasetError, DatasetReport, DatasetWarning
from fpn_zoo.data.validate import read_annotation_file, validate_coco
from fpn_zoo.images import ImageError, to_model_input

__all__ = ["CocoDetection", "Target"]

logger = logging.getLogger(__name__)

Target = dict[str, Any]
"""``{"boxes": float32 (N, 4) xyxy pixels, "labels": int64 (N,), "image_id": int, "orig_size": (h, w)}``."""

Transforms = Callable[[Any, Target], tuple[Any, Target]]
OnInvalid = Literal["error", "skip"]
_ON_INVALID = ("error", "skip")


@dataclass(frozen=True)
class _Record:
    image_id: int
    path: str
    height: int
    width: int
    boxes: np.ndarray  # float32 (N, 4) xyxy, clipped to the image
    labels: np.ndarray  # int64 (N,)


def _pycocotools_coco() -> Any:
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise ImportError("CocoDetection needs pycocotools: pip install pycocotools") from None
    return COCO


class CocoDetection(Dataset[tuple[torch.Tensor, Target]]):
    """A COCO-format detection dataset yielding ``(image, target)`` pairs for torchvision detectors.

    The annotation file is validated on construction (see
    [`fpn_zoo.data.validate.validate_coco`][fpn_zoo.data.validate.validate_coco] for every check); `report` holds what
    was found. Crowd annotations (``iscrowd=1``) stay in `coco` for COCO evaluation, which ignores detections matching
    them, but are left out of training targets, as torchvision's detection references do. Images without boxes are kept
    as negatives. Boxes overhanging their image by at most one pixel are clipped to it in targets (`coco` keeps them as
    the file has them).

    Images are decoded in ``__getitem__`` as stored, without applying EXIF orientation, because COCO annotations are
    in stored-pixel coordinates (as pycocotools and torchvision read them); Pillow modes are converted to RGB by
    [`fpn_zoo.to_model_input`][fpn_zoo.images.to_model_input]'s rules.

    Args:
        ann_file: COCO-format ``.json`` file.
        image_dir: Folder the images' ``file_name`` values are relative to.
        transforms: Called as ``transforms(image, target)`` with the image as a ``tv_tensors.Image`` (float32 in
            ``[0, 1]``) and ``target["boxes"]`` as ``tv_tensors.BoundingBoxes``, so ``torchvision.transforms.v2``
            pipelines such as [`fpn_zoo.data.build_train_transforms`][fpn_zoo.data.transforms.build_train_transforms]
            move boxes with the pixels.
        on_invalid: ``"error"`` raises [`DatasetError`][fpn_zoo.data.report.DatasetError] listing every problem;
            ``"skip"`` drops the offending images, categories and annotations, warns with the counts
            ([`DatasetWarning`][fpn_zoo.data.report.DatasetWarning]) and loads the rest.
        check_images: Open each image file's header at construction to catch missing, unreadable and wrongly
            sized files early (about 0.1 ms a file). ``False`` trusts the files; a bad one then fails in
            ``__getitem__`` with a [`DatasetError`][fpn_zoo.data.report.DatasetError] naming it.

    Attributes:
        coco: ``pycocotools.coco.COCO`` over the valid part of the file, the ground truth for ``COCOeval``.
        image_ids: COCO image id of each index, in file order.
        categories: ``("__background__", name_1, ...)``: the name of each contiguous label, sorted by category id.
        label_to_category_id: The file's category id of each label; ``None`` for the background.
        category_id_to_label: Inverse of `label_to_category_id`.
        report: What validation found.
        transforms: The ``transforms`` argument.

    Raises:
        FileNotFoundError: If ``ann_file`` or ``image_dir`` does not exist.
        DatasetError: If the file is invalid (with ``on_invalid="error"``), not COCO at all, or has no valid image
            or category left.
        ImportError: If pycocotools is not installed.

    Examples:
        >>> import tempfile
        >>> from fpn_zoo.data import CocoDetection, write_synthetic_coco
        >>> ann_file, image_dir = write_synthetic_coco(tempfile.mkdtemp(), num_images=4, category_ids=(3, 7, 11))
        >>> ds = CocoDetection(ann_file, image_dir)
        >>> ds.categories, ds.label_to_category_id
        (('__background__', 'red', 'green', 'blue'), (None, 3, 7, 11))
        >>> image, target = ds[0]
        >>> image.shape, target["boxes"].shape[1], target["labels"].dtype
        (torch.Size([3, 96, 128]), 4, torch.int64)
    """

    def __init__(
        self,
        ann_file: str | os.PathLike[str],
        image_dir: str | os.PathLike[str],
        *,
        transforms: Transforms | None = None,
        on_invalid: OnInvalid = "error",
        check_images: bool = True,
    ) -> None:
        if on_invalid not in _ON_INVALID:
            raise ValueError(f"on_invalid={on_invalid!r} is not valid; choose from {_ON_INVALID}.")
        coco_class = _pycocotools_coco()
        image_root = Path(image_dir)
        if not image_root.is_dir():
            raise FileNotFoundError(f"image_dir '{image_root}' is not a directory; pass the folder holding the images.")
        source = os.fspath(ann_file)
        validated = validate_coco(
            read_annotation_file(source),
            image_root,
            source=source,
            check_images=check_images,
            dropped=on_invalid == "skip",
        )
        report = validated.report
        if not report.ok and on_invalid == "error":
            raise DatasetError(report.summary(), report)
        if not report.ok:
            warnings.warn(report.summary(), DatasetWarning, stacklevel=2)
        else:
            logger.info(report.summary())
        if report.num_categories == 0 or report.num_images == 0:
            what = "category" if report.num_categories == 0 else "image"
            raise DatasetError(f"'{source}' has no valid {what} left, so there is nothing to train on.", report)

        dataset = validated.dataset
        self.report: DatasetReport = report
        self.transforms = transforms
        self.coco = coco_class()
        self.coco.dataset = dataset
        with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress lines on every construction
            self.coco.createIndex()
        cats = sorted(dataset["categories"], key=lambda c: c["id"])
        self.categories: tuple[str, ...] = ("__background__", *(c["name"] for c in cats))
        self.label_to_category_id: tuple[int | None, ...] = (None, *(c["id"] for c in cats))
        self.category_id_to_label: dict[int, int] = {c["id"]: k for k, c in enumerate(cats, start=1)}
        self.image_ids: list[int] = [img["id"] for img in dataset["images"]]
        self._records = self._build_records(dataset, image_root)

    def _build_records(self, dataset: dict[str, Any], image_root: Path) -> list[_Record]:
        by_image: defaultdict[int, list[dict[str, Any]]] = defaultdict(list)
        for ann in dataset["annotations"]:
            if not ann["iscrowd"]:
                by_image[ann["image_id"]].append(ann)
        records = []
        for img in dataset["images"]:
            anns = by_image.get(img["id"], [])
            xywh = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
            boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            # Validation allowed overhangs up to BOX_TOLERANCE; the model wants boxes on the image.
            boxes[:, 0::2] = boxes[:, 0::2].clip(0, img["width"])
            boxes[:, 1::2] = boxes[:, 1::2].clip(0, img["height"])
            labels = np.array([self.category_id_to_label[a["category_id"]] for a in anns], dtype=np.int64)
            path = os.fspath(image_root / img["file_name"])
            records.append(_Record(img["id"], path, img["height"], img["width"], boxes.astype(np.float32), labels))
        return records

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        record = self._records[index]
        size = (record.height, record.width)
        image = self._load(record)
        target: Target = {
            "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(record.boxes.copy()), format="XYXY", canvas_size=size),
            "labels": torch.from_numpy(record.labels.copy()),
            "image_id": record.image_id,
            "orig_size": size,
        }
        if self.transforms is not None:
            image, target = self.transforms(tv_tensors.Image(image), target)
        return _plain(image, target, record)

    def _load(self, record: _Record) -> torch.Tensor:
        where = f"image id {record.image_id} ('{record.path}')"
        try:
            with Image.open(record.path) as pil:
                image = to_model_input(pil)
        except FileNotFoundError:
            raise DatasetError(f"The file of {where} is gone; check image_dir.") from None
        except ImageError as exc:  # already says what was found and what is valid
            raise DatasetError(f"{where}: {exc} Re-encode the file or remove the image from the annotations.") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise DatasetError(
                f"Cannot read {where} ({exc}); it may be truncated or corrupt. Re-encode the file or remove the image "
                "from the annotations."
            ) from None
        if tuple(image.shape[1:]) != (record.height, record.width):
            raise DatasetError(
                f"{where} is {image.shape[2]}x{image.shape[1]} but the annotation file says "
                f"{record.width}x{record.height}; annotations are in stored-pixel coordinates."
            )
        return image

    def aspect_ratios(self) -> list[float]:
        """Width / height of each image, from the annotation file (no decoding), for aspect-ratio grouping.

        Examples:
            >>> import tempfile
            >>> from fpn_zoo.data import CocoDetection, write_synthetic_coco
            >>> ds = CocoDetection(*write_synthetic_coco(tempfile.mkdtemp(), num_images=2, image_size=(64, 128)))
            >>> ds.aspect_ratios()
            [2.0, 2.0]
        """
        return [r.width / r.height for r in self._records]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}('{self.report.source}', {len(self)} images, "
            f"{len(self.categories) - 1} categories + background)"
        )


def _plain(image: Any, target: Target, record: _Record) -> tuple[torch.Tensor, Target]:
    """Unwrap tv_tensors so the model and collate see plain tensors, whatever the transforms returned."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(
            f"transforms returned a {type(image).__name__} image for image id {record.image_id}; it must return a "
            "(3, H, W) tensor (keep PIL conversions out of the pipeline)."
        )
    image = image.as_subclass(torch.Tensor)
    if image.dtype == torch.uint8:
        image = image.to(torch.float32) / 255
    out = dict(target)
    out["boxes"] = torch.as_tensor(target["boxes"]).as_subclass(torch.Tensor).to(torch.float32).reshape(-1, 4)
    out["labels"] = torch.as_tensor(target["labels"]).as_subclass(torch.Tensor).to(torch.int64)
    return image, out
