"""``create_model``: the one builder behind the Python API, the hub entrypoints and the CLI.

It builds [`fpn_zoo.ZooDetector`][fpn_zoo.weights.hub_mixin.ZooDetector], the model of
[`fpn_zoo.detector`][fpn_zoo.detector] with ``from_pretrained`` / ``save_pretrained`` / ``push_to_hub``; the model
module itself knows nothing of weights files or the Hub.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Literal

import torch
from torch import nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

from fpn_zoo.config import ModelConfig
from fpn_zoo.detector import build_detector
from fpn_zoo.registry import get_model_config
from fpn_zoo.voice import option, say
from fpn_zoo.weights.checkpoint import LocalCheckpoint, read_checkpoint
from fpn_zoo.weights.hub_download import fetch_timm_weights
from fpn_zoo.weights.hub_mixin import ZooDetector
from fpn_zoo.weights.loading import PREDICTOR_PREFIX, assign_state_dict, check_state_dict
from fpn_zoo.weights.resolve import WeightsNotAvailableError, resolve_pretrained, resolve_weights

__all__ = ["WeightsNotAvailableError", "create_model", "resolve_device"]


def _valid_devices() -> str:
    return say(
        "'cpu', 'cuda', 'cuda:N', 'mps' or None (auto: CUDA when available, else CPU)",
        "--device cpu, cuda, cuda:N or mps, or no --device (auto: CUDA when available, else CPU)",
    )


def _instead() -> str:
    return say("device='cpu' or None (auto)", "--device cpu, or no --device (auto)")


def _model_for(name: str) -> str:
    return say(f"create_model({name!r}, weights=...)", f"--model {name}")


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``None`` -> ``cuda`` when available, else ``cpu``; anything else is validated by torch.

    Examples:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"Invalid device {device!r}: use {_valid_devices()}.") from err
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"Device {device!r} requested but CUDA is not available here; use {_instead()}.")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"Device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here (cuda:0 ...).")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"Device {device!r} requested but MPS is not available here; use {_instead()}.")
    return resolved


def _checkpoint_num_classes(ckpt: LocalCheckpoint, shapes: dict[str, tuple[int, ...]]) -> int | None:
    if ckpt.config is not None:
        return ckpt.config.num_classes
    shape = shapes.get(PREDICTOR_PREFIX + "cls_score.weight")
    return int(shape[0]) if shape else None


def _base_config(name: str, ckpt: LocalCheckpoint | None) -> ModelConfig:
    config = get_model_config(name)
    if ckpt is None:
        return config
    if ckpt.config is None:
        saved_for = ckpt.extra.get("fpn_zoo_model")
        if saved_for not in (None, name):
            raise ValueError(
                f"Weights {ckpt.weights_path} were saved for {saved_for!r}, not {name!r}. "
                f"Load them with {_model_for(saved_for)}."
            )
        return config
    if ckpt.config.name != name:
        raise ValueError(
            f"Weights {ckpt.weights_path} were exported for {ckpt.config.name!r}, not {name!r}. "
            f"Load them with {_model_for(ckpt.config.name)}."
        )
    return ckpt.config


def _materialize(model: nn.Module, device: torch.device) -> None:
    """Give tensors the checkpoint does not hold (BatchNorm step counters) real storage; refuse anything else."""
    leftovers = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    unexpected = [n for n in leftovers if not n.endswith("num_batches_tracked")]
    if unexpected:
        raise RuntimeError(f"Internal error: tensors left uninitialised after loading: {unexpected[:5]}")
    for name in leftovers:
        owner_name, _, attr = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        owner.register_buffer(attr, torch.zeros((), dtype=torch.long, device=device))


def create_model(
    name: str,
    *,
    weights: str | os.PathLike[str] | None = None,
    pretrained: bool | str = False,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    fast: bool | Literal["bf16"] = False,
    **overrides: Any,
) -> ZooDetector:
    """Build a zoo detector, optionally with weights, on the GPU when there is one.

    Args:
        name: Registered model name, e.g. ``"fpn_r50_coco"`` (see
            [`fpn_zoo.list_models`][fpn_zoo.registry.list_models]).
        weights: A local ``.safetensors`` file, an exported folder (``model.safetensors`` + ``config.json``), or
            ``"hf-hub:ORG/NAME[@REVISION]"`` for an exported model on the Hugging Face Hub. Loading is strict: a
            tensor that is missing, unexpected or of another shape is an error.
        pretrained: ``True`` loads the model's default weights from ``weights_manifest.json``, a string loads the
            weights with that tag. Published weights come from the Hub at their pinned commit; convertible ones
            are downloaded from upstream and converted once. Either way the file's full sha256 is verified before
            first use and the result is cached (``fpn_zoo.weights.cache``). Models without weights raise
            [`WeightsNotAvailableError`][fpn_zoo.weights.resolve.WeightsNotAvailableError] listing what exists.
        num_classes: Class slots including background. With weights of another class count, only the
            class-specific predictor (``roi_heads.box_predictor.*``) is re-initialised and a warning names the
            dropped tensors.
        device: ``None`` picks CUDA when available, else CPU.
        fast: ``True`` returns the fast inference form ([`fpn_zoo.fast_path`][fpn_zoo.fast_path]): BatchNorms
            folded into the convolutions, channels-last where it measured faster, inference mode; the same
            detections to float rounding. ``"bf16"`` adds bf16 autocast (native bf16 hardware only; detections
            move, see the docs' measured AP change). Such a model refuses ``.train()`` and ``state_dict()``.
        **overrides: Other [`ModelConfig`][fpn_zoo.config.ModelConfig] fields, e.g. ``box_score_thresh=0.3``,
            ``trainable_backbone_layers=5``, ``pretrained_backbone=True`` (timm ImageNet weights),
            ``bifpn_repeats=4``, ``categories=[...]``.

    Returns:
        The detector in eval mode on ``device``; call ``.train()`` to fine-tune.

    Raises:
        KeyError: Unknown model name (the message suggests close names).
        TypeError: Unknown override.
        ValueError: Invalid values, or weights exported for another model.
        WeightsMismatchError: Weights whose tensors do not fit.
        WeightsNotAvailableError: ``pretrained`` where no such weights exist.
        WeightsDownloadError: Weights that could not be fetched (offline with a cold cache, unknown revision...).
        WeightsIntegrityError: A download whose sha256 stays wrong after one retry.

    Examples:
        >>> import fpn_zoo, torch
        >>> model = fpn_zoo.create_model("fpn_r50_coco", device="cpu", min_size=256, max_size=256)
        >>> out = model([torch.rand(3, 200, 300)])
        >>> sorted(out[0])
        ['boxes', 'labels', 'scores']
    """
    if fast not in (False, True, "bf16"):
        raise ValueError(f"{option('fast', fast)} is not valid: use True, 'bf16' or False.")
    if weights is not None and pretrained is not False:
        raise ValueError(
            f"Pass either {option('weights', placeholder='PATH')} or {option('pretrained', True)}, not both."
        )
    if not isinstance(pretrained, (bool, str)):
        raise TypeError(f"pretrained must be True/False or a weights tag (str), got {pretrained!r}.")
    if num_classes is not None and (
        not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1
    ):
        raise ValueError(f"num_classes must be an integer >= 1 (background included), got {num_classes!r}.")
    target = resolve_device(device)
    if pretrained is not False:
        weights = resolve_pretrained(name, pretrained)
    elif weights is not None:
        weights = resolve_weights(weights)
    ckpt = read_checkpoint(weights) if weights is not None else None
    config = _base_config(name, ckpt)
    shapes = ckpt.tensor_shapes() if ckpt is not None else {}  # the header, read once
    ckpt_classes = _checkpoint_num_classes(ckpt, shapes) if ckpt is not None else None
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    elif ckpt_classes is not None and ckpt_classes != config.num_classes:
        overrides["num_classes"] = ckpt_classes
    config = config.replace(**overrides)

    if ckpt is None:
        # timm's ImageNet file comes through fpn_zoo's Hub download, not timm's: an unreachable Hub then fails within
        # seconds with one line saying what to do, where timm's own path retries for a minute.
        backbone_file = fetch_timm_weights(config.backbone_spec.timm_name) if config.pretrained_backbone else None
        with target:
            model = build_detector(config, detector_cls=ZooDetector, backbone_weights=backbone_file)
        return _finish(model.eval(), fast)

    drop = ckpt_classes is not None and ckpt_classes != config.num_classes
    with torch.device("meta"):
        model = build_detector(config, loads_weights=True, detector_cls=ZooDetector)
    report = check_state_dict(
        {k: tuple(v.shape) for k, v in model.state_dict().items()},
        shapes,
        drop_predictor=drop,
        source=str(ckpt.weights_path),
        model_name=name,
    )
    assign_state_dict(model, ckpt.read_tensors(target), report)
    if drop:
        with target:
            predictor = model.roi_heads.box_predictor
            model.roi_heads.box_predictor = FastRCNNPredictor(predictor.cls_score.in_features, config.num_classes)
            aux = getattr(model.roi_heads, "aux_head", None)  # AugFPN's consistent-supervision head
            if aux is not None:
                aux.box_predictor = FastRCNNPredictor(aux.box_predictor.cls_score.in_features, config.num_classes)
        warnings.warn(
            f"{name}: {config.num_classes} class slots, the weights have {ckpt_classes}; re-initialised the "
            f"class-specific predictor and dropped {', '.join(report.dropped)}.",
            stacklevel=2,
        )
    _materialize(model, target)
    return _finish(model.to(target).eval(), fast)


def _finish(model: ZooDetector, fast: bool | Literal["bf16"]) -> ZooDetector:
    return model.make_fast(bf16=fast == "bf16") if fast else model
