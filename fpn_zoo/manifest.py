"""Read-only access to ``weights_manifest.json``, the single source of weights metadata.

The manifest lives at the repository root (next to ``hubconf.py``); it never claims weights that do not exist.
Each model lists its weights entries; ``status`` is one of ``published`` (on the Hub, pinned), ``convertible``
(an upstream checkpoint converts to this model) or the model has no entry yet (not trained).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

# The repository-root file is the source of truth: a checkout, a torch.hub download and an editable install read it
# there; a built wheel has no repository root and carries a copy inside the package (setup.py's build hook).
_ROOT_MANIFEST = Path(__file__).resolve().parent.parent / "weights_manifest.json"
_PACKAGED_MANIFEST = Path(__file__).resolve().with_name("weights_manifest.json")
MANIFEST_PATH = _ROOT_MANIFEST if _ROOT_MANIFEST.is_file() else _PACKAGED_MANIFEST
SCHEMA_VERSION = 1
STATUSES = ("published", "convertible")


class ManifestError(ValueError):
    """The manifest is missing or does not follow its schema."""


@cache
def load_manifest(path: Path = MANIFEST_PATH) -> dict[str, Any]:
    """Parse and validate the manifest (cached; read on first use, never at import)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ManifestError(f"Cannot read the weights manifest {path}: {err}") from err
    if data.get("schema_version") != SCHEMA_VERSION or not isinstance(data.get("models"), dict):
        raise ManifestError(f"{path}: expected schema_version {SCHEMA_VERSION} and a 'models' object.")
    for name, entry in data["models"].items():
        for w in entry.get("weights", []):
            if w.get("status") not in STATUSES:
                raise ManifestError(f"{path}: {name} has weights with status {w.get('status')!r}; use {STATUSES}.")
    return data


def weights_entries(name: str) -> list[dict[str, Any]]:
    """The manifest's weights entries for ``name`` (empty when the model has none)."""
    return list(load_manifest()["models"].get(name, {}).get("weights", []))


def weights_status(name: str) -> str:
    """One line for tables and ``fpn-zoo info``: what weights exist for ``name``."""
    entries = weights_entries(name)
    if not entries:
        # NOTE: fpn_zoo has no training command yet; the model is a torchvision FasterRCNN, so its loop applies.
        return (
            "no COCO weights yet: random init. Train it like any torchvision detector: model.train(), "
            "loss = sum(model(images, targets).values()), e.g. with torchvision's references/detection/train.py"
        )
    return "; ".join(f"{w['tag']}: {w['status']} ({w.get('source', '')})".replace(" ()", "") for w in entries)


def describe_unavailable(name: str) -> str:
    """Why ``pretrained=True`` cannot load ``name`` today, and what the user can do instead."""
    from fpn_zoo.registry import get_model_config

    get_model_config(name)  # unknown names fail with suggestions first
    lines = [f"No published pretrained weights for {name!r}."]
    for w in weights_entries(name):
        if w["status"] == "convertible":
            up = w["upstream"]
            lines.append(
                f"Its COCO weights convert from {w['source']}: download {up['url']} and run "
                f"`fpn-zoo convert --from {up['converter']} FILE --model {name} --out DIR`, "
                "then create_model(..., weights=DIR)."
            )
    lines.append(
        "Otherwise: weights=PATH (a local .safetensors file or exported folder), "
        "pretrained_backbone=True (timm ImageNet backbone weights), or random init."
    )
    return " ".join(lines)
