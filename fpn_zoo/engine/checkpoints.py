"""Training checkpoints: written atomically, found again by ``--resume``, readable without unpickling code.

A checkpoint is a folder ``<run>/checkpoints/step_<N>/`` holding an export (``model.safetensors`` + ``config.json``,
so ``create_model(weights=...)``, ``fpn-zoo eval --weights`` and ``fpn-zoo export`` take it as it is) and
``training_state.pt`` (optimiser, scheduler, scaler, EMA, RNG states and the position in the run), read back with
``torch.load(weights_only=True)``. The folder is assembled under a temporary name and renamed into place, and the
``latest`` pointer is replaced atomically afterwards: a kill or a full disk mid-write leaves the previous
checkpoint as the latest, never a half-written one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from fpn_zoo.config import ModelConfig
from fpn_zoo.weights.checkpoint import save_checkpoint

TRAINING_STATE = "training_state.pt"
LATEST = "latest"
_KEEP = 2  # checkpoints kept besides the latest: enough to survive one bad write, bounded disk use


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def write_checkpoint(
    run_dir: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    model_config: ModelConfig,
    training_state: dict[str, Any],
) -> Path:
    """Write one checkpoint and point ``latest`` at it; older ones beyond the last few are removed."""
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}."))
    try:
        save_checkpoint(model_state, model_config, staging, extra={"training": {"step": step}})
        torch.save(training_state, staging / TRAINING_STATE)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    pointer = root / f".{LATEST}.{os.getpid()}.tmp"
    pointer.write_text(final.name + "\n")
    os.replace(pointer, root / LATEST)
    _prune(root, keep=final.name)
    return final


def _prune(root: Path, keep: str) -> None:
    steps = sorted(p for p in root.glob("step_*") if p.is_dir() and p.name != keep)
    for old in steps[: max(0, len(steps) - _KEEP)]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The folder ``latest`` points at, or ``None`` for a run without checkpoints."""
    pointer = checkpoint_dir(run_dir) / LATEST
    if not pointer.is_file():
        return None
    folder = checkpoint_dir(run_dir) / pointer.read_text().strip()
    if not (folder / TRAINING_STATE).is_file():
        raise FileNotFoundError(f"{pointer} points at {folder}, which is not a complete checkpoint.")
    return folder


def read_training_state(folder: Path) -> dict[str, Any]:
    """The optimiser/scheduler/RNG state of a checkpoint: tensors and plain containers only, never code."""
    return torch.load(folder / TRAINING_STATE, map_location="cpu", weights_only=True)
