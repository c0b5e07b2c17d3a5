"""The run folder: checkpoints written atomically and found again by ``--resume``, and no run ever overwritten.

A checkpoint is a folder ``<run>/checkpoints/step_<N>/`` holding an export (``model.safetensors`` + ``config.json``,
so ``create_model(weights=...)``, ``fpn-zoo eval --weights`` and ``fpn-zoo export`` take it as it is) and
``training_state.pt`` (optimiser, scheduler, scaler, EMA, RNG states and the position in the run), read back with
``torch.load(weights_only=True)``. The folder is assembled under a temporary name and renamed into place, and the
``latest`` pointer is replaced atomically afterwards: a kill or a full disk mid-write leaves the previous
checkpoint as the latest, never a half-written one.

A folder that holds a run (``train_config.json``, ``log.jsonl``, ``checkpoints/``, ``final/``) is never trained into
again by accident: [`check_run_folder`][fpn_zoo.engine.checkpoints.check_run_folder] refuses it, before any model is
built, unless the run is resumed or explicitly replaced, and
[`remove_run`][fpn_zoo.engine.checkpoints.remove_run] then deletes only what a training run writes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from fpn_zoo.config import ModelConfig
from fpn_zoo.engine.train_config import TrainConfig
from fpn_zoo.outputs import free_sibling
from fpn_zoo.voice import option, say
from fpn_zoo.weights.checkpoint import save_checkpoint

TRAINING_STATE = "training_state.pt"
LATEST = "latest"
CONFIG_FILE = "train_config.json"
LOG_FILE = "log.jsonl"
FINAL = "final"
RUN_ENTRIES = (CONFIG_FILE, LOG_FILE, "checkpoints", FINAL)
"""What a training run writes into its folder; a folder holding any of them holds a run."""
_KEEP = 2  # checkpoints kept besides the latest: enough to survive one bad write, bounded disk use
# The files of an exported folder (final/, each step_N/), with the temporary names of their atomic writes.
_EXPORT_FILES = ("model.safetensors", "config.json", TRAINING_STATE, ".model.safetensors.*.tmp", ".config.json.*.tmp")


class RunFolderError(ValueError):
    """The run folder cannot be used as asked: it holds another run, or ``resume`` finds none to continue."""


class ResumeError(RunFolderError):
    """A resume that cannot continue the run in the folder (no run, another model or config, no checkpoint)."""


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


def rng_state() -> dict[str, Any]:
    """The random states a checkpoint keeps (torch, Python, CUDA), restored by ``set_rng_state``."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the random states of [`rng_state`][fpn_zoo.engine.checkpoints.rng_state]."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_training_state(folder: Path) -> dict[str, Any]:
    """The optimiser/scheduler/RNG state of a checkpoint: tensors and plain containers only, never code."""
    return torch.load(folder / TRAINING_STATE, map_location="cpu", weights_only=True)


# -- the run folder --------------------------------------------------------------------------------------------------


def run_entries(run_dir: Path) -> list[str]:
    """What of a training run ``run_dir`` holds, described: ``["train_config.json", "checkpoints/ up to step 4"]``.

    Empty for a folder that does not exist or holds no run (files a run does not write do not count).
    """
    found = []
    for name in RUN_ENTRIES:
        path = run_dir / name
        if not (path.exists() or path.is_symlink()):
            continue
        pointer = path / LATEST
        step = pointer.read_text().strip().removeprefix("step_") if name == "checkpoints" and pointer.is_file() else ""
        found.append(
            f"checkpoints/ up to step {int(step)}" if step.isdigit() else f"{name}/" if path.is_dir() else name
        )
    return found


def _fit(name: str) -> str:
    """``fit(resume=True)`` from Python, ``--resume`` from the CLI."""
    return say(f"fit({option(name, True)})", option(name, True))


def check_run_folder(config: TrainConfig, *, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse a run that would mix with another run's files; reads only, so it may run before anything is built.

    A new run needs a folder that holds no run (it may exist, empty or with files a run does not write);
    ``overwrite`` replaces a run ([`remove_run`][fpn_zoo.engine.checkpoints.remove_run]), ``resume`` continues one,
    with the same settings and from a checkpoint.

    Raises:
        RunFolderError: ``out`` holds a run (the message offers resuming it, a free folder and overwriting it), or is
            a file, or ``resume`` and ``overwrite`` are both set.
        ResumeError: ``resume`` without a run, with other settings, or before the run's first checkpoint.

    Examples:
        >>> cfg = TrainConfig(model="fpn_r50_coco", train_ann="a.json", train_images="i", out="runs/cells", iters=5)
        >>> check_run_folder(cfg)  # doctest: +SKIP
        Traceback (most recent call last):
        RunFolderError: runs/cells already holds a finished training run (train_config.json, ...). Continue it ...
    """
    out = Path(config.out)
    if resume and overwrite:
        raise RunFolderError(f"{_fit('resume')} continues the run in {out}, {_fit('overwrite')} replaces it: not both.")
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out} is a file, not a run folder; give a folder, e.g. {new_run_option(out)}.")
    entries = run_entries(out)
    if resume:
        _check_resumable(config, out, entries)
    elif entries and not overwrite:
        state = "a finished" if (out / FINAL).is_dir() else "an unfinished"
        raise RunFolderError(
            f"{out} already holds {state} training run ({', '.join(entries)}). Continue it with {_fit('resume')}, "
            f"start a new run with {new_run_option(out)}, or replace it with {_fit('overwrite')}."
        )


def new_run_option(out: Path) -> str:
    """How to point a new run at the first free sibling of ``out``: ``--out runs/cells-2`` or ``out='runs/cells-2'``."""
    sibling = option("out", str(free_sibling(out if out.name else out.resolve())))  # "--out ." has no name
    return say(f"TrainConfig(..., {sibling})", sibling)


def _check_resumable(config: TrainConfig, out: Path, entries: list[str]) -> None:
    resume = _fit("resume")
    if not (out / CONFIG_FILE).is_file():
        found = f"; it has {', '.join(entries)}, so start it with {_fit('overwrite')}" if entries else ""
        raise ResumeError(
            f"{resume}: {out} holds no training run to continue (no {CONFIG_FILE}{found}). Start the run without "
            f"{option('resume', True)}."
        )
    previous = TrainConfig.from_dict(json.loads((out / CONFIG_FILE).read_text()))
    changes = config.differences(previous)
    if changes:
        raise ResumeError(
            f"{resume} refused: the run in {out} was started with other settings ({'; '.join(changes)}). Resume "
            f"with the same settings, or start a new run with {new_run_option(out)}."
        )
    if latest_checkpoint(out) is None:
        raise ResumeError(
            f"{resume}: {out} has no checkpoint yet (the run stopped before its first); start it again with "
            f"{_fit('overwrite')}."
        )


def remove_run(run_dir: Path) -> tuple[list[str], list[str]]:
    """Delete the files a training run wrote in ``run_dir`` (its ``RUN_ENTRIES``), and nothing else.

    Returns:
        What was removed (``["train_config.json", "log.jsonl", "checkpoints/ (3 checkpoints)", "final/"]``), and the
        paths left in place inside those folders because no training run writes them.
    """
    removed: list[str] = []
    kept: list[str] = []
    for name in (CONFIG_FILE, LOG_FILE):
        if (run_dir / name).is_file():
            (run_dir / name).unlink()
            removed.append(name)
    root = checkpoint_dir(run_dir)
    if root.is_dir() and not root.is_symlink():  # a link leads to files of someone else's: never followed
        steps = [p for p in root.iterdir() if p.is_dir() and p.name.lstrip(".").startswith("step_")]
        for step in steps:
            kept += _remove_export(step, run_dir)
        for pointer in [root / LATEST, *root.glob(f".{LATEST}.*.tmp")]:
            if pointer.is_file():
                pointer.unlink()
        kept += [p for p in _remove_folder(root, run_dir) if not any(k.startswith(p) for k in kept)]
        removed.append(f"checkpoints/ ({sum(not p.name.startswith('.') for p in steps)} checkpoints)")
    if (run_dir / FINAL).is_dir() and not (run_dir / FINAL).is_symlink():
        kept += _remove_export(run_dir / FINAL, run_dir)
        removed.append(f"{FINAL}/")
    return removed, kept


def _remove_export(folder: Path, run_dir: Path) -> list[str]:
    for pattern in _EXPORT_FILES:
        for path in folder.glob(pattern):
            if path.is_file():
                path.unlink()
    return _remove_folder(folder, run_dir)


def _remove_folder(folder: Path, run_dir: Path) -> list[str]:
    """Remove ``folder`` if it is empty; else the paths in it, which a run did not write, relative to ``run_dir``."""
    left = sorted(folder.iterdir())
    if left:
        return [str(p.relative_to(run_dir)) + ("/" if p.is_dir() else "") for p in left]
    folder.rmdir()
    return []
