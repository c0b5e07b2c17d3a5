"""The fast inference path gives the plain model's detections, and refuses to train or hand out folded weights."""

from __future__ import annotations

import copy

import pytest
import torch
from model_helpers import model_with_detections
from photos import as_float, assert_same_detections, real_photos
from torchvision.ops.misc import FrozenBatchNorm2d

import fpn_zoo
from fpn_zoo.fast_path import FastPathError, bf16_supported

PHOTO = (256, 384)
# One model per backbone family and per place a norm follows a convolution: timm ResNet with frozen and with
# ordinary BatchNorm, torchvision's v2 heads (BatchNorm FPN, RPN and box head), BiFPN's separable convolutions on
# ConvNeXt (LayerNorm: nothing to fold there, and no channels-last), AugFPN's extra heads.
CASES = {
    "resnet_frozen_bn": ("fpn_r50_coco", {"backbone_norm": "frozen_batch_norm"}),
    "resnet_v2_heads": ("fpn_r50_v2_coco", {}),
    "convnext_bifpn": ("bifpn_convnext_t_coco", {}),
    "resnet_augfpn": ("augfpn_r50_coco", {}),
}


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return as_float(real_photos(1, PHOTO)[0])


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_fast_path_gives_the_plain_models_detections(case, photo, single_thread):
    name, options = CASES[case]
    plain = model_with_detections(name, min_size=min(PHOTO), max_size=max(PHOTO), **options)
    if plain.config.backbone_spec.family == "convnext":  # LayerNorm-ed features: small logits, flat scores
        with torch.no_grad():
            plain.roi_heads.box_predictor.cls_score.weight.mul_(20)
    fast = copy.deepcopy(plain).make_fast()
    norms = [m for m in fast.modules() if isinstance(m, (torch.nn.BatchNorm2d, FrozenBatchNorm2d))]
    assert not norms and fast.fast_path.folded_norms > 0  # every norm after a convolution is folded
    assert fast.fast_path.channels_last == (fast.config.backbone_spec.family == "resnet")
    assert fast.fast_path.threaded_roi_align and fast.roi_heads.box_roi_pool.cpu_threads is None  # AugFPN's too
    with torch.no_grad():
        expected, got = plain([photo])[0], fast([photo])[0]
        plain_features, fast_features = plain.backbone(photo[None]), fast.backbone(photo[None])
    for level, value in plain_features.items():  # float summation order only
        torch.testing.assert_close(fast_features[level], value, atol=1e-4 * float(value.abs().max()), rtol=0)
    # Detections near the cap of 100 or at a score within rounding of another's may swap: compare the upper half.
    threshold = float(expected["scores"].median())
    assert_same_detections(expected, got, score_thresh=threshold, min_detections=20)


def test_a_fast_model_refuses_to_train_or_give_its_weights(tmp_path):
    model = fpn_zoo.create_model("fpn_r50_coco", device="cpu", fast=True, min_size=96, max_size=128)
    assert model.fast_path is not None and not model.training
    model.eval()  # allowed: it is what the model is for
    for call in (model.train, model.state_dict, lambda: model.save_pretrained(tmp_path / "x")):
        with pytest.raises(FastPathError, match=r"fpn_r50_coco was built with fast=True .* without fast=True"):
            call()
    with pytest.raises(FastPathError, match="load_state_dict"):
        model.load_state_dict({})
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="fast='fp8' is not valid"):
        fpn_zoo.create_model("fpn_r50_coco", device="cpu", fast="fp8")


def test_bf16_runs_only_on_native_bf16_hardware_and_returns_float32(photo):
    device = torch.device("cpu")
    if not bf16_supported(device):
        with pytest.raises(ValueError, match="needs native bf16"):
            fpn_zoo.create_model("fpn_r50_coco", device="cpu", fast="bf16")
        return
    model = fpn_zoo.create_model("fpn_r50_coco", device="cpu", fast="bf16", min_size=96, max_size=128)
    assert model.fast_path.bf16
    detections = model([photo])[0]
    assert detections["boxes"].dtype == detections["scores"].dtype == torch.float32
