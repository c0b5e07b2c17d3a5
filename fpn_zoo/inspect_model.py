"""Measure a zoo model without weights: architecture summary, parameter count and FLOPs.

Everything here is computed from the model itself, never written down by hand: parameters come from a build on
PyTorch's ``meta`` device (no memory, no time), FLOPs from one CPU forward pass under
``torch.utils.flop_counter.FlopCounterMode``. ``fpn-zoo list`` and ``fpn-zoo info`` print these figures.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from fpn_zoo.config import INFERENCE_FIELDS, NECK_TITLES, ModelConfig
from fpn_zoo.detector import ZooDetector, build_detector
from fpn_zoo.heads import SoftRoISelection
from fpn_zoo.necks import LEVEL_NAMES

__all__ = [
    "MAX_FLOPS_SIDE",
    "ArchitectureInfo",
    "FlopCount",
    "count_flops",
    "count_parameters",
    "format_report",
    "inspect_architecture",
    "model_report",
]

# Largest image side `count_flops` accepts: one CPU forward at 4096x4096 already takes minutes and many GiB.
MAX_FLOPS_SIDE = 4096
_SIZE_DIVISIBLE = 32  # torchvision's GeneralizedRCNNTransform pads batches to a multiple of this
FLOPS_METHOD = "GFLOPs counted with torch.utils.flop_counter (2 FLOPs per multiply-add) at {h}x{w}, random weights"


@dataclass(frozen=True)
class ArchitectureInfo:
    """What a zoo model is made of, read off a built model.

    Attributes:
        name: Model name.
        backbone: Backbone short name, e.g. ``"r50"``.
        timm_backbone: timm architecture name, e.g. ``"resnet50"``.
        backbone_channels: Channels of C2-C5 (timm ``feature_info``).
        backbone_strides: Strides of C2-C5 (timm ``feature_info``).
        neck: Neck short name.
        neck_title: Human-readable neck description.
        pyramid_channels: Channels of every pyramid level.
        pyramid_levels: Keys of the pyramid levels (torchvision's naming).
        pyramid_strides: Strides of the pyramid levels, P2-P6.
        head: One-line description of the RPN and RoI heads.
        num_params: Parameter count with frozen BatchNorm, the convention of torchvision's weights metadata, of the
            inference model (without AugFPN's training-only consistent-supervision head).
    """

    name: str
    backbone: str
    timm_backbone: str
    backbone_channels: tuple[int, ...]
    backbone_strides: tuple[int, ...]
    neck: str
    neck_title: str
    pyramid_channels: int
    pyramid_levels: tuple[str, ...]
    pyramid_strides: tuple[int, ...]
    head: str
    num_params: int


@dataclass(frozen=True)
class FlopCount:
    """Result of [`count_flops`][fpn_zoo.inspect_model.count_flops].

    Attributes:
        gflops: Total FLOPs / 1e9, counting 2 FLOPs per multiply-add.
        input_size: ``(height, width)`` of the image fed to the model (not resized).
        padded_size: ``(height, width)`` after the model's padding to a multiple of 32.
        proposals: Number of proposals the RoI heads processed.
    """

    gflops: float
    input_size: tuple[int, int]
    padded_size: tuple[int, int]
    proposals: int


def _build_meta(config: ModelConfig) -> ZooDetector:
    # loads_weights=True gives frozen BatchNorm, whose statistics are buffers: the same parameter count as
    # torchvision's weights metadata (41,755,286 for fasterrcnn_resnet50_fpn). The model measured is the one that runs
    # at inference, as torchvision's and mmdetection's figures are: AugFPN's training-only consistent-supervision
    # head (14.4 M parameters with 91 classes, never run in eval mode) is left out.
    with torch.device("meta"):
        return build_detector(config.replace(consistent_supervision_weight=0.0), loads_weights=True)


def count_parameters(config: ModelConfig) -> int:
    """Number of parameters of the model ``config`` describes, counted without allocating it.

    Args:
        config: Model architecture.

    Returns:
        The parameter count with frozen BatchNorm (statistics are buffers, not parameters), of the inference model:
        AugFPN's training-only auxiliary head is not counted.

    Examples:
        >>> from fpn_zoo import get_model_config
        >>> count_parameters(get_model_config("fpn_r50_coco"))
        41755286
    """
    return sum(p.numel() for p in _build_meta(config).parameters())


def _describe_head(model: ZooDetector) -> str:
    rpn, roi = model.rpn, model.roi_heads
    anchors = rpn.anchor_generator.num_anchors_per_location()[0]
    pool = roi.box_roi_pool
    size = "x".join(str(s) for s in pool.output_size)
    if isinstance(pool, SoftRoISelection):
        pooler = f"AugFPN Soft RoI Selection ({size} RoIAlign on all levels, attention fusion)"
    else:
        aligned = "aligned" if getattr(pool, "aligned", False) else "unaligned"
        pooler = f"MultiScaleRoIAlign {size} (sampling_ratio {pool.sampling_ratio}, {aligned})"
    box_head = roi.box_head
    rep = getattr(getattr(box_head, "fc7", None), "out_features", None)
    box_head_text = f"{type(box_head).__name__}" + (f" {rep}" if rep else "")
    classes = roi.box_predictor.cls_score.out_features
    return (
        f"torchvision Faster R-CNN: RPN ({anchors} anchors per location, up to {rpn._post_nms_top_n['testing']} "
        f"test proposals) + RoI heads ({pooler} -> {box_head_text} -> {type(roi.box_predictor).__name__}, "
        f"{classes} classes)"
    )


def inspect_architecture(config: ModelConfig) -> ArchitectureInfo:
    """Summarise the architecture of ``config`` from a model built on the ``meta`` device (instant, no memory).

    Args:
        config: Model architecture.

    Returns:
        The summary, parameter count included.

    Examples:
        >>> from fpn_zoo import get_model_config
        >>> info = inspect_architecture(get_model_config("fpn_r50_coco"))
        >>> info.backbone_channels, info.pyramid_strides
        ((256, 512, 1024, 2048), (4, 8, 16, 32, 64))
    """
    model = _build_meta(config)
    body = model.backbone.body
    strides = tuple(body.strides)
    return ArchitectureInfo(
        name=config.name,
        backbone=config.backbone,
        timm_backbone=config.backbone_spec.timm_name,
        backbone_channels=tuple(body.channels),
        backbone_strides=strides,
        neck=config.neck,
        neck_title=NECK_TITLES[config.neck],
        pyramid_channels=model.backbone.out_channels,
        pyramid_levels=LEVEL_NAMES,
        # P6 is a stride-2 subsampling of P5 in every neck.
        pyramid_strides=(*strides, strides[-1] * 2),
        head=_describe_head(model),
        num_params=sum(p.numel() for p in model.parameters()),
    )


def count_flops(config: ModelConfig, height: int, width: int, *, seed: int = 0) -> FlopCount:
    """Count the FLOPs of one CPU inference of a randomly initialised model on one ``height x width`` image.

    The image is not resized (``min_size``/``max_size`` are set to its sides), so the count is at the stated size,
    padded to a multiple of 32 as at inference. The RPN's NMS is switched off for the count: with random weights
    the number of proposals surviving it is arbitrary, whereas the RoI heads' cost grows with it; without NMS
    they see the test-time maximum (1000), as with a trained RPN on a real image. Only operators with a FLOP
    formula in ``torch.utils.flop_counter`` count (convolutions, matrix products); RoIAlign and NMS do not.

    Args:
        config: Model architecture.
        height: Image height in pixels, 1 to 4096.
        width: Image width in pixels, 1 to 4096.
        seed: Seed of the random weights and image, so the count is reproducible.

    Returns:
        The FLOP count and what it was measured on.

    Raises:
        ValueError: If a side is not an integer in [1, 4096].

    Examples:
        >>> from fpn_zoo import get_model_config
        >>> count_flops(get_model_config("fpn_r50_coco"), 64, 64).gflops > 0  # doctest: +SKIP
        True
    """
    for side_name, side in (("height", height), ("width", width)):
        if not isinstance(side, int) or isinstance(side, bool) or not 1 <= side <= MAX_FLOPS_SIDE:
            raise ValueError(f"{side_name} must be an integer in [1, {MAX_FLOPS_SIDE}], got {side!r}.")
    config = config.replace(min_size=min(height, width), max_size=max(height, width))
    proposals: list[int] = []
    with torch.random.fork_rng(devices=[]):  # seeds locally, leaving the caller's RNG state untouched
        torch.manual_seed(seed)
        with torch.device("cpu"):
            model = build_detector(config).eval()
        model.rpn.nms_thresh = 1.0  # IoU never exceeds 1, so NMS keeps every candidate
        model.roi_heads.box_roi_pool.register_forward_pre_hook(
            lambda _module, args: proposals.append(sum(len(b) for b in args[1]))
        )
        image = torch.rand(3, height, width)
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            model([image])
    padded = tuple(math.ceil(s / _SIZE_DIVISIBLE) * _SIZE_DIVISIBLE for s in (height, width))
    return FlopCount(
        gflops=counter.get_total_flops() / 1e9,
        input_size=(height, width),
        padded_size=(padded[0], padded[1]),
        proposals=proposals[0] if proposals else 0,
    )


def model_report(config: ModelConfig, *, input_size: tuple[int, int] | None = (800, 800)) -> dict[str, Any]:
    """Everything ``fpn-zoo info`` shows about a model, as a JSON-ready dictionary.

    Args:
        config: Model architecture.
        input_size: ``(height, width)`` at which to count FLOPs; ``None`` skips the count (``gflops`` is ``None``).

    Returns:
        The [`ArchitectureInfo`][fpn_zoo.inspect_model.ArchitectureInfo] fields, ``gflops`` and ``flops`` (how they were
        counted), the label space (``dataset``, ``num_classes``, ``categories``), the resize bounds and the weights
        manifest entries.

    Examples:
        >>> from fpn_zoo import get_model_config
        >>> model_report(get_model_config("fpn_r50_coco"), input_size=None)["num_params"]
        41755286
    """
    from fpn_zoo.weights.manifest import load_manifest, weights_status

    data: dict[str, Any] = dataclasses.asdict(inspect_architecture(config))
    data.update({k: list(v) for k, v in data.items() if isinstance(v, tuple)})
    flops = None if input_size is None else count_flops(config, *input_size)
    data["gflops"] = None if flops is None else flops.gflops
    data["flops"] = None
    if flops is not None:
        data["flops"] = {
            "input_size": list(flops.input_size),
            "padded_size": list(flops.padded_size),
            "proposals": flops.proposals,
            "method": FLOPS_METHOD.format(h=flops.input_size[0], w=flops.input_size[1]),
        }
    data.update(
        dataset=config.dataset,
        num_classes=config.num_classes,
        categories=list(config.categories),
        resize={"min_size": config.min_size, "max_size": config.max_size},
        inference={f: getattr(config, f) for f in INFERENCE_FIELDS},
        weights_status=weights_status(config.name),
        weights=[_entry_summary(e) for e in load_manifest().entries(config.name)],
    )
    return data


def _entry_summary(entry: Any) -> dict[str, Any]:
    """A manifest entry as JSON, label space by name (the categories are listed once, above), with the options a
    convertible entry's weights run with."""
    from fpn_zoo.converters import CONVERTERS

    data = dataclasses.asdict(entry)
    data.pop("categories")
    data["gflops_input_size"] = list(entry.gflops_input_size)
    if entry.upstream is not None:
        data["runs_with"] = CONVERTERS[entry.upstream.converter].options(entry.model, entry.upstream.sha256_prefix)
    return data


def describe_inference(settings: dict[str, Any]) -> str:
    """The inference settings in words, as ``fpn-zoo info`` prints them.

    Examples:
        >>> from fpn_zoo import get_model_config
        >>> c = get_model_config("fpn_r50_coco")
        >>> describe_inference({f: getattr(c, f) for f in INFERENCE_FIELDS})  # doctest: +NORMALIZE_WHITESPACE
        'RoIAlign aligned=False sampling_ratio=2; anchors rounded, strides from the image; log-size deltas clamped
        above; proposals with a side < 0.001 dropped, detections with a side < 0.01 dropped; BatchNorm eps 1e-05'
    """

    def filtered(what: str, limit: float | None) -> str:
        if limit is None:
            return f"{what} not filtered by size"
        return f"empty {what} dropped" if limit == 0 else f"{what} with a side < {limit:g} dropped"

    s = settings
    return (
        f"RoIAlign aligned={s['roi_align_aligned']} sampling_ratio={s['roi_align_sampling_ratio']}; "
        f"anchors {'rounded' if s['round_anchors'] else 'exact'}, strides "
        f"{'from the image' if s['anchor_strides'] == 'from_image' else 'fixed 4-64'}; log-size deltas clamped "
        f"{'above' if s['box_delta_clamp'] == 'upper' else 'on both sides'}; "
        f"{filtered('proposals', s['rpn_min_box_size'])}, {filtered('detections', s['box_min_size'])}; "
        f"BatchNorm eps {s['frozen_bn_eps']:g}"
    )


def format_report(data: dict[str, Any], *, shown_categories: int = 5) -> str:
    """Render a [`model_report`][fpn_zoo.inspect_model.model_report] dictionary as the text ``fpn-zoo info`` prints.

    Args:
        data: Output of [`model_report`][fpn_zoo.inspect_model.model_report].
        shown_categories: How many category names to show (background excluded).

    Returns:
        Multi-line text, one labelled fact per line.

    Examples:
        >>> from fpn_zoo import get_model_config
        >>> print(format_report(model_report(get_model_config("fpn_r50_coco"), input_size=None)).splitlines()[0])
        fpn_r50_coco
    """

    def slash(values: list[int]) -> str:
        return "/".join(str(v) for v in values)

    num_params = data["num_params"]
    lines = [
        data["name"],
        f"  backbone     {data['backbone']} = timm {data['timm_backbone']}: C2-C5 channels "
        f"{slash(data['backbone_channels'])}, strides {slash(data['backbone_strides'])} (feature_info)",
        f"  neck         {data['neck_title']}; {data['pyramid_channels']} channels on P2-P6, strides "
        f"{slash(data['pyramid_strides'])}",
        f"  head         {data['head']}",
        f"  params       {num_params:,} ({num_params / 1e6:.2f} M; frozen BatchNorm, as torchvision counts them)",
    ]
    flops = data["flops"]
    if flops is None:
        lines.append("  GFLOPs       not counted")
    else:
        (h, w), (ph, pw) = flops["input_size"], flops["padded_size"]
        padded = f", padded to {ph}x{pw} by the model" if (ph, pw) != (h, w) else ""
        lines += [
            f"  GFLOPs       {data['gflops']:.2f} at {h}x{w} (= {data['gflops'] / 2:.2f} G multiply-adds,",
            "               the unit torchvision's weights tables call GFLOPS)",
            f"               {flops['method']}{padded};",
            f"               RPN NMS off so the RoI heads see {flops['proposals']} proposals",
        ]
    names = ", ".join(data["categories"][1 : 1 + shown_categories])
    resize = data["resize"]
    lines += [
        f"  label space  {data['dataset']}: {data['num_classes']} class slots incl. background; {names}, ...",
        f"  input        resized to shorter side {resize['min_size']}, longer side <= {resize['max_size']}",
        f"  inference    {describe_inference(data['inference'])}",
        f"  weights      {data['weights_status']}",
    ]
    for entry in data["weights"]:
        if entry["status"] != "not_trained":
            lines.append(
                f"               load {entry['tag']}: create_model({data['name']!r}, pretrained={entry['tag']!r})"
                f" or `fpn-zoo download {data['name']} --tag {entry['tag']}`"
            )
        if entry.get("runs_with"):
            settings = {**data["inference"], **entry["runs_with"]}
            lines.append(f"               {entry['tag']} runs with: {describe_inference(settings)}")
        for metric in entry["metrics"]:
            figure = f"{metric['dataset']} {metric['metric']} {metric['value']}"
            lines.append(f"               {figure} ({metric['source']})")
    return "\n".join(lines)
