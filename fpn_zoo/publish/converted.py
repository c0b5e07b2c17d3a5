"""``fpn-zoo publish-converted``: convert every ``convertible`` manifest entry and publish it on the Hub.

For each entry: the upstream checkpoint is downloaded, its published hash checked and converted, exactly as
``create_model(name, pretrained=tag)`` does it ([`fetch_converted`][fpn_zoo.weights.upstream.fetch_converted]); the
result is exported with its model card ([`export_checkpoint`][fpn_zoo.publish.export.export_checkpoint], metrics from
the entry) and published ([`publish_export`][fpn_zoo.publish.publish.publish_export]), which replaces the entry by a
``published`` one pinned to the new commit. Repositories follow timm's naming, one per weights:
``ORG/{model}.{tag}`` (``acme/fpn_r50_coco.coco_mmdet_1x``).

Entries are handled one at a time and the manifest is written after each upload, so an interrupted run loses
nothing: run it again and the entries already published are no longer ``convertible``. Exports go to
``work_dir/{model}.{tag}``; an existing export of the same converted weights is reused, anything else there is
refused rather than overwritten.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fpn_zoo.publish.export import EXPORT_KEY, ExportError, export_checkpoint
from fpn_zoo.publish.publish import PublishPlan, PublishResult, plan_publish, publish_export
from fpn_zoo.weights.checkpoint import CONFIG_FILENAME, WEIGHTS_FILENAME
from fpn_zoo.weights.manifest import REPO_ID_PATTERN, WeightsEntry, load_manifest, manifest_path

__all__ = ["ConvertedPublication", "convertible_entries", "hub_repo_id", "publish_converted"]


@dataclass(frozen=True)
class ConvertedPublication:
    """One entry's way to the Hub.

    Attributes:
        model: Zoo model.
        tag: Weights tag.
        repo_id: Hub repository it goes to.
        export_dir: The export folder that is (or would be) uploaded.
        plan: What the upload does (files, the manifest entry).
        result: The commit and the written entry; ``None`` in a dry run.
    """

    model: str
    tag: str
    repo_id: str
    export_dir: Path
    plan: PublishPlan
    result: PublishResult | None


def hub_repo_id(org: str, model: str, tag: str) -> str:
    """The Hub repository of one model's weights: ``ORG/{model}.{tag}``, as timm names its repositories.

    Examples:
        >>> hub_repo_id("acme", "fpn_r50_coco", "coco_mmdet_1x")
        'acme/fpn_r50_coco.coco_mmdet_1x'
    """
    repo_id = f"{org}/{model}.{tag}"
    if not REPO_ID_PATTERN.match(repo_id):
        raise ExportError(f"--org {org!r} does not make a Hub repository id ({repo_id!r}); give an org or user name.")
    return repo_id


def convertible_entries(
    pattern: str | None = None, manifest: str | os.PathLike[str] | None = None
) -> list[WeightsEntry]:
    """The ``convertible`` entries of the models matching ``pattern`` (all when ``None``), in manifest order."""
    parsed = load_manifest(manifest)
    return [
        entry
        for name, entries in parsed.models.items()
        if pattern is None or fnmatch.fnmatchcase(name, pattern)
        for entry in entries
        if entry.status == "convertible"
    ]


def _same_weights_exported(export_dir: Path, converted: Path) -> bool:
    """Whether ``export_dir`` is a finished export of the converted weights (so a rerun can reuse it)."""
    from fpn_zoo.weights.integrity import sha256_file

    try:
        record = json.loads((export_dir / CONFIG_FILENAME).read_text())[EXPORT_KEY]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    source = converted / WEIGHTS_FILENAME
    return (export_dir / "README.md").is_file() and record.get("checkpoint", {}).get("sha256") == sha256_file(source)


def _export(entry: WeightsEntry, converted: Path, export_dir: Path, manifest: Path) -> None:
    if export_dir.exists() and any(export_dir.iterdir()):
        if _same_weights_exported(export_dir, converted):
            return
        raise ExportError(
            f"{export_dir} already holds something other than the export of {entry.model}:{entry.tag}; nothing was "
            "overwritten. Remove it or choose another --work-dir."
        )
    export_checkpoint(entry.model, converted, export_dir, tag=entry.tag, manifest=manifest)


def publish_converted(
    org: str,
    *,
    work_dir: str | os.PathLike[str],
    pattern: str | None = None,
    manifest: str | os.PathLike[str] | None = None,
    dry_run: bool = False,
    private: bool | None = None,
    api: object = None,
    progress: Callable[[str], None] | None = None,
) -> list[ConvertedPublication]:
    """Convert, export and publish every ``convertible`` entry (of the models matching ``pattern``).

    Args:
        org: Hub organisation or user receiving the repositories ``ORG/{model}.{tag}``.
        work_dir: Folder for the exports (kept: they are what was uploaded).
        pattern: Shell-style filter on model names, e.g. ``"fpn_r50*"``.
        manifest: Manifest to read and update; default: the one in use.
        dry_run: Convert and export, then print the plans: no upload, no manifest change. Downloads of the
            upstream checkpoints still happen (into the usual caches), as the exports need their tensors.
        private: Visibility of newly created repositories.
        api: ``HfApi`` stand-in (tests); default ``huggingface_hub.HfApi()``.
        progress: Called with one line per step.

    Returns:
        One record per entry, in manifest order.

    Raises:
        ExportError, UploadError, WeightsDownloadError, WeightsIntegrityError: The first entry that fails stops the
            run; the entries before it are published and pinned.

    Examples:
        >>> publish_converted("acme", work_dir="exports", dry_run=True)  # doctest: +SKIP
    """
    from fpn_zoo.weights.upstream import fetch_converted

    path = Path(manifest) if manifest is not None else manifest_path()
    say = progress or (lambda _line: None)
    done = []
    for entry in convertible_entries(pattern, path):
        repo_id = hub_repo_id(org, entry.model, entry.tag)
        say(f"{entry.model}:{entry.tag}: fetching and converting {entry.upstream.url}")
        converted = fetch_converted(entry)
        export_dir = Path(work_dir) / f"{entry.model}.{entry.tag}"
        _export(entry, converted, export_dir, path)
        if dry_run:
            plan = plan_publish(export_dir, repo_id, tag=entry.tag, manifest=path)
            done.append(ConvertedPublication(entry.model, entry.tag, repo_id, export_dir, plan, None))
            say(f"{entry.model}:{entry.tag}: would publish {export_dir} to {repo_id}")
            continue
        result = publish_export(export_dir, repo_id, tag=entry.tag, private=private, manifest=path, api=api)
        done.append(ConvertedPublication(entry.model, entry.tag, repo_id, export_dir, result.plan, result))
        say(f"{entry.model}:{entry.tag}: published to {repo_id}@{result.commit} and pinned in {path}")
    return done
