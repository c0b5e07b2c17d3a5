"""COCO box metrics with pycocotools: validate a results list, run ``COCOeval``, report per-class AP and a table.

All AP and AR values are **percentages** (0-100). A value pycocotools cannot define (-1: no ground truth in that area
range, or for that class) is ``None`` here and ``null`` in JSON, never -1 and never a misleading 0.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import numbers
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
"""The 12 numbers of ``COCOeval.summarize()``, in its order."""

_KEYS = ("image_id", "category_id", "bbox", "score")
Detection = dict[str, Any]


def _pycocotools() -> tuple[Any, Any]:
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise ImportError("COCO evaluation needs pycocotools: pip install pycocotools") from None
    return COCO, COCOeval


@dataclass(frozen=True)
class EvalResult:
    """COCO box metrics of one evaluation, in percent, with its counts and where the time went.

    ``AP`` to ``ARl`` are the 12 ``COCOeval.summarize()`` numbers
    ([`STAT_NAMES`][fpn_zoo.engine.coco_metrics.STAT_NAMES]): AP over IoU 0.50:0.95, at 0.50 and 0.75, for
    small/medium/large objects, then AR at 1/10/100 detections and by size. ``None`` where pycocotools reports -1
    (nothing to measure, e.g. no small objects).

    Attributes:
        per_class: Category name -> AP (IoU 0.50:0.95, all areas, 100 detections), ``None`` for a class without
            ground truth in the evaluated images.
        num_images: Images evaluated.
        num_detections: Detections scored.
        inference_seconds: Wall time of the forward passes (the slowest process under torchrun).
        data_seconds: Rest of the prediction loop: loading, collating, converting to the results format.
        gather_seconds: Collecting the processes' detections on rank 0, waiting for the slowest included (about 0
            on one process).
        cocoeval_seconds: pycocotools' matching and accumulation.
        detections: The scored detections when the result comes from
            [`evaluate_model`][fpn_zoo.engine.evaluate.evaluate_model] (not in
            [`to_dict`][fpn_zoo.engine.coco_metrics.EvalResult.to_dict]; write them with ``json.dump``), else ``None``.
    """

    AP: float | None
    AP50: float | None
    AP75: float | None
    APs: float | None
    APm: float | None
    APl: float | None
    AR1: float | None
    AR10: float | None
    AR100: float | None
    ARs: float | None
    ARm: float | None
    ARl: float | None
    per_class: dict[str, float | None]
    num_images: int
    num_detections: int
    inference_seconds: float = 0.0
    data_seconds: float = 0.0
    gather_seconds: float = 0.0
    cocoeval_seconds: float = 0.0
    detections: list[Detection] | None = field(default=None, repr=False, compare=False)

    @property
    def metrics(self) -> dict[str, float | None]:
        """The 12 summary numbers by name, in [`STAT_NAMES`][fpn_zoo.engine.coco_metrics.STAT_NAMES] order."""
        return {name: getattr(self, name) for name in STAT_NAMES}

    @property
    def overhead_seconds(self) -> float:
        """Evaluation time beyond the forward passes: data, gathering and COCOeval."""
        return self.data_seconds + self.gather_seconds + self.cocoeval_seconds

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"units", "metrics", "per_class", "num_images", "num_detections", "timing_seconds"}``.

        Examples:
            >>> r = EvalResult(*[None] * 12, per_class={}, num_images=0, num_detections=0)
            >>> sorted(r.to_dict())
            ['metrics', 'num_detections', 'num_images', 'per_class', 'timing_seconds', 'units']
        """
        timing = {
            "inference": self.inference_seconds,
            "data": self.data_seconds,
            "gather": self.gather_seconds,
            "cocoeval": self.cocoeval_seconds,
            "overhead": self.overhead_seconds,
        }
        return {
            "units": "percent (AP/AR in 0-100; null where pycocotools reports -1)",
            "metrics": self.metrics,
            "per_class": dict(self.per_class),
            "num_images": self.num_images,
            "num_detections": self.num_detections,
            "timing_seconds": {k: round(v, 4) for k, v in timing.items()},
        }


def _load_coco(ann_file: str | os.PathLike[str]) -> Any:
    COCO, _ = _pycocotools()
    path = Path(ann_file)
    if not path.is_file():
        raise FileNotFoundError(f"No such annotation file: '{path}'.")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress chatter
            return COCO(str(path))
    except json.JSONDecodeError as err:
        raise ValueError(f"Annotation file '{path}' is not valid JSON: {err}.") from None
    except (KeyError, TypeError, AssertionError) as err:
        raise ValueError(f"Annotation file '{path}' is not in the COCO format ({type(err).__name__}: {err}).") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _row_problem(row: Any) -> str | None:
    if not isinstance(row, Mapping):
        return f"is a {type(row).__name__}, not an object"
    missing = [k for k in _KEYS if k not in row]
    if missing:
        return f"lacks {missing}"
    if not (_is_int(row["image_id"]) and _is_int(row["category_id"])):
        return "has a non-integer image_id or category_id"
    bbox = row["bbox"]
    if not (isinstance(bbox, Sequence) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        return f"has bbox {bbox!r}, not 4 finite numbers [x, y, w, h]"
    if bbox[2] < 0 or bbox[3] < 0:
        return f"has bbox {list(bbox)} with a negative width or height (COCO boxes are [x, y, w, h])"
    if not _is_number(row["score"]):
        return f"has score {row['score']!r}, not a finite number"
    return None


def _unknown(counts: Counter[int], what: str, source: str, known: Iterable[int]) -> str:
    ids = sorted(counts)
    shown = f"{ids[:10]}{' ...' if len(ids) > 10 else ''}"
    known = sorted(known)
    return (
        f"{sum(counts.values())} detection(s) in {source} have {len(ids)} {what} id(s) not in the annotation file: "
        f"{shown} (it has {len(known)}: {known[:10]}{' ...' if len(known) > 10 else ''})"
    )


def _check_detections(results: Any, coco_gt: Any, source: str) -> None:
    """Refuse results that are not COCO box detections for this annotation file, saying what is wrong and how often."""
    if not isinstance(results, list):
        raise ValueError(f"{source}: expected a list of detections ({', '.join(_KEYS)}), got {type(results).__name__}.")
    problems = [(i, p) for i, row in enumerate(results) if (p := _row_problem(row)) is not None]
    if problems:
        shown = "; ".join(f"#{i} {p}" for i, p in problems[:3])
        raise ValueError(
            f"{source}: {len(problems)} of {len(results)} detection(s) are malformed ({shown}). Each must be "
            '{"image_id": int, "category_id": int, "bbox": [x, y, w, h], "score": float}.'
        )
    errors = []
    images, categories = set(coco_gt.getImgIds()), set(coco_gt.getCatIds())
    bad_images = Counter(int(r["image_id"]) for r in results if int(r["image_id"]) not in images)
    bad_categories = Counter(int(r["category_id"]) for r in results if int(r["category_id"]) not in categories)
    if bad_images:
        errors.append(_unknown(bad_images, "image", source, images))
    if bad_categories:
        errors.append(_unknown(bad_categories, "category", source, categories))
    if errors:
        raise ValueError("; ".join(errors) + ". Were they made for another annotation file?")


def _empty_results(coco_gt: Any) -> Any:
    # loadRes([]) fails on an empty list; an empty results set scores 0 wherever there is ground truth.
    COCO, _ = _pycocotools()
    empty = COCO()
    empty.dataset = {"images": list(coco_gt.dataset["images"]), "categories": coco_gt.dataset["categories"]}
    empty.dataset["annotations"] = []
    empty.createIndex()
    return empty


def _percent(value: float) -> float | None:
    return None if value < 0 else float(value) * 100.0


def coco_evaluate(
    coco_gt: Any, results: Sequence[Mapping[str, Any]], *, image_ids: Iterable[int] | None = None
) -> EvalResult:
    """Score COCO-format box detections with pycocotools' ``COCOeval`` (iouType ``"bbox"``).

    Args:
        coco_gt: The ground truth: a ``pycocotools.coco.COCO`` (e.g. ``dataset.coco``) or an annotation file path.
        results: Detections ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``; not modified.
        image_ids: Images to evaluate (default: all in ``coco_gt``). Images without detections count as misses,
            so pass the ids that were predicted when only part of the dataset was.

    Returns:
        The metrics in percent; no detections give 0 wherever there is ground truth (``None`` elsewhere).

    Raises:
        ValueError: Results that are not a list of such detections, or hold image or category ids that the
            annotation file does not have (with counts).

    Examples:
        >>> import tempfile
        >>> from fpn_zoo.data import write_synthetic_coco
        >>> ann_file, _ = write_synthetic_coco(tempfile.mkdtemp(), num_images=2)
        >>> result = coco_evaluate(ann_file, [])
        >>> result.AP, result.num_images
        (0.0, 2)
    """
    gt = _load_coco(coco_gt) if isinstance(coco_gt, (str, os.PathLike)) else coco_gt
    results = list(results) if isinstance(results, tuple) else results
    _check_detections(results, gt, "results")
    return _score(gt, results, image_ids)


def _score(gt: Any, results: list[Mapping[str, Any]], image_ids: Iterable[int] | None) -> EvalResult:
    _, COCOeval = _pycocotools()
    known = set(gt.getImgIds())
    ids = sorted(known if image_ids is None else {int(i) for i in image_ids})
    if not ids:
        raise ValueError("No images to evaluate: image_ids is empty.")
    if not set(ids) <= known:
        raise ValueError(f"image_ids not in the annotation file: {sorted(set(ids) - known)[:10]}.")
    keep = set(ids)
    # Copies of the needed keys only: loadRes writes area/id/iscrowd into the dicts it gets.
    rows = [
        {
            "image_id": int(r["image_id"]),
            "category_id": int(r["category_id"]),
            "bbox": [float(v) for v in r["bbox"]],
            "score": float(r["score"]),
        }
        for r in results
        if int(r["image_id"]) in keep
    ]
    start = perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = gt.loadRes(rows) if rows else _empty_results(gt)
        evaluator = COCOeval(gt, coco_dt, iouType="bbox")
        evaluator.params.imgIds = ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    params = evaluator.params
    # The standard per-class AP: precision[iou, recall, class, area "all", maxDets 100], -1 (undefined) left out.
    precision = evaluator.eval["precision"][:, :, :, params.areaRngLbl.index("all"), params.maxDets.index(100)]
    names = Counter(gt.cats[c]["name"] for c in params.catIds)
    per_class = {}
    for k, cat_id in enumerate(params.catIds):
        name = gt.cats[cat_id]["name"]
        values = precision[:, :, k]
        values = values[values > -1]
        key = name if names[name] == 1 else f"{name} (id {cat_id})"
        per_class[key] = float(values.mean()) * 100.0 if values.size else None
    stats = [_percent(v) for v in evaluator.stats]
    return EvalResult(
        *stats,
        per_class=per_class,
        num_images=len(ids),
        num_detections=len(rows),
        cocoeval_seconds=perf_counter() - start,
    )


def evaluate_detections_file(results_json: str | os.PathLike[str], ann_file: str | os.PathLike[str]) -> EvalResult:
    """Score a saved COCO results file (``[{"image_id", "category_id", "bbox", "score"}, ...]``) on all images.

    Every image of ``ann_file`` is evaluated, so use the annotation file the detections were made for.

    Raises:
        FileNotFoundError: A missing file.
        ValueError: Invalid JSON, or detections that do not fit the annotation file (counts in the message).

    Examples:
        >>> import pathlib, tempfile
        >>> from fpn_zoo.data import write_synthetic_coco
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> ann_file, _ = write_synthetic_coco(folder, num_images=2)
        >>> _ = (folder / "detections.json").write_text("[]")
        >>> evaluate_detections_file(folder / "detections.json", ann_file).num_detections
        0
    """
    path = Path(results_json)
    if not path.is_file():
        raise FileNotFoundError(f"No such detections file: '{path}'.")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"Detections file '{path}' is not valid JSON: {err}.") from None
    gt = _load_coco(ann_file)
    _check_detections(results, gt, f"'{path}'")
    return _score(gt, results, None)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def format_metrics(result: EvalResult) -> str:
    """The metrics as a printable table: the 12 summary numbers, AP per class, and the time split.

    Examples:
        >>> r = EvalResult(*[50.0] * 11, None, per_class={"RBC": 61.25}, num_images=2, num_detections=7)
        >>> print(format_metrics(r).splitlines()[0])
        COCO box metrics in %: 2 images, 7 detections
    """
    width = max([8, *(len(n) for n, ap in result.per_class.items() if ap is not None)])
    lines = [f"COCO box metrics in %: {result.num_images} images, {result.num_detections} detections"]
    for names in (STAT_NAMES[:6], STAT_NAMES[6:]):
        lines.append("  " + "".join(f"{n:>7}" for n in names))
        lines.append("  " + "".join(f"{_fmt(getattr(result, n)):>7}" for n in names))
    lines.append(f"  {'class':<{width}}  AP (IoU 0.50:0.95)")
    lines += [f"  {name:<{width}}  {_fmt(ap):>6}" for name, ap in result.per_class.items() if ap is not None]
    absent = [name for name, ap in result.per_class.items() if ap is None]
    if absent:  # one line, not a row each: a COCO subset leaves most of the 80 classes without ground truth
        shown = ", ".join(absent[:8]) + (f", ... ({len(absent)} in all)" if len(absent) > 8 else "")
        lines.append(f"  no ground truth, AP n/a: {shown}")
    if result.inference_seconds or result.data_seconds:
        lines.append(
            f"Time: {result.inference_seconds:.2f} s forward passes; {result.overhead_seconds:.2f} s overhead (data "
            f"{result.data_seconds:.2f}, gather {result.gather_seconds:.2f}, COCOeval {result.cocoeval_seconds:.2f})"
        )
    else:  # scored saved detections: there were no forward passes to compare with
        lines.append(f"Time: COCOeval {result.cocoeval_seconds:.2f} s")
    return "\n".join(lines)
