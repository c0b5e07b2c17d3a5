"""Model configuration: what a zoo model is made of, as frozen, validated data.

A [`ModelConfig`][fpn_zoo.config.ModelConfig] fully describes the architecture of one detector. The registry holds one
per model name; ``create_model(name, **overrides)`` replaces fields of it; an exported checkpoint stores it in
``config.json`` so the same architecture can be rebuilt anywhere.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from fpn_zoo.labels import COCO_CATEGORIES

BackboneName = Literal["r50", "r101", "convnext_t", "convnext_s", "convnext_b"]
NeckName = Literal["fpn", "panet", "bifpn", "augfpn"]
DatasetName = Literal["coco"]
FusionMethod = Literal["sum", "fast_normalized", "softmax"]
BackboneNorm = Literal["auto", "frozen_batch_norm", "batch_norm"]
NeckNorm = Literal["none", "batch_norm"]
BoxHead = Literal["2fc", "4conv1fc"]
AnchorStrides = Literal["from_image", "fixed"]
DeltaClamp = Literal["upper", "both"]


@dataclass(frozen=True)
class BackboneSpec:
    """How a backbone short name maps onto timm.

    Attributes:
        timm_name: Architecture name passed to ``timm.create_model``.
        out_indices: Feature indices giving the stride-4/8/16/32 maps (C2-C5).
        output_norm: Whether each output level gets its own LayerNorm, as detection ConvNeXt does.
        family: The architecture family, for choices that depend on how it computes (the fast path's layout).
    """

    timm_name: str
    out_indices: tuple[int, ...]
    output_norm: bool
    family: Literal["resnet", "convnext"]


# One table maps the user's short names onto timm (STYLE rule 1).
BACKBONES: dict[str, BackboneSpec] = {
    "r50": BackboneSpec("resnet50", (1, 2, 3, 4), output_norm=False, family="resnet"),
    "r101": BackboneSpec("resnet101", (1, 2, 3, 4), output_norm=False, family="resnet"),
    "convnext_t": BackboneSpec("convnext_tiny", (0, 1, 2, 3), output_norm=True, family="convnext"),
    "convnext_s": BackboneSpec("convnext_small", (0, 1, 2, 3), output_norm=True, family="convnext"),
    "convnext_b": BackboneSpec("convnext_base", (0, 1, 2, 3), output_norm=True, family="convnext"),
}

NECK_TITLES: dict[str, str] = {
    "fpn": "FPN (Lin et al. 2017), torchvision arithmetic",
    "panet": "PANet bottom-up path augmentation (Liu et al. 2018), mmdetection PAFPN order",
    "bifpn": "BiFPN (Tan et al. 2020), effdet graph with fast normalised fusion",
    "augfpn": "AugFPN (Guo et al. 2020): residual feature augmentation + soft RoI selection",
}


@dataclass(frozen=True)
class Variant:
    """A named set of architecture options, registered as its own models: ``{neck}_{backbone}_{variant}_{dataset}``.

    Attributes:
        title: One line for tables and model cards.
        options: [`ModelConfig`][fpn_zoo.config.ModelConfig] fields the variant sets; every one stays an ordinary
            option, so ``create_model("panet_r101_coco", **VARIANTS["v2"].options)`` builds the same heads on any pair.
        pairs: ``(neck, backbone)`` pairs registered under the variant's name (the ones with weights to load).
    """

    title: str
    options: Mapping[str, Any]
    pairs: tuple[tuple[str, str], ...]


# torchvision's "v2" Faster R-CNN (fasterrcnn_resnet50_fpn_v2, Li et al. 2021, "Benchmarking detection transfer
# learning with vision transformers"): torchvision/models/detection/faster_rcnn.py, fasterrcnn_resnet50_fpn_v2.
VARIANTS: dict[str, Variant] = {
    "v2": Variant(
        title="torchvision v2 heads: BatchNorm FPN, 2-conv RPN head, 4conv+BN+1fc box head, BatchNorm backbone",
        options={"backbone_norm": "batch_norm", "neck_norm": "batch_norm", "rpn_conv_depth": 2, "box_head": "4conv1fc"},
        pairs=(("fpn", "r50"),),
    ),
}


# The options that make converted weights run as they were trained (RoIAlign, anchors, box coder, filters, BatchNorm).
INFERENCE_FIELDS: tuple[str, ...] = (
    "roi_align_aligned",
    "roi_align_sampling_ratio",
    "round_anchors",
    "anchor_strides",
    "box_delta_clamp",
    "rpn_min_box_size",
    "box_min_size",
    "frozen_bn_eps",
)


def model_name(neck: str, backbone: str, dataset: str, variant: str | None = None) -> str:
    """The naming rule of the zoo: ``{neck}_{backbone}_{dataset}``, or ``{neck}_{backbone}_{variant}_{dataset}``.

    Examples:
        >>> model_name("fpn", "r50", "coco"), model_name("fpn", "r50", "coco", "v2")
        ('fpn_r50_coco', 'fpn_r50_v2_coco')
    """
    return "_".join(part for part in (neck, backbone, variant, dataset) if part)


def _choices(literal: Any) -> tuple[str, ...]:
    return tuple(get_args(literal))


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and inference settings of one zoo detector.

    Fields not named by the model name can be overridden through ``create_model(name, **overrides)``. The defaults
    are torchvision's Faster R-CNN; the inference settings (``roi_align_*`` to ``box_min_size``) exist so that
    weights trained by another codebase run exactly as they were trained: a converted checkpoint records them in its
    ``config.json`` and loading it gives them back.

    Attributes:
        name: Registered model name, ``{neck}_{backbone}_{dataset}`` or ``{neck}_{backbone}_{variant}_{dataset}``.
        backbone: Backbone short name (see ``BACKBONES``).
        neck: Feature-pyramid neck.
        dataset: Label space the model is defined for.
        variant: Named architecture options (see ``VARIANTS``), part of the name; ``None`` for the plain zoo model.
        num_classes: Classifier slots including background (91 for COCO, label == COCO category id).
        categories: One name per class slot; ``categories[0]`` is the background.
        neck_channels: Channel count of every pyramid level (the torchvision ``out_channels`` contract).
        bifpn_repeats: Number of stacked BiFPN cells (BiFPN only).
        bifpn_fusion: Edge-weighting of BiFPN nodes; the paper's default is fast normalised fusion.
        consistent_supervision_weight: AugFPN only: weight ``alpha`` of each auxiliary loss term of consistent
            supervision (cross-entropy and box regression on each of the 4 raw laterals; 0.25 as in the reference,
            so 1.0 in all). Training-only; 0 removes the auxiliary head (and its tensors) from the model.
        pretrained_backbone: Load timm's ImageNet weights into the backbone when building from scratch.
        trainable_backbone_layers: Trainable backbone stages counted from the top, 0-5 (torchvision's convention);
            ``None`` means 3 when any pretrained weights are used and 5 otherwise.
        frozen_bn_eps: Epsilon of the frozen BatchNorm used with pretrained weights (torchvision's COCO_V1
            checkpoints were trained with 0.0).
        backbone_norm: BatchNorm of the backbone. ``"auto"`` is torchvision's v1 rule: frozen BatchNorm whenever
            pretrained weights are involved, ordinary BatchNorm from scratch. ``"batch_norm"`` always keeps ordinary
            BatchNorm (torchvision's v2 models); ``"frozen_batch_norm"`` always freezes it.
        neck_norm: ``"batch_norm"`` puts a BatchNorm after every FPN-style convolution of the neck (laterals, outputs,
            PANet's bottom-up convs), which then have no bias, as torchvision's v2 FPN. BiFPN always normalises.
        rpn_conv_depth: 3x3 conv + ReLU layers of the RPN head before its two predictors (torchvision v2: 2).
        box_head: ``"2fc"``: flatten + two 1024-d fully connected layers (torchvision v1, mmdetection's
            ``Shared2FCBBoxHead``). ``"4conv1fc"``: four 3x3 conv + BatchNorm + ReLU, then one 1024-d fully connected
            layer (torchvision v2's ``FastRCNNConvFCHead``).
        roi_align_aligned: RoIAlign with the half-pixel offset (``aligned=True``, mmdetection and detectron2) or
            without (torchvision's ``MultiScaleRoIAlign``).
        roi_align_sampling_ratio: RoIAlign sampling points per bin side; 0 = adaptive (``ceil(roi size / 7)``,
            mmdetection and detectron2), torchvision uses 2.
        round_anchors: Round the base anchors to whole pixels (torchvision) or keep them exact (mmdetection,
            detectron2: a 32 px anchor at ratio 0.5 spans +-22.63 x +-11.31, not +-23 x +-11).
        anchor_strides: ``"from_image"``: each level's anchor stride is the padded image size divided by the level's
            grid size (torchvision; P6 of an 800 px side gets 61, not 64). ``"fixed"``: 4, 8, 16, 32, 64
            (mmdetection, detectron2).
        box_delta_clamp: Clamp of the predicted log-size deltas at ``log(1000 / 16)``: from above only
            (torchvision) or on both sides (mmdetection's ``DeltaXYWHBBoxCoder``).
        rpn_min_box_size: Proposals with a side shorter than this are dropped (torchvision: 1e-3); 0 drops only
            empty proposals (a side of 0), as mmdetection's and detectron2's ``min_bbox_size=0`` do.
        box_min_size: Detections with a side shorter than this are dropped (torchvision: 1e-2); 0 drops only empty
            ones, ``None`` keeps every detection (mmdetection has no such filter).
        min_size: Shorter image side after resizing.
        max_size: Upper bound of the longer image side after resizing.
        box_score_thresh: Minimum score of a returned detection.
        box_nms_thresh: IoU threshold of the per-class NMS.
        box_detections_per_img: Maximum number of returned detections per image.
    """

    name: str
    backbone: BackboneName
    neck: NeckName
    dataset: DatasetName = "coco"
    variant: str | None = None
    num_classes: int = len(COCO_CATEGORIES)
    categories: tuple[str, ...] = field(default=COCO_CATEGORIES, repr=False)
    neck_channels: int = 256
    bifpn_repeats: int = 3
    bifpn_fusion: FusionMethod = "fast_normalized"
    consistent_supervision_weight: float = 0.25
    pretrained_backbone: bool = False
    trainable_backbone_layers: int | None = None
    frozen_bn_eps: float = 1e-5
    backbone_norm: BackboneNorm = "auto"
    neck_norm: NeckNorm = "none"
    rpn_conv_depth: int = 1
    box_head: BoxHead = "2fc"
    min_size: int = 800
    max_size: int = 1333
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 100
    roi_align_aligned: bool = False
    roi_align_sampling_ratio: int = 2
    round_anchors: bool = True
    anchor_strides: AnchorStrides = "from_image"
    box_delta_clamp: DeltaClamp = "upper"
    rpn_min_box_size: float = 1e-3
    box_min_size: float | None = 1e-2

    def __post_init__(self) -> None:
        for attr, literal in (
            ("backbone", BackboneName),
            ("neck", NeckName),
            ("dataset", DatasetName),
            ("bifpn_fusion", FusionMethod),
            ("backbone_norm", BackboneNorm),
            ("neck_norm", NeckNorm),
            ("box_head", BoxHead),
            ("anchor_strides", AnchorStrides),
            ("box_delta_clamp", DeltaClamp),
        ):
            if getattr(self, attr) not in _choices(literal):
                raise ValueError(f"{attr}={getattr(self, attr)!r} is not valid; choose from {_choices(literal)}.")
        if self.neck == "bifpn" and self.neck_norm != "none":
            raise ValueError(
                f"neck_norm={self.neck_norm!r} applies to the FPN-style necks (fpn, panet, augfpn); BiFPN already "
                "follows every fusion node with BatchNorm. Leave neck_norm='none' for bifpn models."
            )
        if self.variant is not None and self.variant not in VARIANTS:
            raise ValueError(f"variant={self.variant!r} is not valid; choose from {sorted(VARIANTS)} or None.")
        if not isinstance(self.num_classes, int) or isinstance(self.num_classes, bool) or self.num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1 (background included), got {self.num_classes!r}.")
        if len(self.categories) != self.num_classes:
            raise ValueError(
                f"categories has {len(self.categories)} names but num_classes is {self.num_classes}; "
                "give one name per class slot, background first."
            )
        for attr in (
            "neck_channels",
            "bifpn_repeats",
            "min_size",
            "max_size",
            "box_detections_per_img",
            "rpn_conv_depth",
        ):
            value = getattr(self, attr)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{attr} must be a positive integer, got {value!r}.")
        if self.min_size > self.max_size:
            raise ValueError(f"min_size ({self.min_size}) must not exceed max_size ({self.max_size}).")
        tbl = self.trainable_backbone_layers
        if tbl is not None and (not isinstance(tbl, int) or isinstance(tbl, bool) or not 0 <= tbl <= 5):
            raise ValueError(f"trainable_backbone_layers must be an integer in [0, 5] or None, got {tbl!r}.")
        for attr in ("box_score_thresh", "box_nms_thresh"):
            if not 0.0 <= float(getattr(self, attr)) <= 1.0:
                raise ValueError(f"{attr} must lie in [0, 1], got {getattr(self, attr)!r}.")
        if not self.frozen_bn_eps >= 0:  # also refuses NaN
            raise ValueError(f"frozen_bn_eps must be >= 0, got {self.frozen_bn_eps!r}.")
        for attr in ("roi_align_aligned", "round_anchors"):
            if not isinstance(getattr(self, attr), bool):
                raise ValueError(f"{attr} must be True or False, got {getattr(self, attr)!r}.")
        ratio = self.roi_align_sampling_ratio
        if not isinstance(ratio, int) or isinstance(ratio, bool) or ratio < 0:
            raise ValueError(f"roi_align_sampling_ratio must be an integer >= 0 (0 = adaptive), got {ratio!r}.")
        for attr in ("rpn_min_box_size", "box_min_size"):
            value = getattr(self, attr)
            if value is None and attr == "box_min_size":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                allowed = "a number >= 0" + (" or None (no filter)" if attr == "box_min_size" else "")
                raise ValueError(f"{attr} must be {allowed}, got {value!r}.")
        csw = self.consistent_supervision_weight
        if isinstance(csw, bool) or not isinstance(csw, (int, float)) or not 0 <= csw < math.inf:
            raise ValueError(
                f"consistent_supervision_weight must be a finite number >= 0 (0 switches AugFPN's consistent "
                f"supervision off), got {csw!r}."
            )

    @property
    def backbone_spec(self) -> BackboneSpec:
        """The timm mapping of `backbone`."""
        return BACKBONES[self.backbone]

    def replace(self, **changes: Any) -> ModelConfig:
        """Return a copy with ``changes`` applied, refusing unknown or identity fields.

        Examples:
            >>> from fpn_zoo.registry import get_model_config
            >>> get_model_config("bifpn_r50_coco").replace(bifpn_repeats=2).bifpn_repeats
            2
        """
        identity = {"name", "backbone", "neck", "dataset", "variant"}
        valid = sorted(f.name for f in dataclasses.fields(self) if f.name not in identity)
        for key in changes:
            if key in identity:
                raise TypeError(f"{key!r} is part of the model name and cannot be overridden; pick another model name.")
            if key not in valid:
                raise TypeError(f"Unknown option {key!r} for {self.name}. Valid options: {', '.join(valid)}.")
        if "num_classes" in changes and "categories" not in changes:
            n = changes["num_classes"]
            if isinstance(n, int) and not isinstance(n, bool) and n >= 1 and n != self.num_classes:
                changes["categories"] = ("__background__", *(f"class_{i}" for i in range(1, n)))
        if "categories" in changes:
            changes["categories"] = tuple(changes["categories"])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (the ``config.json`` payload)."""
        data = dataclasses.asdict(self)
        data["categories"] = list(self.categories)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; unknown keys are an error so nothing is silently ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown model config keys {unknown}; known keys: {sorted(known)}.")
        values = dict(data)
        if "categories" in values:
            values["categories"] = tuple(values["categories"])
        return cls(**values)
