"""Convert upstream checkpoints into zoo checkpoints.

torchvision's ``fasterrcnn_resnet50_fpn`` and ``fpn_r50_coco`` are the same network: timm's ResNet-50 has
torchvision's parameter names, the FPN arithmetic is identical and the RPN/RoI heads *are* torchvision's. Converting
is therefore a pure renaming; no tensor changes value.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from fpn_zoo.registry import get_model_config
from fpn_zoo.weights.checkpoint import CheckpointError, save_checkpoint
from fpn_zoo.weights.integrity import sha256_file
from fpn_zoo.weights.loading import check_state_dict

# torchvision's COCO_V1 weights were trained with FrozenBatchNorm2d(eps=0.0): its builder calls overwrite_eps(0.0).
# The file is recognised by its sha256, whose first 8 hex digits torchvision puts in the file name.
TORCHVISION_COCO_V1_SHA256_PREFIX = "258fb6c6"
TORCHVISION_COCO_V1_BN_EPS = 0.0
DEFAULT_BN_EPS = 1e-5  # torchvision's FrozenBatchNorm2d default: any other torchvision-trained checkpoint
SUPPORTED = {"torchvision": ("fpn_r50_coco",)}

_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^backbone\.body\."), "backbone.body.model."),
    # FPN blocks: `_version = 2` layout (`.0.` = conv inside Conv2dNormActivation) and the legacy plain-conv layout.
    (re.compile(r"^backbone\.fpn\.inner_blocks\.(\d+)\.(?:0\.)?"), r"backbone.neck.lateral_convs.\1."),
    (re.compile(r"^backbone\.fpn\.layer_blocks\.(\d+)\.(?:0\.)?"), r"backbone.neck.fpn_convs.\1."),
    # RPN head conv: legacy `rpn.head.conv.weight` -> current `rpn.head.conv.0.0.weight`.
    (re.compile(r"^rpn\.head\.conv\.(weight|bias)$"), r"rpn.head.conv.0.0.\1"),
)


def torchvision_to_zoo_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ``fasterrcnn_resnet50_fpn`` state dict to ``fpn_r50_coco`` names.

    BatchNorm step counters are dropped (the converted backbone uses frozen BatchNorm). Every other tensor is kept
    as it is; names the mapping does not know pass through unchanged and are caught by the strict check.

    Examples:
        >>> sorted(torchvision_to_zoo_keys({"backbone.fpn.inner_blocks.0.0.weight": torch.zeros(1)}))
        ['backbone.neck.lateral_convs.0.weight']
    """
    out = {}
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        new = key
        for pattern, repl in _RENAMES:
            new = pattern.sub(repl, new)
        out[new] = value
    return out


def read_torch_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a ``.pth`` state dict with ``weights_only=True``: tensors and plain containers only, never code.

    Accepts a bare state dict or a training checkpoint holding one under ``"model"`` (torchvision's references).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"No checkpoint file at {str(path)!r}.")
    try:
        # torchvision's reference training script stores its argparse.Namespace next to the weights.
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "Weights only load failed" in str(err):
            raise CheckpointError(
                f"Refused to load {p}: it contains pickled objects other than tensors, and loading them could run "
                f"code. Save a plain state_dict (torch.save(model.state_dict(), ...)). Detail: {first_line}"
            ) from err
        raise CheckpointError(f"{p} is not a PyTorch checkpoint ({first_line}).") from err
    except Exception as err:  # torch.load raises KeyError, ValueError, RuntimeError... on non-checkpoint bytes
        raise CheckpointError(f"{p} is not a readable PyTorch checkpoint ({type(err).__name__}: {err}).") from err
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{p} does not hold a state dict (a mapping of names to tensors).")
    return obj


def convert_torchvision_checkpoint(
    src: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    model: str = "fpn_r50_coco",
    frozen_bn_eps: float | None = None,
    sha256: str | None = None,
) -> Path:
    """Convert a torchvision ``fasterrcnn_resnet50_fpn`` checkpoint into an exported ``fpn_r50_coco`` folder.

    Args:
        src: torchvision state dict (``.pth``), e.g. ``fasterrcnn_resnet50_fpn_coco-258fb6c6.pth``.
        out_dir: Folder receiving ``model.safetensors`` and ``config.json``.
        model: Target zoo model; only ``fpn_r50_coco`` has torchvision's architecture.
        frozen_bn_eps: BatchNorm epsilon the weights were trained with. ``None`` recognises torchvision's COCO_V1
            file by its sha256 (eps 0.0, as torchvision's builder sets) and otherwise uses torchvision's default 1e-5.

    Returns:
        ``out_dir``, ready for ``create_model(model, weights=out_dir)``.

    Raises:
        CheckpointError: Unreadable or unsafe file.
        WeightsMismatchError: The state dict is not a ``fasterrcnn_resnet50_fpn`` (mismatched tensors named).

    Examples:
        >>> convert_torchvision_checkpoint("tv.pth", "out/fpn_r50_coco")  # doctest: +SKIP
    """
    if model not in SUPPORTED["torchvision"]:
        raise ValueError(
            f"torchvision checkpoints convert only to {SUPPORTED['torchvision']}; {model!r} has no torchvision twin."
        )
    state = torchvision_to_zoo_keys(read_torch_state_dict(src))
    digest = sha256 or sha256_file(src)
    if frozen_bn_eps is None:
        is_coco_v1 = digest.startswith(TORCHVISION_COCO_V1_SHA256_PREFIX)
        frozen_bn_eps = TORCHVISION_COCO_V1_BN_EPS if is_coco_v1 else DEFAULT_BN_EPS
    config = get_model_config(model).replace(frozen_bn_eps=frozen_bn_eps)
    cls_weight = state.get("roi_heads.box_predictor.cls_score.weight")
    if cls_weight is not None and cls_weight.shape[0] != config.num_classes:
        config = config.replace(num_classes=int(cls_weight.shape[0]))

    from fpn_zoo.detector import build_detector  # deferred: torchvision model code only when converting

    with torch.device("meta"):
        reference = build_detector(config, loads_weights=True).state_dict()
    check_state_dict(
        {k: tuple(v.shape) for k, v in reference.items()},
        {k: tuple(v.shape) for k, v in state.items()},
        drop_predictor=False,
        source=str(src),
        model_name=model,
    )
    source = {
        "converted_from": "torchvision fasterrcnn_resnet50_fpn",
        "file": Path(src).name,
        "sha256": digest,
    }
    return save_checkpoint(state, config, out_dir, extra={"source": source})
