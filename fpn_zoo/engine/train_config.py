"""``TrainConfig``: every setting of a training run, validated, and the same fields from the CLI or a YAML file.

A run folder keeps its config as ``train_config.json``; ``--resume`` compares it field by field with the config it
is given and refuses a resume whose model, data or schedule differ, naming the differences. The field defaults are
what ``fpn-zoo train --help`` shows.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from fpn_zoo.voice import option, say

Init = str  # "coco" | "backbone" | "scratch" | "auto" | a weights path or "hf-hub:..." reference
INIT_CHOICES = ("auto", "coco", "backbone", "scratch")
# Fields that may change between a run and its resume: they do not change what is computed (evaluation leaves the
# training's random state as it was, so how often it runs does not either).
RESUMABLE_CHANGES = frozenset({"workers", "log_every", "checkpoint_every", "eval_every", "progress", "device"})


@dataclass(frozen=True)
class TrainConfig:
    """A training run.

    Attributes:
        model: Zoo model name, e.g. ``"fpn_r50_coco"``; the class count and names come from ``train_ann``.
        train_ann: COCO-format training annotations.
        train_images: Folder of the training images.
        out: Run folder: ``train_config.json``, ``log.jsonl``, ``checkpoints/``, ``final/``.
        val_ann: Optional validation annotations, scored with COCOeval as ``eval_every`` says and at the end.
        val_images: Folder of the validation images (with ``val_ann``).
        init: ``"coco"`` (the model's COCO weights, class predictor re-initialised), ``"backbone"`` (timm ImageNet
            backbone), ``"scratch"``, ``"auto"`` (coco when the manifest has weights, else backbone), or a weights
            path / ``hf-hub:`` reference.
        epochs: Length of the run in epochs; give exactly one of ``epochs`` and ``iters``.
        iters: Length of the run in steps.
        batch_size: Images per step and per process.
        optimizer: ``"sgd"`` (momentum 0.9) or ``"adamw"``.
        lr: Peak learning rate; ``None`` = torchvision's recipe scaled linearly: SGD 0.02 per 16 images, AdamW
            1e-4 per 16 images.
        weight_decay: ``None`` = 1e-4 for SGD, 0.05 for AdamW.
        schedule: ``"step"`` (x0.1 at ``lr_steps``, fractions of the run, torchvision's 16/26 and 22/26) or
            ``"cosine"``.
        lr_steps: Where the ``"step"`` schedule multiplies the lr by 0.1, as increasing fractions of the run.
        warmup_iters: Linear warm-up from ``warmup_factor`` x lr; ``None`` = min(1000, a tenth of the run).
        warmup_factor: Fraction of the peak lr the warm-up starts from.
        clip_grad_norm: Max gradient norm, or ``None``.
        amp: ``"bf16"`` or ``"fp16"`` autocast (CUDA only), or ``"none"``.
        ema_decay: Keep an exponential moving average of the weights (evaluated and exported) when set.
        trainable_backbone_layers: Trainable backbone stages 0-5 (pretrained inits only; ``None`` = 3).
        sync_bn: Convert BatchNorm to SyncBatchNorm under torchrun.
        min_size: The model's resize bound for the shorter image side.
        max_size: The model's resize bound for the longer image side.
        hflip: Horizontal-flip probability of the training augmentation.
        jitter: Add colour jitter to the training augmentation.
        aspect_ratio_group_factor: Batch images of similar aspect ratio (torchvision's 3); ``-1`` disables.
        on_invalid: Invalid items of the annotation files: ``"error"`` refuses the file, listing them; ``"skip"``
            drops them (with their images' annotations) and warns (`fpn_zoo.data.CocoDetection`).
        seed: Seed of the model init, the data order and the augmentation.
        checkpoint_every: Also checkpoint every N steps (checkpoints are always written at each epoch's end).
        eval_every: Evaluate on the validation set every N epochs, and always at the end of the run; ``None`` =
            every epoch for a run given in ``epochs``, at the end only for a run given in ``iters``.
        workers: Data-loading processes per training process.
        log_every: Steps between log lines.
        device: ``None`` = CUDA when available (the local rank's GPU under torchrun), else CPU.
        progress: Show a progress bar (rank 0 only).
    """

    model: str
    train_ann: str
    train_images: str
    out: str
    val_ann: str | None = None
    val_images: str | None = None
    init: Init = "auto"
    epochs: int | None = None
    iters: int | None = None
    batch_size: int = 2
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float | None = None
    weight_decay: float | None = None
    schedule: Literal["step", "cosine"] = "step"
    lr_steps: tuple[float, ...] = (16 / 26, 22 / 26)
    warmup_iters: int | None = None
    warmup_factor: float = 0.001
    clip_grad_norm: float | None = None
    amp: Literal["none", "bf16", "fp16"] = "none"
    ema_decay: float | None = None
    trainable_backbone_layers: int | None = None
    sync_bn: bool = False
    min_size: int = 800
    max_size: int = 1333
    hflip: float = 0.5
    jitter: bool = False
    aspect_ratio_group_factor: int = 3
    on_invalid: Literal["error", "skip"] = "error"
    seed: int = 0
    checkpoint_every: int = 1000
    eval_every: int | None = None
    workers: int = 2
    log_every: int = 20
    device: str | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr_steps", tuple(float(s) for s in self.lr_steps))
        if (self.epochs is None) == (self.iters is None):
            raise ValueError(
                f"Give exactly one of {option('epochs', placeholder='N')} and {option('iters', placeholder='N')} "
                "(the length of the run)."
            )
        for name in ("epochs", "iters", "batch_size", "checkpoint_every", "eval_every", "log_every"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        if (self.val_ann is None) != (self.val_images is None):
            raise ValueError(
                f"Give both {option('val_ann', placeholder='FILE')} and {option('val_images', placeholder='DIR')}, "
                "or neither."
            )
        if not (isinstance(self.init, str) and self.init):
            raise ValueError(f"init must be one of {INIT_CHOICES} or a weights path, got {self.init!r}.")
        choices = {
            "optimizer": ("sgd", "adamw"),
            "schedule": ("step", "cosine"),
            "amp": ("none", "bf16", "fp16"),
            "on_invalid": ("error", "skip"),
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"{name} must be one of {valid}, got {getattr(self, name)!r}.")
        if not all(0.0 < s < 1.0 for s in self.lr_steps) or list(self.lr_steps) != sorted(self.lr_steps):
            raise ValueError(f"lr_steps are increasing fractions of the run in (0, 1), got {self.lr_steps}.")
        for name in ("lr", "weight_decay", "clip_grad_norm"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0 or None, got {value!r}.")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), e.g. 0.9998, got {self.ema_decay!r}.")
        if not 0.0 <= self.hflip <= 1.0:
            raise ValueError(f"hflip is a probability in [0, 1], got {self.hflip!r}.")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}.")

    @property
    def evaluation_interval(self) -> int | None:
        """Epochs between evaluations: ``eval_every``, else 1 in a run of epochs, ``None`` (at the end) in steps."""
        return self.eval_every or (1 if self.epochs is not None else None)

    @property
    def init_kind(self) -> str:
        """``"coco"``, ``"backbone"``, ``"scratch"``, ``"auto"`` or ``"path"``."""
        return self.init if self.init in INIT_CHOICES else "path"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["lr_steps"] = list(self.lr_steps)
        data.pop("extra")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a mapping (a YAML or JSON file), refusing unknown keys by name."""
        known = {f.name for f in fields(cls)} - {"extra"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown training settings {unknown}; valid: {sorted(known)}.")
        missing = sorted(
            f.name
            for f in fields(cls)
            if f.name in {"model", "train_ann", "train_images", "out"} and f.name not in data
        )
        if missing:
            given = say("", " (as flags, or keys of the --config file)")
            names = ", ".join(option(name, placeholder="...") for name in missing)
            raise ValueError(f"Missing training settings: {names}{given}.")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **overrides: Any) -> TrainConfig:
        """Read a YAML (or JSON) file; ``overrides`` (e.g. from the command line) win over the file.

        Examples:
            >>> TrainConfig.from_file("run.yaml", epochs=2)  # doctest: +SKIP
        """
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"Cannot read the training config {path}: {err}") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a mapping of training settings, got {type(data).__name__}.")
        return cls.from_dict({**data, **{k: v for k, v in overrides.items() if v is not None}})

    def differences(self, other: TrainConfig) -> list[str]:
        """Settings that differ from ``other`` and would change the run (those in ``RESUMABLE_CHANGES`` don't)."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [
            f"{key}: {theirs[key]!r} -> {mine[key]!r}"
            for key in mine
            if key not in RESUMABLE_CHANGES and mine[key] != theirs.get(key)
        ]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
