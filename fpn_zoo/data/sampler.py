"""Batches of images with similar aspect ratios, so padding each batch to its largest image wastes little.

The idea and the binning are torchvision's detection references (``references/detection/group_by_aspect_ratio.py``);
the end of an epoch differs. torchvision's ``GroupedBatchSampler`` has ``len(sampler) // batch_size`` batches and
fills the last ones by padding incomplete groups with *repeated* samples of the same group, so in each epoch some
images appear twice and others not at all. [`GroupedBatchSampler`][fpn_zoo.data.sampler.GroupedBatchSampler] here yields
every index exactly once: it concatenates the incomplete groups in aspect-ratio order and cuts that into batches, so the
last few batches may mix neighbouring groups and the very last may be short. The number of batches is
``ceil(len(sampler) / batch_size)`` whatever the grouping, which keeps every ``DistributedSampler`` rank on the same
step count.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

__all__ = ["GroupedBatchSampler", "create_aspect_ratio_groups"]


def create_aspect_ratio_groups(aspect_ratios: Sequence[float], k: int = 3) -> list[int]:
    """Bin aspect ratios (width / height) into groups, as torchvision's references do.

    The ``2 * k + 1`` bin edges are ``2 ** linspace(-1, 1, 2 * k + 1)`` (ratios 0.5 to 2), giving ``2 * k + 2``
    groups; ``k = 0`` splits portrait (< 1) from the rest. ``k`` is torchvision's ``--aspect-ratio-group-factor``,
    3 in its detection recipes.

    Args:
        aspect_ratios: Width / height of each dataset index, e.g. ``CocoDetection.aspect_ratios()``.
        k: Group factor, an integer >= 0.

    Returns:
        The group id of each index; ids increase with the aspect ratio.

    Raises:
        ValueError: If ``k`` is not an integer >= 0 or a ratio is not a positive finite number.

    Examples:
        >>> from fpn_zoo.data import create_aspect_ratio_groups
        >>> create_aspect_ratio_groups([0.75, 1.0, 1.33, 1.5, 3.0], k=1)
        [1, 2, 2, 2, 3]
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ValueError(f"k (the aspect-ratio group factor) must be an integer >= 0, got {k!r}.")
    bad = [(i, r) for i, r in enumerate(aspect_ratios) if not (isinstance(r, (int, float)) and 0 < r < math.inf)]
    if bad:
        raise ValueError(
            f"Aspect ratios must be positive finite numbers (width / height); got (index, value) pairs {bad[:3]}."
        )
    edges = (2 ** np.linspace(-1, 1, 2 * k + 1)).tolist() if k > 0 else [1.0]
    return [bisect.bisect_right(edges, float(r)) for r in aspect_ratios]


class GroupedBatchSampler(Sampler[list[int]]):
    """Batch the indices of ``sampler`` so that each batch holds one aspect-ratio group (except at the epoch's end).

    Indices are taken in ``sampler`` order; a batch is emitted as soon as its group has ``batch_size`` of them. When
    the sampler is exhausted, the incomplete groups are concatenated in group order (neighbouring aspect ratios) and
    cut into batches of ``batch_size``, the last possibly shorter. So every index the sampler gives appears exactly
    once, the output is fully determined by the sampler's order, and there are ``ceil(len(sampler) / batch_size)``
    batches (``len(sampler) // batch_size`` with ``drop_last``, which drops only that last short batch).

    Works on any sampler, including ``DistributedSampler``;
    [`set_epoch`][fpn_zoo.data.sampler.GroupedBatchSampler.set_epoch] is passed on to it.

    Args:
        sampler: Yields dataset indices (``RandomSampler``, ``DistributedSampler``, a list, ...).
        group_ids: Group of each dataset index, from
            [`create_aspect_ratio_groups`][fpn_zoo.data.sampler.create_aspect_ratio_groups].
        batch_size: Images per batch, >= 1.
        drop_last: Drop the final short batch, if any.

    Raises:
        ValueError: If ``batch_size`` is not a positive integer.
        IndexError: During iteration, if the sampler gives an index that ``group_ids`` has no entry for.

    Examples:
        >>> from fpn_zoo.data import GroupedBatchSampler
        >>> list(GroupedBatchSampler([0, 1, 2, 3, 4], group_ids=[0, 1, 0, 1, 0], batch_size=2))
        [[0, 2], [1, 3], [4]]
    """

    def __init__(
        self, sampler: Iterable[int], group_ids: Sequence[int], batch_size: int, *, drop_last: bool = False
    ) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.sampler = sampler
        self.group_ids = list(group_ids)
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list[int]]:
        buffers: dict[int, list[int]] = {}
        for index in self.sampler:
            if not 0 <= index < len(self.group_ids):
                raise IndexError(
                    f"The sampler gave index {index} but group_ids has {len(self.group_ids)} entries; build group_ids "
                    "from the dataset the sampler draws from."
                )
            group = self.group_ids[index]
            buffer = buffers.setdefault(group, [])
            buffer.append(int(index))
            if len(buffer) == self.batch_size:
                yield buffer
                buffers[group] = []
        rest = [index for group in sorted(buffers) for index in buffers[group]]
        for start in range(0, len(rest), self.batch_size):
            batch = rest[start : start + self.batch_size]
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield batch

    def __len__(self) -> int:
        # Exact without iterating: group batches are full, so the leftovers number len(sampler) mod batch_size plus
        # whole batches, and cutting them into batch_size pieces gives ceil(len / batch_size) batches in all.
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch on to the wrapped sampler (``DistributedSampler`` reshuffles by it); no-op otherwise."""
        set_epoch: Any = getattr(self.sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
