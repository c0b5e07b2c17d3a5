"""Every registered model builds, detects, trains and back-propagates; backbones follow torchvision's conventions.

Models run at ``min_size=max_size=128`` with the RPN and RoI sampler shrunk (fewer proposals, smaller RoI batch):
torchvision's defaults (2000 proposals, 512 RoIs per image through a 12.8M-parameter box head) would dominate the run
time without testing anything the neck or backbone does.
"""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from timm.layers import LayerNorm2d
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

import fpn_zoo
from fpn_zoo.backbones import TimmBackbone
from fpn_zoo.config import BACKBONES
from fpn_zoo.detector import build_detector

MODELS = fpn_zoo.list_models()
LOSSES = {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
# AugFPN adds consistent supervision: classification and regression on each raw lateral (test_consistent_supervision)
AUGFPN_AUX_LOSSES = {f"loss_aux_{kind}_p{level}" for kind in ("classifier", "box_reg") for level in (2, 3, 4, 5)}
FEATURES = {
    "r50": [256, 512, 1024, 2048],
    "r101": [256, 512, 1024, 2048],
    "convnext_t": [96, 192, 384, 768],
    "convnext_s": [96, 192, 384, 768],
    "convnext_b": [128, 256, 512, 1024],
}
# Groups of the timm feature extractor, top stage first, as `trainable_backbone_layers` counts them.
STAGE_GROUPS = {
    "resnet": [{"layer4"}, {"layer3"}, {"layer2"}, {"layer1"}, {"conv1", "bn1", "act1", "maxpool"}],
    "convnext": [{"stages_3"}, {"stages_2"}, {"stages_1"}, {"stages_0"}, {"stem_0", "stem_1"}],
}


pytestmark = pytest.mark.usefixtures("single_thread")


def small_model(name: str, **overrides) -> fpn_zoo.ZooDetector:
    model = fpn_zoo.create_model(
        name, device="cpu", min_size=128, max_size=128, box_score_thresh=0.0, box_detections_per_img=10, **overrides
    )
    model.rpn._pre_nms_top_n = dict(training=200, testing=100)
    model.rpn._post_nms_top_n = dict(training=100, testing=50)
    model.roi_heads.fg_bg_sampler.batch_size_per_image = 64
    return model


def backbone_kind(name: str) -> str:
    return "convnext" if "convnext" in name else "resnet"


def test_registry_holds_every_neck_backbone_pair_and_the_v2_variant():
    expected = {f"{n}_{b}_coco" for n, b in itertools.product(["fpn", "panet", "bifpn", "augfpn"], BACKBONES)}
    assert set(MODELS) == expected | {"fpn_r50_v2_coco"}
    assert len(MODELS) == 21


@pytest.mark.parametrize("name", MODELS)
def test_model_detects_and_trains(name):
    torch.manual_seed(0)
    model = small_model(name)
    sizes = [(100, 140), (131, 90)]
    images = [torch.rand(3, h, w) for h, w in sizes]

    with torch.no_grad():
        detections = model(images)
    assert isinstance(detections, list) and len(detections) == 2
    for det, (h, w) in zip(detections, sizes, strict=True):
        n = len(det["boxes"])
        assert 0 < n <= 10  # box_score_thresh=0 so that shapes and dtypes are checked on real detections
        assert det["boxes"].shape == (n, 4) and det["boxes"].dtype == torch.float32
        assert det["scores"].shape == (n,) and det["scores"].dtype == torch.float32
        assert det["labels"].shape == (n,) and det["labels"].dtype == torch.int64
        # In input pixels (torchvision clips in the resized frame, then rescales: allow float round-off).
        assert det["boxes"].min() >= 0
        assert det["boxes"][:, 0::2].max() <= w + 1e-3 and det["boxes"][:, 1::2].max() <= h + 1e-3
        assert ((det["labels"] >= 1) & (det["labels"] <= 90)).all()

    model.train()
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [50.0, 30.0, 130.0, 95.0]]), "labels": torch.tensor([1, 18])},
        {"boxes": torch.tensor([[5.0, 40.0, 80.0, 120.0]]), "labels": torch.tensor([90])},
    ]
    losses = model(images, targets)
    assert set(losses) == (LOSSES | AUGFPN_AUX_LOSSES if model.config.neck == "augfpn" else LOSSES)
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values()), losses
    sum(losses.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    not_finite = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert no_grad == [], f"{name}: parameters without a gradient: {no_grad}"
    assert not_finite == [], f"{name}: non-finite gradients: {not_finite}"


def test_training_from_scratch_uses_plain_batchnorm_and_trains_everything():
    model = fpn_zoo.create_model("fpn_r50_coco", device="cpu", pretrained_backbone=False)
    modules = list(model.modules())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in modules)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.backbone.body.modules())
    assert all(p.requires_grad for p in model.parameters())


def test_trainable_layers_without_pretrained_weights_warn_and_train_everything():
    with pytest.warns(UserWarning, match="trainable_backbone_layers=2 has no effect"):
        model = fpn_zoo.create_model("fpn_r50_coco", device="meta", trainable_backbone_layers=2)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("backbone", ["r50", "convnext_t"])
@pytest.mark.parametrize("trainable", [None, 0, 1, 2, 3, 4, 5])
def test_pretrained_build_freezes_batchnorm_and_lower_stages(backbone, trainable):
    config = fpn_zoo.get_model_config(f"fpn_{backbone}_coco").replace(trainable_backbone_layers=trainable)
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("error")  # trainable_backbone_layers is honoured here, so nothing to warn about
        model = build_detector(config, loads_weights=True)
    body = model.backbone.body.model
    groups = STAGE_GROUPS[backbone_kind(backbone)]
    n_trainable = 3 if trainable is None else trainable
    expected = set().union(*groups[:n_trainable])
    assert {name for name, _ in body.named_children()} == set().union(*groups)
    for name, child in body.named_children():
        flags = {p.requires_grad for p in child.parameters()}
        if name in expected:
            assert flags <= {True}, f"{name} should train with trainable_backbone_layers={trainable}"
        else:
            assert flags <= {False}, f"{name} should be frozen with trainable_backbone_layers={trainable}"
    if backbone_kind(backbone) == "convnext":  # each output LayerNorm trains exactly when its stage does
        for i, norm in enumerate(model.backbone.body.norms):
            assert {p.requires_grad for p in norm.parameters()} == {f"stages_{i}" in expected}
    if backbone_kind(backbone) == "resnet":
        assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
        assert sum(isinstance(m, FrozenBatchNorm2d) for m in body.modules()) == 53
    for part in (model.backbone.neck, model.rpn, model.roi_heads):
        assert all(p.requires_grad for p in part.parameters())


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_backbone_channels_and_strides_come_from_timm_feature_info(backbone):
    with torch.device("meta"):
        body = TimmBackbone(BACKBONES[backbone], pretrained=False, frozen_bn=False)
    assert body.channels == list(body.model.feature_info.channels()) == FEATURES[backbone]
    assert body.strides == [4, 8, 16, 32]
    with torch.device("meta"):
        model = build_detector(fpn_zoo.get_model_config(f"augfpn_{backbone}_coco"))
    assert model.backbone.neck.in_channels == FEATURES[backbone]
    assert model.backbone.out_channels == 256


def test_convnext_outputs_pass_through_per_level_layernorm():
    model = fpn_zoo.create_model("fpn_convnext_t_coco", device="cpu")
    body = model.backbone.body
    assert len(body.norms) == 4
    assert all(isinstance(n, LayerNorm2d) and n.eps == 1e-6 for n in body.norms)
    assert [n.normalized_shape[0] for n in body.norms] == FEATURES["convnext_t"]
    with torch.no_grad():
        for norm in body.norms:  # non-trivial affine terms, so that a skipped norm cannot pass
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
        x = torch.rand(1, 3, 64, 96)
        raw = body.model(x)
        got = body(x)
    for g, r, norm in zip(got, raw, body.norms, strict=True):
        torch.testing.assert_close(g, norm(r))
        mean = r.mean(dim=1, keepdim=True)
        std = r.var(dim=1, keepdim=True, unbiased=False).add(1e-6).sqrt()
        expected = (r - mean) / std * norm.weight[:, None, None] + norm.bias[:, None, None]
        torch.testing.assert_close(g, expected, atol=1e-5, rtol=1e-5)


def test_resnet_backbone_has_no_output_norms():
    with torch.device("meta"):
        body = TimmBackbone(BACKBONES["r50"], pretrained=False, frozen_bn=False)
    assert body.norms is None
