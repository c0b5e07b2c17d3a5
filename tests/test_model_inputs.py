"""What the detector accepts as input, and the messages for what it refuses."""

from __future__ import annotations

import pytest
import torch

import fpn_zoo
from fpn_zoo.images import ImageError


@pytest.fixture(scope="module")
def model():
    return fpn_zoo.create_model("fpn_r50_coco", device="cpu", min_size=64, max_size=128)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([torch.randint(0, 255, (3, 40, 50), dtype=torch.uint8)], r"dtype torch\.uint8.*divide by 255"),
        ([torch.rand(40, 50, 3)], r"looks like HWC.*permute\(2, 0, 1\)"),
        (torch.rand(2, 3, 40, 50), r"list of \(3, H, W\) tensors"),
        ([torch.rand(3, 1, 400)], r"too elongated.*aspect ratio of 128:1"),
    ],
)
def test_refused_inputs_say_what_is_valid(model, images, message):
    with torch.no_grad(), pytest.raises(ImageError, match=message):
        model(images)


@pytest.mark.parametrize("shape", [(3, 1, 1), (3, 1, 128), (3, 37, 53)])
def test_tiny_and_odd_images_work(model, shape):
    with torch.no_grad():
        out = model([torch.rand(*shape)])
    assert out[0]["boxes"].shape[1] == 4


def test_to_model_input_bridges_user_formats(model):
    hwc_uint8 = torch.randint(0, 255, (40, 50, 3), dtype=torch.uint8)
    with torch.no_grad():
        out = model([fpn_zoo.to_model_input(hwc_uint8)])
    assert set(out[0]) == {"boxes", "scores", "labels"}
