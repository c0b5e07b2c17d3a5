"""mmdetection's own detectors on CPU, as the reference that converted checkpoints are compared against.

Later tests build an mmdet model from a config mmdet ships, give it seeded random weights, save them as the kind of
checkpoint file mmdetection publishes, convert that file with the zoo's converter and compare detections. This
module is the mmdet side of that: it never touches ``fpn_zoo`` apart from reusing the benchmark's ``randomise_``.

mmcv-lite (the only mmcv that installs without a compiler) has no compiled ops, and ``mmdet.models`` imports
``mmcv.ops`` at import time. :func:`install_mmcv_ext_stand_in` puts a pure-Python ``mmcv._ext`` in its place whose
``roi_align_forward`` and ``nms`` are torchvision's (the only two ops these Faster/Mask R-CNN configs run at
inference) and whose every other op raises ``NotImplementedError`` when called.

Everything that needs the OpenMMLab libraries calls :func:`require_mmdet` first, so test files skip cleanly where
they are not installed; :data:`MMDET_CLASS_NAMES` is resolved lazily for the same reason.

Examples:
    >>> model = build_mmdet_model("faster_r50_fpn")  # doctest: +SKIP
    >>> randomise_for_detections(model, seed=0)  # doctest: +SKIP
    >>> det = mmdet_predict(model, real_photos(1)[0])  # doctest: +SKIP
    >>> sorted(det)  # doctest: +SKIP
    ['boxes', 'labels', 'scores']
"""

from __future__ import annotations

import copy
import functools
import importlib.machinery
import importlib.util
import os
import sys
import types
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch
import torchvision
from photos import real_photos
from torch import nn

from fpn_zoo.bench.references import randomise_

if TYPE_CHECKING:
    MMDET_CLASS_NAMES: tuple[str, ...]

__all__ = [
    "LOGIT_SCALE",
    "MMDET_CLASS_NAMES",
    "MMDET_CONFIGS",
    "ROI_FRACTION",
    "SCORE_THRESH",
    "build_mmdet_model",
    "install_mmcv_ext_stand_in",
    "mmdet_config_path",
    "mmdet_predict",
    "randomise_for_detections",
    "real_photos",
    "require_mmdet",
    "save_mmdet_checkpoint",
]

# Short keys -> config files inside the installed mmdet package (``<mmdet>/.mim/configs/<path>``), mmdet 3.3.0.
MMDET_CONFIGS: dict[str, str] = {
    "faster_r50_fpn": "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py",
    "faster_r101_fpn": "faster_rcnn/faster-rcnn_r101_fpn_1x_coco.py",
    "faster_r50_pafpn": "pafpn/faster-rcnn_r50_pafpn_1x_coco.py",
    "mask_r50_fpn": "mask_rcnn/mask-rcnn_r50_fpn_ms-poly-3x_coco.py",
    "mask_r101_fpn": "mask_rcnn/mask-rcnn_r101_fpn_ms-poly-3x_coco.py",
    "mask_convnext_t_fpn": "convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py",
}

# How randomise_for_detections shapes the box head's class logits (see there). Tuned on the two default 320x480
# coco128 crops with seeds 0 and 1, calibrating on both: 15-93 detections per image over the five configs (none capped
# at mmdet's 100), scores from the 0.05 threshold up to 0.56-1.0, 9-45 distinct labels.
LOGIT_SCALE = 3.0  # class logits are this many standard deviations (over RoIs) per unit of z-score
ROI_FRACTION = 0.05  # share of the calibration RoIs whose best class passes the score threshold

SCORE_THRESH = 0.05  # mmdet's rcnn test_cfg.score_thr in every config above


# --------------------------------------------------------------------------------------------------------------------
# mmcv._ext stand-in
# --------------------------------------------------------------------------------------------------------------------


class _MmcvExtStandIn(types.ModuleType):
    """``mmcv._ext`` without compiled code: two ops from torchvision, every other name a function that refuses.

    ``mmcv.utils.ext_loader.load_ext`` (mmcv 2.1.0 ``mmcv/utils/ext_loader.py`` lines 12-16) is
    ``importlib.import_module('mmcv._ext')`` followed by ``assert hasattr(ext, fun)`` for each op a module names, and
    the op modules then call ``ext_module.<op>(...)``. So whatever ``sys.modules['mmcv._ext']`` holds is what mmcv
    runs, and every op name must exist. Dunder (and other underscore) lookups raise ``AttributeError`` so that
    importlib, inspect, pickle and doctest probing (``__path__``, ``__wrapped__``, ...) see an ordinary module.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # no mmcv op name does (113 names in mmcv 2.1.0's load_ext calls)
            raise AttributeError(name)

        def not_available(*args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError(
                f"mmcv._ext.{name} is not available: mmcv-lite has no compiled ops and tests/mmdet_reference.py's "
                "stand-in implements only roi_align_forward and nms (through torchvision)"
            )

        not_available.__name__ = name
        return not_available


def _roi_align_forward(
    input: torch.Tensor,
    rois: torch.Tensor,
    output: torch.Tensor,
    argmax_y: torch.Tensor,
    argmax_x: torch.Tensor,
    aligned_height: int,
    aligned_width: int,
    spatial_scale: float,
    sampling_ratio: int,
    pool_mode: int,
    aligned: bool,
) -> None:
    """mmcv's ``roi_align_forward`` (average pooling) as torchvision computes it, written into ``output``.

    The kernels agree (mmcv ``ops/csrc/pytorch/cpu/roi_align.cpp`` lines 129-155 against torchvision's
    ``roi_align_kernel.cpp``): the same half-pixel offset when ``aligned``, the same 1x1 floor for legacy
    (``aligned=False``) RoIs, and ``sampling_ratio <= 0`` means ``ceil(roi_size / output_size)`` samples per bin on
    both sides (torchvision ``ops/roi_align.py`` docstring), so mmcv's ``sampling_ratio=0`` carries over unchanged.
    """
    del argmax_y, argmax_x  # only max pooling fills them
    if pool_mode != 1:  # mmcv/ops/roi_align.py line 74: 0 is 'max', 1 is 'avg'
        raise NotImplementedError("the mmcv._ext stand-in implements RoIAlign average pooling only (pool_mode='avg')")
    out = torchvision.ops.roi_align(
        input, rois, (aligned_height, aligned_width), float(spatial_scale), int(sampling_ratio), bool(aligned)
    )
    output.copy_(out)


def _nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, offset: int) -> torch.Tensor:
    """mmcv's ``nms``: indices kept, in decreasing score order, as torchvision returns them.

    mmcv's CPU kernel (``ops/csrc/pytorch/cpu/nms.cpp`` lines 5-54) sorts by score, suppresses ``IoU > threshold``
    with box sides ``x2 - x1 + offset``; torchvision is the same rule for ``offset == 0``, the only value refused
    here is the legacy ``offset=1``.
    """
    if offset != 0:
        raise NotImplementedError(f"the mmcv._ext stand-in's nms supports offset=0 only, got offset={offset}")
    return torchvision.ops.nms(boxes, scores, float(iou_threshold))


def install_mmcv_ext_stand_in() -> None:
    """Make ``import mmcv.ops`` work on mmcv-lite; does nothing when an ``mmcv._ext`` is already importable.

    Must run before anything imports ``mmcv.ops`` (``mmdet.models`` does). Idempotent. The module gets a
    ``__spec__`` with no loader, so ``mmengine.utils.dl_utils.mmcv_full_available()`` (``pkgutil.find_loader``)
    answers ``False`` instead of raising, as it would for a module whose ``__spec__`` is ``None``.
    """
    if "mmcv._ext" in sys.modules:
        return
    import mmcv  # noqa: F401  (find_spec of a submodule imports the parent package)

    if importlib.util.find_spec("mmcv._ext") is not None:  # full mmcv: use its compiled ops
        return
    ext = _MmcvExtStandIn("mmcv._ext", "Pure-Python stand-in for mmcv's compiled ops (tests/mmdet_reference.py).")
    ext.__file__ = __file__
    ext.__spec__ = importlib.machinery.ModuleSpec("mmcv._ext", loader=None, origin=__file__)
    ext.roi_align_forward = _roi_align_forward
    ext.nms = _nms
    sys.modules["mmcv._ext"] = ext


# --------------------------------------------------------------------------------------------------------------------
# building and running mmdet models
# --------------------------------------------------------------------------------------------------------------------


def require_mmdet(*, mmpretrain: bool = False) -> None:
    """Skip the calling test (or test module, at import time) unless mmengine, mmcv and mmdet are importable.

    Installs the ``mmcv._ext`` stand-in before ``mmdet`` is imported. ``mmpretrain=True`` also requires mmpretrain,
    which only the ConvNeXt config needs (its ``custom_imports`` loads ``mmpretrain.models``).
    """
    reason = "mmdetection reference tests need {} (pip install mmengine mmcv-lite mmdet mmpretrain)"
    pytest.importorskip("mmengine", reason=reason.format("mmengine"))
    pytest.importorskip("mmcv", reason=reason.format("mmcv"))
    install_mmcv_ext_stand_in()
    pytest.importorskip("mmdet", reason=reason.format("mmdet"))
    with warnings.catch_warnings():
        # Only because the stand-in makes mmcv.ops importable, mmcv/cnn/bricks/transformer.py (line 24) warns that
        # MultiScaleDeformableAttention moved, a deprecation notice meant for code that imports it from there.
        warnings.filterwarnings("ignore", "``MultiScaleDeformableAttention`` has been moved", ImportWarning)
        import mmdet.models  # noqa: F401
    if mmpretrain:
        pytest.importorskip("mmpretrain", reason=reason.format("mmpretrain"))


def mmdet_config_path(key: str) -> Path:
    """The config file mmdet ships for ``key`` (one of :data:`MMDET_CONFIGS`)."""
    require_mmdet()
    import mmdet

    path = Path(mmdet.__file__).parent / ".mim" / "configs" / MMDET_CONFIGS[key]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not in the installed mmdet {mmdet.__version__}")
    return path


def _needs_mmpretrain(key: str) -> bool:
    return "convnext" in MMDET_CONFIGS[key]


@functools.cache
def _config(key: str) -> Any:
    """The parsed config (``mmengine.Config``), cached: parsing the ``_base_`` chain takes ~0.5 s."""
    from mmengine.config import Config

    # Config.fromfile runs the file's custom_imports (ConvNeXt: 'mmpretrain.models', which registers
    # 'mmpretrain.ConvNeXt'), mmengine/config/config.py lines 464-466.
    return Config.fromfile(str(mmdet_config_path(key)))


def build_mmdet_model(key: str) -> nn.Module:
    """mmdet's own detector for ``key``, from the config mmdet ships: eval mode, CPU, nothing downloaded.

    Weights are mmdet's initialisation (``init_weights`` is never called, so no ``init_cfg`` runs); give the model
    :func:`randomise_for_detections` before comparing detections. Skips the test when the libraries are missing.
    """
    require_mmdet(mmpretrain=_needs_mmpretrain(key))
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.registry import DefaultScope

    model_cfg = copy.deepcopy(_config(key).model)  # the cached config keeps its init_cfg for the checkpoint's meta
    model_cfg.backbone.init_cfg = None  # 'Pretrained' (torchvision:// or an https URL) would download
    register_all_modules(init_default_scope=False)  # the scope is set for the build only, not left behind
    with DefaultScope.overwrite_default_scope("mmdet"):
        model = MODELS.build(model_cfg)
    model._mmdet_reference_key = key  # lets save_mmdet_checkpoint put the config text in meta
    return model.to("cpu").eval()


@torch.no_grad()
def randomise_for_detections(
    model: nn.Module,
    seed: int,
    *,
    images: list[torch.Tensor] | None = None,
    logit_scale: float = LOGIT_SCALE,
    roi_fraction: float = ROI_FRACTION,
) -> None:
    """Seeded random weights under which mmdet's detector finds tens of objects with spread, distinct scores.

    ``fpn_zoo.bench.references.randomise_`` randomises every float tensor of the state dict (BatchNorm statistics
    included, 1-D weights positive). Its box head then gives useless class scores: the shared fcs end in a ReLU, so
    every RoI's feature has the same large positive mean and each class logit is mostly a per-class constant. The
    softmax over 80 classes + background is then flat (nothing passes mmdet's 0.05 threshold), and merely multiplying
    the weights makes the same few classes pass everywhere at once (faster_r50_fpn, two coco128 crops, seeds 0 and 1:
    x1.5 gives 1-2 detections for seed 0 but 61-76 for seed 1; x2.5 to x20 give the cap of 100 for both; at x2.5 every
    score lies in 0.066-0.18, with 3-7 labels and 26-35 gaps below 1e-4 between consecutive scores).

    So the class layer ``roi_head.bbox_head.fc_cls`` is calibrated on the RoI features of ``images``: each of its 81
    outputs is standardised over those RoIs (``(W x + b - mean) / std``) and multiplied by ``logit_scale``, so each
    RoI's winning class depends on its content; then the background logit is raised by the constant that lets
    ``roi_fraction`` of the RoIs have a class above 0.05 (bisection). Proposals do not depend on ``fc_cls``, so on
    the calibration images the RoIs, hence the count, are exactly those calibrated for; other images of the same kind
    behave alike. Everything is deterministic for a given seed and images.

    Args:
        model: A model from :func:`build_mmdet_model`.
        seed: Seed for ``randomise_``.
        images: uint8 RGB ``(3, H, W)`` images to calibrate on, default :func:`real_photos` ``(2)`` (the images to
            compare on are the natural choice). One forward pass each, without the mask head (nothing is detected
            before calibration).
        logit_scale: Standard deviation of each class logit over the RoIs; larger gives higher top scores.
        roi_fraction: Share of calibration RoIs whose best class passes the threshold; sets the detection count.
    """
    randomise_(model, seed)
    if images is None:
        images = real_photos(2)
    fc_cls = model.roi_head.bbox_head.fc_cls
    features: list[torch.Tensor] = []
    hook = fc_cls.register_forward_hook(lambda _module, args, _out: features.append(args[0].detach()))
    try:
        for image in images:
            mmdet_predict(model, image)
    finally:
        hook.remove()
    x = torch.cat(features).double()  # double: the bisection below compares softmax scores against 0.05
    weight, bias = fc_cls.weight.double(), fc_cls.bias.double()
    logits = x @ weight.T + bias
    mean, std = logits.mean(0), logits.std(0)
    weight = weight * (logit_scale / std)[:, None]
    bias = (bias - mean) * logit_scale / std
    logits = x @ weight.T + bias
    background = logits.new_zeros(logits.shape[1])
    lo, hi = -100.0, 100.0
    for _ in range(60):  # the share passing falls monotonically as the background logit rises
        background[-1] = (lo + hi) / 2
        best = (logits + background).softmax(1)[:, :-1].amax(1)  # mmdet: background is the last class
        passing = (best > SCORE_THRESH).double().mean().item()
        lo, hi = (background[-1].item(), hi) if passing > roi_fraction else (lo, background[-1].item())
    fc_cls.weight.copy_(weight)
    fc_cls.bias.copy_(bias + background)


@torch.no_grad()
def mmdet_predict(model: nn.Module, image_uint8_rgb: torch.Tensor) -> dict[str, torch.Tensor]:
    """mmdet's detections on one image, unresized, in mmdet's order (score-descending, at most 100).

    The image goes in as mmdet's pipeline delivers it: a uint8 ``(3, H, W)`` tensor in BGR channel order (mmdet's
    ``LoadImageFromFile`` decodes with cv2); the model's ``DetDataPreprocessor`` converts to RGB
    (``bgr_to_rgb=True``), normalises and pads to a multiple of 32. Metainfo is what the test pipeline's
    ``PackDetInputs`` would hand over for an image that ``Resize`` left alone: ``img_shape = ori_shape = (H, W)``,
    ``scale_factor = (1.0, 1.0)``. The preprocessor adds ``batch_input_shape`` and ``pad_shape``
    (mmdet ``models/data_preprocessors/data_preprocessor.py`` lines 129-134).

    Args:
        model: A model from :func:`build_mmdet_model`.
        image_uint8_rgb: ``(3, H, W)`` uint8, RGB.

    Returns:
        ``boxes`` ``(N, 4)`` float32 (x1, y1, x2, y2 in input pixels), ``scores`` ``(N,)`` float32 and ``labels``
        ``(N,)`` int64, mmdet's contiguous class index 0-79 (:data:`MMDET_CLASS_NAMES`).
    """
    from mmdet.structures import DetDataSample

    if image_uint8_rgb.dtype != torch.uint8 or image_uint8_rgb.dim() != 3 or image_uint8_rgb.shape[0] != 3:
        raise ValueError(
            f"expected a (3, H, W) uint8 RGB tensor, got {image_uint8_rgb.dtype} {tuple(image_uint8_rgb.shape)}"
        )
    h, w = image_uint8_rgb.shape[-2:]
    bgr = image_uint8_rgb.flip(0).contiguous()
    sample = DetDataSample(metainfo={"img_shape": (h, w), "ori_shape": (h, w), "scale_factor": (1.0, 1.0)})
    data = model.data_preprocessor({"inputs": [bgr], "data_samples": [sample]}, False)
    (result,) = model(**data, mode="predict")
    pred = result.pred_instances
    return {
        "boxes": pred.bboxes.float(),
        "scores": pred.scores.float(),
        "labels": pred.labels.long(),
    }


# --------------------------------------------------------------------------------------------------------------------
# checkpoints as mmdetection publishes them
# --------------------------------------------------------------------------------------------------------------------


def _mmdet2_meta(key: str | None, classes: tuple[str, ...]) -> dict[str, Any]:
    """``meta`` of an mmdet 2.x checkpoint (mmcv 1.x ``EpochBasedRunner``), keys in the order they were inserted."""
    config = _config(key).pretty_text if key is not None else ""
    exp_name = Path(MMDET_CONFIGS[key]).name if key is not None else "config.py"
    return {
        # tools/train.py (mmdet 2.x): cfg.checkpoint_config.meta = dict(mmdet_version=..., CLASSES=...), passed
        # by CheckpointHook to runner.save_checkpoint(meta=...)
        "mmdet_version": "2.25.0" + "ca11860",  # __version__ + get_git_hash()[:7], no separator
        "CLASSES": classes,
        # mmcv/runner/epoch_based_runner.py save_checkpoint: meta.update(epoch=self.epoch + 1, iter=self.iter)
        "epoch": 12,
        "iter": 87960,
        # ...then meta.update(self.meta): the dict mmdet's tools/train.py handed the runner
        "env_info": "sys.platform: linux\nPython: 3.7.10\nCUDA available: True\nGPU 0,1,2,3,4,5,6,7: A100-SXM4-40GB"
        "\nPyTorch: 1.9.0\nTorchVision: 0.10.0\nOpenCV: 4.5.4\nMMCV: 1.5.0\nMMDetection: 2.25.0+ca11860",
        "config": config,
        "seed": 1452914816,  # init_random_seed(): np.random.randint(2**31) -> a Python int
        "exp_name": exp_name,
        # later mmcv 1.x CheckpointHook, after each save: runner.meta.setdefault('hook_msgs', dict())['last_ckpt'] =
        # that file, so a file holds the path of the one before it
        "hook_msgs": {"last_ckpt": "/mnt/work_dirs/" + exp_name[:-3] + "/epoch_11.pth"},
        # mmcv/runner/checkpoint.py save_checkpoint: meta.update(mmcv_version=..., time=time.asctime())
        "mmcv_version": "1.5.0",
        "time": "Tue Jun 14 10:37:12 2022",
    }


def _mmdet3_meta(key: str | None, dataset_meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` of an mmdet 3.x checkpoint (mmengine ``Runner.save_checkpoint``), in insertion order."""
    import mmengine

    config = _config(key).pretty_text if key is not None else ""
    exp_name = Path(MMDET_CONFIGS[key]).stem if key is not None else "config"
    return {
        # mmengine/hooks/checkpoint_hook.py line 471: meta = dict(epoch=step, iter=runner.iter)
        "epoch": 12,
        "iter": 87960,
        # mmengine/runner/runner.py lines 2214-2219
        "cfg": config,
        "seed": 1452914816,  # set_random_seed() -> sync_random_seed() -> a Python int
        "experiment_name": exp_name + "_20230620_101520",
        "time": "20230620_183012",  # time.strftime('%Y%m%d_%H%M%S', time.localtime())
        "mmengine_version": mmengine.__version__,  # + get_git_hash(), '' for a pip install
        # runner.py lines 2221-2222: the train dataset's metainfo (CocoDataset.METAINFO: classes, palette)
        "dataset_meta": dataset_meta,
    }


def save_mmdet_checkpoint(
    model: nn.Module, path: str | os.PathLike[str], *, legacy_format: bool = True, mmdet3_meta: bool = False
) -> None:
    """Save ``model`` as a checkpoint file of the kind mmdetection's model zoo publishes.

    The file is ``{"meta": {...}, "state_dict": OrderedDict}`` and nothing else: training writes
    ``{"meta", "state_dict", "optimizer"}`` (mmcv 1.x ``runner/checkpoint.py`` ``save_checkpoint``) or, with mmengine,
    also ``message_hub`` and ``param_schedulers`` (mmengine ``runner/runner.py`` lines 2229-2268), and
    ``tools/model_converters/publish_model.py`` (shipped in ``<mmdet>/.mim``, lines 25-44) keeps only ``meta`` and
    ``state_dict`` and saves with ``torch.save(..., _use_new_zipfile_serialization=False)`` on torch >= 1.6.

    ``state_dict`` is ``model.state_dict()`` on CPU with its ``_metadata`` (per-module versions) kept, as mmcv's and
    mmengine's ``weights_to_cpu`` keep it (mmengine ``runner/checkpoint.py`` lines 646-660).

    ``meta`` holds plain Python values only (str, int, tuple/list/dict of those), as real published files do:

    - default, mmdet 2.x / mmcv 1.x: the weights mmdet 3.3.0's own ``metafile.yml`` lists for every config in
      :data:`MMDET_CONFIGS` are mmdet 2.x files dated 2020-01-30 to 2022-04-26 (``download.openmmlab.com/mmdetection
      /v2.0/...``; faster_rcnn/metafile.yml lines 90 and 167, pafpn line 38, mask_rcnn line 345, convnext line 24).
      Keys: ``mmdet_version`` and ``CLASSES`` (mmdet 2.x ``tools/train.py``,
      ``cfg.checkpoint_config.meta``), ``epoch`` and ``iter`` (mmcv ``epoch_based_runner.py`` ``save_checkpoint``),
      ``env_info``, ``config`` (the config's ``pretty_text``), ``seed``, ``exp_name`` (mmdet 2.x ``tools/train.py``
      via ``runner.meta``), ``hook_msgs`` = ``{"last_ckpt": ...}`` (later mmcv 1.x ``CheckpointHook``),
      ``mmcv_version`` and ``time`` (``time.asctime()``, mmcv ``checkpoint.py`` ``save_checkpoint``). Versions, dates,
      paths and the env text are realistic constants, not this machine's.
    - ``mmdet3_meta=True``, mmdet 3.x / mmengine: ``epoch``, ``iter`` (mmengine ``hooks/checkpoint_hook.py`` line
      471), ``cfg``, ``seed``, ``experiment_name``, ``time`` (``%Y%m%d_%H%M%S``), ``mmengine_version`` (mmengine
      ``runner/runner.py`` lines 2214-2219) and ``dataset_meta`` = ``{"classes": (...), "palette": [(r, g, b), ...]}``
      (lines 2221-2222). ``mmdet/apis/inference.py`` lines 78-87 read either ``dataset_meta`` or ``CLASSES``.

    Not reproduced, because publishing drops it: ``optimizer``, and mmengine's ``message_hub``, whose
    ``log_scalars`` are ``mmengine.logging.HistoryBuffer`` objects holding numpy arrays, and ``param_schedulers``;
    ``torch.load(weights_only=True)`` refuses such unpublished files ("Unsupported global: GLOBAL
    mmengine.logging.history_buffer.HistoryBuffer"). Published ``meta`` can in principle carry a numpy scalar
    (mmcv's ``EvalHook`` stores the metric as ``hook_msgs['best_score']`` when ``save_best`` is set, a numpy float for
    some datasets), but mmdet's COCO metrics are Python floats and the zoo's files were not trained with
    ``save_best``; this file holds none, so ``torch.load(path, weights_only=True)`` reads it.

    Args:
        model: The mmdet model (from :func:`build_mmdet_model`).
        path: Where to write.
        legacy_format: torch's legacy (pre-1.6, non-zip) serialisation, as ``publish_model.py`` writes; ``False``
            writes the zip format of a plain ``torch.save``, which is what mmengine itself writes, both
            ``epoch_*.pth`` and the files its ``CheckpointHook(published_keys=...)`` publishes (mmengine
            ``hooks/checkpoint_hook.py`` line 407 -> ``runner/checkpoint.py`` ``save_checkpoint``).
        mmdet3_meta: mmengine-era ``meta`` instead of the mmdet 2.x one.
    """
    from mmdet.datasets import CocoDataset

    key = getattr(model, "_mmdet_reference_key", None)
    metainfo = CocoDataset.METAINFO
    if mmdet3_meta:
        dataset_meta = {"classes": tuple(metainfo["classes"]), "palette": [tuple(c) for c in metainfo["palette"]]}
        meta = _mmdet3_meta(key, dataset_meta)
    else:
        meta = _mmdet2_meta(key, tuple(metainfo["classes"]))
    state = model.state_dict()
    cpu_state = OrderedDict((k, v.detach().cpu()) for k, v in state.items())
    cpu_state._metadata = getattr(state, "_metadata", OrderedDict())  # type: ignore[attr-defined]
    checkpoint = {"meta": meta, "state_dict": cpu_state}
    torch.save(checkpoint, os.fspath(path), _use_new_zipfile_serialization=not legacy_format)


# --------------------------------------------------------------------------------------------------------------------
# class names
# --------------------------------------------------------------------------------------------------------------------


def __getattr__(name: str) -> Any:
    """``MMDET_CLASS_NAMES``, read from mmdet on first use so that importing this module never needs mmdet."""
    if name == "MMDET_CLASS_NAMES":
        require_mmdet()
        from mmdet.datasets import CocoDataset

        names = tuple(CocoDataset.METAINFO["classes"])
        globals()[name] = names
        return names
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
