"""AugFPN's consistent supervision: an auxiliary box head on the raw pre-fusion laterals, used in training only.

During training every RoI the main head samples is also pooled from each raw lateral M2-M5 (the 1x1 projections of
C2-C5, before residual feature augmentation and the top-down sum) and classified and regressed by one auxiliary box
head, shared by the four levels and separate from the main head, against the main head's targets. Its losses, each
multiplied by ``weight`` (``alpha = 0.25`` in every reference config), join the detector's, which pushes the laterals
towards similar semantics before they are fused. At inference the auxiliary head does not run: outputs and cost are
those of the model without it.

Reference: Gus-Guo/AugFPN ``AuxAllLevelRoIExtractor`` + ``AuxiliarySharedFCBBoxHead`` (``loss_cls_level{i}`` and
``loss_reg_level{i}``, each times ``alpha``), switched on by ``train_cfg.rcnn.use_consistent_supervision``.

The losses are torchvision's ``fastrcnn_loss``, the main head's own: cross-entropy over the sampled RoIs, and smooth L1
on the positives' class-specific deltas with ``beta = 1/9``, summed and divided by the number of sampled RoIs. The
reference uses mmdetection's ``beta = 1.0``, but for its main head too: what it prescribes is the main head's loss
on the laterals, so the auxiliary head here follows this codebase's main head (torchvision's recipe) rather than
mixing two regression losses in one model. The box encoding is the same in both (torchvision's weights 10, 10, 5, 5
are mmdetection's ``target_stds`` 0.1, 0.1, 0.2, 0.2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.ops import roi_align

from fpn_zoo.heads.builder import REPRESENTATION_SIZE, make_box_head, roi_heads_arguments
from fpn_zoo.heads.small_boxes import FilteredRoIHeads

# Raw lateral i comes from C(i + 2): its losses are named after the pyramid level of the same stride (p2-p5).
_FIRST_LEVEL = 2
_FLOAT_TYPES = (torch.float, torch.double, torch.half)


class AuxiliaryBoxHead(nn.Module):
    """One box head for every raw lateral: RoIAlign on each level, then the main head's architecture.

    Every box is pooled from every lateral at that lateral's own scale (AugFPN's ``AuxAllLevelRoIExtractor``: no
    level assignment), and all levels go through the same two FC layers and predictor in one batch.

    Args:
        in_channels: Channels of each raw lateral.
        num_classes: Class slots including background, as the main predictor.
        box_head: The main head's kind, ``"2fc"`` or ``"4conv1fc"`` (1024 wide).
        output_size: RoIAlign output size, the main pooler's.
        sampling_ratio: RoIAlign sampling points per bin, the main pooler's.
        aligned: RoIAlign's half-pixel offset, the main pooler's.

    Examples:
        >>> head = AuxiliaryBoxHead(8, 4)
        >>> laterals = [torch.rand(1, 8, 64 // 2**i, 64 // 2**i) for i in range(4)]
        >>> logits, deltas = head(laterals, [torch.tensor([[0.0, 0.0, 100.0, 120.0]])], [(256, 256)])
        >>> logits.shape, deltas.shape  # one row per level and box, level-major
        (torch.Size([4, 4]), torch.Size([4, 16]))
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        box_head: str = "2fc",
        output_size: tuple[int, int] = (7, 7),
        sampling_ratio: int = 2,
        aligned: bool = False,
    ) -> None:
        super().__init__()
        self.output_size = (int(output_size[0]), int(output_size[1]))
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.box_head = make_box_head(box_head, in_channels, self.output_size[0])
        self.box_predictor = FastRCNNPredictor(REPRESENTATION_SIZE, num_classes)

    def pool(self, laterals: Sequence[Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        """RoIAlign of every box on every lateral, stacked level-major: ``(num_levels * num_boxes, C, h, w)``."""
        image_h = max(s[0] for s in image_shapes)
        n = sum(len(b) for b in boxes)
        pooled = laterals[0].new_empty((len(laterals) * n, laterals[0].shape[1], *self.output_size))
        for i, lateral in enumerate(laterals):
            # The scale rule of the main pooler (SoftRoISelection, MultiScaleRoIAlign): nearest power of two.
            scale = 2.0 ** round(math.log2(lateral.shape[-2] / image_h))
            pooled[i * n : (i + 1) * n] = roi_align(
                lateral, boxes, self.output_size, scale, self.sampling_ratio, self.aligned
            )
        return pooled

    def forward(
        self, laterals: Sequence[Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> tuple[Tensor, Tensor]:
        return self.box_predictor(self.box_head(self.pool(laterals, boxes, image_shapes)))


class ConsistentSupervisionRoIHeads(FilteredRoIHeads):
    """torchvision's Faster R-CNN ``RoIHeads`` plus AugFPN's consistent supervision in training.

    In eval mode this is exactly ``RoIHeads``. In training mode the RoIs are sampled and their targets computed once
    (``select_training_samples``); the main head runs on them as in ``RoIHeads.forward`` and gives the usual
    ``loss_classifier`` and ``loss_box_reg``; the auxiliary head runs on the same RoIs pooled from the raw laterals
    (``features.raw_laterals``, set by [`AugFPN`][fpn_zoo.necks.augfpn.AugFPN] in training mode) and adds
    ``loss_aux_classifier_p{2..5}`` and ``loss_aux_box_reg_p{2..5}``, each times ``weight``.

    Build it from the RoI heads torchvision's ``FasterRCNN`` made, with
    [`from_roi_heads`][fpn_zoo.heads.consistent_supervision.ConsistentSupervisionRoIHeads.from_roi_heads]; box heads
    only (no mask or keypoint branch).

    Args:
        *args (Any): ``RoIHeads`` arguments.
        aux_head: The auxiliary head.
        weight: Multiplier of each auxiliary loss term, > 0.
        **kwargs (Any): [`FilteredRoIHeads`][fpn_zoo.heads.small_boxes.FilteredRoIHeads] keyword arguments.

    Examples:
        >>> import fpn_zoo
        >>> model = fpn_zoo.create_model("augfpn_r50_coco", device="cpu", min_size=96, max_size=128).train()
        >>> losses = model([torch.rand(3, 90, 120)], [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 80.0]]),
        ...                                            "labels": torch.tensor([1])}])
        >>> sorted(k for k in losses if k.startswith("loss_aux"))[:2]
        ['loss_aux_box_reg_p2', 'loss_aux_box_reg_p3']
    """

    def __init__(self, *args, aux_head: AuxiliaryBoxHead, weight: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.has_mask() or self.has_keypoint():
            raise ValueError("Consistent supervision is implemented for box heads only (no mask or keypoint branch).")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < math.inf:
            raise ValueError(f"weight must be a finite number > 0, got {weight!r}.")
        self.aux_head = aux_head
        self.weight = float(weight)

    @classmethod
    def from_roi_heads(
        cls, heads: FilteredRoIHeads, *, in_channels: int, weight: float
    ) -> ConsistentSupervisionRoIHeads:
        """The same RoI heads (modules shared, settings copied) plus a new auxiliary head shaped like the main one.

        Args:
            heads: A zoo model's RoI heads, with a ``TwoMLPHead`` or ``FastRCNNConvFCHead`` and a
                ``FastRCNNPredictor``.
            in_channels: Channels of each raw lateral.
            weight: Multiplier of each auxiliary loss term.

        Returns:
            The new RoI heads; the auxiliary head is randomly initialised as torchvision initialises a box head.

        Examples:
            >>> import fpn_zoo
            >>> model = fpn_zoo.create_model("fpn_r50_coco", device="meta")
            >>> heads = ConsistentSupervisionRoIHeads.from_roi_heads(model.roi_heads, in_channels=256, weight=0.25)
            >>> heads.aux_head.box_predictor.cls_score.out_features
            91
        """
        kinds = {TwoMLPHead: "2fc", FastRCNNConvFCHead: "4conv1fc"}
        kind = kinds.get(type(heads.box_head))
        if kind is None or not isinstance(heads.box_predictor, FastRCNNPredictor):
            raise TypeError(
                "Consistent supervision copies a TwoMLPHead or FastRCNNConvFCHead + FastRCNNPredictor box head; got "
                f"{type(heads.box_head).__name__} + {type(heads.box_predictor).__name__}."
            )
        aux_head = AuxiliaryBoxHead(
            in_channels,
            heads.box_predictor.cls_score.out_features,
            box_head=kind,
            output_size=heads.box_roi_pool.output_size,
            sampling_ratio=heads.box_roi_pool.sampling_ratio,
            aligned=getattr(heads.box_roi_pool, "aligned", False),
        )
        new = cls(
            *roi_heads_arguments(heads),
            aux_head=aux_head,
            weight=weight,
            box_min_size=heads.box_min_size,
        )
        new.box_coder = heads.box_coder  # keeps the configured delta clamp
        return new

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        raw_laterals = getattr(features, "raw_laterals", None)
        if raw_laterals is None:
            raise RuntimeError(
                "Consistent supervision needs the neck's raw laterals (features.raw_laterals), which AugFPN returns "
                "in training mode only: put the whole model in training mode (model.train()), or build it with "
                "consistent_supervision_weight=0 to train without the auxiliary losses."
            )
        for t in targets or []:  # RoIHeads.forward's checks; select_training_samples checks the keys
            if t["boxes"].dtype not in _FLOAT_TYPES:
                raise TypeError(f"target boxes must be of float type, instead got {t['boxes'].dtype}")
            if t["labels"].dtype != torch.int64:
                raise TypeError(f"target labels must be of int64 type, instead got {t['labels'].dtype}")

        # RoIHeads.forward's training branch for a box head, with the sampled RoIs and targets kept for the aux head.
        proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        losses.update(self.auxiliary_losses(raw_laterals, proposals, image_shapes, labels, regression_targets))
        return [], losses

    def auxiliary_losses(
        self,
        raw_laterals: Sequence[Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        labels: list[Tensor],
        regression_targets: list[Tensor],
    ) -> dict[str, Tensor]:
        """The weighted auxiliary losses of sampled RoIs: ``loss_aux_classifier_p{k}``, ``loss_aux_box_reg_p{k}``.

        Args:
            raw_laterals: Pre-fusion laterals, fine to coarse (M2-M5).
            proposals: Sampled RoIs per image (``select_training_samples``).
            image_shapes: Resized image sizes.
            labels: Class of each sampled RoI (0 = background).
            regression_targets: Encoded box targets of each sampled RoI.

        Returns:
            Two entries per lateral, each already multiplied by `weight`.
        """
        class_logits, box_regression = self.aux_head(raw_laterals, proposals, image_shapes)
        n = sum(len(p) for p in proposals)
        losses = {}
        for i, (logits, deltas) in enumerate(zip(class_logits.split(n), box_regression.split(n), strict=True)):
            loss_cls, loss_reg = fastrcnn_loss(logits, deltas, labels, regression_targets)
            losses[f"loss_aux_classifier_p{i + _FIRST_LEVEL}"] = loss_cls * self.weight
            losses[f"loss_aux_box_reg_p{i + _FIRST_LEVEL}"] = loss_reg * self.weight
        return losses
