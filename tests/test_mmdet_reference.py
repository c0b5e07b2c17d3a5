"""Self-test of ``tests/mmdet_reference.py``: the mmcv op stand-in computes what mmcv's kernels compute, and mmdet's
own detectors build, detect on real photos and save as published checkpoint files.

Skips without mmengine/mmcv/mmdet (``pytest.importorskip`` inside ``require_mmdet``), and the detector tests without
``../shared/data``. The R101 and ConvNeXt detectors are ``slow`` (run with ``-m slow``).
"""

from __future__ import annotations

import copy
import math
import sys
import zipfile

import mmdet_reference as ref
import pytest
import torch
import torchvision

from fpn_zoo.bench.references import randomise_

ref.require_mmdet()  # pytest.importorskip for mmengine, mmcv, mmdet; installs the mmcv._ext stand-in first
# With a full mmcv (compiled ops) nothing is stood in; the comparisons below then check mmcv's real kernels.
STAND_IN = isinstance(sys.modules.get("mmcv._ext"), ref._MmcvExtStandIn)


# --------------------------------------------------------------------------------------------------------------------
# the mmcv._ext stand-in
# --------------------------------------------------------------------------------------------------------------------


def _bilinear(feature: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """mmcv's CPU bilinear sample (``ops/csrc/pytorch/cpu/roi_align.cpp``, pre_calc_for_bilinear_interpolate)."""
    height, width = feature.shape[-2:]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return feature.new_zeros(feature.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (
        hy * hx * feature[:, y_low, x_low]
        + hy * lx * feature[:, y_low, x_high]
        + ly * hx * feature[:, y_high, x_low]
        + ly * lx * feature[:, y_high, x_high]
    )


def _mmcv_roi_align(
    feature: torch.Tensor, rois: torch.Tensor, size: int, scale: float, sampling_ratio: int, aligned: bool
) -> torch.Tensor:
    """mmcv's RoIAlign average pooling, transcribed from its CPU kernel (ROIAlignForward), in float64."""
    feature = feature.double()
    out = feature.new_zeros(len(rois), feature.shape[1], size, size)
    for n, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        offset = 0.5 if aligned else 0.0
        start_w, start_h = x1 * scale - offset, y1 * scale - offset
        roi_w, roi_h = x2 * scale - offset - start_w, y2 * scale - offset - start_h
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / size, roi_w / size
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / size)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / size)
        count = max(grid_h * grid_w, 1)
        for ph in range(size):
            for pw in range(size):
                acc = feature.new_zeros(feature.shape[1])
                for iy in range(grid_h):
                    y = start_h + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                    for ix in range(grid_w):
                        x = start_w + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                        acc += _bilinear(feature[int(b)], y, x)
                out[n, :, ph, pw] = acc / count
    return out


def _rois() -> torch.Tensor:
    """(batch index, x1, y1, x2, y2) in image pixels on a stride-4 map of 20x24: tiny, large, past the border."""
    return torch.tensor(
        [
            [0, 3.0, 5.0, 9.5, 8.0],
            [0, 10.0, 12.0, 90.0, 70.0],
            [1, 0.0, 0.0, 95.9, 79.9],
            [1, 60.3, 41.7, 120.0, 100.0],
            [0, 33.3, 2.2, 34.1, 3.9],
            [1, -6.0, -3.0, 20.0, 17.5],
        ]
    )


@pytest.mark.skipif(not STAND_IN, reason="mmcv has its compiled ops: no stand-in installed")
def test_stand_in_is_what_mmcv_ops_call():
    import mmcv.ops  # noqa: F401
    from mmengine.utils.dl_utils import mmcv_full_available

    ext = sys.modules["mmcv._ext"]
    ref.install_mmcv_ext_stand_in()  # idempotent: the module already in place stays
    assert sys.modules["mmcv._ext"] is ext
    # mmcv/ops/__init__.py rebinds mmcv.ops.nms to the function, so the op modules are looked up by name
    assert sys.modules["mmcv.ops.roi_align"].ext_module is ext and sys.modules["mmcv.ops.nms"].ext_module is ext
    assert ext.__file__ == ref.__file__
    with pytest.raises(AttributeError):
        ext.__path__  # noqa: B018  (not a package: importlib must not look inside it)
    with pytest.raises(NotImplementedError, match="deform_conv_forward"):
        ext.deform_conv_forward()
    assert mmcv_full_available() is False  # answers, does not raise: the stand-in has a __spec__ without a loader


@pytest.mark.parametrize("aligned", [True, False])
def test_roi_align_is_mmcv_kernel_and_torchvision(aligned):
    from mmcv.ops import RoIAlign

    g = torch.Generator().manual_seed(0)
    feature = torch.randn(2, 3, 20, 24, generator=g)
    rois = _rois()
    got = RoIAlign(7, spatial_scale=0.25, sampling_ratio=0, aligned=aligned)(feature, rois)
    expected = torchvision.ops.roi_align(feature, rois, (7, 7), 0.25, sampling_ratio=0, aligned=aligned)
    assert torch.equal(got, expected)
    torch.testing.assert_close(got.double(), _mmcv_roi_align(feature, rois, 7, 0.25, 0, aligned), atol=1e-5, rtol=0)
    two = RoIAlign(7, spatial_scale=0.25, sampling_ratio=2, aligned=aligned)(feature, rois)
    torch.testing.assert_close(two.double(), _mmcv_roi_align(feature, rois, 7, 0.25, 2, aligned), atol=1e-5, rtol=0)
    if STAND_IN:
        with pytest.raises(NotImplementedError, match="average pooling"):
            RoIAlign(7, spatial_scale=0.25, pool_mode="max")(feature, rois)


def _greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """mmcv's CPU nms (``ops/csrc/pytorch/cpu/nms.cpp``): by decreasing score, drop boxes with IoU > threshold."""
    order = scores.argsort(descending=True).tolist()
    iou = torchvision.ops.box_iou(boxes, boxes)
    keep: list[int] = []
    for i in order:
        if all(iou[i, j] <= iou_threshold for j in keep):
            keep.append(i)
    return torch.tensor(keep)


def test_nms_and_batched_nms_run_as_mmcv():
    from mmcv.ops import batched_nms, nms

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(200, 2, generator=g) * 40], 1)
    scores = torch.rand(200, generator=g)
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert torch.equal(keep, _greedy_nms(boxes, scores, 0.5))
    assert torch.equal(dets, torch.cat([boxes[keep], scores[keep, None]], 1))
    classes = torch.randint(0, 5, (200,), generator=g)
    dets, keep = batched_nms(boxes, scores, classes, {"type": "nms", "iou_threshold": 0.5})
    assert torch.equal(keep, torchvision.ops.batched_nms(boxes, scores, classes, 0.5))
    assert torch.equal(dets[:, -1], scores[keep]) and bool((dets[:-1, -1] >= dets[1:, -1]).all())
    if STAND_IN:
        with pytest.raises(NotImplementedError, match="offset=0"):
            nms(boxes, scores, iou_threshold=0.5, offset=1)


# --------------------------------------------------------------------------------------------------------------------
# configs, class names, photos
# --------------------------------------------------------------------------------------------------------------------


def test_configs_are_shipped_and_names_are_mmdets():
    for key in ref.MMDET_CONFIGS:
        assert ref.mmdet_config_path(key).is_file()
    names = ref.MMDET_CLASS_NAMES
    assert len(names) == 80 and names[0] == "person" and names[-1] == "toothbrush"


def test_real_photos_are_exact_crops():
    photos = ref.real_photos(2, (320, 480))
    assert [tuple(p.shape) for p in photos] == [(3, 320, 480)] * 2
    assert all(p.dtype == torch.uint8 for p in photos)
    assert not torch.equal(photos[0], photos[1])
    assert torch.equal(ref.real_photos(1, (320, 480))[0], photos[0])  # same choice every time


# --------------------------------------------------------------------------------------------------------------------
# mmdet's detectors
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return ref.real_photos(1)[0]


@pytest.fixture(scope="module")
def r50(photo) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """faster_r50_fpn, randomised and calibrated on ``photo``, with its detections there: shared by two tests."""
    model = ref.build_mmdet_model("faster_r50_fpn")
    ref.randomise_for_detections(model, seed=0, images=[photo])
    return model, ref.mmdet_predict(model, photo)


def _check_detections(key: str, det: dict[str, torch.Tensor]) -> None:
    n = len(det["scores"])
    assert 10 < n < 100, f"{key}: {n} detections; the comparison needs tens, below mmdet's cap of 100"
    assert det["boxes"].shape == (n, 4) and det["boxes"].dtype == torch.float32
    assert det["labels"].dtype == torch.int64
    assert bool(torch.isfinite(det["boxes"]).all()) and bool(torch.isfinite(det["scores"]).all())
    assert int(det["labels"].min()) >= 0 and int(det["labels"].max()) <= 79
    assert bool((det["scores"][:-1] >= det["scores"][1:]).all()), "mmdet returns detections by decreasing score"
    assert float(det["scores"].min()) > ref.SCORE_THRESH


def _check_published_file(key: str, model: torch.nn.Module, path) -> None:
    ref.save_mmdet_checkpoint(model, path)
    assert not zipfile.is_zipfile(path), "publish_model.py writes torch's legacy (non-zip) format"
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert set(checkpoint) == {"meta", "state_dict"}
    state = model.state_dict()
    assert list(checkpoint["state_dict"]) == list(state)
    assert all(torch.equal(checkpoint["state_dict"][k], v) for k, v in state.items())
    assert checkpoint["meta"]["CLASSES"] == ref.MMDET_CLASS_NAMES
    assert checkpoint["meta"]["config"] == ref._config(key).pretty_text


def test_faster_r50_detects_and_saves(r50, tmp_path):
    model, det = r50
    _check_detections("faster_r50_fpn", det)
    _check_published_file("faster_r50_fpn", model, tmp_path / "faster_r50_fpn.pth")


@pytest.mark.parametrize(
    "key",
    [
        # tests/test_convert_mmdet.py builds, runs and saves these in the default suite too
        pytest.param("faster_r50_pafpn", marks=pytest.mark.slow),
        pytest.param("mask_r50_fpn", marks=pytest.mark.slow),
        pytest.param("faster_r101_fpn", marks=pytest.mark.slow),
        pytest.param("mask_convnext_t_fpn", marks=pytest.mark.slow),
    ],
)
def test_mmdet_detector_detects_and_saves(key, photo, tmp_path):
    model = ref.build_mmdet_model(key)
    ref.randomise_for_detections(model, seed=0, images=[photo])
    _check_detections(key, ref.mmdet_predict(model, photo))
    _check_published_file(key, model, tmp_path / f"{key}.pth")


def test_mmdet_loads_saved_checkpoint_to_the_same_detections(r50, photo, tmp_path):
    """mmengine's own ``load_checkpoint`` reads the file (mmdet 3.x meta, zip format) back into mmdet's detector."""
    from mmengine.runner import load_checkpoint

    model, expected = copy.deepcopy(r50)
    path = tmp_path / "mmdet3.pth"
    ref.save_mmdet_checkpoint(model, path, legacy_format=False, mmdet3_meta=True)
    assert zipfile.is_zipfile(path)
    meta = torch.load(path, map_location="cpu", weights_only=True)["meta"]
    assert meta["dataset_meta"]["classes"] == ref.MMDET_CLASS_NAMES and "CLASSES" not in meta
    assert meta["cfg"] == ref._config("faster_r50_fpn").pretty_text

    randomise_(model, seed=2)  # every tensor different: whatever the file does not hold would show
    load_checkpoint(model, str(path), map_location="cpu", strict=True)
    got = ref.mmdet_predict(model, photo)
    for name in ("boxes", "scores", "labels"):
        assert torch.equal(got[name], expected[name])
