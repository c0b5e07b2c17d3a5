"""Cold and warm weight-load time: the zoo's ``create_model(name, weights=DIR)`` next to torchvision's usual load.

"Cold" means the weights file is not in the page cache (evicted with ``posix_fadvise(POSIX_FADV_DONTNEED)`` after an
``fsync``) while every library is already imported; "warm" means the file is in the page cache. Both end when the
model is ready: built, weights assigned, every weight page resident and (on CUDA) every copy finished.
"""

from __future__ import annotations

import ctypes
import gc
import mmap
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fpn_zoo.bench.measure import ratio, stats, sync

__all__ = ["evict_from_page_cache", "file_mib", "measure_load", "resident_fraction", "touch_weights"]


def evict_from_page_cache(path: Path) -> None:
    """Drop ``path`` from the page cache (its dirty pages are written first, which DONTNEED would otherwise skip).

    Pages still mapped by a live process stay; callers free every model that maps the file first.

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "w.bin"
        >>> _ = path.write_bytes(bytes(1 << 20))
        >>> evict_from_page_cache(path)
        >>> resident_fraction(path) in (0.0, None)  # doctest: +SKIP
        True
    """
    if not hasattr(os, "posix_fadvise"):
        raise OSError("Cold load times need os.posix_fadvise (Linux); run fpn-zoo bench with --skip-load here.")
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident_fraction(path: Path) -> float | None:
    """Fraction of ``path``'s pages in the page cache (``mincore``), or ``None`` where that cannot be asked."""
    size = path.stat().st_size
    if size == 0:
        return 0.0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    pages = -(-size // mmap.PAGESIZE)
    fd = os.open(path, os.O_RDONLY)
    try:
        # Mapping without touching reads nothing, so the question does not change the answer.
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(addr, size, vec) != 0:
                return None
            return sum(b & 1 for b in vec) / pages
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def touch_weights(model: nn.Module) -> None:
    """Read one element per memory page of every CPU tensor, so mapped (not yet read) weights become resident.

    safetensors maps the file copy-on-write, so ``create_model`` returns before the bytes are read and the first
    forward would pay for the reads; ``torch.load`` has read everything already. Touching makes both sides "ready".
    """
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.device.type == "cpu" and t.numel():
                flat = t.reshape(-1)
                float(flat[:: max(1, mmap.PAGESIZE // t.element_size())].sum())


def _timed(load: Callable[[], nn.Module], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter_ns()
    model = load()
    touch_weights(model)
    sync(device)
    elapsed = (time.perf_counter_ns() - start) / 1e6
    del model
    gc.collect()  # unmaps the file, so the next eviction can drop every page
    return elapsed


def measure_load(
    loads: dict[str, tuple[Callable[[], nn.Module], Path]], *, runs: int, device: torch.device
) -> dict[str, Any]:
    """Cold and warm load times of the ``ours`` and ``reference`` loaders, interleaved (A B, B A, ...).

    Args:
        loads: ``{"ours": (load, weights_file), "reference": (load, weights_file)}``; ``load`` returns the model.
        runs: Cold and warm loads per side.
        device: Where the models are loaded.

    Returns:
        ``cold`` and ``warm``, each with STATS per side and ``ratio`` (median ours / median reference); ``cold``
        also holds ``max_resident_fraction_after_evict`` per side (0 when every eviction worked).
    """
    names = ["ours", "reference"]
    for name in names:  # untimed: first-call costs (lazy imports, allocator growth) land on no side's figure
        _timed(loads[name][0], device)
    cold: dict[str, list[float]] = {n: [] for n in names}
    resident: dict[str, float | None] = dict.fromkeys(names, 0.0)
    for r in range(runs):
        for name in names if r % 2 == 0 else names[::-1]:
            load, path = loads[name]
            evict_from_page_cache(path)
            left = resident_fraction(path)
            previous = resident[name]
            resident[name] = None if left is None or previous is None else max(previous, left)
            cold[name].append(_timed(load, device))
    # The last cold load read every page of each file, so the warm rounds start with both files cached.
    warm: dict[str, list[float]] = {n: [] for n in names}
    for r in range(runs):
        for name in names if r % 2 == 0 else names[::-1]:
            warm[name].append(_timed(loads[name][0], device))
    result: dict[str, Any] = {}
    for label, times in (("cold", cold), ("warm", warm)):
        sides = {name: stats(times[name]) for name in names}
        result[label] = {**sides, "ratio": ratio(sides["ours"], sides["reference"])}
    result["cold"]["max_resident_fraction_after_evict"] = resident
    return result


def file_mib(path: Path) -> float:
    """Size of ``path`` in MiB.

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "w.bin"
        >>> _ = path.write_bytes(bytes(1 << 20))
        >>> file_mib(path)
        1.0
    """
    return path.stat().st_size / 2**20
