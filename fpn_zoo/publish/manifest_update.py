"""Writing a ``published`` entry into ``weights_manifest.json``: validated first, written atomically.

The file is edited as JSON data, not through the typed records, so fields and order the parser does not model
(``description``, model order, other entries) survive untouched; the result must pass
[`parse_manifest`][fpn_zoo.weights.manifest.parse_manifest] before anything is written.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fpn_zoo.publish.export import atomic_write_text
from fpn_zoo.weights.manifest import ManifestError, Metric, parse_manifest

__all__ = ["apply_entry", "build_entry", "read_manifest_data", "write_manifest"]


def read_manifest_data(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw manifest JSON (validated, so an already broken manifest is not edited further)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as err:
        raise ManifestError(f"Cannot read the weights manifest {p}: {err}") from err
    parse_manifest(data, p)
    return data


def build_entry(
    *,
    tag: str,
    label_space: str,
    num_params: int,
    gflops: float,
    gflops_input_size: tuple[int, int],
    metrics: tuple[Metric, ...],
    license: str | None,
    recipe: str,
    source: str,
    hub: dict[str, Any],
) -> dict[str, Any]:
    """A ``published`` entry as JSON data, fields in the file's order."""
    return {
        "tag": tag,
        "status": "published",
        "label_space": label_space,
        "num_params": num_params,
        "gflops": gflops,
        "gflops_input_size": list(gflops_input_size),
        "metrics": [asdict(m) for m in metrics],
        "license": license,
        "recipe": recipe,
        "source": source,
        "hub": hub,
        "upstream": None,
    }


def find_label_space(data: dict[str, Any], categories: tuple[str, ...]) -> str | None:
    """The name of an existing label space with exactly these categories."""
    for name, names in data["label_spaces"].items():
        if tuple(names) == categories:
            return name
    return None


def new_label_space_name(data: dict[str, Any], model: str, tag: str) -> str:
    """``<model>-<tag>``, suffixed when that name is taken by other categories."""
    base = name = f"{model}-{tag}"
    n = 2
    while name in data["label_spaces"]:
        name, n = f"{base}-{n}", n + 1
    return name


def apply_entry(
    data: dict[str, Any], model: str, entry: dict[str, Any], categories: tuple[str, ...], path: Path
) -> dict[str, Any]:
    """A copy of ``data`` with ``entry`` replacing the model's entry of the same tag (or appended), validated.

    The entry's label space is an existing one with the same categories, else a new one named ``<model>-<tag>``
    (``entry["label_space"]`` is set accordingly).

    Raises:
        ManifestError: The result does not follow the schema (nothing is written by this function).
    """
    data = copy.deepcopy(data)
    entry = dict(entry)
    space = find_label_space(data, categories)
    if space is None:
        space = new_label_space_name(data, model, entry["tag"])
        data["label_spaces"][space] = list(categories)
    entry["label_space"] = space
    entries = data["models"].setdefault(model, {"weights": []})["weights"]
    tags = [e.get("tag") for e in entries]
    if entry["tag"] in tags:
        entries[tags.index(entry["tag"])] = entry  # in place: a replaced default entry stays the default
    else:
        entries.append(entry)
    parsed = parse_manifest(data, path)
    written = parsed.entry(model, entry["tag"])
    if written is None or written.status != "published":  # would mean a bug above, never user input
        raise ManifestError(f"{path}: the entry {model}:{entry['tag']} did not come out as published.")
    return data


def write_manifest(path: Path, data: dict[str, Any]) -> None:
    """Validate ``data`` and replace the file atomically, formatted like the repository's (2-space indent, final
    newline)."""
    parse_manifest(data, path)
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
