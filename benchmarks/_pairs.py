"""The side-by-side rows: our module and its reference, built with the same weights on the same inputs."""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

R50_CHANNELS = (256, 512, 1024, 2048)  # C2-C5 of ResNet-50, strides 4-32
SCORE_THRESH = 0.0  # every detector returns its full box_detections_per_img (100) on random weights


def size_str(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


@torch.no_grad()
def randomise_(module: torch.nn.Module, seed: int) -> None:
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


def image(size: tuple[int, int], device: torch.device, seed: int) -> list[torch.Tensor]:
    return [torch.rand(3, *size, generator=torch.Generator().manual_seed(seed)).to(device)]


def pyramid_inputs(size: tuple[int, int], device: torch.device, seed: int) -> list[torch.Tensor]:
    """Random C2-C5 maps of a ResNet-50 for an image of ``size`` (ceil division, as backbones and effdet round)."""
    g = torch.Generator().manual_seed(seed)
    shapes = [
        (1, c, math.ceil(size[0] / 2 ** (i + 2)), math.ceil(size[1] / 2 ** (i + 2))) for i, c in enumerate(R50_CHANNELS)
    ]
    return [torch.rand(s, generator=g).to(device) for s in shapes]


def max_abs_diff(ours: list[torch.Tensor], ref: list[torch.Tensor]) -> float:
    if [o.shape for o in ours] != [r.shape for r in ref]:
        return math.inf
    return max((o.float() - r.float()).abs().max().item() for o, r in zip(ours, ref, strict=True))


def proposals_of_next_forward(model: torch.nn.Module) -> list[int]:
    """Filled by the next forward with the RPN's proposals per image (the RoI stage's workload), then unhooked."""
    seen: list[int] = []

    def hook(_module: torch.nn.Module, _inputs: Any, out: Any) -> None:
        seen.extend(len(b) for b in out[0])
        handle.remove()

    handle = model.rpn.register_forward_hook(hook)
    return seen


@dataclass
class Pair:
    """Two callables computing the same function; ``check`` records how closely their outputs agree."""

    comparison: str
    target: float
    ours: Callable[[], Any]
    reference: Callable[[], Any]
    check: dict[str, Any]
    config: dict[str, Any]


def _torchvision_coco_v1(size: tuple[int, int]) -> torch.nn.Module:
    """``fasterrcnn_resnet50_fpn`` as its builder makes it for COCO_V1 weights (FrozenBatchNorm2d, eps 0.0)."""
    from torchvision.models import resnet50
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    backbone = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    model = FasterRCNN(
        _resnet_fpn_extractor(backbone, 3), 91, min_size=min(size), max_size=max(size), box_score_thresh=SCORE_THRESH
    )
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.eps = 0.0
    return model.eval()


def detector_pair(size: tuple[int, int], device: torch.device, workdir: Path, seed: int, tol: float) -> Pair:
    import fpn_zoo
    from fpn_zoo.weights.convert import convert_torchvision_checkpoint

    ref, src, converted = _torchvision_coco_v1(size), workdir / "fasterrcnn_resnet50_fpn_random.pth", workdir / "zoo"
    if not converted.exists():  # one random checkpoint serves every size
        randomise_(ref, seed)
        torch.save(ref.state_dict(), src)
        convert_torchvision_checkpoint(src, converted, frozen_bn_eps=0.0)
    ref.load_state_dict(torch.load(src, weights_only=True))
    ref.to(device)
    hw = dict(min_size=min(size), max_size=max(size))
    ours = fpn_zoo.create_model("fpn_r50_coco", weights=converted, device=device, box_score_thresh=SCORE_THRESH, **hw)
    images = image(size, device, seed + 1)
    proposals = proposals_of_next_forward(ours), proposals_of_next_forward(ref)
    with torch.inference_mode():
        got, expected = ours(images), ref(images)
    check: dict[str, Any] = {
        "detections_per_image": {
            "ours": [len(o["boxes"]) for o in got],
            "reference": [len(e["boxes"]) for e in expected],
        },
        "proposals_per_image": {"ours": proposals[0], "reference": proposals[1]},
        "same_labels": [o["labels"].tolist() for o in got] == [e["labels"].tolist() for e in expected],
    }
    for key in ("boxes", "scores"):
        check[f"{key}_max_abs_diff"] = max_abs_diff([o[key] for o in got], [e[key] for e in expected])
    check["max_abs_diff"] = max(check["boxes_max_abs_diff"], check["scores_max_abs_diff"])
    check.update(tolerance=tol, match=check["same_labels"] and check["max_abs_diff"] <= tol)
    config = {"weights": "random (torchvision COCO_V1 layout: FrozenBatchNorm2d eps 0.0), converted to fpn_r50_coco"}
    return Pair(
        "fpn_r50_coco vs torchvision fasterrcnn_resnet50_fpn",
        1.02,
        lambda: ours(images),
        lambda: ref(images),
        check,
        {**config, **hw, "score_thresh": SCORE_THRESH, "batch": 1},
    )


def fpn_pair(size: tuple[int, int], device: torch.device, seed: int, tol: float) -> Pair:
    from torchvision.ops import FeaturePyramidNetwork
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    from fpn_zoo.necks import FPN

    ref = FeaturePyramidNetwork(list(R50_CHANNELS), 256, extra_blocks=LastLevelMaxPool()).eval()
    randomise_(ref, seed)
    ours = FPN(R50_CHANNELS, 256).eval()
    renames = ((r"^inner_blocks\.(\d+)\.0\.", r"lateral_convs.\1."), (r"^layer_blocks\.(\d+)\.0\.", r"fpn_convs.\1."))
    state = {}
    for key, value in ref.state_dict().items():
        for pattern, repl in renames:
            key = re.sub(pattern, repl, key)
        state[key] = value
    ours.load_state_dict(state, strict=True)
    ours.to(device), ref.to(device)
    feats = pyramid_inputs(size, device, seed + 1)
    named = OrderedDict((str(i), f) for i, f in enumerate(feats))
    with torch.inference_mode():
        diff = max_abs_diff(list(ours(feats).values()), list(ref(named).values()))
    check = {"max_abs_diff": diff, "tolerance": tol, "match": diff <= tol}
    config = {"in_channels": list(R50_CHANNELS), "out_channels": 256, "extra_blocks": "LastLevelMaxPool", "batch": 1}
    return Pair(
        "FPN neck vs torchvision.ops.FeaturePyramidNetwork",
        1.02,
        lambda: ours(feats),
        lambda: ref(named),
        check,
        config,
    )


def bifpn_pair(
    size: tuple[int, int], width: int, repeats: int, label: str, device: torch.device, seed: int, tol: float
) -> Pair:
    from effdet.config.model_config import default_detection_model_configs
    from effdet.efficientdet import BiFpn

    from fpn_zoo.necks import BiFPN
    from fpn_zoo.necks.bifpn import effdet_state_dict_to_zoo

    config = default_detection_model_configs()
    # pad_type '' (PyTorch padding) is the arithmetic fpn_zoo implements. effdet's default 'same' is TF padding,
    # which pads the stride-2 max-pools asymmetrically: another function, so no like-for-like timing.
    overrides = dict(
        min_level=2,
        max_level=6,
        num_levels=5,
        fpn_channels=width,
        fpn_cell_repeats=repeats,
        image_size=size,
        fpn_name="bifpn_fa",
        pad_type="",
    )
    config.update(overrides)
    ref = BiFpn(config, [dict(num_chs=c, reduction=2 ** (i + 2)) for i, c in enumerate(R50_CHANNELS)]).eval()
    randomise_(ref, seed)
    ours = BiFPN(R50_CHANNELS, width, repeats=repeats).eval()
    ours.load_state_dict(effdet_state_dict_to_zoo(ref.state_dict()), strict=True)
    ours.to(device), ref.to(device)
    feats = pyramid_inputs(size, device, seed + 1)
    with torch.inference_mode():
        diff = max_abs_diff(list(ours(feats).values()), ref(list(feats)))
    check = {"max_abs_diff": diff, "tolerance": tol, "match": diff <= tol}
    kept = ("act_type", "apply_resample_bn", "redundant_bias", "separable_conv", "downsample_type", "upsample_type")
    effdet_config = {
        **overrides,
        "image_size": list(size),
        **{k: config[k] for k in kept},
        "norm_kwargs": dict(config["norm_kwargs"]),
    }
    return Pair(
        f"BiFPN neck vs effdet BiFpn (W={width}, R={repeats}, {label})",
        1.0,
        lambda: ours(feats),
        lambda: ref(list(feats)),  # effdet appends P6 to the list it is given
        check,
        {"in_channels": list(R50_CHANNELS), "effdet_config": effdet_config, "batch": 1},
    )


def pair_builders(
    size: tuple[int, int], device: torch.device, workdir: Path, seed: int
) -> Iterator[tuple[str, Callable[[], Pair]]]:
    """``(kind, builder)`` per side-by-side row, so that only one pair of models is alive at a time."""
    import fpn_zoo

    tol = 1e-4 if device.type == "cpu" else 1e-3  # CUDA convolutions may use TF32 and differing algorithms
    zoo_bifpn = fpn_zoo.get_model_config("bifpn_r50_coco")
    yield "detector", lambda: detector_pair(size, device, workdir, seed, tol)
    yield "fpn", lambda: fpn_pair(size, device, seed, tol)
    width, repeats = zoo_bifpn.neck_channels, zoo_bifpn.bifpn_repeats
    yield "bifpn", lambda: bifpn_pair(size, width, repeats, "zoo default", device, seed, tol)
    yield "bifpn", lambda: bifpn_pair(size, 88, 4, "effdet resdet50 setting", device, seed, tol)
