"""``fpn-zoo convert``: an upstream checkpoint file in, an exported zoo folder out.

Reads the file without running code ([`read_upstream_file`][fpn_zoo.weights.torch_files.read_upstream_file]), lets
the upstream's converter ([`fpn_zoo.converters`][fpn_zoo.converters]) recognise the layout and map the tensors,
checks them strictly against the zoo model built on the meta device, and writes ``model.safetensors`` and
``config.json`` (with the inference settings the weights were trained with and the file's provenance). The folder
appears complete or not at all: it is written under a temporary name beside ``out_dir`` and renamed at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from fpn_zoo.converters import CONVERTERS, Conversion, LayoutError
from fpn_zoo.registry import get_model_config
from fpn_zoo.voice import option, say
from fpn_zoo.weights.checkpoint import save_checkpoint
from fpn_zoo.weights.integrity import sha256_file
from fpn_zoo.weights.loading import check_state_dict
from fpn_zoo.weights.torch_files import UpstreamFile, read_upstream_file

__all__ = [
    "ConversionReport",
    "LayoutError",
    "convert_checkpoint",
    "convert_torchvision_checkpoint",
]


@dataclass(frozen=True)
class ConversionReport:
    """What a conversion wrote and left out.

    Attributes:
        out_dir: The exported folder (``model.safetensors`` + ``config.json``).
        model: The zoo model the weights are for.
        description: The recognised upstream architecture.
        dropped: Upstream tensors with no place in the zoo model (a Mask R-CNN's mask branch), by name.
        notes: Facts the converter used (e.g. a recognised torchvision COCO_V1 file).
    """

    out_dir: Path
    model: str
    description: str
    dropped: tuple[str, ...]
    notes: tuple[str, ...]


def _refuse_caffe_style(upstream: UpstreamFile) -> None:
    """mmdetection's ``*_caffe_*`` ResNets put the stride in the 1x1 conv and read BGR 0-255 input: the same tensor
    names as pytorch style, different computation. Their training config, saved in the file's ``meta``, says so."""
    meta = upstream.metadata.get("meta")
    config = meta.get("config") if isinstance(meta, dict) else None
    if isinstance(config, str) and re.search(r"style\s*=\s*['\"]caffe['\"]", config):
        raise LayoutError(
            f"{upstream.path.name} was trained with a caffe-style ResNet (its config says style='caffe'): stride in "
            "the 1x1 conv, BGR input without std scaling. The zoo's ResNets are pytorch-style; it does not convert."
        )


def _target(source: str, upstream: UpstreamFile, model: str | None) -> str:
    recognised = CONVERTERS[source].recognise(upstream.state_dict)
    if model is not None and model != recognised.model:
        raise LayoutError(
            f"{upstream.path.name} holds a {recognised.description}, which converts to {recognised.model!r}, "
            f"not {model!r}. Leave out {say('model=None', '--model')} or pass {option('model', recognised.model)}."
        )
    return recognised.model


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(
            f"{out_dir} already exists and is not an empty folder; nothing was written. Choose a new folder, or "
            "remove this one first."
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)


def convert_checkpoint(
    src: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    source: str,
    model: str | None = None,
    sha256: str | None = None,
    frozen_bn_eps: float | None = None,
) -> ConversionReport:
    """Convert an upstream checkpoint file into an exported zoo folder.

    Args:
        src: The upstream ``.pth`` file.
        out_dir: A new (or empty) folder to receive ``model.safetensors`` and ``config.json``.
        source: Which upstream wrote it, a key of ``fpn_zoo.converters.CONVERTERS``: ``"torchvision"``,
            ``"mmdet"`` or ``"convnext"``.
        model: The zoo model to convert to; ``None`` takes the one the tensors fit. A model that does not fit the
            file is refused with the one that does.
        sha256: The file's digest when already known (it is computed otherwise; torchvision's COCO_V1 files are
            recognised by it).
        frozen_bn_eps: Override the BatchNorm epsilon the converter assumes the weights were trained with.

    Returns:
        What was written and what was dropped.

    Raises:
        CheckpointError: An unreadable or unsafe file, or no state dict in it.
        LayoutError: A layout the converter does not know, or ``model`` that does not fit.
        WeightsMismatchError: Tensors that do not fit the model exactly (named).
        FileExistsError: ``out_dir`` already holds something.

    Examples:
        >>> convert_checkpoint("faster_rcnn_r50_fpn_1x_coco.pth", "out/fpn_r50", source="mmdet")  # doctest: +SKIP
        ConversionReport(out_dir=PosixPath('out/fpn_r50'), model='fpn_r50_coco', ...)
    """
    if source not in CONVERTERS:
        raise ValueError(f"Unknown checkpoint origin {source!r}; choose from {sorted(CONVERTERS)}.")
    if model is not None:
        get_model_config(model)  # unknown names fail with suggestions
        if model not in CONVERTERS[source].models:
            raise LayoutError(
                f"{CONVERTERS[source].title} checkpoints convert to {', '.join(CONVERTERS[source].models)}; "
                f"{model!r} has no {source} counterpart. Leave out --model to convert to the model the file fits."
            )
    out = Path(out_dir)
    _prepare_out_dir(out)
    upstream = read_upstream_file(src)
    _refuse_caffe_style(upstream)
    target = _target(source, upstream, model)
    converter = CONVERTERS[source]
    digest = sha256 or sha256_file(upstream.path)
    conversion: Conversion = (
        converter.convert(upstream.state_dict, sha256=digest)
        if converter.takes_sha256
        else converter.convert(upstream.state_dict)
    )
    # Some upstream files (mmdetection's fp16 runs) store float16 tensors; the zoo's exports hold float32, as every
    # model is built in float32 (half precision is a choice made at run time, e.g. autocast).
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in conversion.state_dict.items()}
    options = dict(conversion.options)
    if frozen_bn_eps is not None:
        options["frozen_bn_eps"] = frozen_bn_eps
    config = get_model_config(target).replace(**options)

    from fpn_zoo.detector import build_detector  # deferred: model code only when converting

    with torch.device("meta"):
        expected = build_detector(config, loads_weights=True).state_dict()
    check_state_dict(
        {k: tuple(v.shape) for k, v in expected.items()},
        {k: tuple(v.shape) for k, v in tensors.items()},
        drop_predictor=False,
        source=str(src),
        model_name=target,
    )
    provenance = {
        "converted_from": f"{converter.title}: {conversion.recognised.description}",
        "converter": source,
        "file": upstream.path.name,
        "sha256": digest,
        "dropped": list(conversion.dropped),
    }
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        save_checkpoint(tensors, config, staging, extra={"source": provenance})
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ConversionReport(out, target, conversion.recognised.description, conversion.dropped, conversion.notes)


def convert_torchvision_checkpoint(
    src: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    model: str | None = None,
    frozen_bn_eps: float | None = None,
    sha256: str | None = None,
) -> Path:
    """[`convert_checkpoint`][fpn_zoo.weights.convert.convert_checkpoint] with ``source="torchvision"``; returns
    the folder.

    Examples:
        >>> convert_torchvision_checkpoint("fasterrcnn_resnet50_fpn_coco-258fb6c6.pth", "out/")  # doctest: +SKIP
        PosixPath('out')
    """
    report = convert_checkpoint(
        src, out_dir, source="torchvision", model=model, sha256=sha256, frozen_bn_eps=frozen_bn_eps
    )
    return report.out_dir
