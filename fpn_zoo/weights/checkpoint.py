"""Exported checkpoints on disk: ``model.safetensors`` + ``config.json`` in one folder.

This is the format ``create_model(weights=...)`` reads, ``fpn-zoo convert`` writes and the Hub hosts. Tensors are
only ever read with safetensors, so loading a checkpoint can never execute code.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from fpn_zoo.config import ModelConfig

WEIGHTS_FILENAME = "model.safetensors"
CONFIG_FILENAME = "config.json"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A weights file or folder that cannot be used; the message says why and what is expected."""


@dataclass(frozen=True)
class LocalCheckpoint:
    """A checkpoint found on disk.

    Attributes:
        weights_path: The ``.safetensors`` file.
        config: Architecture from ``config.json`` (``None`` for a bare safetensors file without one).
        extra: Other ``config.json`` fields (provenance such as ``source``); for a bare file, the model name its
            safetensors header records under ``fpn_zoo_model``.
    """

    weights_path: Path
    config: ModelConfig | None
    extra: dict[str, Any] = field(default_factory=dict)

    def read_tensors(self, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """All tensors, loaded straight onto ``device``."""
        try:
            return load_file(self.weights_path, device=str(device))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"Cannot read weights file {self.weights_path}: {err}") from err

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes without reading the data (safetensors header only)."""
        try:
            with safe_open(self.weights_path, framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - not a dict
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"Cannot read weights file {self.weights_path}: {err}") from err


def _read_config(path: Path) -> tuple[ModelConfig, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"Cannot read {path}: {err}") from err
    if not isinstance(data, dict) or "model" not in data:
        raise CheckpointError(f"{path} is not an fpn_zoo config (expected a JSON object with a 'model' entry).")
    try:
        config = ModelConfig.from_dict(data["model"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path} describes an invalid model: {err}") from err
    return config, {k: v for k, v in data.items() if k != "model"}


def read_checkpoint(path: str | os.PathLike[str]) -> LocalCheckpoint:
    """Locate the weights and config of a local checkpoint.

    Args:
        path: An exported folder holding ``model.safetensors`` and ``config.json``, that folder's
            ``model.safetensors``, or a bare ``.safetensors`` file under any other name (no config).

    Raises:
        CheckpointError: Missing path, a folder without ``model.safetensors``, or a pickle-based ``.pth``/``.bin``
            file (those are refused; convert them with ``fpn-zoo convert``).

    Examples:
        >>> read_checkpoint("no/such/folder")
        Traceback (most recent call last):
        ...
        fpn_zoo.weights.checkpoint.CheckpointError: No weights at 'no/such/folder': ...
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(
            f"No weights at {str(path)!r}: expected a .safetensors file or a folder with {WEIGHTS_FILENAME} "
            f"and {CONFIG_FILENAME}."
        )
    if p.is_dir():
        weights, config_path = p / WEIGHTS_FILENAME, p / CONFIG_FILENAME
        if not weights.is_file():
            found = sorted(x.name for x in p.iterdir())[:10]
            raise CheckpointError(f"Folder {p} has no {WEIGHTS_FILENAME} (found: {found or 'nothing'}).")
    else:
        if p.suffix != ".safetensors":
            raise CheckpointError(
                f"{p.name} is not a .safetensors file. fpn_zoo only loads safetensors (no pickle); convert a "
                "torchvision checkpoint with `fpn-zoo convert --from torchvision SRC.pth --model NAME --out DIR`."
            )
        if p.name != WEIGHTS_FILENAME:
            # A file under another name is a bare checkpoint: a config.json beside it may describe something else.
            return LocalCheckpoint(p, None, _safetensors_metadata(p))
        weights, config_path = p, p.parent / CONFIG_FILENAME
    if config_path.is_file():
        config, extra = _read_config(config_path)
        return LocalCheckpoint(weights, config, extra)
    return LocalCheckpoint(weights, None, _safetensors_metadata(weights))


def _safetensors_metadata(path: Path) -> dict[str, Any]:
    """The model name ``save_checkpoint`` wrote into the safetensors header, if any (header read only)."""
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"Cannot read weights file {path}: {err}") from err
    return {"fpn_zoo_model": metadata["fpn_zoo_model"]} if "fpn_zoo_model" in metadata else {}


def _atomic_write(target: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(
    state_dict: Mapping[str, torch.Tensor],
    config: ModelConfig,
    out_dir: str | os.PathLike[str],
    *,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``out_dir`` (each atomically).

    Args:
        state_dict: Tensors to save (moved to CPU, made contiguous).
        config: Architecture the tensors belong to.
        out_dir: Folder, created if needed.
        extra: Extra ``config.json`` entries, e.g. provenance under ``"source"``.

    Returns:
        The folder.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    _atomic_write(
        out / WEIGHTS_FILENAME,
        lambda tmp: save_file(tensors, tmp, metadata={"format": "pt", "fpn_zoo_model": config.name}),
    )
    payload = {"format_version": FORMAT_VERSION, "model": config.to_dict(), **(extra or {})}
    _atomic_write(out / CONFIG_FILENAME, lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=2) + "\n"))
    return out
