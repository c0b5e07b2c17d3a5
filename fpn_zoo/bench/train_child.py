"""One measurement of ``fpn-zoo bench train`` in a fresh process: ``python -m fpn_zoo.bench.train_child MODE --out R``.

Modes:
    ours         the real engine: ``Trainer(TrainConfig(...)).fit()`` with ``iters = warmup + steps`` and
                 ``log_every=1``. The step times are the engine's own: each ``train`` line of ``log.jsonl`` has
                 ``images_per_s`` over the window since the previous line (batch fetch, host-to-device, ``_step``),
                 so ``window_s = images / images_per_s``. Under torchrun (DDP) only rank 0 logs and writes the result,
                 and its ``images_per_s`` already counts every process's batch.
    torchvision  ``fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, ...)`` driven by a plain loop over a
                 plain ``DataLoader`` of the same ``CocoDetection`` + transforms + collate. Each step is timed the same
                 way: from the end of the previous step (so the batch fetch is inside) to the end of ``opt.step()``.

Both modes then time the data pipeline alone (the same number of batches, no model), to tell loading cost from
compute. Imports run before anything is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["MODEL", "main"]

_T0 = time.perf_counter()
MODEL = "fpn_r50_coco"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fpn_zoo.bench.train_child", description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("ours", "torchvision"))
    p.add_argument("--out", required=True, help="result JSON (written by rank 0 only)")
    p.add_argument("--ann", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--work-dir", required=True, help="the engine's run folder goes here")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--min-size", type=int, default=320)
    p.add_argument("--max-size", type=int, default=427)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--hflip", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _import() -> dict[str, float]:
    steps: dict[str, float] = {}
    for label, name in (
        ("torch", "torch"),
        ("torchvision", "torchvision.models.detection"),
        ("fpn_zoo.engine.trainer", "fpn_zoo.engine.trainer"),
        ("fpn_zoo.data", "fpn_zoo.data"),
        ("timm", "timm"),
        ("pycocotools", "pycocotools.coco"),
    ):
        start = time.perf_counter()
        __import__(name)
        steps[label] = (time.perf_counter() - start) * 1e3
    return steps


def _model_facts(model: Any) -> dict[str, Any]:
    import collections

    params = list(model.parameters())
    return {
        "class": type(model).__name__,
        "params": sum(p.numel() for p in params),
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
        "norm_layers": dict(
            collections.Counter(type(m).__name__ for m in model.modules() if type(m).__name__.endswith("Norm2d"))
        ),
        "rpn_post_nms_top_n_train": model.rpn._post_nms_top_n["training"],
        "roi_batch_size_per_image": model.roi_heads.fg_bg_sampler.batch_size_per_image,
        "min_size": model.transform.min_size,
        "max_size": model.transform.max_size,
    }


def _data_only(loader: Any, batches: int) -> list[float]:
    """Seconds per batch of iterating ``loader`` alone (decode, transforms, collate), first ``batches`` batches."""
    times, start = [], time.perf_counter()
    for i, _ in enumerate(loader):
        now = time.perf_counter()
        times.append(now - start)
        start = now
        if i + 1 == batches:
            break
    return times


def run_ours(args: argparse.Namespace) -> dict[str, Any] | None:
    import torch

    from fpn_zoo.engine.train_config import TrainConfig
    from fpn_zoo.engine.trainer import Trainer

    run_dir = Path(args.work_dir) / "run"
    config = TrainConfig(
        model=MODEL,
        train_ann=args.ann,
        train_images=args.images,
        out=str(run_dir),
        init="scratch",
        iters=args.warmup + args.steps,
        batch_size=args.batch_size,
        optimizer="sgd",
        lr=args.lr,
        weight_decay=args.weight_decay,
        min_size=args.min_size,
        max_size=args.max_size,
        hflip=args.hflip,
        seed=args.seed,
        workers=args.workers,
        log_every=1,  # one window per step; the log write itself falls between windows
        checkpoint_every=10**9,  # only the end-of-run checkpoint, after the last window
        progress=False,
        device="cpu",
    )
    start = time.perf_counter()
    trainer = Trainer(config)
    setup_s = time.perf_counter() - start
    start = time.perf_counter()
    trainer.fit()
    fit_s = time.perf_counter() - start
    world = trainer.dist.world_size
    facts = _model_facts(trainer.model)
    data_only = _data_only(trainer._loader(0, skip=0), args.warmup + args.steps)
    if world > 1:
        from fpn_zoo.engine.distributed import cleanup

        torch.distributed.barrier()
        cleanup()
    if not trainer.is_main:
        return None
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if r["event"] == "train"]
    if [r["global_step"] for r in train] != list(range(1, args.warmup + args.steps + 1)):
        raise RuntimeError(f"expected one train line per step, got steps {[r['global_step'] for r in train]}")
    images_per_step = args.batch_size * world  # full batches only: the runs stop long before an epoch's end
    step_s = [images_per_step / r["images_per_s"] for r in train]
    return {
        "world_size": world,
        "step_s": step_s,
        "images_per_step": images_per_step,
        "losses": [r["loss"] for r in train],
        "setup_s": setup_s,
        "fit_s": fit_s,
        "fit_outside_windows_s": fit_s - sum(step_s),
        "timing_source": "log.jsonl images_per_s (the engine's own window per step, log_every=1)",
        "model": facts,
        "data_only_s": data_only,
        "data_pipeline": "SeededSamples(CocoDetection) + GroupedBatchSampler over DistributedSampler, "
        f"collate_detection, {args.workers} workers",
    }


def run_torchvision(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    from fpn_zoo.data import CocoDetection, build_train_transforms, collate_detection

    start = time.perf_counter()
    dataset = CocoDetection(args.ann, args.images, transforms=build_train_transforms(hflip=args.hflip))

    def loader() -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.workers,
            collate_fn=collate_detection,
            generator=torch.Generator().manual_seed(args.seed),
        )

    torch.manual_seed(args.seed)
    model = fasterrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=len(dataset.categories),
        min_size=args.min_size,
        max_size=args.max_size,
    ).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    setup_s = time.perf_counter() - start

    total = args.warmup + args.steps
    step_s, losses = [], []
    start = time.perf_counter()
    for i, (images, targets) in enumerate(loader()):
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        now = time.perf_counter()
        step_s.append(now - start)
        start = now
        losses.append(loss.detach())
        if i + 1 == total:
            break
    return {
        "world_size": 1,
        "step_s": step_s,
        "images_per_step": args.batch_size,
        "losses": [float(v) for v in losses],
        "setup_s": setup_s,
        "timing_source": "time.perf_counter per step around the plain loop (batch fetch included)",
        "model": _model_facts(model),
        "data_only_s": _data_only(loader(), total),
        "data_pipeline": f"CocoDetection, DataLoader(shuffle=True), collate_detection, {args.workers} workers",
    }


def main(argv: list[str] | None = None) -> int:
    """Run one measurement and write its JSON to ``--out`` (rank 0 only under torchrun); exit status 0."""
    args = parse_args(argv)
    imports_ms = _import()
    import torch

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    result = run_ours(args) if args.mode == "ours" else run_torchvision(args)
    if result is None:  # a rank other than 0
        return 0
    result.update(
        mode=args.mode,
        torch_num_threads=torch.get_num_threads(),
        omp_num_threads_env=os.environ.get("OMP_NUM_THREADS"),
        imports_ms=imports_ms,
        load_average_start=list(load_start),
        load_average_end=list(os.getloadavg()),
        process_wall_s=time.perf_counter() - _T0,
    )
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
