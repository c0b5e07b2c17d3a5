"""The heads' options: torchvision's behaviour by default, bit for bit; each option changes what it says and no more.

mmdetection's side of each option (exact anchors at fixed strides, the two-sided clamp, aligned RoIAlign) is checked
against mmdetection's own code in tests/test_convert_mmdet.py.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import MultiScaleRoIAlign

import fpn_zoo
from fpn_zoo.config import VARIANTS
from fpn_zoo.heads.anchors import ANCHOR_SIZES, ASPECT_RATIOS, PyramidAnchorGenerator
from fpn_zoo.heads.box_coder import make_box_coder
from fpn_zoo.heads.poolers import PyramidRoIAlign
from fpn_zoo.heads.small_boxes import keep_boxes_of_size
from fpn_zoo.heads.soft_roi_selection import SoftRoISelection


def _pyramid(batch: int = 2, size: tuple[int, int] = (224, 320)) -> OrderedDict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    h, w = size
    return OrderedDict(
        (str(i), torch.randn(batch, 8, h // 2 ** (i + 2), w // 2 ** (i + 2), generator=g)) for i in range(4)
    )


def _seeded(module_class: type[torch.nn.Module], *args) -> torch.nn.Module:
    """``module_class(*args)`` with the same initial weights at every call."""
    torch.manual_seed(0)
    return module_class(*args)


def _boxes(n: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([size[1], size[0]]) * 0.8
    wh = torch.rand(n, 2, generator=g) ** 2 * torch.tensor([size[1], size[0]]) * 0.9 + 1
    return torch.cat([xy, (xy + wh).minimum(torch.tensor([size[1], size[0]]))], 1)


def test_default_pooler_is_torchvisions_multiscale_roi_align_bit_for_bit():
    feats = _pyramid()
    shapes = [(224, 320), (200, 300)]
    boxes = [_boxes(300, shapes[0], 1), _boxes(150, shapes[1], 2)]
    theirs = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)(feats, boxes, shapes)
    ours = PyramidRoIAlign(["0", "1", "2", "3"], 7, 2)(feats, boxes, shapes)
    assert torch.equal(ours, theirs)
    aligned = PyramidRoIAlign(["0", "1", "2", "3"], 7, 0, aligned=True)(feats, boxes, shapes)
    assert aligned.shape == theirs.shape and not torch.allclose(aligned, theirs)


POOLERS = pytest.mark.parametrize(
    "make_pooler",
    [lambda: PyramidRoIAlign(["0", "1", "2", "3"], 7, 2), lambda: _seeded(SoftRoISelection, 8)],
    ids=["one_level_per_roi", "augfpn_every_level"],
)


@pytest.mark.parametrize("mode", ["no_grad", "inference", "channels_last", "bf16_autocast"])
@POOLERS
def test_threaded_pooling_is_the_single_call_bit_for_bit(mode, make_pooler):
    """The RoIs split over threads pool exactly as in one call, in every mode the threads must inherit."""
    feats = _pyramid()
    shapes = [(224, 320), (200, 300)]
    boxes = [_boxes(600, shapes[0], 1), _boxes(300, shapes[1], 2)]
    if mode == "channels_last":
        feats = OrderedDict((k, v.contiguous(memory_format=torch.channels_last)) for k, v in feats.items())
    if mode == "bf16_autocast":  # what autocast's convolutions and the box decoding return
        feats = OrderedDict((k, v.bfloat16()) for k, v in feats.items())
        boxes = [b.bfloat16() for b in boxes]
    context = {
        "inference": torch.inference_mode,
        "bf16_autocast": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
    }.get(mode, torch.no_grad)
    single, threaded = make_pooler(), make_pooler()
    threaded.cpu_threads = 3
    with context():
        expected, got = single(feats, boxes, shapes), threaded(feats, boxes, shapes)
    assert got.dtype == expected.dtype and torch.equal(got, expected)
    assert got.is_inference() == (mode == "inference")


@POOLERS
def test_threaded_pooling_survives_torch_compile(make_pooler):
    """Compiling a fast model reaches the thread pool, which dynamo cannot trace: it must step around it and pool
    on the threads, not fail (it did, with an internal KeyError, until the pool was kept out of the graph)."""
    feats = _pyramid()
    shapes = [(224, 320), (200, 300)]
    boxes = [_boxes(600, shapes[0], 1), _boxes(300, shapes[1], 2)]
    single, threaded = make_pooler(), make_pooler()
    threaded.cpu_threads = 3
    compiled = torch.compile(threaded, backend="eager")  # dynamo's tracing without inductor's code generation
    with torch.inference_mode():
        assert torch.equal(compiled(feats, boxes, shapes), single(feats, boxes, shapes))


def test_default_anchors_are_torchvisions_and_exact_fixed_ones_differ_where_documented():
    feats = [torch.zeros(1, 1, 200 // 2**i, 304 // 2**i) for i in range(4)] + [torch.zeros(1, 1, 13, 19)]
    images = ImageList(torch.zeros(1, 3, 800, 1216), [(800, 1216)])
    theirs = AnchorGenerator(ANCHOR_SIZES, (ASPECT_RATIOS,) * 5)(images, feats)[0]
    assert torch.equal(PyramidAnchorGenerator()(images, feats)[0], theirs)
    exact = PyramidAnchorGenerator(round_anchors=False, strides=(4, 8, 16, 32, 64))(images, feats)[0]
    # Levels P2-P5 differ only by the rounding of the base anchors (< 0.5 px); P6's vertical stride is 64, not
    # torchvision's 800 // 13 = 61, so its last row of anchors sits 12 * 3 = 36 px lower.
    p6 = sum(f.shape[-2] * f.shape[-1] * 3 for f in feats[:4])
    assert (exact[:p6] - theirs[:p6]).abs().max() <= 0.5
    assert (exact[p6:] - theirs[p6:]).abs().max() == pytest.approx(36, abs=0.5)
    with pytest.raises(ValueError, match="one stride per anchor level"):
        PyramidAnchorGenerator(strides=(4, 8))


def test_the_delta_clamp_option_changes_only_large_shrinking_deltas():
    boxes = torch.tensor([[10.0, 10.0, 110.0, 60.0]]).repeat(3, 1)
    codes = torch.tensor([[0.5, -0.2, 1.0, -1.0], [0.0, 0.0, -6.0, 0.0], [0.0, 0.0, 0.0, -9.0]]) * 5
    upper, both = make_box_coder((10.0, 10.0, 5.0, 5.0), "upper"), make_box_coder((10.0, 10.0, 5.0, 5.0), "both")
    a, b = upper.decode_single(codes, boxes), both.decode_single(codes, boxes)
    torch.testing.assert_close(a[0], b[0], atol=0, rtol=0)  # within the clamp: identical
    assert (b[1, 2] - b[1, 0]).item() == pytest.approx(100 / 62.5, rel=1e-5)  # width shrinks at most 62.5 times
    assert (a[1, 2] - a[1, 0]).item() < (b[1, 2] - b[1, 0]).item()
    with pytest.raises(ValueError, match="'upper' or 'both'"):
        make_box_coder((1.0, 1.0, 1.0, 1.0), "lower")


def test_small_box_filters():
    boxes = torch.tensor([[0.0, 0.0, 0.0, 5.0], [0.0, 0.0, 5e-4, 5.0], [0.0, 0.0, 5e-3, 5.0], [0.0, 0.0, 1.0, 1.0]])
    assert keep_boxes_of_size(boxes, 1e-3).tolist() == [2, 3]  # torchvision's RPN: sides >= 1e-3
    assert keep_boxes_of_size(boxes, 1e-2).tolist() == [3]  # torchvision's detections: sides >= 1e-2
    assert keep_boxes_of_size(boxes, 0).tolist() == [1, 2, 3]  # mmdetection's RPN: sides > 0
    assert keep_boxes_of_size(boxes, None).tolist() == [0, 1, 2, 3]  # mmdetection's detections: no filter


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("roi_align_sampling_ratio", -1, "integer >= 0"),
        ("roi_align_aligned", 1, "True or False"),
        ("anchor_strides", "auto", "anchor_strides='auto' is not valid"),
        ("box_delta_clamp", "lower", "choose from ('upper', 'both')"),
        ("rpn_min_box_size", None, "a number >= 0"),
        ("box_min_size", -1.0, "a number >= 0 or None"),
        ("box_head", "3fc", "choose from ('2fc', '4conv1fc')"),
        ("rpn_conv_depth", 0, "positive integer"),
        ("neck_norm", "group_norm", "choose from ('none', 'batch_norm')"),
    ],
)
def test_bad_option_values_are_named_with_the_valid_ones(option, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        fpn_zoo.get_model_config("fpn_r50_coco").replace(**{option: value})


def test_bifpn_refuses_a_neck_norm_it_already_has():
    with pytest.raises(ValueError, match="BiFPN already follows every fusion node with BatchNorm"):
        fpn_zoo.get_model_config("bifpn_r50_coco").replace(neck_norm="batch_norm")


# AugFPN's auxiliary heads make its case the slowest of the suite (45 s on 2 cores): run with -m slow.
@pytest.mark.parametrize("name", ["panet_r50_coco", pytest.param("augfpn_r50_coco", marks=pytest.mark.slow)])
def test_v2_heads_work_on_any_pair(name, single_thread):
    """The v2 options (BatchNorm neck, 2-conv RPN, 4conv+1fc box head, BatchNorm backbone) on other pairs: the
    model detects and trains, and every trainable parameter gets a gradient. (AugFPN's auxiliary head would run the
    four-conv head on 4 x 512 sampled RoIs, a minute on 2 CPU cores: it has its own test below.)"""
    torch.manual_seed(0)
    options = dict(VARIANTS["v2"].options, consistent_supervision_weight=0.0)
    model = fpn_zoo.create_model(name, device="cpu", min_size=96, max_size=128, **options)
    assert len(model.rpn.head.conv) == 2 and type(model.roi_heads.box_head).__name__ == "FastRCNNConvFCHead"
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.neck.modules())
    with torch.no_grad():
        (out,) = model([torch.rand(3, 90, 120)])
    assert set(out) == {"boxes", "scores", "labels"}
    model.train()
    losses = model(
        [torch.rand(3, 90, 120)], [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 80.0]]), "labels": torch.tensor([1])}]
    )
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_augfpn_auxiliary_head_copies_a_conv_box_head():
    """With the v2 box head, AugFPN's consistent-supervision head is a FastRCNNConvFCHead too, pooling as the main
    pooler pools."""
    from fpn_zoo.heads.consistent_supervision import AuxiliaryBoxHead

    model = fpn_zoo.create_model("augfpn_r50_coco", device="meta", box_head="4conv1fc", roi_align_aligned=True)
    aux = model.roi_heads.aux_head
    assert type(aux.box_head).__name__ == "FastRCNNConvFCHead" and aux.aligned is True
    head = AuxiliaryBoxHead(8, 3, box_head="4conv1fc")
    laterals = [torch.rand(1, 8, 64 // 2**i, 64 // 2**i) for i in range(4)]
    logits, deltas = head(laterals, [torch.tensor([[0.0, 0.0, 100.0, 120.0], [8.0, 8.0, 40.0, 50.0]])], [(256, 256)])
    assert logits.shape == (8, 3) and deltas.shape == (8, 12)  # 4 levels x 2 boxes
