"""``fpn-zoo eval``: COCO box metrics of a model on a COCO-format dataset, or of a saved detections file.

Examples:
    ```console
    $ fpn-zoo eval --model fpn_r50_coco --pretrained --ann coco128/annotations/instances_train2017.json \\
          --images coco128/images --out eval/coco128.json
    $ torchrun --nproc_per_node 2 -m fpn_zoo.cli eval --model fpn_r50_bccd --weights run/final \\
          --ann bccd/annotations/instances_val.json --images bccd/images
    $ fpn-zoo eval --detections eval/coco128.detections.json --ann coco128/annotations/instances_train2017.json
    ```

Model mode writes two files: ``--out`` (default ``eval/<model>.json``), the metrics JSON of
[`to_dict`][fpn_zoo.engine.coco_metrics.EvalResult.to_dict] plus what was evaluated (model, weights, files, label space,
world size), and beside it ``<stem>.detections.json``, the detections in the COCO results format
(``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``) that ``--detections`` reads back. Detections
mode writes the metrics JSON only when ``--out`` is given. Under torchrun only rank 0 prints and writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fpn_zoo.argtypes import add_fast_argument, add_weights_arguments, check_weights_tag, fast_setting, int_at_least
from fpn_zoo.outputs import claim_outputs

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to ``subparsers`` (from ``ArgumentParser.add_subparsers``); handler: `run`.

    Examples:
        >>> import argparse
        >>> sub = argparse.ArgumentParser().add_subparsers()
        >>> p = add_parser(sub)
        >>> p.parse_args(["--detections", "d.json", "--ann", "a.json"]).batch_size
        2
    """
    p = subparsers.add_parser(
        "eval",
        help="COCO box AP of a model on a COCO-format dataset, or of a saved detections file (pycocotools)",
        description="Model mode (--model, --images) writes the metrics JSON (--out) and <stem>.detections.json "
        "beside it; detections mode (--detections) scores a saved COCO results file. Run under torchrun to shard "
        "the images over processes.",
    )
    p.add_argument("--ann", type=Path, required=True, metavar="FILE", help="COCO annotation file (ground truth)")
    p.add_argument("--model", help="model name, e.g. fpn_r50_coco (model mode, with --images)")
    add_weights_arguments(p)
    p.add_argument("--images", type=Path, metavar="DIR", help="folder of the annotation file's images (model mode)")
    p.add_argument(
        "--detections", type=Path, metavar="FILE", help="score this COCO results file instead of running a model"
    )
    p.add_argument(
        "--out", type=Path, metavar="FILE",
        help="metrics JSON to write; detections go beside it as <stem>.detections.json (default: eval/<model>.json)",
    )  # fmt: skip
    p.add_argument(
        "--on-invalid", choices=("error", "skip"), default="error",
        help="invalid items in --ann: error (default) refuses the file, listing them; skip drops them with a warning",
    )  # fmt: skip
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace an earlier evaluation at --out (default: refuse; without --out: eval/<model>-2.json, ...)",
    )  # fmt: skip
    add_fast_argument(p)
    p.add_argument("--batch-size", type=int_at_least(1), default=2, metavar="N", help="images per forward (default: 2)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: cuda when available, else cpu)")
    p.add_argument(
        "--workers", type=int_at_least(0), default=0, metavar="N", help="data loading processes (default: 0)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)
    return p


def _detections_path(out: Path) -> Path:
    return out.with_name(out.stem + ".detections.json")


def _write_json(path: Path, data: Any, *, indent: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent) + "\n")


def _claim(args: argparse.Namespace) -> Path:
    """Where model mode writes its metrics JSON: never over an earlier evaluation unless --overwrite."""
    return claim_outputs(
        args.out or Path("eval") / f"{args.model}.json",
        lambda path: [path, _detections_path(path)],
        chosen=args.out is not None,
        overwrite=args.overwrite,
        file=True,
    )


def _run_detections(args: argparse.Namespace) -> int:
    from fpn_zoo.engine.evaluate import evaluate_detections_file, format_metrics

    given = [f"--{k}" for k in ("model", "weights", "images") if getattr(args, k) is not None]
    given += ["--pretrained"] if args.pretrained is not False else []
    if given:
        raise ValueError(f"--detections scores a saved file: drop {', '.join(given)}, or drop --detections.")
    if args.out is not None:  # before the scoring, not after it
        claim_outputs(args.out, lambda path: [path], chosen=True, overwrite=args.overwrite, file=True)
    result = evaluate_detections_file(args.detections, args.ann)
    print(format_metrics(result))
    if args.out is not None:
        record = {"detections_file": str(args.detections), "ann_file": str(args.ann), **result.to_dict()}
        _write_json(args.out, record, indent=2)
        print(f"Wrote {args.out}")
    return 0


def _check_model_args(args: argparse.Namespace) -> None:
    missing = [f"--{k}" for k in ("model", "images") if getattr(args, k) is None]
    if missing:
        raise ValueError(f"missing {' and '.join(missing)}: give --model and --images, or --detections FILE.")
    check_weights_tag(args.pretrained)
    if not args.ann.is_file():
        raise FileNotFoundError(f"No such annotation file: '{args.ann}'.")
    if not args.images.is_dir():
        raise FileNotFoundError(f"No such image folder: '{args.images}'.")
    if args.out is not None and args.out.suffix != ".json":
        raise ValueError(f"--out {str(args.out)!r} must be a .json file (detections go beside it).")


def _run_model(args: argparse.Namespace) -> int:
    from fpn_zoo.registry import get_model_config

    _check_model_args(args)
    get_model_config(args.model)  # an unknown name fails before torch is imported
    import torch.distributed as dist

    from fpn_zoo.data import CocoDetection
    from fpn_zoo.engine.distributed import barrier, cleanup, init_distributed
    from fpn_zoo.engine.evaluate import evaluate_model, format_metrics, match_label_space
    from fpn_zoo.factory import create_model
    from fpn_zoo.labels import COCO_CATEGORIES
    from fpn_zoo.weights.manifest import weights_status
    from fpn_zoo.weights.resolve import weights_label

    owns_group = not dist.is_initialized()
    info = init_distributed(args.device)
    try:
        main = info.rank == 0
        if main and args.weights is None and args.pretrained is False:
            print(
                f"fpn-zoo: warning: no --weights given, so {args.model} is RANDOMLY INITIALISED and its metrics are "
                f"meaningless. Weights for it: {weights_status(args.model)}.",
                file=sys.stderr,
            )
        # Decided before any inference is spent; the other ranks write nothing.
        out = _claim(args) if main else None
        dataset = CocoDetection(args.ann, args.images, on_invalid=args.on_invalid)
        model = create_model(
            args.model, weights=args.weights, pretrained=args.pretrained, device=info.device,
            fast=fast_setting(args.fast),
        )  # fmt: skip
        mapping = match_label_space(model.config.categories, dataset)  # before any inference is spent
        coco91 = tuple(model.config.categories) == COCO_CATEGORIES and mapping.drop_unmapped
        if main and len(dataset) != len(dataset.coco.getImgIds()):
            print(f"Note: evaluating the {len(dataset)} loadable of {len(dataset.coco.getImgIds())} annotated images.")
        result = evaluate_model(
            model,
            dataset,
            label_mapping=mapping,
            batch_size=args.batch_size,
            num_workers=args.workers,
            progress=not args.no_progress,
        )
        if result is not None:  # rank 0
            assert out is not None  # rank 0 claimed it
            detections_path = _detections_path(out)
            _write_json(detections_path, result.detections, indent=None)
            record = {
                "model": args.model,
                "weights": weights_label(args.weights, args.pretrained),
                "ann_file": str(args.ann),
                "image_dir": str(args.images),
                "label_space": "coco91 (labels are COCO category ids)" if coco91 else "dataset",
                "world_size": info.world_size,
                "detections_file": str(detections_path),
                **result.to_dict(),
            }
            _write_json(out, record, indent=2)
            print(format_metrics(result))
            print(f"Wrote {out} (metrics) and {detections_path} (detections, COCO results format).")
        barrier()  # the other ranks wait for rank 0's files before the group goes away
    finally:
        if owns_group:
            cleanup()
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``fpn-zoo eval`` with parsed arguments (from the parser of `add_parser`).

    Args:
        args: The parsed command line.

    Returns:
        0 on success. Expected failures raise ``ValueError``/``OSError`` (and ``KeyError`` for an unknown model)
        with a one-line message; ``fpn_zoo.cli.main`` prints them as ``fpn-zoo: error: ...`` and exits with 2.

    Examples:
        >>> import argparse
        >>> parser = argparse.ArgumentParser()
        >>> _ = add_parser(parser.add_subparsers())
        >>> args = parser.parse_args(["eval", "--detections", "d.json", "--ann", "a.json"])
        >>> run(args)  # doctest: +SKIP
        0
    """
    if args.detections is not None:
        return _run_detections(args)
    return _run_model(args)
