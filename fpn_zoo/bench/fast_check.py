"""Does the fast inference path keep a trained model's accuracy? COCO AP and per-box differences against the plain path.

Runs one trained model over a COCO-format validation set three ways (the plain model, ``fast=True`` and, where the
hardware computes bf16 natively, ``fast="bf16"``), scores each with pycocotools, and pairs every detection of the plain
path with the same-class detection of the other path that overlaps it most. The table gives the AP change, how many
detections found no twin (IoU >= ``TWIN_IOU``), and the largest score and box-corner differences between twins.

Usage:
    fpn-zoo bench fast-check --model fpn_r50_coco --weights runs/bccd/final \\
        --ann ../shared/data/bccd/annotations/instances_val.json --images ../shared/data/bccd/images

Writes ``docs/results/fast-path-<dataset>-<device>-<date>.json`` and ``.md`` (``--out`` to choose).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torchvision.ops import box_iou

import fpn_zoo
from fpn_zoo.bench.machine import git_commit, machine_info
from fpn_zoo.fast_path import bf16_supported

__all__ = ["BoxDifferences", "compare_detections", "main", "parse_args", "run", "run_fast_check"]

TWIN_IOU = 0.9  # a detection and its twin from the other path must overlap at least this much
RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"


@dataclass(frozen=True)
class BoxDifferences:
    """How one path's detections differ from the plain path's on the same images.

    Attributes:
        plain: Detections of the plain path.
        other: Detections of the other path.
        twins: Plain detections with a same-class twin (IoU >= ``TWIN_IOU``) in the other path, paired greedily by
            decreasing plain score.
        plain_without_twin: Plain detections no other detection matches, with the highest score among them.
        other_without_twin: Other-path detections left unpaired, with the highest score among them.
        max_score_diff: Largest score difference between twins; ``median_score_diff`` its median.
        max_corner_diff_px: Largest box-corner difference between twins, in pixels; ``median_corner_diff_px``
            its median.
        min_twin_iou: Lowest IoU between twins.
    """

    plain: int
    other: int
    twins: int
    plain_without_twin: int
    plain_without_twin_top_score: float | None
    other_without_twin: int
    other_without_twin_top_score: float | None
    max_score_diff: float | None
    median_score_diff: float | None
    max_corner_diff_px: float | None
    median_corner_diff_px: float | None
    min_twin_iou: float | None


def _by_image_and_class(rows: Sequence[dict[str, Any]]) -> dict[tuple[int, int], list[dict[str, Any]]]:
    groups: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["image_id"], row["category_id"])].append(row)
    return groups


def _xyxy(rows: Sequence[dict[str, Any]]) -> torch.Tensor:
    boxes = torch.tensor([row["bbox"] for row in rows], dtype=torch.float64).reshape(-1, 4)
    return torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], dim=1)


def compare_detections(plain: Sequence[dict[str, Any]], other: Sequence[dict[str, Any]]) -> BoxDifferences:
    """Pair two COCO results lists of the same images detection by detection.

    Examples:
        >>> a = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9}]
        >>> b = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10.5], "score": 0.89}]
        >>> d = compare_detections(a, b)
        >>> d.twins, d.plain_without_twin, round(d.max_score_diff, 2), d.max_corner_diff_px
        (1, 0, 0.01, 0.5)
    """
    plain_groups, other_groups = _by_image_and_class(plain), _by_image_and_class(other)
    score_diffs: list[float] = []
    corner_diffs: list[float] = []
    ious: list[float] = []
    lonely_plain: list[float] = []
    lonely_other: list[float] = []
    for key in sorted(set(plain_groups) | set(other_groups)):
        ours = sorted(plain_groups.get(key, []), key=lambda r: -r["score"])
        theirs = other_groups.get(key, [])
        free = set(range(len(theirs)))
        iou = box_iou(_xyxy(ours), _xyxy(theirs)) if ours and theirs else None
        for i, row in enumerate(ours):
            best = max(free, key=lambda j: float(iou[i, j]), default=None) if iou is not None else None
            if best is None or float(iou[i, best]) < TWIN_IOU:
                lonely_plain.append(row["score"])
                continue
            free.discard(best)
            twin = theirs[best]
            score_diffs.append(abs(row["score"] - twin["score"]))
            corner_diffs.append(float((_xyxy([row]) - _xyxy([twin])).abs().max()))
            ious.append(float(iou[i, best]))
        lonely_other.extend(theirs[j]["score"] for j in free)

    def top(values: list[float]) -> float | None:
        return max(values) if values else None

    def median(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    return BoxDifferences(
        plain=len(plain),
        other=len(other),
        twins=len(score_diffs),
        plain_without_twin=len(lonely_plain),
        plain_without_twin_top_score=top(lonely_plain),
        other_without_twin=len(lonely_other),
        other_without_twin_top_score=top(lonely_other),
        max_score_diff=top(score_diffs),
        median_score_diff=median(score_diffs),
        max_corner_diff_px=top(corner_diffs),
        median_corner_diff_px=median(corner_diffs),
        min_twin_iou=min(ious) if ious else None,
    )


def run_fast_check(
    model: str,
    weights: str | Path,
    ann: str | Path,
    images: str | Path,
    *,
    device: str | None = None,
    batch_size: int = 1,
) -> dict[str, Any]:
    """Evaluate ``model`` with ``weights`` on the plain, fast and (native bf16 only) bf16 paths.

    Returns:
        A JSON-ready dict: per path its COCO metrics, seconds of inference, and (fast paths) the AP change and
        [`BoxDifferences`][fpn_zoo.bench.fast_check.BoxDifferences] against the plain path.
    """
    from fpn_zoo.data.coco import CocoDetection
    from fpn_zoo.engine.evaluate import evaluate_model

    dataset = CocoDetection(ann, images)
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    paths = {"plain": False, "fast": True}
    if bf16_supported(target):
        paths["fast_bf16"] = "bf16"
    results: dict[str, Any] = {}
    plain_rows: list[dict[str, Any]] = []
    for path, fast in paths.items():
        detector = fpn_zoo.create_model(model, weights=str(weights), device=str(target), fast=fast)
        result = evaluate_model(detector, dataset, batch_size=batch_size, progress=False)
        assert result is not None  # one process
        entry: dict[str, Any] = {
            **{k: result.metrics[k] for k in ("AP", "AP50", "AP75")},
            "per_class": result.per_class,
            "inference_s": result.inference_seconds,
            "detections": len(result.detections),
        }
        if path == "plain":
            plain_rows = result.detections
        else:
            entry["AP_change"] = entry["AP"] - results["plain"]["AP"]
            entry["AP50_change"] = entry["AP50"] - results["plain"]["AP50"]
            entry["inference_ratio"] = entry["inference_s"] / results["plain"]["inference_s"]
            entry["boxes"] = asdict(compare_detections(plain_rows, result.detections))
        results[path] = entry
    return {
        "model": model,
        "weights": str(weights),
        "ann": str(ann),
        "images": len(dataset),
        "device": str(target),
        "batch_size": batch_size,
        "twin_iou": TWIN_IOU,
        "bf16": "measured" if "fast_bf16" in paths else f"not measured: {target} has no native bf16",
        "paths": results,
        "machine": machine_info(target),
        "commit": git_commit(),
        "torch": torch.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _num(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _sci(value: float | None) -> str:
    return "" if value is None else f"{value:.1e}"


def _count_and_top(count: int, top: float | None) -> str:
    return str(count) if top is None else f"{count} ({top:.3f})"


def to_markdown(report: dict[str, Any], command: str) -> str:
    """The report as a Markdown page: one row per path."""
    lines = [
        f"# Fast inference path on trained weights, {report['date']}",
        "",
        f"Command: `{command}`  ",
        f"Model: {report['model']} with the weights in `{report['weights']}`; {report['images']} images of "
        f"`{report['ann']}`; device {report['device']}, batch {report['batch_size']}, torch {report['torch']}. "
        f"bf16: {report['bf16']}.",
        "",
        "| path | AP | AP50 | AP change | AP50 change | inference s (ratio) | detections | twins | plain without twin "
        "(top score) | other without twin (top score) | max / median score diff | max / median corner diff px |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for path, entry in report["paths"].items():
        boxes = entry.get("boxes")
        ratio = f" ({entry['inference_ratio']:.2f})" if "inference_ratio" in entry else ""
        cells = [  # COCOeval's figures in points, as EvalResult holds them
            path, _num(entry["AP"], 2), _num(entry["AP50"], 2), _num(entry.get("AP_change"), 2),
            _num(entry.get("AP50_change"), 2), f"{entry['inference_s']:.1f}{ratio}", str(entry["detections"]),
        ]  # fmt: skip
        if boxes:
            cells += [
                str(boxes["twins"]),
                _count_and_top(boxes["plain_without_twin"], boxes["plain_without_twin_top_score"]),
                _count_and_top(boxes["other_without_twin"], boxes["other_without_twin_top_score"]),
                f"{_sci(boxes['max_score_diff'])} / {_sci(boxes['median_score_diff'])}",
                f"{_sci(boxes['max_corner_diff_px'])} / {_sci(boxes['median_corner_diff_px'])}",
            ]
        else:
            cells += [""] * 5
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"AP in points (COCOeval, IoU 0.50:0.95). Twins: a plain detection and the same-class detection of the other "
        f"path overlapping it most, IoU >= {report['twin_iou']}, paired greedily by decreasing plain score. "
        "Inference seconds: model forwards only, summed over the images.",
        "",
    ]
    return "\n".join(lines)


def parse_args(
    argv: list[str] | None = None,
    prog: str = "fpn-zoo bench fast-check",
    parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser,
) -> argparse.Namespace:
    """The options of ``fpn-zoo bench fast-check`` (also ``python -m fpn_zoo.bench.fast_check``), checked."""
    parser = parser_class(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model name, e.g. fpn_r50_coco (required)")
    parser.add_argument("--weights", required=True, type=Path, help="trained weights: an exported folder or file "
                        "(required)")  # fmt: skip
    parser.add_argument("--ann", required=True, type=Path, help="COCO annotation file of the validation images "
                        "(required)")  # fmt: skip
    parser.add_argument("--images", required=True, type=Path, help="folder of those images (required)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available, else cpu)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward (default: 1)")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default: "
                        "docs/results/fast-path-{dataset}-{device}-{YYYYMMDD}.json)")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    args.prog = prog
    for flag, path in (("--weights", args.weights), ("--ann", args.ann), ("--images", args.images)):
        if not path.exists():
            parser.error(f"{flag} {path} does not exist")
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    device_type = args.device.split(":")[0]
    args.out = args.out or RESULTS / f"fast-path-{args.images.resolve().parent.name}-{device_type}-{stamp}.json"
    taken = [p for p in (args.out, args.out.with_suffix(".md")) if p.exists()]
    if taken and not args.overwrite:
        parser.error(f"{', '.join(map(str, taken))} exist; pass --overwrite to replace, or choose another --out")
    return args


def run(args: argparse.Namespace) -> int:
    """Run the check of parsed ``args``, write the JSON and the ``.md`` beside it, print the table; 0."""
    out, markdown = args.out, args.out.with_suffix(".md")
    report = run_fast_check(args.model, args.weights, args.ann, args.images, device=args.device,
                            batch_size=args.batch_size)  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    markdown.write_text(to_markdown(report, " ".join([args.prog, *args.argv])))
    print(markdown.read_text())
    print(f"Wrote {out} and {markdown}.")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line (``fpn-zoo bench fast-check``): see the module docstring."""
    return run(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
