"""COCO box evaluation: run a detector over a dataset, score its detections with pycocotools, report the metrics.

[`evaluate_model`][fpn_zoo.engine.evaluate.evaluate_model] is the whole job, on one process or under ``torchrun`` (each
process predicts a shard; rank 0 gathers, de-duplicates and scores). Its parts are public:
[`predict_dataset`][fpn_zoo.engine.evaluate.predict_dataset] (detections in the COCO results format),
[`coco_evaluate`][fpn_zoo.engine.coco_metrics.coco_evaluate] (pycocotools ``COCOeval``, iouType ``bbox``),
[`evaluate_detections_file`][fpn_zoo.engine.coco_metrics.evaluate_detections_file] (score a saved results file) and
[`format_metrics`][fpn_zoo.engine.coco_metrics.format_metrics] (the printed table).

All AP and AR values are **percentages** (0-100). A value pycocotools cannot define (-1: no ground truth in that area
range, or for that class) is ``None`` here and ``null`` in JSON, never -1 and never a misleading 0.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from fpn_zoo.engine.coco_metrics import (
    STAT_NAMES,
    Detection,
    EvalResult,
    coco_evaluate,
    evaluate_detections_file,
    format_metrics,
)
from fpn_zoo.engine.distributed import all_gather_object, get_world_size, is_main_process
from fpn_zoo.labels import COCO_CATEGORIES

__all__ = [
    "STAT_NAMES",
    "EvalResult",
    "LabelMapping",
    "coco_evaluate",
    "evaluate_detections_file",
    "evaluate_model",
    "format_metrics",
    "match_label_space",
    "merge_shards",
    "predict_dataset",
]


@dataclass(frozen=True)
class LabelMapping:
    """How the model's class slots turn into the dataset's category ids.

    Attributes:
        category_ids: ``category_ids[label]`` is the category id of model label ``label``; ``None`` where the label has
            none (the background, unused slots).
        drop_unmapped: Drop detections whose label has no category id instead of failing. Only right when such
            detections cannot count anyway, as for COCO-91 models on COCO data (``"N/A"`` slots, classes the
            annotation file leaves out).
    """

    category_ids: tuple[int | None, ...]
    drop_unmapped: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "category_ids", tuple(self.category_ids))  # a list would make it unhashable


def _base_dataset(dataset: Any) -> Any:
    while isinstance(dataset, Subset):  # a Subset keeps the label space of the dataset it selects from
        dataset = dataset.dataset
    return dataset


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:20])
    return f"[{shown}{f', ... ({len(names)} in all)' if len(names) > 20 else ''}]"


def match_label_space(model_categories: Sequence[str], dataset: Dataset) -> LabelMapping:
    """Check that a model's classes are the dataset's and say how labels map to the dataset's category ids.

    Two cases are accepted: the same category names in the same order (a model trained on this label space), and a
    COCO-91 model (`fpn_zoo.labels.COCO_CATEGORIES`, whose label *is* the COCO category id) on data with COCO's
    category ids and names, such as COCO itself or coco128.

    Args:
        model_categories: ``model.config.categories``, background first.
        dataset: A [`fpn_zoo.data.CocoDetection`][fpn_zoo.data.coco.CocoDetection], or a ``Subset`` of one.

    Returns:
        The mapping [`predict_dataset`][fpn_zoo.engine.evaluate.predict_dataset] applies.

    Raises:
        ValueError: Other label spaces; the message lists both.

    Examples:
        >>> from fpn_zoo.data import CocoDetection  # doctest: +SKIP
        >>> ds = CocoDetection("coco128/annotations/instances_train2017.json", "coco128/images")  # doctest: +SKIP
        >>> match_label_space(COCO_CATEGORIES, ds).category_ids[18]  # doctest: +SKIP
        18
    """
    base = _base_dataset(dataset)
    model_categories, data_categories = tuple(model_categories), tuple(base.categories)
    if model_categories == data_categories:
        return LabelMapping(tuple(base.label_to_category_id))
    pairs = list(zip(base.label_to_category_id[1:], data_categories[1:], strict=True))
    coco_ids = all(cid is not None and 0 < cid < len(COCO_CATEGORIES) and COCO_CATEGORIES[cid] == n for cid, n in pairs)
    if model_categories == COCO_CATEGORIES and coco_ids:
        present = {cid for cid, _ in pairs}
        return LabelMapping(tuple(k if k in present else None for k in range(len(COCO_CATEGORIES))), drop_unmapped=True)
    raise ValueError(
        f"The model's classes do not match the dataset's: model {_names(model_categories[1:])}, dataset "
        f"{_names(data_categories[1:])} (background not shown). Fine-tune the model on this dataset first, or load "
        "weights whose config.json lists these categories; only COCO-91 models may run on COCO-id data as is."
    )


def _default_mapping(model: nn.Module, dataset: Dataset) -> LabelMapping:
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "categories"):
        return match_label_space(config.categories, dataset)
    return LabelMapping(tuple(_base_dataset(dataset).label_to_category_id))  # a plain torchvision model: trust it


def _to_results(
    output: Mapping[str, torch.Tensor], image: torch.Tensor, target: Mapping[str, Any], mapping: LabelMapping
) -> tuple[list[Detection], list[int]]:
    image_id = int(target["image_id"])
    boxes = output["boxes"].detach().float().cpu()
    height, width = image.shape[-2:]
    orig_h, orig_w = (int(v) for v in target.get("orig_size", (height, width)))
    if (orig_h, orig_w) != (height, width):  # a transform resized the image: boxes go back to original pixels
        boxes = boxes * torch.tensor([orig_w / width, orig_h / height] * 2)
    boxes[:, 2:] -= boxes[:, :2]
    rows, unmapped = [], []
    ids = mapping.category_ids
    for box, label, score in zip(boxes.tolist(), output["labels"].tolist(), output["scores"].tolist(), strict=True):
        category_id = ids[label] if 0 <= label < len(ids) else None
        if category_id is None:
            unmapped.append(label)
        else:
            rows.append({"image_id": image_id, "category_id": category_id, "bbox": box, "score": score})
    return rows, unmapped


def _predict_by_image(
    model: nn.Module,
    dataset: Dataset,
    *,
    label_mapping: LabelMapping | None,
    batch_size: int,
    num_workers: int,
    device: torch.device | str | None,
    sampler: Iterable[int] | None,
    progress: bool,
) -> tuple[dict[int, list[Detection]], float, float]:
    """Detections per image id (images without any included), forward-pass seconds and whole-loop seconds."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from fpn_zoo.data import collate_detection
    from fpn_zoo.factory import resolve_device

    mapping = label_mapping or _default_mapping(model, dataset)
    if device is not None:
        model.to(resolve_device(device))
    target_device = next(model.parameters()).device
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate_detection
    )
    total = len(sampler) if hasattr(sampler, "__len__") else (None if sampler is not None else len(dataset))
    by_image: dict[int, list[Detection]] = {}
    dropped: Counter[int] = Counter()
    forward_s, start, was_training = 0.0, perf_counter(), model.training
    model.eval()
    try:
        bar = tqdm(total=total, unit="img", desc="eval", disable=not (progress and is_main_process()))
        with bar, torch.inference_mode():
            for images, targets in loader:
                bar.update(len(images))
                # A sampler may repeat an image; predicting it once keeps one copy of its detections.
                fresh = [(im, t) for im, t in zip(images, targets, strict=True) if int(t["image_id"]) not in by_image]
                if not fresh:
                    continue
                tic = perf_counter()
                outputs = model([im.to(target_device, non_blocking=True) for im, _ in fresh])
                if target_device.type == "cuda":
                    torch.cuda.synchronize(target_device)  # else the timer stops before the GPU does
                forward_s += perf_counter() - tic
                for (image, target), output in zip(fresh, outputs, strict=True):
                    rows, unmapped = _to_results(output, image, target, mapping)
                    if unmapped and not mapping.drop_unmapped:
                        raise ValueError(
                            f"Image {int(target['image_id'])}: the model predicted labels {sorted(set(unmapped))} "
                            f"that have no category id in the dataset (its mapping covers labels 0-"
                            f"{len(mapping.category_ids) - 1}: {list(mapping.category_ids)}). Is the model's label "
                            "space the dataset's? See match_label_space()."
                        )
                    dropped.update(unmapped)
                    by_image[int(target["image_id"])] = rows
    finally:
        model.train(was_training)
    if dropped:
        warnings.warn(
            f"Dropped {sum(dropped.values())} detection(s) with labels {sorted(dropped)} that have no category in "
            "the dataset; they could not count towards its metrics.",
            stacklevel=3,
        )
    return by_image, forward_s, perf_counter() - start


def predict_dataset(
    model: nn.Module,
    dataset: Dataset,
    *,
    label_mapping: LabelMapping | None = None,
    batch_size: int = 2,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    sampler: Iterable[int] | None = None,
    progress: bool = True,
) -> list[Detection]:
    """Detect objects in every image of ``dataset`` and return them in the COCO results format.

    Images are fed as the dataset gives them (at original size without transforms; the model resizes internally).
    If a transform resized them, boxes are scaled back to the original pixels with the target's ``orig_size``.

    Args:
        model: A detector following torchvision's contract; run in eval mode and put back as it was.
        dataset: A [`fpn_zoo.data.CocoDetection`][fpn_zoo.data.coco.CocoDetection] (or ``Subset`` of one) giving
            ``(image, target)`` pairs.
        label_mapping: Model label -> category id. Default:
            [`match_label_space`][fpn_zoo.engine.evaluate.match_label_space] for zoo models (an error for another label
            space), the dataset's own ``label_to_category_id`` for other models.
        batch_size: Images per forward pass.
        num_workers: DataLoader worker processes.
        device: Move the model there first; ``None`` keeps the model where it is.
        sampler: Indices to predict, e.g. a ``DistributedSampler`` shard; images repeated by it are predicted once.
        progress: Show a progress bar (on rank 0 only).

    Returns:
        One ``{"image_id": int, "category_id": int, "bbox": [x, y, w, h], "score": float}`` per detection, boxes
        in original image pixels (COCO xywh), images in dataset order.

    Raises:
        ValueError: A label without category id (unless ``label_mapping.drop_unmapped``), or another label space.

    Examples:
        >>> import fpn_zoo
        >>> from fpn_zoo.data import CocoDetection, write_synthetic_coco
        >>> import tempfile
        >>> ann, images = write_synthetic_coco(tempfile.mkdtemp(), num_images=2)
        >>> ds = CocoDetection(ann, images)
        >>> model = fpn_zoo.create_model("fpn_r50_coco", categories=ds.categories, num_classes=len(ds.categories),
        ...                              min_size=96, max_size=128, device="cpu")
        >>> detections = predict_dataset(model, ds, progress=False)
        >>> all(len(d["bbox"]) == 4 for d in detections)
        True
    """
    by_image, _, _ = _predict_by_image(
        model,
        dataset,
        label_mapping=label_mapping,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        sampler=sampler,
        progress=progress,
    )
    return [row for rows in by_image.values() for row in rows]


def merge_shards(shards: Sequence[Mapping[int, list[Detection]]]) -> dict[int, list[Detection]]:
    """Merge per-process detections (image id -> detections) into one set, keeping one copy per image.

    ``DistributedSampler`` pads the last shards by repeating images from the start so that every process runs the
    same number of batches; those images come back twice. The first copy, in rank order, is kept whole: merging
    detection by detection would double-count the image's boxes as false positives.

    Args:
        shards: One mapping per process, in rank order; an image with no detections maps to ``[]``.

    Returns:
        Image id -> detections, sorted by image id.

    Examples:
        >>> merge_shards([{1: ["a"], 3: []}, {2: ["b"], 1: ["a"]}])
        {1: ['a'], 2: ['b'], 3: []}
    """
    merged: dict[int, list[Detection]] = {}
    for shard in shards:
        for image_id, rows in shard.items():
            merged.setdefault(image_id, rows)
    return dict(sorted(merged.items()))


def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    *,
    label_mapping: LabelMapping | None = None,
    batch_size: int = 2,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    distributed: bool | None = None,
    coco_gt: Any = None,
) -> EvalResult | None:
    """Predict ``dataset`` and score it, on one process or on every process of a torchrun job.

    Distributed (a process group from [`init_distributed`][fpn_zoo.engine.distributed.init_distributed]), each process
    predicts its shard of a ``DistributedSampler(shuffle=False)``; the shards are gathered, images the sampler repeated
    to pad the shards are kept once ([`merge_shards`][fpn_zoo.engine.evaluate.merge_shards]), and rank 0 runs COCOeval
    on exactly the predicted images.

    Args:
        model: A detector following torchvision's contract, as for
            [`predict_dataset`][fpn_zoo.engine.evaluate.predict_dataset].
        dataset: A [`fpn_zoo.data.CocoDetection`][fpn_zoo.data.coco.CocoDetection] (or ``Subset`` of one).
        label_mapping: Model label -> category id; the default is that of ``predict_dataset``.
        batch_size: Images per forward pass.
        num_workers: DataLoader worker processes.
        device: Move the model there first; ``None`` keeps the model where it is.
        progress: Show a progress bar (on rank 0 only).
        distributed: Shard over the process group; ``None`` does so when there is one with several processes.
            ``False`` in a group makes every process evaluate the whole dataset on its own.
        coco_gt: Ground truth (default: the dataset's ``coco``).

    Returns:
        The result, with the scored detections (sorted by image id) in ``result.detections``; ``None`` on ranks
        other than 0 when distributed.

    Examples:
        >>> result = evaluate_model(model, dataset)  # doctest: +SKIP
        >>> print(format_metrics(result))  # doctest: +SKIP
    """
    from torch.utils.data.distributed import DistributedSampler

    shard = get_world_size() > 1 if distributed is None else distributed and get_world_size() > 1
    by_image, forward_s, loop_s = _predict_by_image(
        model,
        dataset,
        label_mapping=label_mapping,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        sampler=DistributedSampler(dataset, shuffle=False) if shard else None,
        progress=progress,
    )
    start = perf_counter()
    shards = all_gather_object((by_image, forward_s, loop_s)) if shard else [(by_image, forward_s, loop_s)]
    if shard and not is_main_process():
        return None
    merged = merge_shards([images for images, _, _ in shards])
    gather_s = perf_counter() - start
    detections = [row for rows in merged.values() for row in rows]
    gt = coco_gt if coco_gt is not None else _base_dataset(dataset).coco
    result = coco_evaluate(gt, detections, image_ids=merged)
    slowest = max(shards, key=lambda s: s[2])  # the job's wall time is its slowest process's
    return dataclasses.replace(
        result,
        inference_seconds=max(f for _, f, _ in shards),
        data_seconds=slowest[2] - slowest[1],
        gather_seconds=gather_s,
        detections=detections,
    )
