"""Timing, statistics, FLOPs and peak memory of callables; nothing here knows about detectors.

Timings are wall-clock milliseconds from ``time.perf_counter_ns``, with ``torch.cuda.synchronize()`` on both sides of
every timed call on CUDA. Every command of the ``fpn-zoo bench`` family shares these helpers.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "PRECISIONS",
    "count_call_flops",
    "markdown_table",
    "max_rss_kib",
    "measure_peak_memory",
    "measure_peak_rss",
    "measure_peak_tensor_memory",
    "paired_ratio",
    "precision",
    "proc_status_kib",
    "ratio",
    "release_free_heap",
    "stats",
    "summarize",
    "summarize_values",
    "sync",
    "time_interleaved",
]

PRECISIONS = ("fp32", "bf16")


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer brackets the work itself rather than its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def precision(device: torch.device, name: str) -> Iterator[None]:
    """``fp32``: nothing; ``bf16``: autocast to bfloat16 on ``device`` (weights stay float32).

    Examples:
        >>> with precision(torch.device("cpu"), "bf16"):
        ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        torch.bfloat16
    """
    if name == "fp32":
        yield
    elif name == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    else:
        raise ValueError(f"Unknown precision {name!r}; choose from {', '.join(PRECISIONS)}.")


def summarize(times_ms: Sequence[float]) -> dict[str, float | int]:
    """Median, min, max, quartiles, IQR and mean of a list of timings (ms).

    Examples:
        >>> summarize([3.0, 1.0, 2.0])["median_ms"]
        2.0
    """
    ordered = sorted(times_ms)
    if not ordered:
        raise ValueError("No timings to summarize.")
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {
        "n": len(ordered),
        "median_ms": statistics.median(ordered),
        "min_ms": ordered[0],
        "max_ms": ordered[-1],
        "q1_ms": q1,
        "q3_ms": q3,
        "iqr_ms": q3 - q1,
        "mean_ms": statistics.fmean(ordered),
    }


def summarize_values(values: Sequence[float]) -> dict[str, float | int]:
    """``summarize`` without the unit in its keys (``median``, ``iqr``, ...), for figures in any unit.

    The load and training benchmarks record MiB, images/s and seconds as well as milliseconds, so their results
    files name the unit in the enclosing key instead.

    Examples:
        >>> summarize_values([3.0, 1.0, 2.0])["median"]
        2.0
    """
    return {key.removesuffix("_ms"): value for key, value in summarize(values).items()}


def stats(times_ms: Sequence[float]) -> dict[str, Any]:
    """``summarize`` plus every timing in call order (``times_ms``): the STATS record of the results JSON.

    Examples:
        >>> stats([2.0, 1.0])["times_ms"]
        [2.0, 1.0]
    """
    return {**summarize(times_ms), "times_ms": list(times_ms)}


def ratio(ours: dict[str, Any], reference: dict[str, Any]) -> float:
    """``median(ours) / median(reference)`` of two STATS records; below 1 means ours is faster."""
    return ours["median_ms"] / reference["median_ms"]


def paired_ratio(ours_ms: Sequence[float], reference_ms: Sequence[float]) -> float:
    """Median over rounds of ``ours_i / reference_i``: run back to back, the pair shares the machine's load.

    Examples:
        >>> paired_ratio([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
        1.0
    """
    return statistics.median(a / b for a, b in zip(ours_ms, reference_ms, strict=True))


def _timed_call(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter_ns()
    fn()
    sync(device)
    return (time.perf_counter_ns() - start) / 1e6


def time_interleaved(
    fns: dict[str, Callable[[], Any]], *, warmup: int, runs: int, device: torch.device
) -> dict[str, list[float]]:
    """Time several callables in alternating order, ``runs`` calls each, after ``warmup`` untimed calls each.

    Rounds alternate the order (A B, B A, A B, ...) so that a load change on the machine, or one callable warming
    the caches for the next, affects every callable equally.

    Returns:
        Milliseconds of every timed call, per callable, in call order.

    Examples:
        >>> times = time_interleaved({"a": lambda: None}, warmup=0, runs=2, device=torch.device("cpu"))
        >>> len(times["a"])
        2
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(runs):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(_timed_call(fns[name], device))
    return times


def count_call_flops(fn: Callable[[], Any]) -> tuple[int, dict[str, int]]:
    """FLOPs of one call (2 per multiply-accumulate) as counted by ``torch.utils.flop_counter.FlopCounterMode``.

    Only operators with a FLOP formula count (convolutions, matmuls, ...); RoIAlign, NMS, interpolation and
    element-wise operations contribute nothing.

    Returns:
        Total FLOPs and FLOPs per module name (``Root.child.grandchild``, at most three levels deep).

    Examples:
        >>> count_call_flops(lambda: torch.ones(2, 3) @ torch.ones(3, 4))[0]
        48
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, depth=3)
    with counter:
        fn()
    per_module = {
        name: int(sum(ops.values()))
        for name, ops in counter.get_flop_counts().items()
        if name != "Global" and name.count(".") <= 2
    }
    return int(counter.get_total_flops()), per_module


def proc_status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``, ...), or ``None`` where there is no such file."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0: ``5`` into ``/proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def max_rss_kib() -> int:
    """Peak resident set size of this process so far, in KiB.

    Linux: ``VmHWM``. ``ru_maxrss`` is no good there for a subprocess: ``exec`` carries over the peak of the parent
    it was forked from. Elsewhere ``ru_maxrss`` (bytes on macOS, KiB on the BSDs).
    """
    hwm = proc_status_kib("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def release_free_heap() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``), so a resident-size baseline counts live memory only.

    Without it, memory freed earlier stays resident and a forward can reuse it without raising the resident size,
    which understates that forward's peak by an amount that depends on what ran before.
    """
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def measure_peak_rss(fn: Callable[[], Any]) -> dict[str, Any]:
    """Peak resident set size during one call of ``fn``, above the resident size just before it (CPU).

    On Linux the kernel's peak mark is reset just before the call and read afterwards (``VmHWM``), so allocations
    made earlier cannot hide the call's own peak; elsewhere ``ru_maxrss`` after the call minus the resident size
    before it (which reads 0 if the process peaked higher earlier).

    Returns:
        ``method``, ``baseline_mib``, ``peak_mib``, ``increase_mib`` and ``process_peak_rss_mib`` (this process
        so far: imports, model builds and the call).
    """
    release_free_heap()
    process_peak_kib = max_rss_kib()  # before the reset below forgets it
    if _reset_peak_rss() and proc_status_kib("VmHWM") is not None:
        method = "VmHWM after resetting it through /proc/self/clear_refs, minus VmRSS before (after malloc_trim)"
        baseline_kib = proc_status_kib("VmRSS") or 0
        fn()
        peak_kib = proc_status_kib("VmHWM") or 0
    else:
        method = "ru_maxrss after, minus resident size before"
        baseline_kib = proc_status_kib("VmRSS") or max_rss_kib()
        fn()
        peak_kib = max_rss_kib()
    return {
        "method": method,
        "baseline_mib": baseline_kib / 1024,
        "peak_mib": peak_kib / 1024,
        "increase_mib": max(0, peak_kib - baseline_kib) / 1024,
        "process_peak_rss_mib": max(process_peak_kib, max_rss_kib()) / 1024,
    }


def measure_peak_tensor_memory(fn: Callable[[], Any], device: torch.device) -> dict[str, Any]:
    """Peak bytes of tensors allocated during one call of ``fn`` and alive at the same time, in MiB.

    Independent of the OS and of allocator caching, hence repeatable to the byte. CUDA:
    ``torch.cuda.max_memory_allocated`` above the allocation before the call. CPU: PyTorch has no peak counter, so
    the call runs under ``torch.profiler`` with ``profile_memory=True`` and the allocation/free events are summed in
    time order (slow: run it outside any timing).
    """
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return {
            "method": "torch.cuda.max_memory_allocated minus memory_allocated before",
            "increase_mib": (torch.cuda.max_memory_allocated(device) - baseline) / 2**20,
            "baseline_mib": baseline / 2**20,
            "reserved_peak_mib": torch.cuda.max_memory_reserved(device) / 2**20,
        }
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return {"method": "torch.profiler memory events (CPU allocator), running sum", "increase_mib": peak / 2**20}


def measure_peak_memory(fn: Callable[[], Any], device: torch.device) -> dict[str, Any]:
    """The peak memory ``fpn-zoo bench`` reports for one call: RSS increase on CPU, tensor memory on CUDA.

    CPU has no allocator statistics for the whole process, and the resident size is what a user pays (oneDNN scratch
    and allocator slack included); on CUDA the caching allocator's peak of live tensors is the standard figure.
    """
    if device.type == "cuda":
        return measure_peak_tensor_memory(fn, device)
    return measure_peak_rss(fn)


def markdown_table(header: list[str], rows: list[list[str]], align: str) -> str:
    """A markdown table; ``align`` has one character per column, ``l`` or ``r``.

    Examples:
        >>> print(markdown_table(["a", "b"], [["x", "1"]], "lr"))
        | a | b |
        | --- | ---: |
        | x | 1 |
    """
    rule = ["---:" if a == "r" else "---" for a in align]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, rule, *rows])
