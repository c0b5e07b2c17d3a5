"""The references ``fpn-zoo bench`` measures next to the zoo: torchvision's detector and FPN, effdet's BiFPN.

Each builder returns modules in eval mode with seeded random weights; nothing is downloaded. The neck pairs copy
weights between the two sides where they compute the same function, and say how closely their outputs agree.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fpn_zoo.bench.settings import SCORE_THRESH

__all__ = [
    "DETECTOR_NAME",
    "NECK_KINDS",
    "NECK_REFERENCES",
    "R50_CHANNELS",
    "NeckPair",
    "build_neck_pair",
    "coco_v1_detector",
    "detector_workload",
    "images",
    "load_reference_detector",
    "max_abs_diff",
    "pyramid_inputs",
    "randomise_",
    "set_input_size",
]

DETECTOR_NAME = "torchvision.models.detection.fasterrcnn_resnet50_fpn"
FPN_NAME = "torchvision.ops.FeaturePyramidNetwork"
BIFPN_NAME = "effdet.efficientdet.BiFpn"
NECK_KINDS = ("fpn", "bifpn", "panet", "augfpn")
# Equivalent references for fpn and bifpn; panet and augfpn have none, so torchvision's FPN is their cost baseline.
NECK_REFERENCES = {"fpn": FPN_NAME, "bifpn": BIFPN_NAME, "panet": FPN_NAME, "augfpn": FPN_NAME}
R50_CHANNELS = (256, 512, 1024, 2048)  # C2-C5 of ResNet-50, strides 4-32


@torch.no_grad()
def randomise_(module: nn.Module, seed: int) -> None:
    """Random weights, biases and BatchNorm statistics, scaled so activations stay finite through deep stacks."""
    g = torch.Generator().manual_seed(seed)
    for name, t in module.state_dict().items():
        if not t.is_floating_point():
            continue
        if name.endswith("running_var"):
            t.copy_(torch.rand(t.shape, generator=g) * 1.5 + 0.5)
        elif name.endswith(("running_mean", "bias")):
            t.copy_(torch.randn(t.shape, generator=g) * 0.1)
        elif t.dim() == 1:  # BatchNorm scales and BiFPN edge weights: positive
            t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.5)
        else:
            t.copy_(torch.randn(t.shape, generator=g) * (1.0 / t[0].numel()) ** 0.5)


def set_input_size(model: nn.Module, size: tuple[int, int]) -> None:
    """Make a torchvision-style detector run unresized on ``size`` images (``min_size``/``max_size`` = the sides).

    Examples:
        >>> from fpn_zoo import create_model
        >>> model = create_model("fpn_r50_coco", device="cpu")  # doctest: +SKIP
        >>> set_input_size(model, (512, 768))  # doctest: +SKIP
        >>> model.transform.min_size, model.transform.max_size  # doctest: +SKIP
        ((512,), 768)
    """
    model.transform.min_size = (min(size),)
    model.transform.max_size = max(size)


def coco_v1_detector(seed: int) -> nn.Module:
    """``fasterrcnn_resnet50_fpn`` as its builder makes it for COCO_V1 weights (FrozenBatchNorm2d, eps 0.0).

    The weights are ``randomise_``'s, not torchvision's own initialisation: with that, the RPN scores are almost
    constant and NMS leaves ~200 proposals instead of 1000, which would make the RoI stage cheaper than with
    trained weights for reasons that have nothing to do with the code.
    """
    from torchvision.models import resnet50
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    backbone = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    model = FasterRCNN(_resnet_fpn_extractor(backbone, 3), 91, box_score_thresh=SCORE_THRESH)
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.eps = 0.0
    randomise_(model, seed)
    return model.eval()


def load_reference_detector(path: str, device: torch.device) -> nn.Module:
    """What a torchvision user writes to load a local checkpoint: build, ``load_state_dict(torch.load(...))``."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.to(device).eval()


def images(size: tuple[int, int], batch: int, device: torch.device, seed: int) -> list[torch.Tensor]:
    """``batch`` random images of ``size``, the same for every model at the same seed.

    Examples:
        >>> [tuple(t.shape) for t in images((64, 96), 2, torch.device("cpu"), seed=0)]
        [(3, 64, 96), (3, 64, 96)]
    """
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, *size, generator=g).to(device) for _ in range(batch)]


@torch.inference_mode()
def detector_workload(model: nn.Module, batch: list[torch.Tensor]) -> dict[str, list[int]]:
    """RPN proposals and detections per image of one forward: the RoI stage's workload, which weights can change."""
    proposals: list[int] = []
    handle = model.rpn.register_forward_hook(lambda _m, _i, out: proposals.extend(len(b) for b in out[0]))
    try:
        detections = [len(d["boxes"]) for d in model(batch)]
    finally:
        handle.remove()
    return {"proposals_per_image": proposals, "detections_per_image": detections}


def pyramid_inputs(size: tuple[int, int], device: torch.device, seed: int) -> list[torch.Tensor]:
    """Random C2-C5 maps of a ResNet-50 for an image of ``size`` (ceil division, as backbones and effdet round).

    Examples:
        >>> [tuple(t.shape[1:]) for t in pyramid_inputs((100, 128), torch.device("cpu"), seed=0)]
        [(256, 25, 32), (512, 13, 16), (1024, 7, 8), (2048, 4, 4)]
    """
    g = torch.Generator().manual_seed(seed)
    shapes = [
        (1, c, math.ceil(size[0] / 2 ** (i + 2)), math.ceil(size[1] / 2 ** (i + 2))) for i, c in enumerate(R50_CHANNELS)
    ]
    return [torch.rand(s, generator=g).to(device) for s in shapes]


def max_abs_diff(ours: list[torch.Tensor], ref: list[torch.Tensor]) -> float:
    """Largest absolute difference between two lists of tensors; ``inf`` if their shapes differ.

    Examples:
        >>> max_abs_diff([torch.zeros(2)], [torch.tensor([0.0, 0.5])])
        0.5
    """
    if [o.shape for o in ours] != [r.shape for r in ref]:
        return math.inf
    return max((o.float() - r.float()).abs().max().item() for o, r in zip(ours, ref, strict=True))


@dataclass
class NeckPair:
    """Our neck and its reference as zero-argument calls on the same inputs.

    Attributes:
        ours: One forward of the zoo neck.
        reference: One forward of the reference.
        reference_name: Import path of the reference.
        equivalent: Whether both compute the same function (weights copied, outputs compared).
        max_abs_diff: Largest output difference when equivalent, else ``None``.
        config: The exact settings of both sides.
    """

    ours: Callable[[], Any]
    reference: Callable[[], Any]
    reference_name: str
    equivalent: bool
    max_abs_diff: float | None
    config: dict[str, Any]


def _torchvision_fpn(seed: int) -> nn.Module:
    from torchvision.ops import FeaturePyramidNetwork
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    ref = FeaturePyramidNetwork(list(R50_CHANNELS), 256, extra_blocks=LastLevelMaxPool()).eval()
    randomise_(ref, seed)
    return ref


def _effdet_bifpn(size: tuple[int, int], width: int, repeats: int, seed: int) -> tuple[nn.Module, dict[str, Any]]:
    try:
        from effdet.config.model_config import default_detection_model_configs
        from effdet.efficientdet import BiFpn
    except ImportError as err:
        raise ImportError(f"The BiFPN reference needs effdet: pip install 'fpn-zoo[bench]' ({err})") from err

    config = default_detection_model_configs()
    # pad_type '' (PyTorch padding) is the arithmetic fpn_zoo implements. effdet's default 'same' is TF padding,
    # which pads the stride-2 max-pools asymmetrically: another function, so no like-for-like timing.
    overrides = dict(min_level=2, max_level=6, num_levels=5, fpn_channels=width, fpn_cell_repeats=repeats,
                     image_size=size, fpn_name="bifpn_fa", pad_type="")  # fmt: skip
    config.update(overrides)
    ref = BiFpn(config, [dict(num_chs=c, reduction=2 ** (i + 2)) for i, c in enumerate(R50_CHANNELS)]).eval()
    randomise_(ref, seed)
    return ref, {**overrides, "image_size": list(size)}


def build_neck_pair(kind: str, size: tuple[int, int], device: torch.device, seed: int) -> NeckPair:
    """The zoo neck ``kind`` (as in ``{kind}_r50_coco``) and its reference on the same random C2-C5 of ``size``.

    ``fpn``: torchvision's ``FeaturePyramidNetwork`` + ``LastLevelMaxPool``, weights copied. ``bifpn``: effdet's
    ``BiFpn`` at the zoo's width and repeats, weights converted. ``panet``, ``augfpn``: no equivalent exists, so
    torchvision's FPN (random weights) is the cost baseline.

    Raises:
        ValueError: Unknown ``kind``.
    """
    from fpn_zoo.necks import build_neck
    from fpn_zoo.registry import get_model_config

    if kind not in NECK_KINDS:
        raise ValueError(f"Unknown neck {kind!r}; choose from {', '.join(NECK_KINDS)}.")
    zoo_config = get_model_config(f"{kind}_r50_coco")
    ours = build_neck(zoo_config, R50_CHANNELS).eval()
    config: dict[str, Any] = {"in_channels": list(R50_CHANNELS), "out_channels": zoo_config.neck_channels, "batch": 1}
    if kind == "bifpn":
        from fpn_zoo.necks.bifpn import effdet_state_dict_to_zoo

        ref, effdet_config = _effdet_bifpn(size, zoo_config.neck_channels, zoo_config.bifpn_repeats, seed)
        ours.load_state_dict(effdet_state_dict_to_zoo(ref.state_dict()), strict=True)
        config["effdet_config"] = effdet_config
    else:
        ref = _torchvision_fpn(seed)
        config["reference_extra_blocks"] = "LastLevelMaxPool"
        if kind == "fpn":
            renames = ((r"^inner_blocks\.(\d+)\.0\.", r"lateral_convs.\1."),
                       (r"^layer_blocks\.(\d+)\.0\.", r"fpn_convs.\1."))  # fmt: skip
            state = {}
            for key, value in ref.state_dict().items():
                for pattern, repl in renames:
                    key = re.sub(pattern, repl, key)
                state[key] = value
            ours.load_state_dict(state, strict=True)
        else:
            randomise_(ours, seed)
    ours.to(device), ref.to(device)
    feats = pyramid_inputs(size, device, seed + 1)
    named = OrderedDict((str(i), f) for i, f in enumerate(feats))

    def run_ref() -> Any:
        # effdet appends P6 to the list it is given, hence a fresh list per call.
        return ref(list(feats)) if kind == "bifpn" else list(ref(named).values())

    diff = None
    if kind in ("fpn", "bifpn"):
        with torch.inference_mode():
            diff = max_abs_diff(list(ours(feats).values()), run_ref())
    return NeckPair(lambda: ours(feats), run_ref, NECK_REFERENCES[kind], diff is not None, diff, config)
