"""Helpers shared by the tests that load, export and download weights: small inputs, detections worth comparing."""

from __future__ import annotations

from typing import Any

import torch
from torchvision.models import resnet50
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.misc import FrozenBatchNorm2d

import fpn_zoo
from fpn_zoo.bench.references import randomise_

SMALL = {"min_size": 96, "max_size": 128, "box_score_thresh": 0.0}


def detect(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Detections on one seeded 90x120 random image."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return model([torch.rand(3, 90, 120, generator=g)])[0]


def model_with_detections(name: str = "fpn_r50_coco", **options: Any) -> torch.nn.Module:
    """A seeded random model whose detections are not empty: non-trivial BatchNorm statistics, peaky class logits.

    Random init leaves BatchNorm at mean 0 / variance 1, where a wrong statistic would go unnoticed, and gives flat
    class logits whose scores fall below any threshold.
    """
    torch.manual_seed(0)
    model = fpn_zoo.create_model(name, device="cpu", **{**SMALL, **options})
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        model.roi_heads.box_predictor.cls_score.weight.mul_(20)
    return model


@torch.no_grad()
def randomise(model: torch.nn.Module, seed: int, *, logit_scale: float) -> None:
    """The benchmark's random weights and BatchNorm statistics, with class logits sharpened by ``logit_scale`` so that
    detections pass the score threshold."""
    randomise_(model, seed)
    model.roi_heads.box_predictor.cls_score.weight.mul_(logit_scale)


def v1_model(*, mask: bool = False, eps: float = 0.0) -> torch.nn.Module:
    """fasterrcnn_resnet50_fpn / maskrcnn_resnet50_fpn as their builders make them for COCO_V1 weights, without
    downloading them: FrozenBatchNorm2d backbone, 3 trainable layers, 91 classes, then overwrite_eps (0.0)."""
    backbone = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    detector = MaskRCNN if mask else FasterRCNN
    model = detector(_resnet_fpn_extractor(backbone, 3), num_classes=91)
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.eps = eps
    return model
