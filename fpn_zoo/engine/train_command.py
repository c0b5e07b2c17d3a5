"""``fpn-zoo train``: the command line of [`Trainer`][fpn_zoo.engine.trainer.Trainer], one flag per config field."""

from __future__ import annotations

import argparse
from typing import Any

from fpn_zoo.engine.train_config import TrainConfig

_FLAGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("model", {"help": "zoo model name, e.g. fpn_r50_coco"}),
    ("train_ann", {"help": "COCO-format training annotations (the class names come from here)"}),
    ("train_images", {"help": "folder of the training images"}),
    ("val_ann", {"help": "COCO-format validation annotations (COCOeval after each epoch)"}),
    ("val_images", {"help": "folder of the validation images"}),
    ("out", {"help": "run folder: log.jsonl, checkpoints/, final/"}),
    ("init", {"help": "coco | backbone | scratch | auto (default) | PATH | hf-hub:ORG/NAME"}),
    ("epochs", {"type": int}),
    ("iters", {"type": int}),
    ("batch_size", {"type": int, "help": "images per step per process (default 2)"}),
    ("optimizer", {"choices": ("sgd", "adamw")}),
    ("lr", {"type": float, "help": "peak lr (default: 0.02 per 16 images for SGD, 1e-4 for AdamW)"}),
    ("weight_decay", {"type": float}),
    ("schedule", {"choices": ("step", "cosine")}),
    ("warmup_iters", {"type": int}),
    ("clip_grad_norm", {"type": float}),
    ("amp", {"choices": ("none", "bf16", "fp16"), "help": "autocast on CUDA"}),
    ("ema_decay", {"type": float, "help": "keep an EMA of the weights, e.g. 0.9998"}),
    ("trainable_backbone_layers", {"type": int}),
    ("min_size", {"type": int}),
    ("max_size", {"type": int}),
    ("hflip", {"type": float, "help": "horizontal-flip probability (default 0.5)"}),
    ("aspect_ratio_group_factor", {"type": int}),
    ("seed", {"type": int}),
    ("checkpoint_every", {"type": int, "help": "also checkpoint every N steps"}),
    ("workers", {"type": int}),
    ("log_every", {"type": int}),
    ("device", {}),
)
_SWITCHES = ("jitter", "sync_bn")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``train`` on the ``fpn-zoo`` subcommand parser."""
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune a zoo model on COCO-format data (also under torchrun)",
        description="Train a zoo model on COCO-format data. Settings come from --config YAML and/or the flags "
        "(flags win). Under `torchrun --nproc_per_node N` the same command trains with DistributedDataParallel.",
    )
    p.add_argument("--config", help="YAML file with the same fields as the flags (model: ..., epochs: ...)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    for name, kwargs in _FLAGS:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, **kwargs)
    for name in _SWITCHES:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, action="store_true", default=None)
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` of a parsed command line (``--config`` file first, flags over it)."""
    values = {name: getattr(args, name) for name, _ in _FLAGS}
    values.update({name: getattr(args, name) for name in (*_SWITCHES, "progress")})
    values = {k: v for k, v in values.items() if v is not None}
    if args.config:
        return TrainConfig.from_file(args.config, **values)
    return TrainConfig.from_dict(values)


def run(args: argparse.Namespace) -> int:
    """Run ``fpn-zoo train``; prints where the final weights are."""
    from fpn_zoo.engine.distributed import cleanup
    from fpn_zoo.engine.trainer import Trainer

    config = config_from_args(args)
    try:
        trainer = Trainer(config)
        final = trainer.fit(resume=args.resume)
        if trainer.is_main:
            usage = f"create_model({config.model!r}, weights={str(final)!r}); fpn-zoo eval/export"
            print(f"Final weights: {final} ({usage})")
    finally:
        cleanup()
    return 0
