"""torchvision Faster / Mask R-CNN checkpoints (v1 and v2 heads) -> zoo models.

torchvision's ``fasterrcnn_resnet50_fpn`` is ``fpn_r50_coco`` and ``fasterrcnn_resnet50_fpn_v2`` is
``fpn_r50_v2_coco``, tensor for tensor: timm's ResNet has torchvision's parameter names, the zoo's FPN has
torchvision's arithmetic (names follow mmdetection: ``inner_blocks`` -> ``lateral_convs``, ``layer_blocks`` ->
``fpn_convs``) and the RPN and RoI heads *are* torchvision's modules. Converting is renaming; no tensor changes value.
Mask R-CNN files (``maskrcnn_resnet50_fpn``, ``_v2``) are the same detectors plus a mask branch, computed after the
boxes, which is dropped: the boxes, scores and labels stay those of the Mask R-CNN.

Sources: torchvision 0.29 ``models/detection/faster_rcnn.py`` (``fasterrcnn_resnet50_fpn``, ``_v2``),
``mask_rcnn.py``, ``ops/feature_pyramid_network.py`` (``_version = 2`` and its legacy-key upgrade), ``rpn.py``
(``RPNHead._version = 2``: legacy ``rpn.head.conv.weight``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from fpn_zoo.config import VARIANTS, model_name
from fpn_zoo.converters.layout import (
    RESNET_BY_STAGE3_BLOCKS,
    Conversion,
    LayoutError,
    Recognised,
    count_blocks,
    describe_keys,
    rename,
    rules,
)

# torchvision's COCO_V1 weights of the v1 detectors were trained with FrozenBatchNorm2d(eps=0.0): their builders call
# overwrite_eps(model, 0.0) (faster_rcnn.py fasterrcnn_resnet50_fpn, mask_rcnn.py maskrcnn_resnet50_fpn). The files
# are recognised by the sha256 prefix torchvision puts in their names; any other file is assumed to use the default.
COCO_V1_SHA256_PREFIXES: dict[str, str] = {
    "258fb6c6": "fasterrcnn_resnet50_fpn COCO_V1",
    "bf2d0c1e": "maskrcnn_resnet50_fpn COCO_V1",
}
COCO_V1_BN_EPS = 0.0
DEFAULT_BN_EPS = 1e-5

_HEADS = (
    (r"^backbone\.body\.", "backbone.body.model."),
    (r"^rpn\.head\.conv\.(weight|bias)$", r"rpn.head.conv.0.0.\1"),  # legacy RPNHead (version < 2)
    (r"^(rpn\.head\.|roi_heads\.box_head\.|roi_heads\.box_predictor\.)", r"\1"),
)
# v1 FPN blocks are plain convs: `_version = 2` nests them in Conv2dNormActivation (`.0.`), the legacy layout does not;
# the zoo keeps a plain Conv2d. v2 blocks are conv (`.0.`) + BatchNorm (`.1.`), as the zoo's normalised FPN.
_PLAIN_FPN = rules(
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.(?:0\.)?", r"backbone.neck.lateral_convs.\1."),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.(?:0\.)?", r"backbone.neck.fpn_convs.\1."),
    *_HEADS,
)
_NORMALISED_FPN = rules(
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.", r"backbone.neck.lateral_convs.\1."),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.", r"backbone.neck.fpn_convs.\1."),
    *_HEADS,
)
MASK_PREFIXES = ("roi_heads.mask_head.", "roi_heads.mask_predictor.")
# torchvision's ResNet + FPN detectors: fasterrcnn_resnet50_fpn(_v2), maskrcnn_resnet50_fpn(_v2), and the same
# v1 heads on a ResNet-101 (`resnet_fpn_backbone("resnet101")`).
MODELS: tuple[str, ...] = ("fpn_r50_coco", "fpn_r101_coco", "fpn_r50_v2_coco")


def _fpn_is_normalised(shapes: Mapping[str, tuple[int, ...]]) -> bool:
    return "backbone.fpn.inner_blocks.0.1.weight" in shapes


def recognise(state_dict: Mapping[str, Tensor]) -> Recognised:
    """The zoo model a torchvision Faster / Mask R-CNN (ResNet + FPN) state dict fits.

    Raises:
        LayoutError: Another layout, with what was recognised.

    Examples:
        >>> import torch
        >>> from torchvision.models.detection import fasterrcnn_resnet50_fpn_v2
        >>> with torch.device("meta"):
        ...     recognise(fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None).state_dict()).model
        'fpn_r50_v2_coco'
    """
    keys = list(state_dict)
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    found: list[str] = []
    try:
        if "backbone.body.conv1.weight" not in shapes or (
            "backbone.fpn.inner_blocks.0.0.weight" not in shapes
            and ("backbone.fpn.inner_blocks.0.weight" not in shapes)
        ):
            raise LayoutError(f"no ResNet + FPN backbone (backbone.body, backbone.fpn); found {describe_keys(keys)}")
        blocks = count_blocks(keys, "backbone.body.layer3")
        if blocks not in RESNET_BY_STAGE3_BLOCKS:
            raise LayoutError(
                f"a ResNet with {blocks} blocks in stage 3; the zoo has ResNet-50 (6) and ResNet-101 (23)"
            )
        backbone = RESNET_BY_STAGE3_BLOCKS[blocks]
        found.append(f"ResNet-{backbone[1:]}")
        norm_fpn = _fpn_is_normalised(shapes)
        found.append("FPN with BatchNorm" if norm_fpn else "FPN")
        rpn_depth = max(1, count_blocks(keys, "rpn.head.conv"))
        found.append(f"RPN head with {rpn_depth} conv(s)")
        if "roi_heads.box_head.fc6.weight" in shapes:
            box_head = "2fc"
        elif "roi_heads.box_head.0.0.weight" in shapes and count_blocks(keys, "roi_heads.box_head") == 6:
            box_head = "4conv1fc"
        else:
            raise LayoutError("a box head other than TwoMLPHead (v1) or FastRCNNConvFCHead with 4 convs (v2)")
        found.append({"2fc": "TwoMLPHead", "4conv1fc": "FastRCNNConvFCHead 4conv+1fc"}[box_head])
        v1 = (not norm_fpn, rpn_depth, box_head) == (True, 1, "2fc")
        v2 = (norm_fpn, rpn_depth, box_head) == (True, 2, "4conv1fc")
        if not (v1 or v2):
            raise LayoutError("a mix of v1 and v2 heads that no zoo model has (v1: plain FPN, 1-conv RPN, TwoMLPHead; "
                              "v2: BatchNorm FPN, 2-conv RPN, 4conv+1fc)")  # fmt: skip
    except LayoutError as err:
        done = f" Recognised so far: {', '.join(found)}." if found else ""
        raise LayoutError(f"Not a torchvision layout the zoo converts: {err}.{done}") from None
    dropped = tuple(p for p in MASK_PREFIXES if any(k.startswith(p) for k in keys))
    version = "v2" if v2 else "v1"
    detector = f"Mask R-CNN {version} (mask branch dropped)" if dropped else f"Faster R-CNN {version}"
    description = f"torchvision {detector}, {', '.join(found)}"
    return Recognised(model_name("fpn", backbone, "coco", "v2" if v2 else None), description, dropped)


def convert(state_dict: Mapping[str, Tensor], *, sha256: str | None = None) -> Conversion:
    """Map a torchvision Faster / Mask R-CNN state dict onto the zoo model `recognise` names.

    Args:
        state_dict: The upstream tensors.
        sha256: The file's digest: torchvision's own COCO_V1 v1 files are recognised by it and get the BatchNorm
            epsilon 0.0 they were trained with; other v1 files get torchvision's default 1e-5.

    Examples:
        >>> import torch
        >>> from torchvision.models.detection import fasterrcnn_resnet50_fpn
        >>> with torch.device("meta"):
        ...     tv = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
        >>> convert(tv).options["frozen_bn_eps"], convert(tv, sha256="258fb6c6" + "0" * 56).options["frozen_bn_eps"]
        (1e-05, 0.0)
    """
    recognised = recognise(state_dict)
    dropped = sorted(k for k in state_dict if k.startswith(recognised.dropped_prefixes))
    # BatchNorm step counters are not weights: FrozenBatchNorm2d has none, ordinary BatchNorm restarts its own.
    kept = {k: v for k, v in state_dict.items() if k not in dropped and not k.endswith("num_batches_tracked")}
    out, unmatched = rename(kept, _NORMALISED_FPN if _fpn_is_normalised(state_dict) else _PLAIN_FPN)
    if unmatched:
        raise LayoutError(
            f"{len(unmatched)} tensor(s) of the torchvision checkpoint have no place in {recognised.model}: "
            f"{', '.join(unmatched[:8])}"
        )
    known = COCO_V1_SHA256_PREFIXES.get((sha256 or "")[:8])
    notes = (f"recognised torchvision's {known} file: FrozenBatchNorm eps 0.0, as its builder sets",) if known else ()
    return Conversion(out, options(recognised.model, sha256), tuple(dropped), recognised, notes)


def options(model: str, sha256: str | None = None) -> dict[str, Any]:
    """The model options torchvision weights for ``model`` run with: torchvision's own inference settings (the
    zoo's defaults), the v2 architecture for ``*_v2_*`` models, and the BatchNorm epsilon of the file.

    Examples:
        >>> options("fpn_r50_coco", "258fb6c6" + "0" * 56)
        {'frozen_bn_eps': 0.0}
    """
    if model.endswith("_v2_coco"):
        return dict(VARIANTS["v2"].options)  # ordinary BatchNorm, eps 1e-5 (the _v2 builders keep it)
    return {"frozen_bn_eps": COCO_V1_BN_EPS if (sha256 or "")[:8] in COCO_V1_SHA256_PREFIXES else DEFAULT_BN_EPS}
