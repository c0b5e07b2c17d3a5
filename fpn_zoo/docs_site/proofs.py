"""How each convertible weights entry was proven to run as its upstream runs it, and what could not be checked.

The model pages say, for every weights tag, which test compares the converted model with the upstream's own code,
on what data and to what tolerance. That is data about the test suite, kept here in one table; ``tests/
test_docs_site.py`` checks it against the test files (the named tests exist, with these tolerances and references)
and, where mmengine is installed, checks that every config listed in ``SAME_MODEL_CONFIGS`` builds the same model as
the one the test builds.

An entry is matched to its proof by data the manifest already holds: torchvision files by the builder their file
name starts with (``fasterrcnn_resnet50_fpn_coco-258fb6c6.pth``), mmdetection files by the config of their
``recipe`` URL (``.../configs/faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py``). An entry no proof covers is shown as
such, never given another entry's proof.
"""

from __future__ import annotations

from dataclasses import dataclass

from fpn_zoo.weights.manifest import WeightsEntry

__all__ = [
    "COMMON_PROOFS",
    "PROOFS",
    "SAME_MODEL_CONFIGS",
    "UPSTREAM_NAMES",
    "Proof",
    "ProofMatch",
    "limits",
    "mmdet_config",
    "proof_for",
]

_TV_TEST = "tests/test_convert_torchvision.py"
_MMDET_TEST = "tests/test_convert_mmdet.py"
_TV_PHOTOS = "test_converted_weights_give_torchvision_detections_on_real_photos"
_TV_ANY_SIZE = "test_converted_weights_give_torchvision_detections_on_any_size"
_MMDET_FUNCTIONS = ("test_converted_weights_give_mmdetections_detections",)
_TV_DATA = (
    "seeded random weights in torchvision's own layout, saved with `torch.save` as torchvision publishes them; "
    "2 real coco128 photos (centre crops of 320x480 px, which neither model resizes)"
)
_TV_ANY_SIZE_DATA = (
    "; and 2 random images (240x320, 301x217) resized to 256-384 px and batched with padding, as torchvision runs "
    "(torchvision's own transform, the same in every variant, so tested on this one)"
)
_MMDET_DATA = (
    "seeded random weights, calibrated so that detections pass mmdetection's 0.05 score threshold, saved as "
    "mmdetection publishes checkpoints (`{meta, state_dict}` in torch's legacy format); 2 real coco128 photos (centre "
    "crops of 320x480 px, which neither side resizes)"
)
_MMDET_RUNTIME = (
    "run on CPU with mmcv-lite, torchvision's RoIAlign and NMS standing in for mmcv's two compiled ops (the stand-in "
    "is checked against mmcv's kernel in `tests/test_mmdet_reference.py`)"
)


# Who wrote the checkpoints each converter reads (fpn_zoo.converters.CONVERTERS' titles, without importing torch).
UPSTREAM_NAMES = {"torchvision": "torchvision", "mmdet": "mmdetection", "convnext": "the official ConvNeXt repository"}


@dataclass(frozen=True)
class Proof:
    """One equivalence test: a converted zoo model against the upstream's own model, detection for detection.

    Attributes:
        title: A heading naming the upstream model, e.g. ``"torchvision fasterrcnn_resnet50_fpn"``.
        anchor: The section id on a model page (``proof-...``).
        test: The test file, relative to the repository root.
        param: The test's parameter id for this upstream model, e.g. ``"faster_v1"``.
        functions: The test functions that compare detections.
        upstream: The upstream code the converted model is compared with, in words.
        data: The weights and images both run on.
        score_atol: Largest score difference allowed.
        box_atol: Largest box-coordinate difference allowed, in pixels.
        mmdet_config: The mmdetection config the reference model is built from (path under ``configs/``).
    """

    title: str
    anchor: str
    test: str
    param: str
    functions: tuple[str, ...]
    upstream: str
    data: str
    score_atol: float
    box_atol: float
    mmdet_config: str | None = None

    def pytest_ids(self) -> list[str]:
        """The test ids to run, e.g. ``tests/test_convert_mmdet.py::test_...[faster_r50_fpn]``."""
        return [f"{self.test}::{name}[{self.param}]" for name in self.functions]

    def tolerances(self) -> tuple[str, str]:
        """The score and box tolerances as the tests write them (``"1e-4"``, ``"1e-2"``)."""
        return _short(self.score_atol), _short(self.box_atol)

    def tolerance(self) -> str:
        score, box = self.tolerances()
        return (
            f"every detection of the upstream model has a twin with the same label, a score within {score} and a box "
            f"within {box} px, and there are as many (at least 10 per image)"
        )


def _short(value: float) -> str:
    """``1e-4`` rather than ``0.0001``, as the tests write tolerances."""
    mantissa, _, exponent = f"{value:.0e}".partition("e")
    exact = float(f"{mantissa}e{int(exponent)}") == value
    return f"{mantissa}e{int(exponent)}" if exact and value < 0.1 else f"{value:g}"


def _tv(anchor: str, param: str, builder: str, how: str, *, any_size: bool = False) -> Proof:
    upstream = f"torchvision's own `{builder}` (torchvision 0.29), {how}"
    title = f"torchvision `{builder}`"
    functions = (_TV_PHOTOS, _TV_ANY_SIZE) if any_size else (_TV_PHOTOS,)
    data = _TV_DATA + (_TV_ANY_SIZE_DATA if any_size else "")
    return Proof(title, anchor, _TV_TEST, param, functions, upstream, data, 1e-4, 1e-3)


def _mmdet(anchor: str, param: str, detector: str, config: str) -> Proof:
    upstream = f"mmdetection 3.3.0's own {detector}, built from the config it ships, `configs/{config}`, " + (
        _MMDET_RUNTIME
    )
    title = f"mmdetection `{config.rsplit('/', 1)[-1].removesuffix('.py')}`"
    return Proof(title, anchor, _MMDET_TEST, param, _MMDET_FUNCTIONS, upstream, _MMDET_DATA, 1e-4, 1e-2, config)


_V1_BUILD = "built as its builder builds it for the COCO_V1 weights (FrozenBatchNorm2d, ResNet-50 FPN, 91 classes)"
_V2_BUILD = "built by its builder (v2 heads: BatchNorm backbone and FPN, 2-conv RPN head, 4conv+1fc box head)"

# Keyed by torchvision builder name (the start of its file name) or by mmdetection config (under configs/).
PROOFS: dict[str, Proof] = {
    "fasterrcnn_resnet50_fpn": _tv(
        "proof-tv-faster-v1", "faster_v1", "fasterrcnn_resnet50_fpn", _V1_BUILD, any_size=True
    ),
    "maskrcnn_resnet50_fpn": _tv(
        "proof-tv-mask-v1", "mask_v1", "maskrcnn_resnet50_fpn", _V1_BUILD + "; the conversion drops its mask branch"
    ),
    "fasterrcnn_resnet50_fpn_v2": _tv("proof-tv-faster-v2", "faster_v2", "fasterrcnn_resnet50_fpn_v2", _V2_BUILD),
    "maskrcnn_resnet50_fpn_v2": _tv(
        "proof-tv-mask-v2", "mask_v2", "maskrcnn_resnet50_fpn_v2", _V2_BUILD + "; the conversion drops its mask branch"
    ),
    "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py": _mmdet(
        "proof-mmdet-faster-r50-fpn", "faster_r50_fpn", "Faster R-CNN", "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py"
    ),
    "faster_rcnn/faster-rcnn_r101_fpn_1x_coco.py": _mmdet(
        "proof-mmdet-faster-r101-fpn", "faster_r101_fpn", "Faster R-CNN", "faster_rcnn/faster-rcnn_r101_fpn_1x_coco.py"
    ),
    "pafpn/faster-rcnn_r50_pafpn_1x_coco.py": _mmdet(
        "proof-mmdet-faster-r50-pafpn", "faster_r50_pafpn", "Faster R-CNN", "pafpn/faster-rcnn_r50_pafpn_1x_coco.py"
    ),
    "mask_rcnn/mask-rcnn_r50_fpn_ms-poly-3x_coco.py": _mmdet(
        "proof-mmdet-mask-r50-fpn",
        "mask_r50_fpn",
        "Mask R-CNN (the conversion drops its mask branch)",
        "mask_rcnn/mask-rcnn_r50_fpn_ms-poly-3x_coco.py",
    ),
    "convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py": _mmdet(
        "proof-mmdet-mask-convnext-t",
        "mask_convnext_t_fpn",
        "Mask R-CNN with mmpretrain 1.2.0's ConvNeXt-T backbone (the conversion drops its mask branch)",
        "convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py",
    ),
}

# mmdetection configs whose model and test pipeline are those of a tested config, apart from the fields named (a
# config's `model` with `train_cfg` and the backbone's `init_cfg` removed, and its test pipeline), with why the named
# differences are covered. Everything else that differs is training only: schedule, multi-scale augmentation,
# backbone initialisation, optimiser.
SAME_MODEL_CONFIGS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py": ("faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py", (), ""),
    "faster_rcnn/faster-rcnn_r50_fpn_ms-3x_coco.py": ("faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py", (), ""),
    "resnet_strikes_back/faster-rcnn_r50-rsb-pre_fpn_1x_coco.py": (
        "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py",
        (),
        "",
    ),
    "faster_rcnn/faster-rcnn_r101_fpn_2x_coco.py": ("faster_rcnn/faster-rcnn_r101_fpn_1x_coco.py", (), ""),
    "faster_rcnn/faster-rcnn_r101_fpn_ms-3x_coco.py": ("faster_rcnn/faster-rcnn_r101_fpn_1x_coco.py", (), ""),
    "mask_rcnn/mask-rcnn_r101_fpn_ms-poly-3x_coco.py": (
        "mask_rcnn/mask-rcnn_r50_fpn_ms-poly-3x_coco.py",
        ("backbone.depth",),
        "a ResNet-101 maps as in the tested R-101 Faster R-CNN "
        "(`tests/test_convert_mmdet.py::test_converted_weights_give_mmdetections_detections[faster_r101_fpn]`)",
    ),
}

# Tests that hold for every convertible tag, or for every tag of one converter.
COMMON_PROOFS: dict[str, tuple[str, ...]] = {
    "all": (
        "`tests/test_convert_download.py`: for every convertible tag of the manifest, a file in the upstream's own "
        "layout (random weights, not the upstream file) is served on loopback under the entry's upstream file name; "
        "`create_model(name, pretrained=tag)` downloads it once, checks its hash prefix, converts it, caches it and "
        "runs with the converter's inference settings; a second run with `HF_HUB_OFFLINE=1` loads every tag from "
        "the caches without a request or a conversion.",
    ),
    "mmdet": (
        "`tests/test_convert_mmdet.py` compares each inference setting with mmdetection's component: exact anchors "
        "at fixed strides with `AnchorGenerator` (equal to the bit), the two-sided delta clamp with "
        "`DeltaXYWHBBoxCoder`, aligned adaptive RoIAlign with mmcv's `RoIAlign` (equal to the bit), and the 81-to-91 "
        "class remap (the ten unused COCO slots score exactly 0; softmax over 91 equals mmdetection's over 81).",
    ),
    "torchvision": (
        "`tests/test_convert_torchvision.py::test_eps_defaults_to_torchvision_default_unless_the_file_is_coco_v1`: "
        "torchvision's COCO_V1 v1 files, recognised by their sha256 prefix, get the BatchNorm epsilon 0.0 their "
        "builders set; any other torchvision file gets 1e-5.",
    ),
}
COMMON_PROOFS["convnext"] = COMMON_PROOFS["mmdet"] + (
    "`tests/test_convert_mmdet.py`: the official ConvNeXt names convert to the same tensors as mmpretrain's, and "
    "the backbone tensors land where timm's own `convnext.checkpoint_filter_fn` puts them.",
)


@dataclass(frozen=True)
class ProofMatch:
    """The proof that covers an entry, and how its upstream model relates to the one the test builds.

    Attributes:
        proof: The equivalence test.
        config: The entry's mmdetection config (``None`` for torchvision files).
        differs: Config fields in which the entry's model differs from the tested one (empty: none).
        covered: Why those differences are proven too (another test).
    """

    proof: Proof
    config: str | None = None
    differs: tuple[str, ...] = ()
    covered: str = ""

    @property
    def same_config(self) -> bool:
        return self.config is None or self.config == self.proof.mmdet_config


def mmdet_config(entry: WeightsEntry) -> str | None:
    """The mmdetection config an entry's ``recipe`` URL names (the path under ``configs/``), if it names one."""
    _, sep, tail = entry.recipe.partition("/configs/")
    return tail if sep and tail.endswith(".py") else None


def proof_for(entry: WeightsEntry) -> ProofMatch | None:
    """The test that proves ``entry``'s conversion, or ``None`` when no test covers its upstream model.

    Examples:
        >>> from fpn_zoo.weights.manifest import load_manifest
        >>> match = proof_for(load_manifest().entry("fpn_r50_coco", "coco_mmdet_2x"))
        >>> match.proof.param, match.config, match.same_config
        ('faster_r50_fpn', 'faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py', False)
    """
    upstream = entry.upstream
    if upstream is None:
        return None
    if upstream.converter == "torchvision":
        builder = upstream.filename.split("_coco-")[0]
        return ProofMatch(PROOFS[builder]) if builder in PROOFS else None
    config = mmdet_config(entry)
    if config is None:
        return None
    if config in PROOFS:
        return ProofMatch(PROOFS[config], config)
    if config in SAME_MODEL_CONFIGS:
        tested, differs, covered = SAME_MODEL_CONFIGS[config]
        return ProofMatch(PROOFS[tested], config, differs, covered)
    return None


def limits(entry: WeightsEntry) -> list[str]:
    """What could not be verified about ``entry`` where these pages were made (no network, no COCO images)."""
    upstream = entry.upstream
    if upstream is None:
        return []
    who = UPSTREAM_NAMES[upstream.converter]
    digest = (
        "its full sha256 is recorded in the manifest and checked"
        if upstream.sha256
        else "the sha256 prefix is read off the file name (the upstream puts the first 8 hex digits of the file's "
        "sha256 in its name); no file was hashed here"
    )
    items = [
        "The real upstream file was never downloaded here (no network): the tests ran on files in its layout with "
        "random weights.",
        f"The box AP is {who}'s reported figure, not measured by fpn_zoo (no COCO val2017 images here).",
        digest[0].upper() + digest[1:] + ".",
        "What the real file stores next to its weights is unconfirmed; the reader accepts numpy metadata and "
        "`argparse.Namespace` and refuses any other object by name, loading nothing.",
    ]
    if upstream.converter == "torchvision":
        items.append(
            "fpn_zoo pre-processes images with torchvision's own transform (float tensor, bilinear resize, size "
            "floored), so the converted weights should reproduce torchvision's figure; that is expected, not measured."
        )
    else:
        items += [
            "Whether the file stores float16 tensors (mmdetection's fp16 runs may) is unconfirmed; the converter casts "
            "every floating tensor to float32.",
            "Pre-processing differs: mmdetection resizes the uint8 image with cv2 and rounds the target size "
            "(`int(w * s + 0.5)`), fpn_zoo resizes the float tensor bilinearly and floors it. On COCO's 800-1333 px "
            "images the sizes differ by at most a pixel and the pixels by interpolation rounding, so the converted "
            "weights may score slightly differently from the reported AP (expected within a few tenths of a point; "
            "not measured).",
        ]
    return items
