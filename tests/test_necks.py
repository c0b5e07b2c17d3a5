"""Each neck's defining arithmetic, checked numerically against a reference implementation or a transcription of one.

References: torchvision's ``FeaturePyramidNetwork`` (FPN), mmdetection's ``PAFPN.forward`` (PANet), effdet's ``BiFpn``
(BiFPN), Gus-Guo/AugFPN's ``HighFPN`` and ``SoftRoIExtractor`` (AugFPN); transcriptions follow
``shared/reference/necks.md`` sections 2-5 line by line. Channel counts and sizes are tiny so this runs on 2 CPU cores.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork, roi_align
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from fpn_zoo.heads import SoftRoISelection
from fpn_zoo.necks import FPN, LEVEL_NAMES, AugFPN, BiFPN, PANet, WeightedFusion, bifpn_graph
from fpn_zoo.necks.bifpn import effdet_state_dict_to_zoo

CHANNELS = [8, 16, 24, 40]
R50_CHANNELS = [256, 512, 1024, 2048]
ODD_SIZES = [(33, 47), (17, 24), (9, 12), (5, 6)]  # C2 of odd size, C3..C5 halving with ceil (ResNet strides)
FLOOR_SIZES = [(25, 35), (12, 17), (6, 8), (3, 4)]  # ConvNeXt's floor halving, on a 100x140 input


pytestmark = pytest.mark.usefixtures("single_thread")


def features(sizes, channels=CHANNELS, batch: int = 2, seed: int = 0) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, h, w, generator=g) for c, (h, w) in zip(channels, sizes, strict=True)]


def sizes_for_image(h: int, w: int) -> list[tuple[int, int]]:
    return [(math.ceil(h / s), math.ceil(w / s)) for s in (4, 8, 16, 32)]


@torch.no_grad()
def randomise_biases(module: nn.Module, seed: int = 0) -> None:
    """Non-zero biases, so that a bias applied in the wrong place shows up."""
    g = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        if name.endswith("bias"):
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def conv(m: nn.Conv2d, x: Tensor, stride: int = 1, padding: int = 0) -> Tensor:
    return F.conv2d(x, m.weight, m.bias, stride=stride, padding=padding)


NECKS = {
    "fpn": lambda chs, out: FPN(chs, out),
    "panet": lambda chs, out: PANet(chs, out),
    "bifpn": lambda chs, out: BiFPN(chs, out, repeats=2),
    "augfpn": lambda chs, out: AugFPN(chs, out),
}


# ---------------------------------------------------------------------------------------------------------- FPN


def test_fpn_equals_torchvision_feature_pyramid_network_on_odd_sizes():
    torch.manual_seed(0)
    ours = FPN(CHANNELS, 32).eval()
    randomise_biases(ours)
    tv = FeaturePyramidNetwork(CHANNELS, 32, extra_blocks=LastLevelMaxPool()).eval()
    mapped = {
        k.replace("lateral_convs.", "inner_blocks.").replace("fpn_convs.", "layer_blocks."): v
        for k, v in ours.state_dict().items()
    }
    tv.load_state_dict({re.sub(r"_blocks\.(\d+)\.", r"_blocks.\1.0.", k): v for k, v in mapped.items()})
    x = features(ODD_SIZES)
    with torch.no_grad():
        got = ours(x)
        expected = tv(OrderedDict(zip(LEVEL_NAMES[:4], x, strict=True)))
    assert list(got) == list(expected) == list(LEVEL_NAMES)
    for name in LEVEL_NAMES:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=0)
    assert got["pool"].shape[-2:] == (3, 3)


def test_fpn_initialisation_is_torchvisions_kaiming_uniform():
    torch.manual_seed(0)
    # in != out channels so that Kaiming (a=1) and Xavier bounds differ.
    neck = FPN([8, 16, 24, 40], 64)
    for m in neck.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            bound = math.sqrt(6.0 / ((1 + 1) * fan_in))
            assert m.weight.abs().max() <= bound
            assert m.weight.abs().max() > 0.9 * bound  # the whole range is used, not a narrower distribution
            assert torch.count_nonzero(m.bias) == 0


def test_panet_initialisation_is_mmdetections_xavier_uniform():
    torch.manual_seed(0)
    neck = PANet([8, 16, 24, 40], 64)
    for m in neck.modules():
        if isinstance(m, nn.Conv2d):
            k = m.weight[0, 0].numel()
            bound = math.sqrt(6.0 / (m.in_channels * k + m.out_channels * k))
            assert 0.9 * bound < m.weight.abs().max() <= bound
            assert torch.count_nonzero(m.bias) == 0


# -------------------------------------------------------------------------------------------------------- PANet


def mmdet_pafpn_forward(neck: PANet, inputs: list[Tensor]) -> list[Tensor]:
    """mmdetection ``PAFPN.forward`` (necks.md 3.1), norm/act off, ``add_extra_convs=False``, ``num_outs=5``."""
    laterals = [conv(lateral_conv, inputs[i]) for i, lateral_conv in enumerate(neck.lateral_convs)]
    used_backbone_levels = len(laterals)
    for i in range(used_backbone_levels - 1, 0, -1):
        prev_shape = laterals[i - 1].shape[2:]
        laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=prev_shape, mode="nearest")
    inter_outs = [conv(neck.fpn_convs[i], laterals[i], padding=1) for i in range(used_backbone_levels)]
    for i in range(0, used_backbone_levels - 1):
        inter_outs[i + 1] = inter_outs[i + 1] + conv(neck.downsample_convs[i], inter_outs[i], stride=2, padding=1)
    outs = [inter_outs[0]]
    outs.extend([conv(neck.pafpn_convs[i - 1], inter_outs[i], padding=1) for i in range(1, used_backbone_levels)])
    outs.append(F.max_pool2d(outs[-1], 1, stride=2))
    return outs


def paper_order_panet_forward(neck: PANet, inputs: list[Tensor]) -> list[Tensor]:
    """The PANet paper's order: the stride-2 conv reads the *post-conv* N_i."""
    laterals = [conv(c, inputs[i]) for i, c in enumerate(neck.lateral_convs)]
    for i in range(3, 0, -1):
        laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
    p = [conv(neck.fpn_convs[i], laterals[i], padding=1) for i in range(4)]
    n = [p[0]]
    for i in range(3):
        summed = p[i + 1] + conv(neck.downsample_convs[i], n[i], stride=2, padding=1)
        n.append(conv(neck.pafpn_convs[i], summed, padding=1))
    return [*n, F.max_pool2d(n[-1], 1, stride=2)]


def test_panet_equals_mmdetection_pafpn_forward_on_odd_sizes():
    torch.manual_seed(0)
    neck = PANet(CHANNELS, 32).eval()
    randomise_biases(neck)
    x = features(ODD_SIZES)
    with torch.no_grad():
        got = list(neck(x).values())
        expected = mmdet_pafpn_forward(neck, x)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=0)


def test_mmdetection_order_differs_from_paper_order():
    """Guards the test above: downsampling the post-conv N_i (paper) gives different P4-P6, so the order is pinned."""
    torch.manual_seed(0)
    neck = PANet(CHANNELS, 32).eval()
    randomise_biases(neck)
    x = features(ODD_SIZES)
    with torch.no_grad():
        got = list(neck(x).values())
        paper = paper_order_panet_forward(neck, x)
    torch.testing.assert_close(got[0], paper[0])  # N2 = P2 and N3 agree (N2 has no conv) ...
    torch.testing.assert_close(got[1], paper[1])
    for g, p in zip(got[2:], paper[2:], strict=True):  # ... from N4 on they must differ
        assert (g - p).abs().max() > 1e-3


def test_panet_keys_and_parameter_count_follow_mmdetection():
    with torch.device("meta"):
        panet, fpn = PANet(R50_CHANNELS, 256), FPN(R50_CHANNELS, 256)
    prefixes = {k.split(".")[0] for k in panet.state_dict()}
    assert prefixes == {"lateral_convs", "fpn_convs", "downsample_convs", "pafpn_convs"}
    assert len(panet.downsample_convs) == len(panet.pafpn_convs) == 3
    extra = sum(p.numel() for p in panet.parameters()) - sum(p.numel() for p in fpn.parameters())
    assert extra == 3_540_480


# -------------------------------------------------------------------------------------------------------- BiFPN


def effdet_bifpn(width: int, repeats: int, image_size: tuple[int, int], fpn_name: str = "bifpn_fa"):
    pytest.importorskip("effdet")
    from effdet.config.model_config import default_detection_model_configs
    from effdet.efficientdet import BiFpn

    config = default_detection_model_configs()
    config.update(
        dict(
            min_level=2,
            max_level=6,
            num_levels=5,
            fpn_channels=width,
            fpn_cell_repeats=repeats,
            image_size=image_size,
            fpn_name=fpn_name,
            pad_type="",  # PyTorch-style padding, effdet's choice for its non-`tf_` models (default: TF 'same')
        )
    )
    expected = dict(apply_resample_bn=True, redundant_bias=True, separable_conv=True, act_type="swish")
    expected.update(downsample_type="max", upsample_type="nearest", fpn_config=None, conv_bn_relu_pattern=False)
    assert {k: config[k] for k in expected} == expected
    assert dict(config.norm_kwargs) == {"eps": 1e-3, "momentum": 0.01}
    feature_info = [dict(num_chs=c, reduction=r) for c, r in zip(CHANNELS, [4, 8, 16, 32], strict=True)]
    return BiFpn(config, feature_info)


@torch.no_grad()
def randomise_bifpn_state(module: nn.Module, seed: int = 0) -> None:
    """Random BN statistics and affine terms, biases and edge weights (some negative, to exercise the ReLU)."""
    g = torch.Generator().manual_seed(seed)
    for name, t in module.state_dict().items():
        if name.endswith("running_var"):
            t.copy_(torch.rand(t.shape, generator=g) * 1.5 + 0.5)
        elif name.endswith(("running_mean", "bias")):
            t.copy_(torch.randn(t.shape, generator=g) * 0.2)
        elif name.endswith("edge_weights"):
            t.copy_(torch.rand(t.shape, generator=g) * 2.0 - 0.5)
        elif name.endswith("bn.weight"):
            t.copy_(torch.rand(t.shape, generator=g) + 0.5)


@pytest.mark.parametrize(
    ("fpn_name", "fusion", "repeats", "image_size"),
    [
        ("bifpn_fa", "fast_normalized", 3, (128, 192)),
        ("bifpn_fa", "fast_normalized", 2, (129, 191)),
        ("bifpn_attn", "softmax", 2, (128, 192)),
        ("bifpn_sum", "sum", 2, (128, 192)),
    ],
)
def test_bifpn_equals_effdet_bifpn(fpn_name, fusion, repeats, image_size):
    torch.manual_seed(0)
    ref = effdet_bifpn(32, repeats, image_size, fpn_name).eval()
    randomise_bifpn_state(ref)
    ours = BiFPN(CHANNELS, 32, repeats=repeats, fusion=fusion).eval()
    ours.load_state_dict(effdet_state_dict_to_zoo(ref.state_dict()))  # strict: same tensors, same shapes
    if fusion == "fast_normalized":  # some edges are clamped by the ReLU
        assert any((p < 0).any() for n, p in ours.named_parameters() if n.endswith("edge_weights"))
    from effdet.anchors import get_feat_sizes

    sizes = get_feat_sizes(image_size, max_level=6)[2:6]
    x = features(sizes)
    with torch.no_grad():
        expected = ref(list(x))  # effdet appends to its input list
        got = list(ours(x).values())
    assert len(expected) == len(got) == 5
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)


def test_bifpn_graph_equals_effdet_bifpn_config():
    pytest.importorskip("effdet")
    from effdet.config.fpn_config import bifpn_config

    nodes = bifpn_config(min_level=2, max_level=6).nodes
    ours = bifpn_graph(5)
    assert [tuple(n["inputs_offsets"]) for n in nodes] == [n.inputs for n in ours]
    assert [n["feat_level"] - 2 for n in nodes] == [n.level for n in ours]


def test_bifpn_batchnorms_use_tf_eps_and_momentum():
    neck = BiFPN(CHANNELS, 32, repeats=2)
    bns = [m for m in neck.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    # P6 resample, one per node and cell, the first cell's 1x1 projections (C2 once, C3-C5 twice each).
    assert len(bns) == 1 + 2 * 8 + 7
    assert {(m.eps, m.momentum) for m in bns} == {(1e-3, 0.01)}


def test_bifpn_one_instance_runs_on_several_input_sizes():
    neck = BiFPN(CHANNELS, 16, repeats=2).eval()
    # ceil halving (ResNet), floor halving (ConvNeXt: 100x140 image), and a multiple of 64.
    for sizes in (ODD_SIZES, FLOOR_SIZES, sizes_for_image(128, 192)):
        with torch.no_grad():
            out = neck(features(sizes))
        h5, w5 = sizes[-1]
        assert [tuple(t.shape[-2:]) for t in out.values()] == [*sizes, ((h5 + 1) // 2, (w5 + 1) // 2)]


def test_fast_normalised_fusion_formula_and_clamping():
    fuse = WeightedFusion(3, "fast_normalized")
    with torch.no_grad():
        fuse.edge_weights.copy_(torch.tensor([2.0, -1.0, 0.5]))
    x = features([(3, 5)] * 3, channels=[4, 4, 4])
    expected = (2.0 * x[0] + 0.0 * x[1] + 0.5 * x[2]) / (2.0 + 0.0 + 0.5 + 1e-4)
    torch.testing.assert_close(fuse(x), expected, atol=1e-6, rtol=0)
    default = WeightedFusion(2, "fast_normalized")
    torch.testing.assert_close(default(x[:2]), (x[0] + x[1]) / (2 + 1e-4))


def test_softmax_and_sum_fusion():
    x = features([(3, 5)] * 3, channels=[4, 4, 4])
    fuse = WeightedFusion(3, "softmax")
    w = torch.tensor([0.3, -1.2, 2.0])
    with torch.no_grad():
        fuse.edge_weights.copy_(w)
    s = torch.softmax(w, 0)
    torch.testing.assert_close(fuse(x), s[0] * x[0] + s[1] * x[1] + s[2] * x[2])
    plain = WeightedFusion(3, "sum")
    assert list(plain.parameters()) == []
    torch.testing.assert_close(plain(x), x[0] + x[1] + x[2])
    with pytest.raises(ValueError, match="fast_normalized"):
        WeightedFusion(2, "mean")


# ------------------------------------------------------------------------------------------------------- AugFPN


def reference_rfa(neck: AugFPN, c5: Tensor, ratios=(0.1, 0.2, 0.3)) -> Tensor:
    """Residual feature augmentation of the reference ``HighFPN.forward`` (necks.md 5.1)."""
    h, w = c5.shape[2:]
    contexts = [
        F.interpolate(
            conv(neck.high_lateral_conv[j], F.adaptive_avg_pool2d(c5, (max(1, int(h * r)), max(1, int(w * r))))),
            size=(h, w),
            mode="bilinear",
            align_corners=True,
        )
        for j, r in enumerate(ratios)
    ]
    att = neck.high_lateral_conv_attention
    wts = torch.sigmoid(conv(att[2], F.relu(conv(att[0], torch.cat(contexts, dim=1))), padding=1))
    return sum(wts[:, j : j + 1] * contexts[j] for j in range(len(ratios)))


def reference_high_fpn(neck: AugFPN, inputs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """The reference ``HighFPN.forward`` with its fixed x2 top-down upsampling (inputs padded to a multiple of 32)."""
    laterals = [conv(c, inputs[i]) for i, c in enumerate(neck.lateral_convs)]
    raw_laterals = [lat.clone() for lat in laterals]
    laterals[-1] = laterals[-1] + reference_rfa(neck, inputs[-1])
    for i in range(len(laterals) - 1, 0, -1):
        laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], scale_factor=2, mode="nearest")
    outs = [conv(neck.fpn_convs[i], laterals[i], padding=1) for i in range(len(laterals))]
    outs.append(F.max_pool2d(outs[-1], 1, stride=2))
    return outs, raw_laterals


def test_augfpn_without_rfa_is_fpn():
    torch.manual_seed(0)
    aug = AugFPN(CHANNELS, 32).eval()
    randomise_biases(aug)
    fpn = FPN(CHANNELS, 32).eval()
    fpn.load_state_dict({k: v for k, v in aug.state_dict().items() if k.startswith(("lateral_convs", "fpn_convs"))})
    x = features(ODD_SIZES)
    with torch.no_grad():
        active = list(aug(x).values())
        last = aug.high_lateral_conv_attention[-1]
        last.weight.zero_()
        last.bias.fill_(-1e4)  # sigmoid -> 0: no residual feature augmentation
        silenced = list(aug(x).values())
        plain = list(fpn(x).values())
    for s, p in zip(silenced, plain, strict=True):
        torch.testing.assert_close(s, p, atol=1e-6, rtol=0)
    assert (active[3] - plain[3]).abs().max() > 1e-3  # the RFA path does change P5 when it is on


def test_augfpn_rfa_equals_reference_on_odd_c5():
    torch.manual_seed(0)
    neck = AugFPN(CHANNELS, 32).eval()
    randomise_biases(neck)
    c5 = features([(13, 21)], channels=[40])[0]
    with torch.no_grad():
        torch.testing.assert_close(neck.residual_feature_augmentation(c5), reference_rfa(neck, c5), atol=1e-6, rtol=0)


def test_augfpn_pooled_sizes_follow_the_reference_rule():
    neck = AugFPN(CHANNELS, 16).eval()
    seen = []
    for m in neck.high_lateral_conv:
        m.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[-2:])))
    with torch.no_grad():
        neck.residual_feature_augmentation(torch.randn(1, 40, 25, 42))  # C5 of an 800x1344 padded input
        neck.residual_feature_augmentation(torch.randn(1, 40, 4, 6))  # every ratio rounds to 0 -> clamped to 1
    assert seen == [(2, 4), (5, 8), (7, 12), (1, 1), (1, 1), (1, 1)]


def test_augfpn_equals_reference_high_fpn_on_padded_input():
    torch.manual_seed(0)
    neck = AugFPN(CHANNELS, 32).train()
    randomise_biases(neck)
    x = features(sizes_for_image(128, 192))
    with torch.no_grad():
        got = neck(x)
        expected, expected_raw = reference_high_fpn(neck, x)
    for g, e in zip(got.values(), expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=0)
    for g, e in zip(got.raw_laterals, expected_raw, strict=True):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=0)


def test_augfpn_raw_laterals_are_pre_fusion_laterals_in_train_mode_only():
    torch.manual_seed(0)
    neck = AugFPN(CHANNELS, 32).train()
    randomise_biases(neck)
    x = features(ODD_SIZES)
    with torch.no_grad():
        out = neck(x)
        laterals = [conv(c, t) for c, t in zip(neck.lateral_convs, x, strict=True)]
        assert len(out.raw_laterals) == 4
        for raw, lat in zip(out.raw_laterals, laterals, strict=True):
            torch.testing.assert_close(raw, lat, atol=1e-6, rtol=0)
        assert neck.eval()(x).raw_laterals is None


@pytest.mark.parametrize(
    ("channels", "fpn_params", "high_fpn_extra"),
    [
        (R50_CHANNELS, 3_344_384, 1_777_411),
        ([96, 192, 384, 768], 2_729_984, 794_371),
        ([128, 256, 512, 1024], 2_852_864, 990_979),
    ],
)
def test_parameter_counts_match_the_spec_table(channels, fpn_params, high_fpn_extra):
    def count(m):
        return sum(p.numel() for p in m.parameters())

    with torch.device("meta"):
        fpn, aug, pan = FPN(channels, 256), AugFPN(channels, 256), PANet(channels, 256)
        soft = SoftRoISelection(256)
    assert count(fpn) == fpn_params
    assert count(aug) - count(fpn) == high_fpn_extra
    assert count(pan) - count(fpn) == 3_540_480
    assert count(soft) == 271_620


# ------------------------------------------------------------------------------------------- Soft RoI Selection


def reference_soft_roi_extractor(module: SoftRoISelection, feats: list[Tensor], rois: Tensor) -> Tensor:
    """``SoftRoIExtractor.forward`` (necks.md 5.2): ``rois`` are ``(K, 5)`` rows ``[batch_index, x1, y1, x2, y2]``."""
    roi_feats = [
        roi_align(f, rois, (7, 7), spatial_scale=1.0 / s, sampling_ratio=2, aligned=False)
        for f, s in zip(feats, (4, 8, 16, 32), strict=True)
    ]
    att = module.spatial_attention_conv
    attention = conv(att[2], F.relu(conv(att[0], torch.cat(roi_feats, dim=1))), padding=1)
    return sum(torch.sigmoid(attention[:, i : i + 1]) * roi_feats[i] for i in range(len(feats)))


def soft_roi_inputs():
    feats = features(sizes_for_image(64, 96), channels=[16] * 4, seed=3)
    boxes = [
        torch.tensor([[0.0, 0.0, 30.0, 20.0], [10.5, 7.25, 90.0, 60.0], [40.0, 30.0, 44.0, 33.0]]),
        torch.tensor([[5.0, 5.0, 70.0, 50.0]]),
    ]
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], dim=1) for i, b in enumerate(boxes)])
    return OrderedDict(zip(LEVEL_NAMES[:4], feats, strict=True)), boxes, rois


def test_soft_roi_selection_equals_reference():
    torch.manual_seed(0)
    module = SoftRoISelection(16).eval()
    randomise_biases(module)
    x, boxes, rois = soft_roi_inputs()
    with torch.no_grad():
        got = module(x, boxes, [(64, 96), (60, 90)])
        expected = reference_soft_roi_extractor(module, list(x.values()), rois)
    assert got.shape == (4, 16, 7, 7)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("level", range(4))
def test_soft_roi_selection_with_one_hot_attention_is_roi_align_on_that_level(level):
    module = SoftRoISelection(16).eval()
    last = module.spatial_attention_conv[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-1e4)
        last.bias[level] = 1e4
    x, boxes, rois = soft_roi_inputs()
    with torch.no_grad():
        got = module(x, boxes, [(64, 96), (64, 96)])
    expected = roi_align(x[str(level)], rois, (7, 7), 1.0 / 2 ** (level + 2), sampling_ratio=2, aligned=False)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------- Every neck


CONTRACT_CASES = [
    pytest.param(neck, sizes, id=f"{neck}-{sizes_id}")
    for neck in sorted(NECKS)
    for sizes_id, sizes in [("multiple_of_64", sizes_for_image(128, 192)), ("ceil", ODD_SIZES), ("floor", FLOOR_SIZES)]
]


@pytest.mark.parametrize(("neck_name", "sizes"), CONTRACT_CASES)
def test_neck_contract(neck_name, sizes):
    torch.manual_seed(0)
    neck = NECKS[neck_name](CHANNELS, 16).train()
    out = neck(features(sizes))
    assert list(out) == ["0", "1", "2", "3", "pool"]
    assert neck.out_channels == 16
    assert all(t.shape[:2] == (2, 16) for t in out.values())
    h5, w5 = sizes[-1]
    assert [tuple(t.shape[-2:]) for t in out.values()] == [*sizes, ((h5 + 1) // 2, (w5 + 1) // 2)]
    if sizes == sizes_for_image(128, 192):  # strides 4..64 exactly
        assert [(128 // t.shape[-2], 192 // t.shape[-1]) for t in out.values()] == [(s, s) for s in (4, 8, 16, 32, 64)]
    sum(t.sum() for t in out.values()).backward()
    for name, p in neck.named_parameters():
        assert p.grad is not None, f"{neck_name}: no gradient reaches {name}"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{neck_name}: zero gradient at {name}"


@pytest.mark.parametrize("neck_name", sorted(NECKS))
def test_neck_rejects_wrong_input_channels(neck_name):
    neck = NECKS[neck_name](CHANNELS, 16)
    with pytest.raises(ValueError, match=re.escape(str(CHANNELS))):
        neck(features(ODD_SIZES, channels=[8, 16, 24, 32]))
