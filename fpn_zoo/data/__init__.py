"""Detection data for training and evaluation: COCO-format datasets, augmentations, batching, synthetic data.

Examples:
    >>> import tempfile
    >>> from torch.utils.data import DataLoader, RandomSampler
    >>> from fpn_zoo.data import (CocoDetection, GroupedBatchSampler, build_train_transforms, collate_detection,
    ...                           create_aspect_ratio_groups, write_synthetic_coco)
    >>> ann_file, image_dir = write_synthetic_coco(tempfile.mkdtemp(), num_images=4)
    >>> ds = CocoDetection(ann_file, image_dir, transforms=build_train_transforms(hflip=0.5))
    >>> batches = GroupedBatchSampler(RandomSampler(ds), create_aspect_ratio_groups(ds.aspect_ratios()), batch_size=2)
    >>> images, targets = next(iter(DataLoader(ds, batch_sampler=batches, collate_fn=collate_detection)))
    >>> len(images), sorted(targets[0])
    (2, ['boxes', 'image_id', 'labels', 'orig_size'])

``pycocotools`` is needed by [`CocoDetection`][fpn_zoo.data.coco.CocoDetection] only and imported when one is built.
"""

from __future__ import annotations

from fpn_zoo.data.coco import CocoDetection, Target
from fpn_zoo.data.collate import collate_detection
from fpn_zoo.data.report import NOTE_KINDS, PROBLEM_KINDS, DatasetError, DatasetReport, DatasetWarning
from fpn_zoo.data.sampler import GroupedBatchSampler, create_aspect_ratio_groups
from fpn_zoo.data.synthetic import COLOURS, write_synthetic_coco
from fpn_zoo.data.transforms import ShrinkToFit, build_eval_transforms, build_train_transforms
from fpn_zoo.data.validate import BOX_TOLERANCE

__all__ = [
    "BOX_TOLERANCE",
    "COLOURS",
    "NOTE_KINDS",
    "PROBLEM_KINDS",
    "CocoDetection",
    "DatasetError",
    "DatasetReport",
    "DatasetWarning",
    "GroupedBatchSampler",
    "ShrinkToFit",
    "Target",
    "build_eval_transforms",
    "build_train_transforms",
    "collate_detection",
    "create_aspect_ratio_groups",
    "write_synthetic_coco",
]
