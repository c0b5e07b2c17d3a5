"""Optimiser and per-step learning-rate schedule of a training run, from torch's own building blocks."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, MultiStepLR, SequentialLR

from fpn_zoo.engine.train_config import TrainConfig

# torchvision's detection recipe: lr 0.02 for 16 images per step (8 GPUs x 2), scaled linearly with the batch.
_REFERENCE_BATCH = 16
_DEFAULT_LR = {"sgd": 0.02, "adamw": 1e-4}
_DEFAULT_WEIGHT_DECAY = {"sgd": 1e-4, "adamw": 0.05}


def peak_lr(config: TrainConfig, world_size: int) -> float:
    """The configured learning rate, or the recipe's scaled to the global batch (``batch_size x world_size``).

    Examples:
        >>> cfg = TrainConfig(model="fpn_r50_coco", train_ann="a", train_images="i", out="o", iters=10, batch_size=4)
        >>> peak_lr(cfg, world_size=2)
        0.01
    """
    if config.lr is not None:
        return config.lr
    return _DEFAULT_LR[config.optimizer] * config.batch_size * world_size / _REFERENCE_BATCH


def build_optimizer(model: nn.Module, config: TrainConfig, world_size: int) -> torch.optim.Optimizer:
    """SGD (momentum 0.9) or AdamW over the trainable parameters; no weight decay on norms and biases for AdamW."""
    lr = peak_lr(config, world_size)
    weight_decay = config.weight_decay if config.weight_decay is not None else _DEFAULT_WEIGHT_DECAY[config.optimizer]
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":  # torchvision's references decay every parameter
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def warmup_iters(config: TrainConfig, total_steps: int) -> int:
    if config.warmup_iters is not None:
        return min(config.warmup_iters, total_steps - 1)
    return min(1000, total_steps // 10)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int) -> LRScheduler:
    """Linear warm-up, then steps (x0.1 at ``lr_steps``) or cosine decay to zero; stepped once per iteration."""
    warmup = warmup_iters(config, total_steps)
    if config.schedule == "step":
        milestones = sorted({max(1, round(f * total_steps) - warmup) for f in config.lr_steps})
        main: LRScheduler = MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    else:
        main = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup))
    if warmup == 0:
        return main
    ramp = LinearLR(optimizer, start_factor=config.warmup_factor, end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, schedulers=[ramp, main], milestones=[warmup])
