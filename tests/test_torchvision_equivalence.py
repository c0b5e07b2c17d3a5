"""fpn_r50_coco and torchvision's fasterrcnn_resnet50_fpn are the same detector, to 1e-4 on CPU in float32."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from model_helpers import randomise
from torchvision.models import resnet50
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import fasterrcnn_resnet50_fpn
from torchvision.ops.misc import FrozenBatchNorm2d

import fpn_zoo
from fpn_zoo.weights.checkpoint import CheckpointError, read_checkpoint
from fpn_zoo.weights.convert import convert_torchvision_checkpoint, torchvision_to_zoo_keys
from fpn_zoo.weights.loading import WeightsMismatchError


def torchvision_coco_v1_model() -> FasterRCNN:
    """fasterrcnn_resnet50_fpn as its builder makes it for COCO_V1 weights, without downloading them.

    Builder logic (torchvision 0.29 faster_rcnn.py): FrozenBatchNorm2d backbone, trainable_backbone_layers=3,
    num_classes=91, then overwrite_eps(model, 0.0).
    """
    backbone = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    model = FasterRCNN(_resnet_fpn_extractor(backbone, 3), num_classes=91)
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.eps = 0.0
    return model


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    tv = torchvision_coco_v1_model()
    randomise(tv, seed=0, logit_scale=40.0)  # peaky: detections pass the 0.05 score threshold
    tv.eval()
    src = tmp_path_factory.mktemp("tv") / "fasterrcnn_resnet50_fpn_random.pth"
    torch.save(tv.state_dict(), src)
    # Random weights are not the COCO_V1 file, so the eps its builder uses is given explicitly.
    out = convert_torchvision_checkpoint(src, tmp_path_factory.mktemp("zoo") / "fpn_r50_coco", frozen_bn_eps=0.0)
    return tv, src, out


def test_converted_weights_give_torchvision_detections(converted):
    tv, _, out = converted
    zoo = fpn_zoo.create_model("fpn_r50_coco", weights=out, device="cpu")
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 240, 320, generator=g), torch.rand(3, 301, 217, generator=g)]
    with torch.no_grad():
        expected = tv(images)
        got = zoo(images)
    assert sum(len(e["boxes"]) for e in expected) > 20, "test needs real detections to compare"
    for e, o in zip(expected, got, strict=True):
        assert torch.equal(e["labels"], o["labels"])
        torch.testing.assert_close(o["boxes"], e["boxes"], atol=1e-4, rtol=0)
        torch.testing.assert_close(o["scores"], e["scores"], atol=1e-4, rtol=0)


def test_converted_checkpoint_records_eps_and_provenance(converted):
    _, src, out = converted
    ckpt = read_checkpoint(out)
    assert ckpt.config.name == "fpn_r50_coco"
    assert ckpt.config.frozen_bn_eps == 0.0
    assert ckpt.extra["source"]["file"] == src.name
    assert len(ckpt.extra["source"]["sha256"]) == 64


def test_param_count_matches_torchvision_meta():
    """torchvision's COCO_V1 meta says 41,755,286 parameters (FrozenBN affine terms are buffers)."""
    with torch.device("meta"):
        from fpn_zoo.detector import build_detector

        model = build_detector(fpn_zoo.get_model_config("fpn_r50_coco"), loads_weights=True)
    assert sum(p.numel() for p in model.parameters()) == 41_755_286
    assert sum(p.numel() for p in fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).parameters()) == sum(
        p.numel() for p in fpn_zoo.create_model("fpn_r50_coco", device="cpu").parameters()
    )


def test_legacy_torchvision_key_layout_is_mapped():
    legacy = {
        "backbone.fpn.inner_blocks.2.weight": torch.zeros(1),
        "backbone.fpn.layer_blocks.3.bias": torch.zeros(1),
        "rpn.head.conv.weight": torch.zeros(1),
        "backbone.body.layer1.0.bn1.num_batches_tracked": torch.zeros(()),
    }
    assert sorted(torchvision_to_zoo_keys(legacy)) == [
        "backbone.neck.fpn_convs.3.bias",
        "backbone.neck.lateral_convs.2.weight",
        "rpn.head.conv.0.0.weight",
    ]


def test_other_architecture_is_refused_with_tensor_names(tmp_path):
    state = torchvision_coco_v1_model().state_dict()
    state["backbone.fpn.extra.weight"] = torch.zeros(3)
    del state["rpn.head.cls_logits.bias"]
    src = tmp_path / "other.pth"
    torch.save(state, src)
    with pytest.raises(
        WeightsMismatchError,
        match=r"rpn\.head\.cls_logits\.bias.*backbone\.neck\.extra\.weight|"
        r"missing \(rpn\.head\.cls_logits\.bias\)",
    ):
        convert_torchvision_checkpoint(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_flop_count_reproduces_torchvision_meta():
    """torchvision's `_ops` for COCO_V1 is 134.38 G multiply-adds at 800x800; we count 2 FLOPs per multiply-add."""
    from fpn_zoo.inspect_model import count_flops

    count = count_flops(fpn_zoo.get_model_config("fpn_r50_coco"), 800, 800)
    assert count.proposals == 1000
    assert count.gflops / 2 == pytest.approx(134.38, abs=0.005)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"hello\n", r"is not a readable PyTorch checkpoint"),
        (pickle.dumps({"weight": os.system}, protocol=2), r"Refused to load .*could run code"),
    ],
)
def test_unsafe_or_garbage_pth_is_refused(tmp_path, payload, message):
    src = tmp_path / "bad.pth"
    src.write_bytes(payload)
    with pytest.raises(CheckpointError, match=message):
        convert_torchvision_checkpoint(src, tmp_path / "out")


def test_non_tensor_state_dict_is_refused(tmp_path):
    src = tmp_path / "counter.pth"
    torch.save({"x": 3}, src)
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        convert_torchvision_checkpoint(src, tmp_path / "out")


def test_eps_defaults_to_torchvision_default_unless_the_file_is_coco_v1(tmp_path):
    src = tmp_path / "finetuned.pth"
    state = torchvision_coco_v1_model().state_dict()
    torch.save(state, src)
    assert read_checkpoint(convert_torchvision_checkpoint(src, tmp_path / "a")).config.frozen_bn_eps == 1e-5
    assert (
        read_checkpoint(convert_torchvision_checkpoint(src, tmp_path / "b", frozen_bn_eps=0.0)).config.frozen_bn_eps
        == 0
    )


def test_reference_training_checkpoint_with_args_is_accepted(tmp_path):
    """torchvision's references/detection/train.py saves {"model", "optimizer", ..., "args": Namespace}."""
    import argparse

    src = tmp_path / "checkpoint.pth"
    torch.save(
        {"model": torchvision_coco_v1_model().state_dict(), "args": argparse.Namespace(lr=0.02), "epoch": 3}, src
    )
    assert read_checkpoint(convert_torchvision_checkpoint(src, tmp_path / "out")).config.name == "fpn_r50_coco"
