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


@dataclass(frozen=True)
class BackboneSpec:
    """How a backbone short name maps onto timm.

    Attributes:
        timm_name: Architecture name passed to ``timm.create_model``.
        out_indices: Feature indices giving the stride-4/8/16/32 maps (C2-C5).
        output_norm: Whether each output level gets its own LayerNorm, as detection ConvNeXt does.
    """

    timm_name: str
    out_indices: tuple[int, ...]
    output_norm: bool


# One table maps the user's short names onto timm (STYLE rule 1).
BACKBONES: dict[str, BackboneSpec] = {
    "r50": BackboneSpec("resnet50", (1, 2, 3, 4), output_norm=False),
    "r101": BackboneSpec("resnet101", (1, 2, 3, 4), output_norm=False),
    "convnext_t": BackboneSpec("convnext_tiny", (0, 1, 2, 3), output_norm=True),
    "convnext_s": BackboneSpec("convnext_small", (0, 1, 2, 3), output_norm=True),
    "convnext_b": BackboneSpec("convnext_base", (0, 1, 2, 3), output_norm=True),
}

NECK_TITLES: dict[str, str] = {
    "fpn": "FPN (Lin et al. 2017), torchvision arithmetic",
    "panet": "PANet bottom-up path augmentation (Liu et al. 2018), mmdetection PAFPN order",
    "bifpn": "BiFPN (Tan et al. 2020), effdet graph with fast normalised fusion",
    "augfpn": "AugFPN (Guo et al. 2020): residual feature augmentation + soft RoI selection",
}


def _choices(literal: Any) -> tuple[str, ...]:
    return tuple(get_args(literal))


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and inference settings of one zoo detector.

    Fields not named by the model name can be overridden through ``create_model(name, **overrides)``.

    Attributes:
        name: Registered model name, ``{neck}_{backbone}_{dataset}``.
        backbone: Backbone short name (see ``BACKBONES``).
        neck: Feature-pyramid neck.
        dataset: Label space the model is defined for.
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
    num_classes: int = len(COCO_CATEGORIES)
    categories: tuple[str, ...] = field(default=COCO_CATEGORIES, repr=False)
    neck_channels: int = 256
    bifpn_repeats: int = 3
    bifpn_fusion: FusionMethod = "fast_normalized"
    consistent_supervision_weight: float = 0.25
    pretrained_backbone: bool = False
    trainable_backbone_layers: int | None = None
    frozen_bn_eps: float = 1e-5
    min_size: int = 800
    max_size: int = 1333
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 100

    def __post_init__(self) -> None:
        for attr, literal in (
            ("backbone", BackboneName),
            ("neck", NeckName),
            ("dataset", DatasetName),
            ("bifpn_fusion", FusionMethod),
        ):
            if getattr(self, attr) not in _choices(literal):
                raise ValueError(f"{attr}={getattr(self, attr)!r} is not valid; choose from {_choices(literal)}.")
        if not isinstance(self.num_classes, int) or isinstance(self.num_classes, bool) or self.num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1 (background included), got {self.num_classes!r}.")
        if len(self.categories) != self.num_classes:
            raise ValueError(
                f"categories has {len(self.categories)} names but num_classes is {self.num_classes}; "
                "give one name per class slot, background first."
            )
        for attr in ("neck_channels", "bifpn_repeats", "min_size", "max_size", "box_detections_per_img"):
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
        identity = {"name", "backbone", "neck", "dataset"}
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
