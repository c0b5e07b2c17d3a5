"""mmdetection Faster / Mask R-CNN checkpoints (ResNet or mmpretrain ConvNeXt, FPN or PAFPN) -> zoo models.

Sources followed (mmdetection 3.3.0 and mmpretrain 1.2.0 as installed; their 2.x checkpoints have the same names):

* backbone: ``mmdet/models/backbones/resnet.py`` names its layers as torchvision does (``conv1``, ``bn1``,
  ``layer{1-4}.{i}.{conv,bn}{1-3}``, ``downsample.{0,1}``), which timm's ResNet shares. mmpretrain's ``ConvNeXt``
  (``mmpretrain/models/backbones/convnext.py``) has ``downsample_layers.{0-3}`` (stem conv + LN, then LN + 2x2
  conv), ``stages.{i}.{j}.{depthwise_conv, norm, pointwise_conv1, pointwise_conv2, gamma}`` and one output norm
  ``norm{i}`` per level (``gap_before_final_norm=False``), mapped onto timm's ``features_only`` ConvNeXt;
* neck: ``mmdet/models/necks/fpn.py`` / ``pafpn.py`` wrap each conv in a ``ConvModule`` (``.conv``);
* RPN: ``mmdet/models/dense_heads/rpn_head.py`` ``rpn_conv``, ``rpn_cls`` (sigmoid, one logit per anchor),
  ``rpn_reg``; anchors in the same order as torchvision's, so these map one to one;
* box head: ``mmdet/models/roi_heads/bbox_heads/convfc_bbox_head.py`` ``Shared2FCBBoxHead`` (``shared_fcs.{0,1}``),
  ``fc_cls`` with 81 outputs, **background last** (``bbox_head.py``, "FG labels to [0, num_class-1] and BG label as
  num_class"), and class-specific ``fc_reg`` with 4 x 80 outputs.

The 81 scores become torchvision's 91 COCO slots: row ``i`` goes to COCO category id ``COCO_CATEGORY_IDS[i]``
(mmdetection orders COCO classes by ascending id), the background row to slot 0, and the ten unused slots get
weight 0 and bias ``UNUSED_SLOT_LOGIT``, whose softmax term is exactly 0 in float32, so softmax over 91 equals
mmdetection's over 81.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from fpn_zoo.config import model_name
from fpn_zoo.converters.layout import (
    CONVNEXT_BY_DEPTHS_WIDTH,
    RESNET_BY_STAGE3_BLOCKS,
    Conversion,
    LayoutError,
    Recognised,
    count_blocks,
    describe_keys,
    rename,
    rules,
)
from fpn_zoo.labels import COCO_CATEGORIES, COCO_CATEGORY_IDS

# mmdetection runs these checkpoints with settings that differ from torchvision's (conversions.md section 2):
# mmcv RoIAlign(aligned=True, sampling_ratio=0) in SingleRoIExtractor; AnchorGenerator with exact base anchors and
# fixed strides 4-64; DeltaXYWHBBoxCoder clamping dw/dh on both sides; RPN `min_bbox_size=0` (sides > 0 kept);
# no small-box filter in the box head; ResNet BatchNorm eps 1e-5 (mmcv's build_norm_layer default).
INFERENCE_OPTIONS: dict[str, Any] = {
    "roi_align_aligned": True,
    "roi_align_sampling_ratio": 0,
    "round_anchors": False,
    "anchor_strides": "fixed",
    "box_delta_clamp": "both",
    "rpn_min_box_size": 0.0,
    "box_min_size": None,
    "frozen_bn_eps": 1e-5,
}

# exp(-1e4 - max logit) underflows to exactly 0 in float32 and bfloat16 unless every real logit is below about
# -9,900; a finite value (not -inf) keeps fine-tuning with weight decay free of inf - inf.
UNUSED_SLOT_LOGIT = -1.0e4
_MMDET_CLASSES = len(COCO_CATEGORY_IDS)  # 80 COCO classes, then the background

_BACKBONE_RESNET = rules((r"^backbone\.", "backbone.body.model."))
_BACKBONE_CONVNEXT = rules(
    # mmpretrain ConvNeXt.__init__: downsample_layers[0] = Sequential(Conv2d 4x4 s4, LayerNorm2d) (the stem),
    # downsample_layers[k] = Sequential(LayerNorm2d, Conv2d 2x2 s2); timm: stem.{0,1}, stages.{k}.downsample.{0,1}.
    (r"^backbone\.downsample_layers\.0\.(\d)\.", r"backbone.body.model.stem_\1."),
    (r"^backbone\.downsample_layers\.([1-3])\.(\d)\.", r"backbone.body.model.stages_\1.downsample.\2."),
    (r"^backbone\.stages\.(\d)\.(\d+)\.depthwise_conv\.", r"backbone.body.model.stages_\1.blocks.\2.conv_dw."),
    (r"^backbone\.stages\.(\d)\.(\d+)\.pointwise_conv1\.", r"backbone.body.model.stages_\1.blocks.\2.mlp.fc1."),
    (r"^backbone\.stages\.(\d)\.(\d+)\.pointwise_conv2\.", r"backbone.body.model.stages_\1.blocks.\2.mlp.fc2."),
    (r"^backbone\.stages\.(\d)\.(\d+)\.(norm\.|gamma$)", r"backbone.body.model.stages_\1.blocks.\2.\3"),
    (r"^backbone\.norm(\d)\.", r"backbone.body.norms.\1."),
)
_NECK_AND_HEADS = rules(
    (r"^neck\.(lateral_convs|fpn_convs|downsample_convs|pafpn_convs)\.(\d+)\.conv\.", r"backbone.neck.\1.\2."),
    (r"^rpn_head\.rpn_conv\.", "rpn.head.conv.0.0."),
    (r"^rpn_head\.rpn_cls\.", "rpn.head.cls_logits."),
    (r"^rpn_head\.rpn_reg\.", "rpn.head.bbox_pred."),
    (r"^roi_head\.bbox_head\.shared_fcs\.0\.", "roi_heads.box_head.fc6."),
    (r"^roi_head\.bbox_head\.shared_fcs\.1\.", "roi_heads.box_head.fc7."),
)
_CLASS_HEAD = ("roi_head.bbox_head.fc_cls.weight", "roi_head.bbox_head.fc_cls.bias")
_REG_HEAD = ("roi_head.bbox_head.fc_reg.weight", "roi_head.bbox_head.fc_reg.bias")
MASK_PREFIXES = ("roi_head.mask_head.", "roi_head.mask_roi_extractor.")
# FPN or PAFPN on a ResNet-50/101 or ConvNeXt-T/S/B.
MODELS: tuple[str, ...] = tuple(
    model_name(neck, backbone, "coco")
    for neck in ("fpn", "panet")
    for backbone in (*RESNET_BY_STAGE3_BLOCKS.values(), *CONVNEXT_BY_DEPTHS_WIDTH.values())
)


def _backbone(keys: list[str], shapes: Mapping[str, tuple[int, ...]]) -> tuple[str, str]:
    """The zoo backbone short name and its description."""
    if "backbone.conv1.weight" in shapes:
        blocks = count_blocks(keys, "backbone.layer3")
        if blocks not in RESNET_BY_STAGE3_BLOCKS:
            raise LayoutError(
                f"a ResNet with {blocks} blocks in stage 3; the zoo has ResNet-50 (6) and ResNet-101 (23)"
            )
        if shapes["backbone.conv1.weight"][0] != 64 or "backbone.layer1.0.conv3.weight" not in shapes:
            raise LayoutError("a ResNet that is not a bottleneck ResNet with a 64-channel stem (ResNet-50/101)")
        name = RESNET_BY_STAGE3_BLOCKS[blocks]
        return name, f"ResNet-{name[1:]}"
    if "backbone.stages.0.0.dwconv.weight" in shapes:
        raise LayoutError(
            "a ConvNeXt with the official ConvNeXt names (dwconv, pwconv1/2): convert with --from convnext"
        )
    if "backbone.downsample_layers.0.0.weight" in shapes:
        depths = tuple(count_blocks(keys, f"backbone.stages.{i}") for i in range(4))
        width = shapes["backbone.downsample_layers.0.0.weight"][0]
        name = CONVNEXT_BY_DEPTHS_WIDTH.get((depths, width))
        if name is None:
            raise LayoutError(f"a ConvNeXt with blocks {depths} and stem width {width}, which is not ConvNeXt-T/S/B")
        if not all(f"backbone.norm{i}.weight" in shapes for i in range(4)):
            raise LayoutError("a ConvNeXt without the per-level output norms norm0-norm3 of its detection setup")
        return name, f"ConvNeXt-{name[-1].upper()} (mmpretrain names)"
    raise LayoutError(f"no ResNet or mmpretrain ConvNeXt backbone (found {describe_keys(keys)})")


def recognise(state_dict: Mapping[str, Tensor]) -> Recognised:
    """The zoo model an mmdetection Faster / Mask R-CNN state dict fits.

    Raises:
        LayoutError: Any part the zoo has no equivalent for, with what was recognised so far.

    Examples:
        >>> recognise(example_state_dict()).model
        'fpn_r50_coco'
    """
    keys = list(state_dict)
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    found: list[str] = []
    try:
        backbone, backbone_text = _backbone(keys, shapes)
        found.append(backbone_text)
        if count_blocks(keys, "neck.lateral_convs") != 4 or count_blocks(keys, "neck.fpn_convs") != 4:
            raise LayoutError(
                f"a neck with {count_blocks(keys, 'neck.lateral_convs')} laterals and "
                f"{count_blocks(keys, 'neck.fpn_convs')} output convs; the zoo's FPN/PAFPN has 4 of each (P6: max-pool)"
            )
        if any(k.startswith("neck.") and ".conv." not in k for k in keys):
            raise LayoutError(
                "a neck with normalisation layers (norm_cfg); the zoo converts mmdetection's plain FPN/PAFPN"
            )
        neck = "panet" if "neck.downsample_convs.0.conv.weight" in shapes else "fpn"
        found.append("PAFPN" if neck == "panet" else "FPN")
        if "rpn_head.rpn_conv.weight" not in shapes:
            raise LayoutError("no RPN head (rpn_head.rpn_conv); only two-stage Faster/Mask R-CNN checkpoints convert")
        num_anchors = shapes["rpn_head.rpn_cls.weight"][0]
        if num_anchors != 3 or shapes["rpn_head.rpn_reg.weight"][0] != 12:
            raise LayoutError(f"an RPN with {num_anchors} classification outputs; the zoo's has 3 (sigmoid, 3 anchors)")
        found.append("RPN")
        if "roi_head.bbox_head.shared_fcs.1.weight" not in shapes or any(
            k.startswith("roi_head.bbox_head.shared_convs") for k in keys
        ):
            raise LayoutError("a box head other than Shared2FCBBoxHead (two shared FC layers)")
        cls_rows, reg_rows = shapes[_CLASS_HEAD[0]][0], shapes[_REG_HEAD[0]][0]
        if (cls_rows, reg_rows) != (_MMDET_CLASSES + 1, 4 * _MMDET_CLASSES):
            raise LayoutError(
                f"a box head with {cls_rows} scores and {reg_rows} box outputs; converting needs COCO's 80 classes + "
                "background (81) and class-specific boxes (320)"
            )
        found.append("Shared2FC box head, 80 COCO classes")
    except LayoutError as err:
        done = f" Recognised so far: {', '.join(found)}." if found else ""
        raise LayoutError(f"Not an mmdetection layout the zoo converts: {err}.{done}") from None
    dropped = tuple(p for p in MASK_PREFIXES if any(k.startswith(p) for k in keys))
    detector = "Mask R-CNN (mask branch dropped)" if dropped else "Faster R-CNN"
    description = f"mmdetection {detector}, {', '.join(found)}"
    return Recognised(model_name(neck, backbone, "coco"), description, dropped)


def _remap_classes(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """mmdetection's 81 class rows (background last) and 320 box rows onto torchvision's 91 COCO slots."""
    cls_w, cls_b = (state_dict[k] for k in _CLASS_HEAD)
    reg_w, reg_b = (state_dict[k] for k in _REG_HEAD)
    slots = len(COCO_CATEGORIES)
    ids = torch.tensor(COCO_CATEGORY_IDS)
    new_cls_w = cls_w.new_zeros((slots, cls_w.shape[1]))
    new_cls_b = cls_b.new_full((slots,), UNUSED_SLOT_LOGIT)
    new_cls_w[ids], new_cls_b[ids] = cls_w[:_MMDET_CLASSES], cls_b[:_MMDET_CLASSES]
    new_cls_w[0], new_cls_b[0] = cls_w[_MMDET_CLASSES], cls_b[_MMDET_CLASSES]  # background: last -> slot 0
    # Box rows: class i's 4 deltas move with its scores; the background and unused slots predict nothing (zeros).
    rows = (4 * ids[:, None] + torch.arange(4)).reshape(-1)
    new_reg_w = reg_w.new_zeros((4 * slots, reg_w.shape[1]))
    new_reg_b = reg_b.new_zeros((4 * slots,))
    new_reg_w[rows], new_reg_b[rows] = reg_w, reg_b
    return {
        "roi_heads.box_predictor.cls_score.weight": new_cls_w,
        "roi_heads.box_predictor.cls_score.bias": new_cls_b,
        "roi_heads.box_predictor.bbox_pred.weight": new_reg_w,
        "roi_heads.box_predictor.bbox_pred.bias": new_reg_b,
    }


def convert(state_dict: Mapping[str, Tensor]) -> Conversion:
    """Map an mmdetection Faster / Mask R-CNN state dict onto the zoo model `recognise` names.

    Every tensor is accounted for: renamed, remapped (the class-specific predictor), or dropped by name (mask
    branch, BatchNorm step counters). A tensor no rule knows is a `LayoutError` naming it.

    Examples:
        >>> conversion = convert(example_state_dict())
        >>> conversion.state_dict["roi_heads.box_predictor.cls_score.weight"].shape
        torch.Size([91, 1024])
    """
    recognised = recognise(state_dict)
    dropped = sorted(k for k in state_dict if k.startswith(recognised.dropped_prefixes))
    # BatchNorm step counters are not weights (the zoo's frozen BatchNorm has none); the class head is remapped below.
    skipped = {*dropped, *_CLASS_HEAD, *_REG_HEAD}
    kept = {k: v for k, v in state_dict.items() if k not in skipped and not k.endswith("num_batches_tracked")}
    backbone_rules = _BACKBONE_RESNET if "backbone.conv1.weight" in state_dict else _BACKBONE_CONVNEXT
    out, unmatched = rename(kept, (*_NECK_AND_HEADS, *backbone_rules))
    if unmatched:
        raise LayoutError(
            f"{len(unmatched)} tensor(s) of the mmdetection checkpoint have no place in {recognised.model}: "
            f"{', '.join(unmatched[:8])}"
        )
    out.update(_remap_classes(state_dict))
    return Conversion(out, options(recognised.model), tuple(dropped), recognised)


def options(model: str, sha256: str | None = None) -> dict[str, Any]:
    """The model options mmdetection weights run with (the same for every model; see ``INFERENCE_OPTIONS``)."""
    return dict(INFERENCE_OPTIONS)


def example_state_dict() -> dict[str, Tensor]:
    """A tiny stand-in with mmdetection's Faster R-CNN R-50 FPN names and the shapes recognition reads (doctests)."""
    z = torch.zeros
    state: dict[str, Tensor] = {"backbone.conv1.weight": z(64, 3, 7, 7), "backbone.layer1.0.conv3.weight": z(1)}
    state.update({f"backbone.layer3.{i}.conv1.weight": z(1) for i in range(6)})
    for i in range(4):
        state[f"neck.lateral_convs.{i}.conv.weight"] = z(1)
        state[f"neck.fpn_convs.{i}.conv.weight"] = z(1)
    state.update({
        "rpn_head.rpn_conv.weight": z(1), "rpn_head.rpn_cls.weight": z(3), "rpn_head.rpn_reg.weight": z(12),
        "roi_head.bbox_head.shared_fcs.0.weight": z(1), "roi_head.bbox_head.shared_fcs.1.weight": z(1),
        "roi_head.bbox_head.fc_cls.weight": z(81, 1024), "roi_head.bbox_head.fc_cls.bias": z(81),
        "roi_head.bbox_head.fc_reg.weight": z(320, 1024), "roi_head.bbox_head.fc_reg.bias": z(320),
    })  # fmt: skip
    return state
