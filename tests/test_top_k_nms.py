"""The early-stopping class-wise NMS returns exactly what torchvision's full NMS keeps, cut to k."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import batched_nms

from fpn_zoo.heads.small_boxes import FilteredRoIHeads
from fpn_zoo.heads.top_k_nms import top_k_batched_nms


def _crowded_boxes(n: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Heavily overlapping boxes (jittered copies of a few) over many classes, as a detection head gives them."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(max(1, n // 20), 2, generator=g) * 400
    pick = torch.randint(len(centres), (n,), generator=g)
    xy = centres[pick] + torch.randn(n, 2, generator=g) * 6
    wh = 20 + torch.rand(n, 2, generator=g) * 60
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], dim=1)
    return boxes, torch.rand(n, generator=g), torch.randint(classes, (n,), generator=g)


@pytest.mark.parametrize(("n", "classes", "k"), [(9000, 90, 100), (3000, 3, 100), (400, 2, 100), (5000, 1, 50)])
def test_equals_torchvisions_batched_nms_cut_to_k(n, classes, k):
    boxes, scores, labels = _crowded_boxes(n, classes, seed=n + classes)
    expected = batched_nms(boxes, scores, labels, 0.5)[:k]
    got = top_k_batched_nms(boxes, scores, labels, 0.5, k)
    assert got.tolist() == expected.tolist()


def test_fewer_survivors_than_k_and_empty_input():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.5, 0.5, 10, 10], [0, 0, 10, 10]])
    scores, labels = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 0, 1])
    assert top_k_batched_nms(boxes, scores, labels, 0.5, k=100).tolist() == [0, 2]
    assert top_k_batched_nms(boxes[:0], scores[:0], labels[:0], 0.5, k=100).tolist() == []
    assert top_k_batched_nms(boxes, scores, labels, 0.5, k=0).tolist() == []


def test_the_roi_heads_give_the_same_detections_with_it():
    """A 1000-RoI, 91-class head at score threshold 0: 90,000 candidates, the benchmark's worst case."""
    torch.manual_seed(0)
    heads = FilteredRoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None, 0.0, 0.5, 100)
    proposals = [_crowded_boxes(1000, 1, seed=1)[0].clamp(0, 512)]
    logits, deltas = torch.randn(1000, 91) * 0.1, torch.randn(1000, 91 * 4) * 0.1
    plain = heads.postprocess_detections(logits, deltas, proposals, [(512, 512)])
    heads.top_k_nms = True
    fast = heads.postprocess_detections(logits, deltas, proposals, [(512, 512)])
    for expected, got in zip(plain, fast, strict=True):
        assert torch.equal(expected[0], got[0])
    assert len(fast[0][0]) == 100
