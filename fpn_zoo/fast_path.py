"""The fast inference path: the same detections, sooner.

Five changes, timed together as the fast column of ``fpn-zoo bench``:

- every convolution followed by a frozen (or eval-mode) BatchNorm becomes one affine map: the norm's scale and shift
  are folded into the convolution's weights and bias (``torch.nn.utils.fusion``), removing a pass over each map;
- channels-last layout where the backbone is made of dense convolutions (oneDNN on CPU, cuDNN on GPU);
- inference mode, without autograd's bookkeeping;
- the final class-wise NMS stops once the detections it returns are decided (`fpn_zoo.heads.top_k_nms`), and
  RoIAlign, one core in torchvision's CPU kernel, spreads the RoIs over the intra-op threads;
- opt-in bf16 autocast on hardware with native bf16.

The result differs from the plain model by float summation order only (bf16: by bf16 rounding, which moves
detections; its measured cost is in the docs).

A fast model is for inference only. Folded weights are not the trained ones, so the two calls that would expose
them, ``.train()`` and ``state_dict()`` (hence ``save_pretrained``), raise instead of returning a silently altered
model: build the model without ``fast=True`` to train or save it.

Examples:
    >>> import torch, fpn_zoo
    >>> model = fpn_zoo.create_model("fpn_r50_coco", device="cpu", fast=True, min_size=128, max_size=128)
    >>> model.fast_path
    FastPath(folded_norms=..., channels_last=True, top_k_nms=True, threaded_roi_align=True, bf16=False)
    >>> model.train()
    Traceback (most recent call last):
    ...
    fpn_zoo.fast_path.FastPathError: fpn_r50_coco was built with fast=True for inference: ...
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.ops.misc import FrozenBatchNorm2d

from fpn_zoo.heads.poolers import PyramidRoIAlign
from fpn_zoo.heads.soft_roi_selection import SoftRoISelection
from fpn_zoo.voice import option

__all__ = ["CHANNELS_LAST_FAMILIES", "FastPath", "FastPathError", "bf16_supported", "make_fast"]

# Backbone families whose forward measured faster in channels-last layout (benchmarks: fpn-zoo bench, fast column).
CHANNELS_LAST_FAMILIES = frozenset({"resnet"})

_NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)


class FastPathError(RuntimeError):
    """A fast (inference-only) model asked to train or to give its weights; the message says what to do instead."""


@dataclass(frozen=True)
class FastPath:
    """What `make_fast` did to a model.

    Attributes:
        folded_norms: BatchNorm layers folded into the convolution before them.
        channels_last: Convolutions run in channels-last layout.
        top_k_nms: The final NMS stops once the returned detections are decided
            ([`top_k_batched_nms`][fpn_zoo.heads.top_k_nms.top_k_batched_nms]).
        threaded_roi_align: RoIAlign spreads the RoIs over the intra-op threads on the CPU (the box pooler's
            ``cpu_threads``: [`PyramidRoIAlign`][fpn_zoo.heads.poolers.PyramidRoIAlign], AugFPN's
            [`SoftRoISelection`][fpn_zoo.heads.soft_roi_selection.SoftRoISelection]).
        bf16: Forward passes run under bf16 autocast.
    """

    folded_norms: int
    channels_last: bool
    top_k_nms: bool
    threaded_roi_align: bool
    bf16: bool


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (CUDA with bf16 support; a CPU with AVX-512 BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return False


def _fold(conv: nn.Conv2d, norm: nn.Module) -> None:
    """Fold eval-mode ``norm`` into ``conv`` in place (``conv`` gains a bias)."""
    weight, bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias
    )
    conv.weight, conv.bias = weight, bias


def _conv_norm_pairs(module: nn.Module) -> Iterator[tuple[nn.Module, str, str]]:
    """(parent, conv name, norm name) for every norm applied directly to its convolution's output.

    Three patterns cover the zoo, and nothing else is folded: consecutive children of an ``nn.Sequential``
    (torchvision's ``Conv2dNormActivation``, timm's downsample branches); the ``convN``/``bnN`` siblings of timm's
    ResNet stem and blocks, whose forwards apply ``bnN`` to ``convN``'s output; and ``conv_pw``/``bn`` of BiFPN's
    separable convolution (effdet's layout). The tests check the folded model against the plain one for every
    backbone family and neck.
    """
    for parent in module.modules():
        children = dict(parent.named_children())
        if isinstance(parent, nn.Sequential):
            names = list(children)
            for first, second in itertools.pairwise(names):
                if isinstance(children[first], nn.Conv2d) and isinstance(children[second], _NORMS):
                    yield parent, first, second
            continue
        for name, child in children.items():
            if name.startswith("conv") and isinstance(child, nn.Conv2d):
                norm_name = "bn" if name == "conv_pw" else "bn" + name.removeprefix("conv")
                if isinstance(children.get(norm_name), _NORMS):
                    yield parent, name, norm_name


def fold_norms(module: nn.Module) -> int:
    """Fold every BatchNorm that directly follows a convolution into it (replaced by ``nn.Identity``).

    Args:
        module: A model in eval mode; an ordinary ``BatchNorm2d`` in train mode would normalise by batch statistics,
            which no folding reproduces, so it is refused.

    Returns:
        How many norms were folded.
    """
    pairs = list(_conv_norm_pairs(module))
    for parent, conv_name, norm_name in pairs:
        norm = getattr(parent, norm_name)
        if norm.training and isinstance(norm, nn.BatchNorm2d):
            raise ValueError("fold_norms needs a model in eval mode: a training BatchNorm uses batch statistics.")
        _fold(getattr(parent, conv_name), norm)
        setattr(parent, norm_name, nn.Identity())
    return len(pairs)


def make_fast(model: nn.Module, *, channels_last: bool | None = None, bf16: bool = False) -> FastPath:
    """Turn a zoo detector into its fast inference form, in place.

    Args:
        model: A [`ZooDetector`][fpn_zoo.detector.ZooDetector] (it is put in eval mode).
        channels_last: Run the convolutions channels-last; ``None`` = where it measured faster
            (`CHANNELS_LAST_FAMILIES`).
        bf16: Run under bf16 autocast; refused where the device has no native bf16.

    Returns:
        What was done; the model keeps it as ``model.fast_path``.

    Raises:
        ValueError: bf16 on a device without native bf16.
    """
    device = next(model.parameters()).device
    if bf16 and not bf16_supported(device):
        raise ValueError(
            f"{option('bf16', True)} needs native bf16 ({device} has none: CUDA with bf16, or a CPU with AVX-512 "
            "BF16/AMX); without it bf16 is emulated and slower than float32."
        )
    model.eval()
    with torch.no_grad():
        folded = fold_norms(model)
    if channels_last is None:
        channels_last = model.config.backbone_spec.family in CHANNELS_LAST_FAMILIES
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.roi_heads.top_k_nms = True
    pooler = model.roi_heads.box_roi_pool
    threaded_pooling = isinstance(pooler, (PyramidRoIAlign, SoftRoISelection))
    if threaded_pooling:
        pooler.cpu_threads = None
    return FastPath(
        folded_norms=folded,
        channels_last=channels_last,
        top_k_nms=True,
        threaded_roi_align=threaded_pooling,
        bf16=bf16,
    )


@contextlib.contextmanager
def fast_forward(fast: FastPath, device: torch.device) -> Iterator[None]:
    """The context a fast model's forward runs in: inference mode, and bf16 autocast when asked for."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if fast.bf16 else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        yield


def refusal(name: str, what: str) -> FastPathError:
    """The error for ``what`` (``train()``, ``state_dict()``) on a fast model named ``name``."""
    return FastPathError(
        f"{name} was built with {option('fast', True)} for inference: its BatchNorms are folded into the "
        f"convolutions, so {what} would give weights that are not the trained ones. Build it without "
        f"{option('fast', True)} to train, fine-tune or save it."
    )
