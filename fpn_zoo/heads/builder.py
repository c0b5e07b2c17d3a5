"""The RPN and RoI heads of a zoo detector, built from its [`ModelConfig`][fpn_zoo.config.ModelConfig].

torchvision's ``FasterRCNN`` constructor wires the parts together; this module decides which parts: the anchor
generator, RPN head, RoI pooler and box head it is given (`head_parts`), then the RPN and RoI heads it made turned
into their filtered subclasses with the configured box coder (`finish_heads`). Defaults give exactly torchvision's
``fasterrcnn_resnet50_fpn`` heads; the v2 options give ``fasterrcnn_resnet50_fpn_v2``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from fpn_zoo.config import ModelConfig
from fpn_zoo.heads.anchors import ANCHOR_SIZES, ASPECT_RATIOS, PyramidAnchorGenerator
from fpn_zoo.heads.box_coder import make_box_coder
from fpn_zoo.heads.poolers import PyramidRoIAlign
from fpn_zoo.heads.small_boxes import FilteredRoIHeads, FilteredRPN

POOLED_LEVELS: tuple[str, ...] = ("0", "1", "2", "3")  # RoIs pool from P2-P5; P6 only feeds the RPN
POOL_SIZE = 7
REPRESENTATION_SIZE = 1024  # torchvision's and mmdetection's box-head width
_V2_BOX_CONVS = (256, 256, 256, 256)  # fasterrcnn_resnet50_fpn_v2: FastRCNNConvFCHead(..., [256] * 4, [1024], BN)


@dataclass(frozen=True)
class HeadParts:
    """What ``FasterRCNN.__init__`` is given instead of its defaults."""

    anchor_generator: PyramidAnchorGenerator
    rpn_head: RPNHead
    box_roi_pool: PyramidRoIAlign
    box_head: nn.Module


def head_parts(config: ModelConfig, channels: int, level_strides: tuple[int, ...]) -> HeadParts:
    """The anchor generator, RPN head, RoI pooler and box head ``config`` asks for.

    Args:
        config: Model options (anchors, RPN depth, RoIAlign, box head).
        channels: Channels of every pyramid level.
        level_strides: Strides of the pyramid levels, P2-P6 (used by ``anchor_strides="fixed"``).

    Examples:
        >>> from fpn_zoo import get_model_config
        >>> parts = head_parts(get_model_config("fpn_r50_v2_coco"), 256, (4, 8, 16, 32, 64))
        >>> len(parts.rpn_head.conv), type(parts.box_head).__name__
        (2, 'FastRCNNConvFCHead')
    """
    anchors = PyramidAnchorGenerator(
        ANCHOR_SIZES,
        (ASPECT_RATIOS,) * len(ANCHOR_SIZES),
        round_anchors=config.round_anchors,
        strides=level_strides if config.anchor_strides == "fixed" else None,
    )
    rpn_head = RPNHead(channels, anchors.num_anchors_per_location()[0], conv_depth=config.rpn_conv_depth)
    pool = PyramidRoIAlign(POOLED_LEVELS, POOL_SIZE, config.roi_align_sampling_ratio, aligned=config.roi_align_aligned)
    return HeadParts(anchors, rpn_head, pool, make_box_head(config.box_head, channels))


def make_box_head(kind: str, channels: int, pool_size: int = POOL_SIZE) -> nn.Module:
    """The box head ``kind`` (``"2fc"`` or ``"4conv1fc"``) on pooled ``channels x pool_size x pool_size`` RoI
    features, ending in a ``REPRESENTATION_SIZE``-wide feature.

    Examples:
        >>> make_box_head("2fc", 8).fc6.in_features
        392
    """
    if kind == "2fc":
        return TwoMLPHead(channels * pool_size**2, REPRESENTATION_SIZE)
    if kind == "4conv1fc":
        return FastRCNNConvFCHead(
            (channels, pool_size, pool_size), list(_V2_BOX_CONVS), [REPRESENTATION_SIZE], norm_layer=nn.BatchNorm2d
        )
    raise ValueError(f"Unknown box head {kind!r}; choose from '2fc', '4conv1fc'.")


def roi_heads_arguments(heads: RoIHeads) -> tuple:
    """The positional ``RoIHeads.__init__`` arguments that rebuild ``heads`` (its modules shared, not copied)."""
    return (
        heads.box_roi_pool,
        heads.box_head,
        heads.box_predictor,
        heads.proposal_matcher.high_threshold,
        heads.proposal_matcher.low_threshold,
        heads.fg_bg_sampler.batch_size_per_image,
        heads.fg_bg_sampler.positive_fraction,
        heads.box_coder.weights,
        heads.score_thresh,
        heads.nms_thresh,
        heads.detections_per_img,
    )


def finish_heads(
    rpn: RegionProposalNetwork, roi_heads: RoIHeads, config: ModelConfig
) -> tuple[FilteredRPN, FilteredRoIHeads]:
    """The RPN and RoI heads torchvision built, as their filtered subclasses with the configured box coders.

    Modules are shared, settings copied; only the small-box filters and the delta clamp can differ.
    """
    new_rpn = FilteredRPN(
        rpn.anchor_generator,
        rpn.head,
        rpn.proposal_matcher.high_threshold,
        rpn.proposal_matcher.low_threshold,
        rpn.fg_bg_sampler.batch_size_per_image,
        rpn.fg_bg_sampler.positive_fraction,
        rpn._pre_nms_top_n,
        rpn._post_nms_top_n,
        rpn.nms_thresh,
        score_thresh=rpn.score_thresh,
    )
    new_rpn.min_size = config.rpn_min_box_size
    new_rpn.box_coder = make_box_coder(rpn.box_coder.weights, config.box_delta_clamp)
    new_heads = FilteredRoIHeads(*roi_heads_arguments(roi_heads), box_min_size=config.box_min_size)
    new_heads.box_coder = make_box_coder(roi_heads.box_coder.weights, config.box_delta_clamp)
    return new_rpn, new_heads
