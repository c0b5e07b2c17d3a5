"""Reading upstream ``.pth`` checkpoints without running code from them.

Every file goes through ``torch.load(weights_only=True)``: torch's restricted unpickler builds tensors, plain
containers and the few types allowed here, and refuses any other global before importing it. Upstream files keep
harmless metadata next to their weights, so exactly these types are allowed as well:

* numpy scalars, dtypes and arrays (training loggers store ``numpy.float64`` scores), under their numpy 1 and
  numpy 2 module names;
* ``argparse.Namespace`` (torchvision's reference ``train.py`` saves its arguments).

A file holding anything else is refused with the offending types named; nothing from it is used.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fpn_zoo.weights.checkpoint import CheckpointError

# Containers under which training frameworks store the weights: torchvision's references ("model"), mmcv / mmengine
# `save_checkpoint` ("state_dict", next to "meta", "optimizer", ...). A bare state dict is also accepted.
STATE_DICT_KEYS: tuple[str, ...] = ("state_dict", "model")


def _numpy_globals() -> list[Any]:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return []
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core to numpy._core
    allowed: list[Any] = [np.dtype, np.ndarray]
    for name in ("scalar", "_reconstruct"):
        obj = getattr(core.multiarray, name)
        # Files name the module they were written under: allow both spellings, mapped to the installed function.
        allowed += [(obj, f"numpy.core.multiarray.{name}"), (obj, f"numpy._core.multiarray.{name}")]
    dtype_classes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles dtypes through these classes
    if dtype_classes is not None:
        allowed += [getattr(dtype_classes, n) for n in dir(dtype_classes) if n.endswith("DType")]
    return allowed


def allowed_globals() -> list[Any]:
    """The types ``torch.load(weights_only=True)`` may build besides tensors and containers (see the module doc)."""
    return [argparse.Namespace, *_numpy_globals()]


@dataclass(frozen=True)
class UpstreamFile:
    """A checkpoint read from disk.

    Attributes:
        path: The file.
        state_dict: Its tensors by name.
        metadata: Everything stored next to the weights (``meta``, ``epoch``, ``args``, ...), as read; never used to
            build a model, only to refuse layouts it names (mmdetection's config text).
    """

    path: Path
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)


def _unsafe_globals(path: Path, err: Exception) -> list[str]:
    """The globals that made a weights-only load fail, for the message (the zip format lists them all)."""
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        allowed = {f"{g.__module__}.{g.__qualname__}" if not isinstance(g, tuple) else g[1] for g in allowed_globals()}
        names = [n for n in found if n not in allowed]
        if names:
            return names
    except Exception:
        pass
    return sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(err)))) or ["(unnamed)"]


def read_upstream_file(path: str | os.PathLike[str]) -> UpstreamFile:
    """Load an upstream ``.pth`` with the weights-only unpickler and separate the weights from the metadata.

    Raises:
        CheckpointError: A missing or unreadable file, one holding types outside `allowed_globals` (named), or one
            without a mapping of names to tensors.

    Examples:
        >>> read_upstream_file("missing.pth")
        Traceback (most recent call last):
        ...
        fpn_zoo.weights.checkpoint.CheckpointError: No checkpoint file at 'missing.pth'.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"No checkpoint file at {str(path)!r}.")
    _check_format(p)
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err) and "GLOBAL" in str(err):
            names = ", ".join(_unsafe_globals(p, err)[:6])
            raise CheckpointError(
                f"Refused to load {p}: it holds pickled objects of types outside the ones fpn_zoo reads ({names}); "
                "building them could run code, so nothing was loaded. If you trust the file, load it in Python with "
                "torch.load and weights-only loading turned off, save its state dict alone (torch.save(state_dict, "
                "'clean.pth')) and convert that."
            ) from err
        raise CheckpointError(f"{p} is not a PyTorch checkpoint ({_first_line(err)}).") from err
    except EOFError as err:
        raise CheckpointError(f"{p} is empty or truncated: it ends before the checkpoint does.") from err
    except Exception as err:  # torch.load raises KeyError, ValueError, RuntimeError... on non-checkpoint bytes
        raise CheckpointError(
            f"{p} is not a PyTorch checkpoint: torch.load cannot read it ({type(err).__name__}: {_first_line(err)})."
        ) from err
    return split_state_dict(obj, p)


# torch.save writes a zip archive; before torch 1.6 (and with _use_new_zipfile_serialization=False, as mmcv and
# detectron2 files often are) a pickle stream, which starts with the PROTO opcode.
_ZIP_MAGIC, _PICKLE_PROTO = b"PK\x03\x04", 0x80


def _check_format(path: Path) -> None:
    """Refuse, in words, a file that is neither of torch's formats (text, an image, an archive of another kind)."""
    with path.open("rb") as f:
        head = f.read(16)
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes): the download or copy did not finish.")
    if head.startswith(_ZIP_MAGIC) or head[0] == _PICKLE_PROTO:
        return
    printable = all(32 <= b < 127 or b in b"\t\r\n" for b in head)
    kind = f"text: {head.decode('ascii', 'replace')!r}..." if printable else f"bytes {head[:8].hex(' ')}"
    raise CheckpointError(
        f"{path} is not a PyTorch checkpoint: it starts with {kind}, not a zip archive or pickle stream as "
        "torch.save writes them. Give the .pth file the upstream released."
    )


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def split_state_dict(obj: Any, path: Path) -> UpstreamFile:
    """Find the state dict inside a loaded checkpoint (bare, or under ``STATE_DICT_KEYS``)."""
    metadata: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if isinstance(obj.get(key), Mapping):
                metadata = {k: v for k, v in obj.items() if k != key}
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path} does not hold a state dict (a mapping of names to tensors, bare or under "
            f"{' / '.join(repr(k) for k in STATE_DICT_KEYS)})."
        )
    return UpstreamFile(path, {str(k): v for k, v in obj.items()}, metadata)
