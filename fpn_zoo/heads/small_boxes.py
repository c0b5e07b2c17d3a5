"""The small-box filters of the RPN and of the final detections, as a setting instead of a constant.

torchvision drops proposals with a side below 1e-3 (``RegionProposalNetwork.min_size``) and detections with a side
below 1e-2 (hard-coded in ``RoIHeads.postprocess_detections``), keeping sides ``>=`` the limit. mmdetection's RPN
keeps sides ``> min_bbox_size`` with ``min_bbox_size=0`` (``RPNHead._bbox_post_process``) and its box head has no
such filter (``BBoxHead._predict_by_feat_single`` goes straight to ``multiclass_nms``). The two classes here are
torchvision's with that one step parameterised; everything else is their code unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import boxes as box_ops

from fpn_zoo.heads.top_k_nms import top_k_batched_nms


def keep_boxes_of_size(boxes: Tensor, min_size: float | None) -> Tensor:
    """Indices of the boxes to keep: sides ``>= min_size`` (torchvision); ``0`` keeps sides ``> 0`` (mmdetection's
    ``min_bbox_size=0``); ``None`` keeps all.

    Examples:
        >>> b = torch.tensor([[0.0, 0.0, 0.0, 5.0], [0.0, 0.0, 0.005, 5.0], [0.0, 0.0, 1.0, 1.0]])
        >>> [keep_boxes_of_size(b, limit).tolist() for limit in (1e-2, 0, None)]
        [[2], [1, 2], [0, 1, 2]]
    """
    if min_size is None:
        return torch.arange(len(boxes), device=boxes.device)
    if min_size > 0:
        return box_ops.remove_small_boxes(boxes, min_size)
    ws, hs = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return torch.where((ws > 0) & (hs > 0))[0]


class FilteredRPN(RegionProposalNetwork):
    """torchvision's ``RegionProposalNetwork`` whose small-proposal filter follows `keep_boxes_of_size`.

    ``min_size`` (torchvision's attribute) holds the limit: 1e-3 by default, 0 for mmdetection's rule.
    """

    def filter_proposals(
        self,
        proposals: Tensor,
        objectness: Tensor,
        image_shapes: list[tuple[int, int]],
        num_anchors_per_level: list[int],
    ) -> tuple[list[Tensor], list[Tensor]]:
        # torchvision 0.29 rpn.py RegionProposalNetwork.filter_proposals, with `keep_boxes_of_size` as the filter.
        num_images = proposals.shape[0]
        device = proposals.device
        objectness = objectness.detach().reshape(num_images, -1)
        levels = torch.cat(
            [torch.full((n,), idx, dtype=torch.int64, device=device) for idx, n in enumerate(num_anchors_per_level)]
        )
        levels = levels.reshape(1, -1).expand_as(objectness)
        top_n_idx = self._get_top_n_idx(objectness, num_anchors_per_level)  # top-n per level before NMS
        batch_idx = torch.arange(num_images, device=device)[:, None]
        objectness = objectness[batch_idx, top_n_idx]
        levels = levels[batch_idx, top_n_idx]
        proposals = proposals[batch_idx, top_n_idx]
        objectness_prob = torch.sigmoid(objectness)

        final_boxes, final_scores = [], []
        for boxes, scores, lvl, img_shape in zip(proposals, objectness_prob, levels, image_shapes, strict=True):
            boxes = box_ops.clip_boxes_to_image(boxes, img_shape)
            keep = keep_boxes_of_size(boxes, self.min_size)
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = torch.where(scores >= self.score_thresh)[0]
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = box_ops.batched_nms(boxes, scores, lvl, self.nms_thresh)[: self.post_nms_top_n()]
            final_boxes.append(boxes[keep])
            final_scores.append(scores[keep])
        return final_boxes, final_scores


class FilteredRoIHeads(RoIHeads):
    """torchvision's ``RoIHeads`` whose final small-box filter follows `keep_boxes_of_size` with ``box_min_size``.

    Args:
        *args (Any): ``RoIHeads`` arguments.
        box_min_size: Smallest side of a returned detection (torchvision 1e-2; ``None``: no filter).
        **kwargs (Any): ``RoIHeads`` keyword arguments.

    Attributes:
        top_k_nms: Stop the final NMS once its ``detections_per_img`` survivors are decided
            ([`top_k_batched_nms`][fpn_zoo.heads.top_k_nms.top_k_batched_nms]; same detections). Off by default so
            that the plain model runs torchvision's code; the fast inference path turns it on.
    """

    def __init__(self, *args, box_min_size: float | None = 1e-2, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.box_min_size = box_min_size
        self.top_k_nms = False

    def postprocess_detections(
        self,
        class_logits: Tensor,
        box_regression: Tensor,
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        # torchvision 0.29 roi_heads.py RoIHeads.postprocess_detections, with `keep_boxes_of_size` as the filter.
        device = class_logits.device
        num_classes = class_logits.shape[-1]
        boxes_per_image = [len(p) for p in proposals]
        pred_boxes = self.box_coder.decode(box_regression, proposals)
        pred_scores = F.softmax(class_logits, -1)

        all_boxes, all_scores, all_labels = [], [], []
        for boxes, scores, image_shape in zip(
            pred_boxes.split(boxes_per_image, 0), pred_scores.split(boxes_per_image, 0), image_shapes, strict=True
        ):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            labels = torch.arange(num_classes, device=device).view(1, -1).expand_as(scores)
            # Drop the background column, then treat every (box, class) pair as one candidate.
            boxes = boxes[:, 1:].reshape(-1, 4)
            scores = scores[:, 1:].reshape(-1)
            labels = labels[:, 1:].reshape(-1)
            inds = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[inds], scores[inds], labels[inds]
            keep = keep_boxes_of_size(boxes, self.box_min_size)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            if self.top_k_nms:
                keep = top_k_batched_nms(boxes, scores, labels, self.nms_thresh, self.detections_per_img)
            else:
                keep = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            all_boxes.append(boxes[keep])
            all_scores.append(scores[keep])
            all_labels.append(labels[keep])
        return all_boxes, all_scores, all_labels
