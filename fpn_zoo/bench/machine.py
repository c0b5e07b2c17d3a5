"""Facts about the machine and the software a benchmark ran on, as recorded beside every result."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

import torch

__all__ = ["REPO_ROOT", "git_commit", "library_versions", "machine_info"]

# The checkout fpn_zoo runs from (an editable install); a wheel install has no .git there and records no commit.
REPO_ROOT = Path(__file__).resolve().parents[2]
_DISTRIBUTIONS = ("torch", "torchvision", "timm", "effdet", "fpn-zoo")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def git_commit(repo: Path = REPO_ROOT) -> str | None:
    """The checked-out commit of ``repo``, read from its ``.git`` files (no git process is started).

    Examples:
        >>> git_commit(Path("/nonexistent")) is None
        True
    """
    git = repo / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        return None
    return None


def machine_info(device: torch.device) -> dict[str, Any]:
    """Platform, CPU, thread settings and the GPU (``None`` on CPU runs), as recorded in the results JSON.

    Examples:
        >>> info = machine_info(torch.device("cpu"))
        >>> info["gpu"] is None and info["cpu_count"] >= 1
        True
    """
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
        "gpu": None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        info["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    return info


def library_versions(repo: Path = REPO_ROOT) -> dict[str, str | None]:
    """Versions of Python and of every library a benchmark touches, plus the commit of ``repo`` (``None`` if none).

    Examples:
        >>> sorted(library_versions())[:3]
        ['effdet', 'fpn-zoo', 'fpn_zoo_commit']
    """
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in _DISTRIBUTIONS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    versions["fpn_zoo_commit"] = git_commit(repo)
    return versions
