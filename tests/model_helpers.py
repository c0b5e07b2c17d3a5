"""Helpers shared by the tests that load, export and download weights: small inputs, detections worth comparing."""

from __future__ import annotations

from typing import Any

import torch

import fpn_zoo

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
    """Random weights *and* BatchNorm statistics, scaled so activations stay finite through 50 layers.

    ``logit_scale`` sharpens the class logits so that detections pass the score threshold.
    """
    g = torch.Generator().manual_seed(seed)
    for name, t in model.state_dict().items():
        if not t.is_floating_point():
            continue
        if name.endswith("running_var"):
            t.copy_(torch.rand(t.shape, generator=g) * 1.5 + 0.5)
        elif name.endswith(("running_mean", ".bias")):
            t.copy_(torch.randn(t.shape, generator=g) * 0.1)
        elif t.dim() == 1:  # BatchNorm scale
            t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.5)
        else:
            t.copy_(torch.randn(t.shape, generator=g) * (1.0 / t[0].numel()) ** 0.5)
    model.roi_heads.box_predictor.cls_score.weight.mul_(logit_scale)
