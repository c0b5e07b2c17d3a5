"""The model a training run starts from: COCO weights, an ImageNet backbone, scratch, or given weights.

The label space always comes from the training annotations: ``num_classes`` and the category names are set from
them, and with COCO (or other) weights only the class-specific predictor is re-initialised, with a warning naming
the dropped tensors (``create_model``'s fine-tuning start).
"""

from __future__ import annotations

from typing import Any

import torch

from fpn_zoo.detector import ZooDetector
from fpn_zoo.engine.train_config import TrainConfig


def resolve_init(config: TrainConfig) -> str:
    """``"auto"`` becomes ``"coco"`` when the manifest has weights for the model, else ``"backbone"``."""
    if config.init != "auto":
        return config.init
    from fpn_zoo.weights.manifest import load_manifest

    return "coco" if load_manifest().entry(config.model) is not None else "backbone"


def build_training_model(config: TrainConfig, categories: tuple[str, ...], device: torch.device) -> ZooDetector:
    """Build ``config.model`` for training on ``categories`` (index 0 = background), in train mode on ``device``."""
    from fpn_zoo.factory import create_model

    overrides: dict[str, Any] = {
        "num_classes": len(categories),
        "categories": categories,
        "min_size": config.min_size,
        "max_size": config.max_size,
        "device": device,
    }
    if config.trainable_backbone_layers is not None:
        overrides["trainable_backbone_layers"] = config.trainable_backbone_layers
    init = resolve_init(config)
    # With weights of another class count, create_model warns which predictor tensors it re-initialised.
    if init == "coco":
        model = create_model(config.model, pretrained=True, **overrides)
    elif init == "backbone":
        model = create_model(config.model, pretrained_backbone=True, **overrides)
    elif init == "scratch":
        model = create_model(config.model, **overrides)
    else:
        model = create_model(config.model, weights=init, **overrides)
    return model.train()
