"""RoIAlign over the intra-op threads on the CPU, bit-identical to one ``torchvision.ops.roi_align`` call.

torchvision's CPU kernel loops over the RoIs on one core (no ``parallel_for``) and releases the GIL, so splitting the
RoIs into chunks pooled by a thread pool uses every core. Each RoI is pooled on its own, so the output is the same
bit for bit whatever the split. Both zoo poolers use it (`PyramidRoIAlign` for one level per RoI, AugFPN's
`SoftRoISelection` for every level per RoI), each through its ``cpu_threads`` attribute, which the fast inference
path sets.

Examples:
    >>> feature = torch.rand(1, 8, 32, 32)
    >>> rois = torch.tensor([[0.0, 1.0, 2.0, 20.0, 30.0]] * 200)
    >>> one = roi_align(feature, rois, (7, 7), 0.5, 2, False)
    >>> torch.equal(roi_align_on_threads(feature, rois, (7, 7), 0.5, 2, False, threads=2), one)
    True
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor
from torchvision.ops import roi_align

__all__ = ["MIN_ROIS_PER_THREAD", "roi_align_on_threads", "rois_of"]

MIN_ROIS_PER_THREAD = 64  # below this a thread's start-up costs more than it saves


def rois_of(boxes: list[Tensor]) -> Tensor:
    """Per-image ``(x1, y1, x2, y2)`` boxes as one ``(K, 5)`` tensor whose first column is the image index.

    Examples:
        >>> rois_of([torch.zeros(1, 4), torch.ones(2, 4)])[:, 0].tolist()
        [0.0, 1.0, 1.0]
    """
    return torch.cat([torch.cat([b.new_full((len(b), 1), i), b], dim=1) for i, b in enumerate(boxes)])


def roi_align_on_threads(
    feature: Tensor,
    rois: Tensor,
    output_size: tuple[int, int],
    scale: float,
    sampling_ratio: int,
    aligned: bool,
    *,
    threads: int | None,
) -> Tensor:
    """``roi_align(feature, rois, ...)`` with the RoIs split over ``threads`` CPU threads.

    Args:
        feature: ``(N, C, H, W)`` map of one pyramid level.
        rois: ``(K, 5)`` rows of image index and box, as `rois_of` makes them.
        output_size: Pooled height and width.
        scale: Feature size over image size.
        sampling_ratio: Sampling points per bin side; 0 = adaptive.
        aligned: RoIAlign's half-pixel offset.
        threads: How many threads; ``None`` follows ``torch.get_num_threads()``, 1 is torchvision's single call.
            Fewer are used when there are under `MIN_ROIS_PER_THREAD` RoIs per thread, and one off the CPU.

    Returns:
        ``(K, C, *output_size)`` in ``feature``'s dtype.
    """
    wanted = torch.get_num_threads() if threads is None else threads
    threads = min(wanted, len(rois) // MIN_ROIS_PER_THREAD)
    if threads <= 1 or feature.device.type != "cpu":
        return roi_align(feature, rois, output_size, scale, sampling_ratio, aligned)
    return _pool_on_threads(feature, rois, output_size, scale, sampling_ratio, aligned, threads)


# torch.compile cannot trace a thread pool (dynamo fails inside ``ThreadPoolExecutor.map`` with an internal
# KeyError, torch 2.14): a compiled fast model breaks its graph here and pools eagerly, on the threads.
@torch.compiler.disable
def _pool_on_threads(
    feature: Tensor,
    rois: Tensor,
    output_size: tuple[int, int],
    scale: float,
    sampling_ratio: int,
    aligned: bool,
    threads: int,
) -> Tensor:
    # Grad, inference and autocast modes are per thread: the workers get the caller's, and autocast's one rule for
    # roi_align (pool in float32, return the feature's dtype) is applied here instead.
    grad, inference, dtype = torch.is_grad_enabled(), torch.is_inference_mode_enabled(), feature.dtype
    if torch.is_autocast_enabled("cpu"):
        feature, rois = feature.float(), rois.float()
    feature = feature.contiguous()  # once (channels-last maps are converted), not in every thread's kernel call

    def pool(part: Tensor) -> Tensor:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return roi_align(feature, part, output_size, scale, sampling_ratio, aligned)

    return torch.cat(list(_thread_pool(threads).map(pool, rois.chunk(threads)))).to(dtype)


@functools.cache
def _thread_pool(threads: int) -> ThreadPoolExecutor:
    """One pool per thread count for the process, shared by every pooler (modules are deep-copied and pickled;
    a pool inside them could not be)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="roi_align")
