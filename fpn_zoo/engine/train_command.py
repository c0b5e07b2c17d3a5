"""``fpn-zoo train``: the command line of [`Trainer`][fpn_zoo.engine.trainer.Trainer], one flag per config field.

Every flag's help ends with its default, read from the [`TrainConfig`][fpn_zoo.engine.train_config.TrainConfig] field
defaults (defaults that depend on other settings are said in words). A run folder that holds a run is refused unless
``--resume`` or ``--overwrite`` says what to do with it, and a finished run prints the commands that use its weights.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from fpn_zoo.argtypes import int_at_least
from fpn_zoo.engine.train_config import TrainConfig

_DEFAULTS = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
_REQUIRED = "no default: required, as a flag or in --config"
_LENGTH = "no default: give exactly one of --epochs and --iters"

# (field, help, default in words where the field's default is None or depends on other settings, argparse options)
_FLAGS: tuple[tuple[str, str, str | None, dict[str, Any]], ...] = (
    ("model", "zoo model name, e.g. fpn_r50_coco", _REQUIRED, {}),
    ("train_ann", "COCO-format training annotations; the class names come from here", _REQUIRED, {"metavar": "FILE"}),
    ("train_images", "folder of the training images", _REQUIRED, {"metavar": "DIR"}),
    ("val_ann", "COCO-format validation annotations, scored with COCOeval", "none: no evaluation", {"metavar": "FILE"}),
    ("val_images", "folder of the validation images, with --val-ann", "none", {"metavar": "DIR"}),
    (
        "out",
        "run folder: train_config.json, log.jsonl, checkpoints/, final/; one that holds a run needs --resume or "
        "--overwrite",
        _REQUIRED,
        {"metavar": "DIR"},
    ),
    (
        "init",
        "starting weights: coco | backbone | scratch | auto | PATH | hf-hub:ORG/NAME",
        "auto: coco where the model has COCO weights, else backbone",
        {"metavar": "INIT"},
    ),
    ("epochs", "length of the run in epochs", _LENGTH, {"type": int_at_least(1), "metavar": "N"}),
    ("iters", "length of the run in steps", _LENGTH, {"type": int_at_least(1), "metavar": "N"}),
    ("batch_size", "images per step per process", None, {"type": int_at_least(1), "metavar": "N"}),
    ("optimizer", "sgd (momentum 0.9) or adamw", None, {"choices": ("sgd", "adamw")}),
    (
        "lr",
        "peak learning rate",
        "0.02 for SGD, 1e-4 for AdamW, each per 16 images, scaled to the global batch",
        {"type": float, "metavar": "LR"},
    ),
    ("weight_decay", "weight decay", "1e-4 for SGD, 0.05 for AdamW", {"type": float, "metavar": "WD"}),
    ("schedule", "step (x0.1 at 16/26 and 22/26 of the run) or cosine", None, {"choices": ("step", "cosine")}),
    ("warmup_iters", "linear warm-up steps", "min(1000, a tenth of the run)", {"type": int, "metavar": "N"}),
    ("clip_grad_norm", "maximum gradient norm", "none: no clipping", {"type": float, "metavar": "NORM"}),
    ("amp", "autocast on CUDA: none, bf16 or fp16", None, {"choices": ("none", "bf16", "fp16")}),
    (
        "ema_decay",
        "keep an EMA of the weights, e.g. 0.9998; it is what gets evaluated and saved",
        "none: no EMA",
        {"type": float, "metavar": "DECAY"},
    ),
    (
        "trainable_backbone_layers",
        "backbone stages that train, 0-5, counted from the top",
        "3 with pretrained weights, 5 from scratch",
        {"type": int, "metavar": "N"},
    ),
    (
        "min_size",
        "resize bound of the shorter image side, saved with the weights",
        None,
        {"type": int, "metavar": "PX"},
    ),
    ("max_size", "resize bound of the longer image side, saved with the weights", None, {"type": int, "metavar": "PX"}),
    ("hflip", "horizontal-flip probability", None, {"type": float, "metavar": "P"}),
    (
        "aspect_ratio_group_factor",
        "batch images of similar aspect ratio; -1 disables",
        None,
        {"type": int, "metavar": "K"},
    ),
    (
        "on_invalid",
        "invalid items in the annotation files: error refuses the file, listing them; skip drops them with a warning",
        None,
        {"choices": ("error", "skip")},
    ),
    ("seed", "seed of the initial weights, the data order and the augmentation", None, {"type": int, "metavar": "N"}),
    (
        "checkpoint_every",
        "also checkpoint every N steps; always at the end of each epoch and of the run",
        None,
        {"type": int_at_least(1), "metavar": "N"},
    ),
    (
        "eval_every",
        "evaluate on the validation set every N epochs, and always at the end of the run",
        "every epoch for --epochs runs, only at the end for --iters runs",
        {"type": int_at_least(1), "metavar": "N"},
    ),
    ("workers", "data-loading processes per training process", None, {"type": int_at_least(0), "metavar": "N"}),
    ("log_every", "steps between the train lines of log.jsonl", None, {"type": int_at_least(1), "metavar": "N"}),
    (
        "device",
        "cpu, cuda or cuda:N",
        "cuda when available, else cpu; under torchrun the local rank's GPU",
        {"metavar": "DEVICE"},
    ),
)
_SWITCHES = (
    ("jitter", "add colour jitter to the training augmentation"),
    ("sync_bn", "SyncBatchNorm under torchrun"),
)


def _help(name: str, text: str, words: str | None) -> str:
    if words is not None and words.startswith("no default"):
        return f"{text} ({words})"
    return f"{text} (default: {words if words is not None else _DEFAULTS[name]})"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``train`` on the ``fpn-zoo`` subcommand parser."""
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune a zoo model on COCO-format data (also under torchrun)",
        description="Train a zoo model on COCO-format data. Settings come from --config YAML and/or the flags "
        "(flags win). Under `torchrun --nproc_per_node N` the same command trains with DistributedDataParallel. "
        "A --out folder that holds a run is never overwritten without --overwrite.",
    )
    p.add_argument(
        "--config", metavar="FILE", help="YAML file with the same fields as the flags, e.g. model: ... (default: none)"
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its latest checkpoint (default: off)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out: first remove its train_config.json, log.jsonl, checkpoints/ and final/ "
        "(default: off; a folder holding a run is refused)",
    )
    for name, text, words, kwargs in _FLAGS:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, help=_help(name, text, words), **kwargs)
    for name, text in _SWITCHES:
        flag = f"--{name.replace('_', '-')}"
        p.add_argument(flag, dest=name, action="store_true", default=None, help=f"{text} (default: off)")
    p.add_argument(
        "--no-progress", dest="progress", action="store_false", default=None, help="no progress bars (default: shown)"
    )
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` of a parsed command line (``--config`` file first, flags over it)."""
    values = {name: getattr(args, name) for name, *_ in (*_FLAGS, *_SWITCHES)}
    values["progress"] = args.progress
    values = {k: v for k, v in values.items() if v is not None}
    if args.config:
        return TrainConfig.from_file(args.config, **values)
    return TrainConfig.from_dict(values)


def next_steps(config: TrainConfig, final: Path, dataset: Any) -> list[str]:
    """Commands that use a run's final weights, runnable as printed: evaluate, predict, export.

    Evaluation and prediction write to their commands' default locations, which never replace earlier results; the
    export goes to a folder that is free now.

    Args:
        config: The run's settings.
        final: Its ``final/`` folder.
        dataset: The [`CocoDetection`][fpn_zoo.data.coco.CocoDetection] of the validation set, else of the training
            set: what ``fpn-zoo eval`` scores and whose first image ``fpn-zoo predict`` runs on.
    """
    from fpn_zoo.outputs import free_sibling

    ann, images = (config.val_ann, config.val_images) if config.val_ann else (config.train_ann, config.train_images)
    q = shlex.quote
    model_weights = f"--model {q(config.model)} --weights {q(str(final))}"
    first = Path(images) / dataset.coco.loadImgs(dataset.image_ids[0])[0]["file_name"]
    export = Path(config.out) / "export"
    export = free_sibling(export) if export.exists() else export
    return [
        f"Evaluate: fpn-zoo eval {model_weights} --ann {q(str(ann))} --images {q(str(images))}"
        + ("" if config.val_ann else "  # on the training set: no --val-ann was given"),
        f"Predict: fpn-zoo predict {q(str(first))} {model_weights}",
        f"Export: fpn-zoo export --model {q(config.model)} --checkpoint {q(str(final))} --out {q(str(export))}",
    ]


def run(args: argparse.Namespace) -> int:
    """Run ``fpn-zoo train``; prints where the final weights are and the commands that use them."""
    from fpn_zoo.engine.checkpoints import check_run_folder
    from fpn_zoo.engine.distributed import cleanup
    from fpn_zoo.engine.trainer import Trainer

    config = config_from_args(args)
    # Before any data is read or model built: a folder holding a run is refused in a second, not after minutes.
    check_run_folder(config, resume=args.resume, overwrite=args.overwrite)
    try:
        trainer = Trainer(config)
        final = trainer.fit(resume=args.resume, overwrite=args.overwrite)
        if trainer.is_main:
            print(f"Final weights: {final}")
            dataset = trainer.val_set if trainer.val_set is not None else trainer.train_set
            print("\n".join(next_steps(config, final, dataset)))
    finally:
        cleanup()
    return 0
