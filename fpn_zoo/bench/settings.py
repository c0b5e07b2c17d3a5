"""What one ``fpn-zoo bench`` run measures: sizes, repetitions and the latency matrix, validated in one place.

The parent process validates a ``BenchSettings`` once and hands it to every per-model subprocess as JSON, so the
children never re-parse command-line text.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any

from fpn_zoo.argtypes import split_size

__all__ = [
    "MIN_REPORTABLE_RUNS",
    "MIN_SIDE",
    "SCORE_THRESH",
    "SIZE_MULTIPLE",
    "BenchSettings",
    "available_cores",
    "memory_size",
    "parse_size",
    "size_str",
]

MIN_SIDE = 64  # the smallest image on which every backbone still yields a P6 level
SIZE_MULTIPLE = 32  # torchvision pads batches to a multiple of 32: other sizes would run padded, not as stated
MIN_REPORTABLE_RUNS = 10  # the "median and spread over >= 10 runs"
SCORE_THRESH = 0.0  # every detector returns its full box_detections_per_img (100) on random weights
_PRECISIONS = ("fp32", "bf16")


def _max_side() -> int:
    from fpn_zoo.inspect_model import MAX_FLOPS_SIDE  # imports torch: only once a size is actually checked

    return MAX_FLOPS_SIDE


def parse_size(text: str) -> tuple[int, int]:
    """``"800x1216"`` -> ``(800, 1216)`` (height, width); each side a multiple of 32 from 64 to 4096.

    Raises:
        ValueError: Malformed text or a side out of range; the message gives the valid range.

    Examples:
        >>> parse_size("512x512")
        (512, 512)
    """
    height, width = split_size(text, example="512x512 or 800x1216")
    top = _max_side()
    for side in (height, width):
        if not MIN_SIDE <= side <= top or side % SIZE_MULTIPLE:
            raise ValueError(
                f"size {text!r}: each side must be a multiple of {SIZE_MULTIPLE} from {MIN_SIDE} to {top} "
                f"(the detectors pad to multiples of {SIZE_MULTIPLE}), e.g. 512x512 or 800x1216"
            )
    return height, width


def available_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS has one): the default ``--threads``."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def size_str(size: tuple[int, int]) -> str:
    """``(800, 1216)`` -> ``"800x1216"``, the key of every per-size figure in the results JSON."""
    return f"{size[0]}x{size[1]}"


def memory_size(sizes: tuple[tuple[int, int], ...]) -> tuple[int, int]:
    """The size at which peak memory is measured: the largest by area (the last one of equal areas).

    Examples:
        >>> memory_size(((512, 512), (800, 1216)))
        (800, 1216)
    """
    return max(reversed(sizes), key=lambda s: s[0] * s[1])


@dataclass(frozen=True)
class BenchSettings:
    """Settings of one ``fpn-zoo bench`` run (every model gets the same).

    Attributes:
        sizes: Image sizes ``(height, width)``; each model runs unresized at each one.
        runs: Timed calls per side and per latency combination (>= 10 unless ``quick``).
        warmup: Untimed calls per side before the timed ones, per combination.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        precisions: ``fp32`` and/or ``bf16`` (autocast).
        batches: Images per forward.
        channels_last: Memory formats of the weights to time (``False``: contiguous).
        compile: Whether to time eager (``False``) and/or ``torch.compile``d (``True``) models.
        load_runs: Cold and warm weight loads per side.
        skip_load: Leave the load-time measurement out.
        skip_necks: Leave the neck rows out.
        threads: ``torch.set_num_threads`` of every measuring process (default: every available core).
        quick: A smoke test: allows ``runs`` below 10 and marks the results ``quick``.
        seed: Seed of the random weights and images.
        fast: Also time each model's fast inference path (``create_model(fast=True)``) beside its eager form.
    """

    sizes: tuple[tuple[int, int], ...] = ((512, 512), (800, 1216))
    runs: int = MIN_REPORTABLE_RUNS
    warmup: int = 1
    device: str = "cpu"
    precisions: tuple[str, ...] = ("fp32",)
    batches: tuple[int, ...] = (1,)
    channels_last: tuple[bool, ...] = (False,)
    compile: tuple[bool, ...] = (False,)
    load_runs: int = 5
    skip_load: bool = False
    skip_necks: bool = False
    threads: int = field(default_factory=available_cores)
    quick: bool = False
    seed: int = 0
    fast: bool = True

    def __post_init__(self) -> None:
        if not self.sizes:
            raise ValueError("--sizes needs at least one HxW, e.g. 512x512,800x1216")
        for size in self.sizes:
            parse_size(size_str(size))
        if len(set(self.sizes)) != len(self.sizes):
            raise ValueError(f"--sizes lists a size twice: {', '.join(size_str(s) for s in self.sizes)}")
        if self.runs < 1:
            raise ValueError(f"--runs {self.runs}: give at least 1 timed run (10 for a reportable run)")
        if self.runs < MIN_REPORTABLE_RUNS and not self.quick:
            raise ValueError(
                f"--runs {self.runs}: a reportable run needs at least {MIN_REPORTABLE_RUNS} timed runs per side; "
                "add --quick for a smoke test (the results are then marked quick)"
            )
        for flag, value, low in (("--warmup", self.warmup, 0), ("--load-runs", self.load_runs, 1)):
            if value < low:
                raise ValueError(f"{flag} {value}: must be an integer >= {low}")
        if self.threads < 1:
            raise ValueError(f"--threads {self.threads}: must be an integer >= 1")
        if not self.precisions or set(self.precisions) - set(_PRECISIONS):
            raise ValueError(f"--precisions {','.join(self.precisions)!r}: choose from {', '.join(_PRECISIONS)}")
        if not self.batches or min(self.batches) < 1:
            raise ValueError(f"--batches {self.batches}: give positive integers, e.g. 1,8")
        for name, values in (("channels_last", self.channels_last), ("compile", self.compile)):
            if not values or any(not isinstance(v, bool) for v in values):
                raise ValueError(f"{name} must be a non-empty tuple of booleans, got {values!r}")
        if not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"--device {self.device!r}: choose cpu, cuda or cuda:N")

    @property
    def memory_size(self) -> tuple[int, int]:
        """The size of the peak-memory forward (see ``memory_size``)."""
        return memory_size(self.sizes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (sizes as ``"HxW"``); ``from_dict`` reverses it.

        Examples:
            >>> BenchSettings.from_dict(BenchSettings().to_dict()) == BenchSettings()
            True
        """
        data = dataclasses.asdict(self)
        data["sizes"] = [size_str(s) for s in self.sizes]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchSettings:
        """The settings ``to_dict`` wrote."""
        values = dict(data)
        values.setdefault("fast", False)  # results written before the fast path existed did not time it
        values["sizes"] = tuple(parse_size(s) for s in values["sizes"])
        for key in ("precisions", "batches", "channels_last", "compile"):
            values[key] = tuple(values[key])
        return cls(**values)
