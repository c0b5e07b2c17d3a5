"""The model a training run starts from: COCO weights, an ImageNet backbone, scratch, or given weights.

The label space always comes from the training annotations: ``num_classes`` and the category names are set from
them, and with COCO (or other) weights only the class-specific predictor is re-initialised, with a warning naming
the dropped tensors (``create_model``'s fine-tuning start). A start whose weights cannot be fetched fails at once,
naming the starts that work without a network on this machine.
"""

from __future__ import annotations

from typing import Any

import torch

from fpn_zoo.detector import ZooDetector
from fpn_zoo.engine.train_config import TrainConfig
from fpn_zoo.voice import option
from fpn_zoo.weights.network import WeightsDownloadError


def resolve_init(config: TrainConfig) -> str:
    """``"auto"`` becomes ``"coco"`` when the manifest has weights for the model, else ``"backbone"``."""
    if config.init != "auto":
        return config.init
    from fpn_zoo.weights.manifest import load_manifest

    return "coco" if load_manifest().entry(config.model) is not None else "backbone"


def _coco_cached(model: str) -> bool:
    from fpn_zoo.weights import hub_download, upstream
    from fpn_zoo.weights.manifest import load_manifest

    entry = load_manifest().entry(model)
    if entry is None or not entry.available:
        return False
    if entry.hub is None:
        return upstream.is_cached(entry)
    hub = entry.hub
    return all(hub_download.is_cached(hub.repo_id, f, hub.revision) for f in (hub.filename, hub.config_filename))


def _backbone_cached(model: str) -> bool:
    from fpn_zoo.registry import get_model_config
    from fpn_zoo.weights.hub_download import timm_weights_cached

    return timm_weights_cached(get_model_config(model).backbone_spec.timm_name)


def offline_starts(model: str) -> list[str]:
    """The ``init`` values that start ``model`` without a network here, spelled for the reader.

    ``scratch`` and a local file always do; ``coco`` and ``backbone`` when their weights are already cached.
    """
    starts = [
        f"{option('init', 'scratch')} (random init)",
        f"{option('init', placeholder='PATH')} (a local .safetensors file or exported folder)",
    ]
    if _coco_cached(model):
        starts.append(f"{option('init', 'coco')} (its COCO weights are cached)")
    if _backbone_cached(model):
        starts.append(f"{option('init', 'backbone')} (its ImageNet backbone weights are cached)")
    return starts


def _no_network(config: TrainConfig, init: str, err: WeightsDownloadError) -> WeightsDownloadError:
    asked = option("init", config.init) + (f" (here: {init})" if init != config.init else "")
    return WeightsDownloadError(
        f"{asked} needs {err.target}, which could not be fetched: {err.cause}. Starts that work here without a "
        f"network: {'; '.join(offline_starts(config.model))}. Or {err.fill}.",
        target=err.target,
        cause=err.cause,
        fill=err.fill,
    )


def build_training_model(config: TrainConfig, categories: tuple[str, ...], device: torch.device) -> ZooDetector:
    """Build ``config.model`` for training on ``categories`` (index 0 = background), in train mode on ``device``.

    Raises:
        WeightsDownloadError: The start's weights cannot be fetched; the message lists the starts that work
            without a network here.
    """
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
    try:
        if init == "coco":
            model = create_model(config.model, pretrained=True, **overrides)
        elif init == "backbone":
            model = create_model(config.model, pretrained_backbone=True, **overrides)
        elif init == "scratch":
            model = create_model(config.model, **overrides)
        else:
            model = create_model(config.model, weights=init, **overrides)
    except WeightsDownloadError as err:
        if err.cause is None:  # not a failed fetch (an unknown revision, say): its own message says it all
            raise
        raise _no_network(config, init, err) from err
    return model.train()
