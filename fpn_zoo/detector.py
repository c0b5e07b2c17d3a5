"""The zoo detector: timm backbone + neck inside torchvision's Faster R-CNN (RPN + RoI heads).

Model code only: nothing here reads or writes files or talks to the Hub. Loading weights
([`create_model`][fpn_zoo.factory.create_model]), exporting and publishing sit above this module and call down to
it; the detector with ``from_pretrained`` / ``save_pretrained`` / ``push_to_hub`` is the subclass
[`fpn_zoo.ZooDetector`][fpn_zoo.weights.hub_mixin.ZooDetector] that those layers build.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, TypeVar, overload

import torch
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN

from fpn_zoo.backbones import TimmBackbone
from fpn_zoo.config import ModelConfig
from fpn_zoo.fast_path import FastPath, fast_forward, make_fast, refusal
from fpn_zoo.heads import SoftRoISelection
from fpn_zoo.heads.builder import finish_heads, head_parts
from fpn_zoo.heads.consistent_supervision import ConsistentSupervisionRoIHeads
from fpn_zoo.images import ImageError, check_model_input
from fpn_zoo.necks import AugFPN, Neck, build_neck
from fpn_zoo.necks.fusion import PyramidFeatures
from fpn_zoo.voice import offers, option

_DEFAULT_TRAINABLE_LAYERS = 3  # torchvision's default whenever pretrained weights are involved

D = TypeVar("D", bound="ZooDetector")


class BackboneWithNeck(nn.Module):
    """Backbone body + neck with torchvision's backbone contract: ``out_channels`` and an ordered dict of levels."""

    def __init__(self, body: TimmBackbone, neck: Neck) -> None:
        super().__init__()
        self.body = body
        self.neck = neck
        self.out_channels: int = neck.out_channels
        self.memory_format = torch.contiguous_format  # channels_last on the fast path (fpn_zoo.fast_path)

    @property
    def level_strides(self) -> tuple[int, ...]:
        """Strides of the pyramid levels P2-P6: the backbone's four, then P6 at twice the coarsest."""
        return (*self.body.strides, 2 * self.body.strides[-1])

    def forward(self, x: Tensor) -> PyramidFeatures:
        return self.neck(self.body(x.contiguous(memory_format=self.memory_format)))


class ZooDetector(FasterRCNN):
    """torchvision ``FasterRCNN`` built from a [`ModelConfig`][fpn_zoo.config.ModelConfig].

    Behaves exactly like torchvision's detectors: in eval mode ``model(images)`` takes a list of ``(3, H, W)`` float
    tensors in [0, 1] and returns one dict per image with ``boxes`` (x1, y1, x2, y2 in input pixels), ``scores`` and
    ``labels`` (COCO category ids for COCO models); in train mode ``model(images, targets)`` returns a dict of
    losses, to which AugFPN models add their consistent-supervision terms (``loss_aux_*``, see
    [`fpn_zoo.heads.consistent_supervision`][fpn_zoo.heads.consistent_supervision]). Inputs are checked first, so a
    uint8 or HWC tensor fails with a message instead of garbage detections.

    This class is the model alone. What [`fpn_zoo.create_model`][fpn_zoo.factory.create_model], the torch.hub
    entrypoints and the CLI return is its subclass [`fpn_zoo.ZooDetector`][fpn_zoo.weights.hub_mixin.ZooDetector],
    which adds ``from_pretrained``, ``save_pretrained`` and ``push_to_hub`` as on Hugging Face Hub models; every such
    model is also an instance of this class.

    Attributes:
        config: The architecture this model was built from (what ``config.json`` stores).
    """

    def __init__(self, config: ModelConfig, backbone: BackboneWithNeck) -> None:
        parts = head_parts(config, backbone.out_channels, backbone.level_strides)
        super().__init__(
            backbone,
            num_classes=config.num_classes,
            min_size=config.min_size,
            max_size=config.max_size,
            rpn_anchor_generator=parts.anchor_generator,
            rpn_head=parts.rpn_head,
            box_roi_pool=parts.box_roi_pool,
            box_head=parts.box_head,
            box_score_thresh=config.box_score_thresh,
            box_nms_thresh=config.box_nms_thresh,
            box_detections_per_img=config.box_detections_per_img,
        )
        self.rpn, self.roi_heads = finish_heads(self.rpn, self.roi_heads, config)
        if backbone.neck.soft_roi_selection:
            # torchvision's constructor only accepts MultiScaleRoIAlign here; the RoI heads call any pooler with the
            # same signature, so Soft RoI Selection goes in afterwards.
            self.roi_heads.box_roi_pool = SoftRoISelection(
                backbone.out_channels,
                sampling_ratio=config.roi_align_sampling_ratio,
                aligned=config.roi_align_aligned,
            )
        if isinstance(backbone.neck, AugFPN) and config.consistent_supervision_weight > 0:
            # Training-only auxiliary head on the raw laterals, built last so that the inference weights a seed gives
            # do not depend on it.
            self.roi_heads = ConsistentSupervisionRoIHeads.from_roi_heads(
                self.roi_heads, in_channels=backbone.out_channels, weight=config.consistent_supervision_weight
            )
        self.config = config
        self.fast_path: FastPath | None = None

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        check_model_input(images)
        self._check_resizable(images)
        if self.fast_path is None:
            return super().forward(images, targets)
        with fast_forward(self.fast_path, images[0].device):
            detections = super().forward(images, targets)
        if self.fast_path.bf16:  # the caller gets float32 boxes and scores, as from the plain model
            detections = [{k: v.float() if v.is_floating_point() else v for k, v in d.items()} for d in detections]
        return detections

    def make_fast(self, *, channels_last: bool | None = None, bf16: bool = False) -> ZooDetector:
        """Turn this model into its fast inference form in place (see [`fpn_zoo.fast_path`][fpn_zoo.fast_path]).

        Returns:
            The model itself, in eval mode; ``.train()`` and ``state_dict()`` then raise.
        """
        self.fast_path = make_fast(self, channels_last=channels_last, bf16=bf16)
        if self.fast_path.channels_last:
            self.backbone.memory_format = torch.channels_last
        return self

    def train(self, mode: bool = True) -> ZooDetector:
        if mode and getattr(self, "fast_path", None) is not None:
            raise refusal(self.config.name, "train()")
        return super().train(mode)

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        if self.fast_path is not None:
            raise refusal(self.config.name, "state_dict()")
        return super().state_dict(*args, **kwargs)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        if self.fast_path is not None:
            raise refusal(self.config.name, "load_state_dict()")
        return super().load_state_dict(*args, **kwargs)

    def _check_resizable(self, images: list[Tensor]) -> None:
        """Refuse images that torchvision's resize would shrink to zero pixels (extreme aspect ratios)."""
        min_size, max_size = min(self.transform.min_size), self.transform.max_size
        for i, image in enumerate(images):
            short, long = sorted(image.shape[-2:])
            scale = min(min_size / short, max_size / long)
            if math.floor(short * scale) < 1:
                raise ImageError(
                    f"image {i} of size {image.shape[-2]}x{image.shape[-1]} is too elongated: resized to fit "
                    f"{option('max_size', max_size)} its shorter side drops below one pixel. Images up to an aspect "
                    f"ratio of {max_size}:1 work; crop or pad it first."
                )


def _pretrained_starts() -> str:
    """The ways to start from trained weights, as the reader passes them."""
    if offers("init"):  # `fpn-zoo train`
        return "--init coco, --init backbone or --init PATH"
    return " or ".join(
        option(name, placeholder="...") if name == "weights" else option(name, True)
        for name in ("weights", "pretrained", "pretrained_backbone")
        if offers(name)
    )


def resolve_trainable_layers(config: ModelConfig, *, is_pretrained: bool) -> int:
    """torchvision's ``_validate_trainable_layers``: 3 by default with pretrained weights, 5 (all) without."""
    if is_pretrained:
        tbl = config.trainable_backbone_layers
        return _DEFAULT_TRAINABLE_LAYERS if tbl is None else tbl
    if config.trainable_backbone_layers not in (None, 5):
        warnings.warn(
            f"{option('trainable_backbone_layers', config.trainable_backbone_layers)} has no effect without pretrained "
            f"weights ({_pretrained_starts()}); training every layer (5), as torchvision does.",
            stacklevel=3,
        )
    return 5


@overload
def build_detector(
    config: ModelConfig, *, loads_weights: bool = ..., backbone_weights: str | os.PathLike[str] | None = ...
) -> ZooDetector: ...


@overload
def build_detector(
    config: ModelConfig,
    *,
    loads_weights: bool = ...,
    detector_cls: type[D],
    backbone_weights: str | os.PathLike[str] | None = ...,
) -> D: ...


def build_detector(
    config: ModelConfig,
    *,
    loads_weights: bool = False,
    detector_cls: type[ZooDetector] = ZooDetector,
    backbone_weights: str | os.PathLike[str] | None = None,
) -> ZooDetector:
    """Build the detector described by ``config``, randomly initialised (plus timm weights if requested).

    Args:
        config: Architecture.
        loads_weights: Whole-model weights will be loaded afterwards. As in torchvision, any pretrained weights
            (these, or ``config.pretrained_backbone``) mean frozen BatchNorm in the backbone (unless
            ``config.backbone_norm`` says otherwise) and only the top ``trainable_backbone_layers`` stages
            trainable; otherwise ordinary BatchNorm and everything trains.
            timm's ImageNet weights are not fetched when whole-model weights follow.
        detector_cls: The class to build: [`ZooDetector`][fpn_zoo.detector.ZooDetector] or a subclass. The
            factory passes [`fpn_zoo.ZooDetector`][fpn_zoo.weights.hub_mixin.ZooDetector], the subclass with the
            Hub methods, which lives above this module so that the model imports no I/O.
        backbone_weights: Local file of timm's ImageNet weights for ``config.pretrained_backbone`` (the factory
            fetches it); ``None`` lets timm download them.

    Returns:
        The model in training mode, on the current default device.

    Examples:
        >>> from fpn_zoo.registry import get_model_config
        >>> with torch.device("meta"):
        ...     model = build_detector(get_model_config("fpn_r50_coco"), loads_weights=True)
        >>> type(model).__name__, model.backbone.out_channels
        ('ZooDetector', 256)
    """
    is_pretrained = loads_weights or config.pretrained_backbone
    frozen_bn = {"auto": is_pretrained, "frozen_batch_norm": True, "batch_norm": False}[config.backbone_norm]
    body = TimmBackbone(
        config.backbone_spec,
        pretrained=config.pretrained_backbone and not loads_weights,
        weights_file=backbone_weights,
        frozen_bn=frozen_bn,
        frozen_bn_eps=config.frozen_bn_eps,
        trainable_layers=resolve_trainable_layers(config, is_pretrained=is_pretrained),
    )
    neck = build_neck(config, body.channels)
    return detector_cls(config, BackboneWithNeck(body, neck))
