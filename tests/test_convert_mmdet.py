"""mmdetection checkpoints converted into zoo models give mmdetection's own detections.

For each detector the reference is mmdetection 3.3.0's model built from the config it ships
(``tests/mmdet_reference.py``: CPU, mmcv-lite with torchvision standing in for its two compiled ops), given seeded
random weights and saved the way mmdetection publishes checkpoints. The zoo model is built from the converted file
alone; both run on the same real photos, which neither side resizes (mmdetection resizes uint8 images with cv2, the
zoo float tensors; on unresized images the pipelines agree). Labels are compared after mapping mmdetection's 80
contiguous classes onto COCO category ids.

The component tests check the inference settings the converted weights carry against mmdetection's own code:
exact anchors at fixed strides (``AnchorGenerator``), the two-sided delta clamp (``DeltaXYWHBBoxCoder``) and
aligned, adaptive RoIAlign (mmcv's ``RoIAlign`` through the stand-in).
"""

from __future__ import annotations

import re

import mmdet_reference as mmref
import pytest
import torch
from photos import as_float, assert_same_detections, real_photos

import fpn_zoo
from fpn_zoo.converters import LayoutError
from fpn_zoo.converters import convnext as convnext_converter
from fpn_zoo.labels import COCO_CATEGORIES, COCO_CATEGORY_IDS
from fpn_zoo.weights.checkpoint import CheckpointError, read_checkpoint
from fpn_zoo.weights.convert import convert_checkpoint
from fpn_zoo.weights.loading import WeightsMismatchError

mmref.require_mmdet()

SIZE = (320, 480)
# mmdetection config key -> the zoo model its tensors fit
TARGETS = {
    "faster_r50_fpn": "fpn_r50_coco",
    "faster_r101_fpn": "fpn_r101_coco",
    "faster_r50_pafpn": "panet_r50_coco",
    "mask_r50_fpn": "fpn_r50_coco",
    "mask_convnext_t_fpn": "fpn_convnext_t_coco",
}


@pytest.fixture(scope="module")
def photos():
    return real_photos(2, SIZE)


@pytest.fixture(scope="module")
def reference(photos, module_scratch, single_thread):
    """``reference(key)``: (key, mmdetection's model, its published-layout file, the conversion report), built once."""
    built = {}

    def get(key: str):
        if key not in built:
            model = mmref.build_mmdet_model(key)
            mmref.randomise_for_detections(model, seed=0, images=photos)
            src = module_scratch / f"{key}.pth"
            mmref.save_mmdet_checkpoint(model, src)
            report = convert_checkpoint(src, module_scratch / f"{key}_zoo", source="mmdet")
            built[key] = (key, model, src, report)
        return built[key]

    return get


@pytest.fixture(params=sorted(TARGETS))
def converted(request, reference):
    return reference(request.param)


def as_coco_ids(labels: torch.Tensor) -> torch.Tensor:
    return torch.tensor(COCO_CATEGORY_IDS)[labels]


def test_mmdet_classes_map_onto_the_coco_slots_of_the_same_name():
    assert len(mmref.MMDET_CLASS_NAMES) == len(COCO_CATEGORY_IDS) == 80
    assert [COCO_CATEGORIES[i] for i in COCO_CATEGORY_IDS] == list(mmref.MMDET_CLASS_NAMES)


def test_the_model_is_recognised_from_the_tensors(converted):
    key, _, _, report = converted
    assert report.model == TARGETS[key]
    assert ("Mask R-CNN" in report.description) == key.startswith("mask")


def test_converted_weights_give_mmdetections_detections(converted, photos):
    _, model, _, report = converted
    zoo = fpn_zoo.create_model(
        report.model, weights=report.out_dir, device="cpu", min_size=min(SIZE), max_size=max(SIZE)
    )
    for photo in photos:
        expected = mmref.mmdet_predict(model, photo)
        expected["labels"] = as_coco_ids(expected["labels"])
        with torch.no_grad():
            got = zoo([as_float(photo)])[0]
        assert_same_detections(expected, got, score_atol=1e-4, box_atol=1e-2, score_thresh=mmref.SCORE_THRESH)


def test_the_export_records_mmdetections_inference_settings(converted):
    _, _, src, report = converted
    ckpt = read_checkpoint(report.out_dir)
    config = ckpt.config
    assert (config.roi_align_aligned, config.roi_align_sampling_ratio) == (True, 0)
    assert (config.round_anchors, config.anchor_strides, config.box_delta_clamp) == (False, "fixed", "both")
    assert (config.rpn_min_box_size, config.box_min_size, config.frozen_bn_eps) == (0.0, None, 1e-5)
    assert ckpt.extra["source"]["converter"] == "mmdet" and ckpt.extra["source"]["file"] == src.name
    # Loading the export gives the settings back: nothing is guessed from the file name.
    assert fpn_zoo.create_model(report.model, weights=report.out_dir, device="cpu").config == config


def test_the_mask_branch_is_dropped_and_reported(converted):
    key, model, _, report = converted
    mask = sorted(k for k in model.state_dict() if k.startswith("roi_head.mask_head."))
    assert list(report.dropped) == mask and (len(mask) > 0) == key.startswith("mask")


def test_unused_coco_slots_never_score():
    """The ten N/A slots get weight 0 and a bias whose softmax term is exactly 0: softmax over 91 = over 81."""
    from fpn_zoo.converters.mmdet import _remap_classes

    g = torch.Generator().manual_seed(0)
    state = {
        "roi_head.bbox_head.fc_cls.weight": torch.randn(81, 16, generator=g),
        "roi_head.bbox_head.fc_cls.bias": torch.randn(81, generator=g),
        "roi_head.bbox_head.fc_reg.weight": torch.randn(320, 16, generator=g),
        "roi_head.bbox_head.fc_reg.bias": torch.randn(320, generator=g),
    }
    out = _remap_classes(state)
    x = torch.randn(50, 16, generator=g) * 5
    ours = torch.softmax(
        x @ out["roi_heads.box_predictor.cls_score.weight"].T + out["roi_heads.box_predictor.cls_score.bias"], 1
    )
    theirs = torch.softmax(x @ state["roi_head.bbox_head.fc_cls.weight"].T + state["roi_head.bbox_head.fc_cls.bias"], 1)
    unused = [i for i, name in enumerate(COCO_CATEGORIES) if name == "N/A"]
    assert torch.equal(ours[:, unused], torch.zeros(50, len(unused)))
    torch.testing.assert_close(ours[:, list(COCO_CATEGORY_IDS)], theirs[:, :80], atol=1e-6, rtol=0)
    torch.testing.assert_close(ours[:, 0], theirs[:, 80], atol=1e-6, rtol=0)
    deltas = out["roi_heads.box_predictor.bbox_pred.weight"].view(91, 4, 16)
    assert torch.equal(deltas[COCO_CATEGORY_IDS[5]], state["roi_head.bbox_head.fc_reg.weight"].view(80, 4, 16)[5])


# --------------------------------------------------------------------------------------------------------------------
# The official ConvNeXt naming


def _official_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmpretrain's block names back to the official repository's (object_detection/mmdet/models/backbones/convnext.py:
    Block.dwconv / pwconv1 / pwconv2; mmpretrain ConvNeXtBlock.depthwise_conv / pointwise_conv1 / pointwise_conv2)."""
    out = {}
    for k, v in state.items():
        k = re.sub(r"\.depthwise_conv\.", ".dwconv.", k)
        k = re.sub(r"\.pointwise_conv([12])\.", r".pwconv\1.", k)
        out[k] = v
    return out


def test_official_convnext_names_convert_to_the_same_tensors(reference, tmp_path):
    _, model, _, report = reference("mask_convnext_t_fpn")
    official = tmp_path / "mask_rcnn_convnext_tiny_1k_3x.pth"
    torch.save({"meta": {}, "state_dict": _official_names(model.state_dict())}, official)
    with pytest.raises(LayoutError, match=r"official ConvNeXt names .*--from convnext"):
        convert_checkpoint(official, tmp_path / "as_mmdet", source="mmdet")
    from_official = convert_checkpoint(official, tmp_path / "out", source="convnext")
    assert from_official.model == "fpn_convnext_t_coco" and "official names" in from_official.description
    a, b = read_checkpoint(report.out_dir).read_tensors(), read_checkpoint(from_official.out_dir).read_tensors()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_official_convnext_names_map_as_timms_checkpoint_filter_does(reference):
    """timm's ``convnext.checkpoint_filter_fn`` is upstream's own reading of the official names: the zoo's mapping
    of the backbone must put every tensor where timm puts it (timm's features_only flattens ``stem.0`` to ``stem_0``
    and ``stages.0`` to ``stages_0``; the four output norms are the detection model's own)."""
    _, model, _, _ = reference("mask_convnext_t_fpn")
    import timm
    from timm.models.convnext import checkpoint_filter_fn

    official = _official_names(model.state_dict())
    backbone = {
        k[len("backbone.") :]: v
        for k, v in official.items()
        if k.startswith("backbone.") and not re.match(r"backbone\.norm\d\.", k)
    }
    timm_names = checkpoint_filter_fn(backbone, timm.create_model("convnext_tiny", pretrained=False))
    ours = convnext_converter.convert(official).state_dict
    prefix = "backbone.body.model."
    ours = {
        re.sub(r"^(stem|stages)_(\d)", r"\1.\2", k[len(prefix) :]): v for k, v in ours.items() if k.startswith(prefix)
    }
    assert ours.keys() == timm_names.keys()
    assert all(torch.equal(ours[k], timm_names[k].reshape(ours[k].shape)) for k in ours)


# --------------------------------------------------------------------------------------------------------------------
# Inference settings against mmdetection's components


def test_exact_anchors_at_fixed_strides_are_mmdetections():
    from mmdet.models.task_modules.prior_generators import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList

    from fpn_zoo.heads.anchors import PyramidAnchorGenerator

    theirs = AnchorGenerator(strides=[4, 8, 16, 32, 64], ratios=[0.5, 1.0, 2.0], scales=[8])
    ours = PyramidAnchorGenerator(round_anchors=False, strides=(4, 8, 16, 32, 64))
    sizes = [(200, 304), (100, 152), (50, 76), (25, 38), (13, 19)]  # an 800x1216 padded batch: P6 has 13 rows
    feats = [torch.zeros(1, 1, h, w) for h, w in sizes]
    expected = torch.cat(theirs.grid_priors(sizes, device="cpu"))
    got = ours(ImageList(torch.zeros(1, 3, 800, 1216), [(800, 1216)]), feats)[0]
    torch.testing.assert_close(got, expected, atol=0, rtol=0)
    rounded = PyramidAnchorGenerator()(ImageList(torch.zeros(1, 3, 800, 1216), [(800, 1216)]), feats)[0]
    assert not torch.equal(rounded, expected)  # torchvision's: rounded, and P6 at stride 61


def test_two_sided_delta_clamp_is_mmdetections_decoder():
    from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder

    from fpn_zoo.heads.box_coder import make_box_coder

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(500, 2, generator=g) * 400
    boxes = torch.cat([xy, xy + 1 + torch.rand(500, 2, generator=g) * 200], 1)
    deltas = torch.randn(500, 4, generator=g) * 3  # large enough to hit the clamp on both sides
    # The RPN's coder and the box head's: mmdetection multiplies by stds, torchvision divides by weights = 1 / stds.
    for weights, stds in (((1.0, 1.0, 1.0, 1.0), [1.0] * 4), ((10.0, 10.0, 5.0, 5.0), [0.1, 0.1, 0.2, 0.2])):
        predicted = deltas / torch.tensor(stds)  # the network's raw output
        theirs = DeltaXYWHBBoxCoder(target_means=[0.0] * 4, target_stds=stds).decode(boxes, predicted)
        ours = make_box_coder(weights, "both").decode_single(predicted, boxes)
        torch.testing.assert_close(ours, theirs, atol=1e-3, rtol=1e-5)
        upper_only = make_box_coder(weights, "upper").decode_single(predicted, boxes)
        assert not torch.allclose(upper_only, theirs, atol=1e-3, rtol=1e-5)  # torchvision's differs


def test_aligned_adaptive_roi_align_is_mmcvs():
    from collections import OrderedDict

    from mmcv.ops import RoIAlign

    from fpn_zoo.heads.poolers import PyramidRoIAlign

    g = torch.Generator().manual_seed(0)
    feature = torch.randn(1, 8, 40, 60, generator=g)
    boxes = torch.tensor([[3.3, 4.1, 100.7, 90.2], [10.0, 20.0, 42.5, 60.25]])
    theirs = RoIAlign(7, spatial_scale=1 / 4, sampling_ratio=0, aligned=True)(
        feature, torch.cat([torch.zeros(2, 1), boxes], 1)
    )
    pool = PyramidRoIAlign(["0"], 7, 0, aligned=True)
    ours = pool(OrderedDict([("0", feature)]), [boxes], [(160, 240)])
    torch.testing.assert_close(ours, theirs, atol=0, rtol=0)


# --------------------------------------------------------------------------------------------------------------------
# Files


def test_an_mmengine_era_published_file_converts_too(reference, tmp_path):
    """mmdetection 3.x publishes zip files with mmengine's meta (dataset_meta, cfg): the same tensors."""
    _, model, _, report = reference("faster_r50_fpn")
    src = tmp_path / "faster_rcnn_r50_fpn_1x_coco_v3.pth"
    mmref.save_mmdet_checkpoint(model, src, legacy_format=False, mmdet3_meta=True)
    again = convert_checkpoint(src, tmp_path / "out", source="mmdet")
    a, b = read_checkpoint(report.out_dir).read_tensors(), read_checkpoint(again.out_dir).read_tensors()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class HistoryBuffer:
    """Stands for mmengine's logging record, which an unpublished mmengine checkpoint's message_hub holds."""


def test_numpy_metadata_is_read_and_other_objects_are_refused_by_name(reference, tmp_path):
    import numpy as np

    _, model, _, _ = reference("faster_r50_fpn")
    state = model.state_dict()
    src = tmp_path / "best.pth"
    torch.save(
        {"meta": {"hook_msgs": {"best_score": np.float64(0.374)}, "eta": np.arange(3)}, "state_dict": state}, src
    )
    assert convert_checkpoint(src, tmp_path / "ok", source="mmdet").model == "fpn_r50_coco"

    src = tmp_path / "epoch_12.pth"
    torch.save({"meta": {}, "state_dict": state, "message_hub": {"loss": HistoryBuffer()}}, src)
    with pytest.raises(CheckpointError, match=rf"outside the ones fpn_zoo reads \({__name__}\.HistoryBuffer\)"):
        convert_checkpoint(src, tmp_path / "refused", source="mmdet")
    assert not (tmp_path / "refused").exists()


def test_a_caffe_style_resnet_is_refused(reference, tmp_path):
    _, model, _, _ = reference("faster_r50_fpn")
    src = tmp_path / "faster_rcnn_r50_caffe_fpn_1x_coco.pth"
    torch.save(
        {
            "meta": {"config": "model = dict(backbone=dict(type='ResNet', style='caffe'))"},
            "state_dict": model.state_dict(),
        },
        src,
    )
    with pytest.raises(LayoutError, match="caffe-style ResNet"):
        convert_checkpoint(src, tmp_path / "out", source="mmdet")


def test_layouts_the_zoo_has_no_model_for_are_refused_naming_what_was_recognised(reference, tmp_path):
    _, model, _, _ = reference("faster_r50_fpn")
    state = model.state_dict()
    cases = {
        "agnostic.pth": (
            {
                **state,
                "roi_head.bbox_head.fc_reg.weight": torch.zeros(4, 1024),
                "roi_head.bbox_head.fc_reg.bias": torch.zeros(4),
            },
            r"81 scores and 4 box outputs.*class-specific boxes \(320\).*Recognised so far: ResNet-50, FPN, RPN",
        ),
        "voc.pth": (
            {
                **state,
                "roi_head.bbox_head.fc_cls.weight": torch.zeros(21, 1024),
                "roi_head.bbox_head.fc_cls.bias": torch.zeros(21),
            },
            r"21 scores",
        ),
        "extra.pth": (
            {**state, "neck.extra_convs.0.conv.weight": torch.zeros(1)},
            r"neck\.extra_convs\.0\.conv\.weight",
        ),
        "retinanet.pth": ({k: v for k, v in state.items() if not k.startswith("rpn_head.")}, r"no RPN head"),
    }
    for name, (tensors, message) in cases.items():
        torch.save({"meta": {}, "state_dict": tensors}, tmp_path / name)
        with pytest.raises(LayoutError, match=message):
            convert_checkpoint(tmp_path / name, tmp_path / f"out_{name}", source="mmdet")
        assert not (tmp_path / f"out_{name}").exists()


def test_a_model_that_does_not_fit_and_a_missing_tensor_are_refused(reference, tmp_path):
    _, model, src, _ = reference("faster_r50_pafpn")
    with pytest.raises(LayoutError, match=r"converts to 'panet_r50_coco', not 'fpn_r50_coco'"):
        convert_checkpoint(src, tmp_path / "out", source="mmdet", model="fpn_r50_coco")
    state = dict(model.state_dict())
    del state["neck.pafpn_convs.2.conv.bias"]
    torch.save({"meta": {}, "state_dict": state}, tmp_path / "missing.pth")
    with pytest.raises(WeightsMismatchError, match=r"missing \(backbone\.neck\.pafpn_convs\.2\.bias\)"):
        convert_checkpoint(tmp_path / "missing.pth", tmp_path / "out", source="mmdet")
    assert not (tmp_path / "out").exists()


def test_a_truncated_file_is_refused(reference, tmp_path):
    _, _, src, _ = reference("faster_r50_fpn")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint"):
        convert_checkpoint(truncated, tmp_path / "out", source="mmdet")
    assert not (tmp_path / "out").exists()
