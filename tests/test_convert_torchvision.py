"""torchvision's Faster / Mask R-CNN (v1 and v2) converted into zoo models give torchvision's own detections.

Each reference is torchvision's model as its builder makes it, with seeded random weights in its own layout, saved
as torchvision saves weights; the zoo model is built from the converted file alone. Detections are compared on real
photos (coco128 crops that neither side resizes) and on random images.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
from collections.abc import Callable

import pytest
import torch
from model_helpers import randomise, v1_model
from photos import as_float, assert_same_detections, real_photos
from torch import nn
from torchvision.models.detection import (
    fasterrcnn_resnet50_fpn,
    fasterrcnn_resnet50_fpn_v2,
    maskrcnn_resnet50_fpn_v2,
)

import fpn_zoo
from fpn_zoo.converters import LayoutError
from fpn_zoo.weights.checkpoint import CheckpointError, read_checkpoint
from fpn_zoo.weights.convert import convert_checkpoint, convert_torchvision_checkpoint
from fpn_zoo.weights.loading import WeightsMismatchError

SIZE = (320, 480)  # real photo crops; both models keep them at this size (min_size/max_size = the sides)


REFERENCES: dict[str, tuple[Callable[[], nn.Module], str, float | None]] = {
    # name: (builder, zoo model, BatchNorm eps to convert with: None = the converter's default for the file)
    "faster_v1": (lambda: v1_model(), "fpn_r50_coco", 0.0),
    "mask_v1": (lambda: v1_model(mask=True, eps=1e-5), "fpn_r50_coco", None),
    "faster_v2": (lambda: fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None), "fpn_r50_v2_coco", None),
    "mask_v2": (lambda: maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None), "fpn_r50_v2_coco", None),
}


@pytest.fixture(scope="module")
def reference(module_scratch):
    """``reference(name)``: (name, torchvision's model, its .pth, the conversion report), built once per name."""
    built = {}

    def get(name: str):
        if name not in built:
            build, _, eps = REFERENCES[name]
            torch.manual_seed(0)
            tv = build()
            randomise(tv, seed=0, logit_scale=40.0)  # peaky logits: detections pass the 0.05 score threshold
            tv.eval()
            src = module_scratch / f"{name}.pth"
            torch.save(tv.state_dict(), src)
            out = module_scratch / f"{name}_zoo"
            built[name] = (name, tv, src, convert_checkpoint(src, out, source="torchvision", frozen_bn_eps=eps))
        return built[name]

    return get


@pytest.fixture(params=sorted(REFERENCES))
def converted(request, reference):
    return reference(request.param)


def _zoo(report, **options) -> nn.Module:
    return fpn_zoo.create_model(report.model, weights=report.out_dir, device="cpu", **options)


def test_the_model_is_recognised_from_the_tensors(converted):
    name, _, _, report = converted
    assert report.model == REFERENCES[name][1]
    assert ("Mask R-CNN" in report.description) == name.startswith("mask")
    assert ("v2" in report.description) == name.endswith("v2")


def test_converted_weights_give_torchvision_detections_on_real_photos(converted):
    _, tv, _, report = converted
    zoo = _zoo(report, min_size=min(SIZE), max_size=max(SIZE))
    resize = tv.transform.min_size, tv.transform.max_size
    tv.transform.min_size, tv.transform.max_size = (min(SIZE),), max(SIZE)
    try:
        with torch.no_grad():
            for photo in real_photos(2, SIZE):
                expected, got = tv([as_float(photo)])[0], zoo([as_float(photo)])[0]
                assert_same_detections(expected, got, score_atol=1e-4, box_atol=1e-3)
    finally:
        tv.transform.min_size, tv.transform.max_size = resize


@pytest.mark.parametrize("name", ["faster_v1"])
def test_converted_weights_give_torchvision_detections_on_any_size(reference, name):
    """Resized and batched with padding, as torchvision runs (at a smaller scale than COCO's 800 px, for speed). The
    transform is torchvision's own in every variant, so one suffices; the heads are what the variants differ in."""
    _, tv, _, report = reference(name)
    zoo = _zoo(report, min_size=256, max_size=384)
    resize = tv.transform.min_size, tv.transform.max_size
    tv.transform.min_size, tv.transform.max_size = (256,), 384
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 240, 320, generator=g), torch.rand(3, 301, 217, generator=g)]
    try:
        with torch.no_grad():
            expected, got = tv(images), zoo(images)
    finally:
        tv.transform.min_size, tv.transform.max_size = resize
    for e, o in zip(expected, got, strict=True):
        assert_same_detections(e, o, score_atol=1e-4, box_atol=1e-3)


def test_mask_branch_is_dropped_and_reported(converted):
    name, tv, src, report = converted
    mask_keys = sorted(
        k for k in tv.state_dict() if k.startswith(("roi_heads.mask_head.", "roi_heads.mask_predictor."))
    )
    assert list(report.dropped) == mask_keys and (len(mask_keys) > 0) == name.startswith("mask")
    ckpt = read_checkpoint(report.out_dir)
    assert ckpt.extra["source"]["dropped"] == mask_keys
    assert ckpt.extra["source"]["file"] == src.name and len(ckpt.extra["source"]["sha256"]) == 64


def test_v2_export_records_the_v2_options():
    with torch.device("meta"):
        state = fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None).state_dict()
    from fpn_zoo.converters import torchvision as tv_converter

    conversion = tv_converter.convert(state)
    v2 = fpn_zoo.get_model_config("fpn_r50_v2_coco")
    assert {k: getattr(v2, k) for k in conversion.options} == conversion.options
    assert (v2.backbone_norm, v2.neck_norm, v2.rpn_conv_depth, v2.box_head) == (
        "batch_norm",
        "batch_norm",
        2,
        "4conv1fc",
    )


def test_param_counts_match_torchvision_meta():
    """torchvision's COCO_V1 metas: 41,755,286 (v1, FrozenBN affine terms are buffers) and 43,712,278 (v2)."""
    from fpn_zoo.inspect_model import count_parameters

    assert count_parameters(fpn_zoo.get_model_config("fpn_r50_coco")) == 41_755_286
    assert count_parameters(fpn_zoo.get_model_config("fpn_r50_v2_coco")) == 43_712_278
    assert sum(p.numel() for p in fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).parameters()) == sum(
        p.numel() for p in fpn_zoo.create_model("fpn_r50_coco", device="cpu").parameters()
    )


def test_legacy_torchvision_key_layout_converts_the_same(tmp_path):
    """Files from before FeaturePyramidNetwork/RPNHead `_version = 2` name plain convs without the `.0.`."""
    state = v1_model().state_dict()
    legacy = {
        re.sub(r"^(backbone\.fpn\.(?:inner|layer)_blocks\.\d+)\.0\.", r"\1.", k).replace(
            "rpn.head.conv.0.0.", "rpn.head.conv."
        ): v
        for k, v in state.items()
    }
    assert "backbone.fpn.inner_blocks.0.weight" in legacy and "rpn.head.conv.weight" in legacy
    torch.save(state, tmp_path / "modern.pth")
    torch.save(legacy, tmp_path / "legacy.pth")
    a = convert_checkpoint(tmp_path / "modern.pth", tmp_path / "a", source="torchvision")
    b = convert_checkpoint(tmp_path / "legacy.pth", tmp_path / "b", source="torchvision")
    ta, tb = read_checkpoint(a.out_dir).read_tensors(), read_checkpoint(b.out_dir).read_tensors()
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_another_architecture_is_refused_naming_what_was_recognised(tmp_path):
    state = v1_model().state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("roi_heads.box_head.")}
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(LayoutError, match=r"box head other than TwoMLPHead.*Recognised so far: ResNet-50, FPN"):
        convert_checkpoint(tmp_path / "other.pth", tmp_path / "out", source="torchvision")
    assert not (tmp_path / "out").exists()


def test_an_unknown_tensor_is_named(tmp_path):
    state = v1_model().state_dict()
    state["backbone.fpn.extra.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(LayoutError, match=r"backbone\.fpn\.extra\.weight"):
        convert_checkpoint(tmp_path / "extra.pth", tmp_path / "out", source="torchvision")


def test_a_missing_tensor_is_named(tmp_path):
    state = v1_model().state_dict()
    del state["rpn.head.cls_logits.bias"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(WeightsMismatchError, match=r"missing \(rpn\.head\.cls_logits\.bias\)"):
        convert_checkpoint(tmp_path / "missing.pth", tmp_path / "out", source="torchvision")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))


def test_a_model_that_does_not_fit_is_refused_with_the_one_that_does(tmp_path):
    torch.save(fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None).state_dict(), tmp_path / "v2.pth")
    with pytest.raises(LayoutError, match=r"converts to 'fpn_r50_v2_coco', not 'fpn_r50_coco'"):
        convert_checkpoint(tmp_path / "v2.pth", tmp_path / "out", source="torchvision", model="fpn_r50_coco")
    assert not (tmp_path / "out").exists()


def test_an_output_folder_that_holds_something_is_never_overwritten(tmp_path):
    torch.save(v1_model().state_dict(), tmp_path / "tv.pth")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an empty folder; nothing was written"):
        convert_checkpoint(tmp_path / "tv.pth", out, source="torchvision")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"hello\n", r"is not a PyTorch checkpoint"),
        (pickle.dumps({"weight": os.system}, protocol=2), r"Refused to load .*\(posix\.system\).*could run code"),
    ],
)
def test_unsafe_or_garbage_pth_is_refused(tmp_path, payload, message):
    src = tmp_path / "bad.pth"
    src.write_bytes(payload)
    with pytest.raises(CheckpointError, match=message):
        convert_checkpoint(src, tmp_path / "out", source="torchvision")
    assert not (tmp_path / "out").exists()


def test_a_zip_checkpoint_with_code_is_refused_naming_the_global(tmp_path):
    src = tmp_path / "evil.pth"
    torch.save({"state_dict": v1_model().state_dict(), "meta": {"hook": print}}, src)
    with pytest.raises(CheckpointError, match=r"\(builtins\.print\)"):
        convert_checkpoint(src, tmp_path / "out", source="torchvision")


def test_non_tensor_state_dict_is_refused(tmp_path):
    src = tmp_path / "counter.pth"
    torch.save({"x": 3}, src)
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        convert_checkpoint(src, tmp_path / "out", source="torchvision")


def test_eps_defaults_to_torchvision_default_unless_the_file_is_coco_v1(tmp_path):
    src = tmp_path / "finetuned.pth"
    torch.save(v1_model().state_dict(), src)
    assert read_checkpoint(convert_torchvision_checkpoint(src, tmp_path / "a")).config.frozen_bn_eps == 1e-5
    zero = convert_torchvision_checkpoint(src, tmp_path / "b", frozen_bn_eps=0.0)
    assert read_checkpoint(zero).config.frozen_bn_eps == 0
    coco_v1 = convert_checkpoint(src, tmp_path / "c", source="torchvision", sha256="bf2d0c1e" + "0" * 56)
    assert read_checkpoint(coco_v1.out_dir).config.frozen_bn_eps == 0 and "maskrcnn" in coco_v1.notes[0]


def test_reference_training_checkpoint_with_args_is_accepted(tmp_path):
    """torchvision's references/detection/train.py saves {"model", "optimizer", ..., "args": Namespace}."""
    src = tmp_path / "checkpoint.pth"
    torch.save({"model": v1_model().state_dict(), "args": argparse.Namespace(lr=0.02), "epoch": 3}, src)
    assert read_checkpoint(convert_torchvision_checkpoint(src, tmp_path / "out")).config.name == "fpn_r50_coco"


def test_flop_count_reproduces_torchvision_meta():
    """torchvision's `_ops` for COCO_V1 is 134.38 G multiply-adds at 800x800; we count 2 FLOPs per multiply-add."""
    from fpn_zoo.inspect_model import count_flops

    count = count_flops(fpn_zoo.get_model_config("fpn_r50_coco"), 800, 800)
    assert count.proposals == 1000
    assert count.gflops / 2 == pytest.approx(134.38, abs=0.005)
