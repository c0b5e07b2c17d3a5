"""``fpn-zoo publish``: upload an export to the Hugging Face Hub in one commit and pin it in the manifest.

Steps: validate the export folder (files present, weights load strictly, the card parses and states the weights'
sha256), measure parameters and GFLOPs, build the manifest entry and check that the manifest with it still parses
(all before any network call); then ``HfApi.create_repo(exist_ok=True)``, ``create_branch`` for a branch other than
``main``, one ``upload_folder`` commit, and the manifest entry written atomically with the commit id the upload
returned. Metrics in the entry are read back from the card's ``model-index``, so the manifest states exactly what
the published card states.

The transfer itself is ``huggingface_hub``'s (``HfApi``: token from ``HF_TOKEN`` or ``hf auth login``, endpoint from
``HF_ENDPOINT``); this module's tests replace ``HfApi`` and check what is asked of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fpn_zoo.config import ModelConfig
from fpn_zoo.publish.card import REPO_PLACEHOLDER, CardError, card_metrics
from fpn_zoo.publish.export import (
    CARD_FILENAME,
    EXPORT_KEY,
    FLOPS_INPUT_SIZE,
    ExportError,
    check_tag,
    describe_source,
)
from fpn_zoo.publish.manifest_update import apply_entry, build_entry, read_manifest_data, write_manifest
from fpn_zoo.weights.checkpoint import CONFIG_FILENAME, WEIGHTS_FILENAME, read_checkpoint
from fpn_zoo.weights.manifest import COMMIT_PATTERN, REPO_ID_PATTERN, ManifestError, Metric, manifest_path

__all__ = ["PublishPlan", "PublishResult", "UploadError", "plan_publish", "publish_export"]

EXPORT_FILES = (WEIGHTS_FILENAME, CONFIG_FILENAME, CARD_FILENAME)
PENDING_REVISION = "<commit id of the upload>"
_DUMMY_COMMIT = "0" * 40  # stands in for the commit id when the entry is validated before the upload
_BRANCH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$")
_CARD_SHA256 = re.compile(r"sha256 `([0-9a-f]{64})`")


class UploadError(RuntimeError):
    """The Hub refused or failed a step of the upload; the message says which step and what the Hub answered."""


@dataclass(frozen=True)
class UploadFile:
    """One file of the commit."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class PublishPlan:
    """Everything an upload will do, worked out without network access or writes.

    Attributes:
        export_dir: The validated export folder.
        repo_id: Hub repository.
        branch: Branch the commit goes to.
        config: The exported architecture.
        tag: Weights tag of the manifest entry.
        files: The files of the commit, as uploaded (the card with the repository filled in).
        card_text: The ``README.md`` that will be uploaded.
        manifest_path: Manifest that will receive the entry.
        entry: The manifest entry, with ``hub.revision`` still `PENDING_REVISION`.
        label_space: Name of the entry's label space.
        new_label_space: Whether that label space is added to the manifest.
    """

    export_dir: Path
    repo_id: str
    branch: str
    config: ModelConfig
    tag: str
    files: tuple[UploadFile, ...]
    card_text: str
    manifest_path: Path
    entry: dict[str, Any]
    label_space: str
    new_label_space: bool


@dataclass(frozen=True)
class PublishResult:
    """What a publish did: the commit and the manifest entry that pins it."""

    plan: PublishPlan
    commit: str
    commit_url: str
    entry: dict[str, Any]


def check_branch(branch: str) -> str:
    """A branch name for ``upload_folder(revision=...)``: not a commit id, tag path or PR ref."""
    bad = (
        not _BRANCH.match(branch)
        or COMMIT_PATTERN.match(branch)
        or branch.startswith("refs/")
        or ".." in branch
        or "//" in branch
        or branch.endswith(("/", ".", ".lock"))
    )
    if bad:
        raise ExportError(
            f"--revision {branch!r} is not a branch name. publish creates a commit on a branch (default 'main', "
            "or e.g. 'v2'); the manifest then pins that commit's id."
        )
    return branch


def check_repo_id(repo_id: str) -> str:
    if not REPO_ID_PATTERN.match(repo_id):
        raise ExportError(f"--repo-id {repo_id!r} is not a Hub model repository id: use 'ORG/NAME'.")
    return repo_id


def _file_on_disk(path: Path) -> UploadFile:
    from fpn_zoo.weights.integrity import sha256_file

    return UploadFile(path.name, path.stat().st_size, sha256_file(path))


def _file_in_memory(name: str, data: bytes) -> UploadFile:
    import hashlib

    return UploadFile(name, len(data), hashlib.sha256(data).hexdigest())


def _load_card(path: Path) -> Any:
    import yaml
    from huggingface_hub import ModelCard

    try:
        return ModelCard.load(path)  # a Path, so never a Hub lookup
    except (ValueError, TypeError, KeyError, yaml.YAMLError) as err:
        raise ExportError(f"{path} is not a valid model card: {' '.join(str(err).split())}") from err


def _check_export_dir(export_dir: Path) -> None:
    if not export_dir.is_dir():
        raise ExportError(f"Export folder {str(export_dir)!r} does not exist or is not a folder.")
    missing = [name for name in EXPORT_FILES if not (export_dir / name).is_file()]
    if missing:
        raise ExportError(
            f"{export_dir} is not a complete export: missing {', '.join(missing)}. Create one with "
            "`fpn-zoo export --model NAME --checkpoint PATH --out DIR`."
        )


def _resolve_tag(tag: str | None, record: dict[str, Any], export_dir: Path) -> str:
    exported_tag = record.get("tag")
    if tag is not None and exported_tag not in (None, tag):
        raise ExportError(
            f"{export_dir} was exported for tag {exported_tag!r} (its card loads the weights tagged so), not "
            f"{tag!r}. Re-export with --tag {tag}, or publish without --tag."
        )
    tag = tag or exported_tag
    if tag is None:
        raise ExportError(f"No weights tag: {export_dir} was exported without --tag; pass --tag TAG (e.g. 'coco').")
    return check_tag(tag)


def _resolve_license(record: dict[str, Any], card: Any, export_dir: Path) -> str | None:
    exported, in_card = record.get("license"), card.data.license
    if exported and in_card and exported.lower() != str(in_card).lower():
        raise ExportError(
            f"{export_dir}: README.md states licence {in_card!r} but config.json's export record {exported!r}; "
            "make them agree (or re-export with --license)."
        )
    return exported or in_card  # the spelling the maintainer gave; the card holds the Hub's lowercase id


@dataclass(frozen=True)
class _Export:
    """A validated export folder."""

    folder: Path
    config: ModelConfig
    extra: dict[str, Any]
    tag: str
    weights: UploadFile
    metrics: tuple[Metric, ...]
    license: str | None


def _read_export(folder: Path, tag: str | None) -> _Export:
    """Check an export folder the way a user of the published files will meet it: complete, strictly loadable, with
    a card that parses and describes these very weights."""
    from fpn_zoo.factory import create_model

    _check_export_dir(folder)
    ckpt = read_checkpoint(folder)
    if ckpt.config is None:  # unreachable after _check_export_dir; kept for type narrowing
        raise ExportError(f"{folder} has no {CONFIG_FILENAME}.")
    create_model(ckpt.config.name, weights=folder, device="cpu")  # strict: what is uploaded must load
    record = ckpt.extra.get(EXPORT_KEY) if isinstance(ckpt.extra.get(EXPORT_KEY), dict) else {}
    tag = _resolve_tag(tag, record, folder)
    card = _load_card(folder / CARD_FILENAME)
    weights = _file_on_disk(folder / WEIGHTS_FILENAME)
    stale = {s for s in _CARD_SHA256.findall(card.text) if s != weights.sha256}
    if stale:
        raise ExportError(
            f"{folder / CARD_FILENAME} states sha256 {sorted(stale)[0]} but {WEIGHTS_FILENAME} has {weights.sha256}: "
            "the weights changed after the card was written. Export again."
        )
    try:
        metrics = card_metrics(card, str(folder / CARD_FILENAME))
    except CardError as err:
        raise ExportError(str(err)) from err
    license = _resolve_license(record, card, folder)
    return _Export(folder, ckpt.config, ckpt.extra, tag, weights, metrics, license)


def plan_publish(
    export_dir: str | os.PathLike[str],
    repo_id: str,
    *,
    revision: str = "main",
    tag: str | None = None,
    manifest: str | os.PathLike[str] | None = None,
) -> PublishPlan:
    """Validate an export and work out the commit and the manifest entry, with no network access and no writes.

    Args:
        export_dir: Folder written by ``fpn-zoo export`` (or ``ZooDetector.save_pretrained``).
        repo_id: Hub model repository, ``"ORG/NAME"``.
        revision: Branch to commit to.
        tag: Weights tag; default: the tag the export was made for.
        manifest: Manifest to update; default: the one in use (``$FPN_ZOO_MANIFEST`` or the repository's).

    Returns:
        The plan (what ``--dry-run`` prints).

    Raises:
        ExportError: Incomplete export, bad tag, branch or repository id, a card that contradicts the weights.
        WeightsMismatchError: Weights that do not load strictly into the model ``config.json`` names.
        ManifestError: The manifest is broken, or would be with the new entry.

    Examples:
        >>> plan_publish("export/fpn_r50_bccd", "acme/fpn_r50_bccd").entry["status"]  # doctest: +SKIP
        'published'
    """
    from fpn_zoo import inspect_model

    check_repo_id(repo_id)
    check_branch(revision)
    export = _read_export(Path(export_dir), tag)
    config, tag = export.config, export.tag
    card_text = (export.folder / CARD_FILENAME).read_text(encoding="utf-8").replace(REPO_PLACEHOLDER, repo_id)
    files = (
        export.weights,
        _file_on_disk(export.folder / CONFIG_FILENAME),
        _file_in_memory(CARD_FILENAME, card_text.encode("utf-8")),
    )

    path = Path(manifest) if manifest is not None else manifest_path()
    data = read_manifest_data(path)
    entries = data["models"].get(config.name, {}).get("weights", [])
    previous = next((e for e in entries if e.get("tag") == tag and e.get("status") != "not_trained"), {})
    url = f"https://huggingface.co/{repo_id}"
    # A replaced entry with weights keeps its recipe and origin: the maintainer asserted these are its weights. A
    # not_trained entry's recipe ("No COCO weights yet...") and source ("none") describe their absence instead.
    recipe = previous.get("recipe") or describe_source(export.extra.get("recipe")) or f"See the model card: {url}"
    origin = previous.get("source") or describe_source(export.extra.get("source")) or f"fpn_zoo export, {url}"
    entry = build_entry(
        tag=tag,
        label_space="",  # chosen by apply_entry
        num_params=inspect_model.count_parameters(config),
        gflops=round(inspect_model.count_flops(config, *FLOPS_INPUT_SIZE).gflops, 2),
        gflops_input_size=FLOPS_INPUT_SIZE,
        metrics=export.metrics,
        license=export.license,
        recipe=recipe,
        source=origin,
        hub={
            "repo_id": repo_id,
            "filename": WEIGHTS_FILENAME,
            "revision": _DUMMY_COMMIT,
            "sha256": export.weights.sha256,
            "size": export.weights.size,
        },
    )
    checked = apply_entry(data, config.name, entry, config.categories, path)  # validated with a stand-in commit
    entry = next(e for e in checked["models"][config.name]["weights"] if e["tag"] == tag)
    return PublishPlan(
        export_dir=export.folder,
        repo_id=repo_id,
        branch=revision,
        config=config,
        tag=tag,
        files=files,
        card_text=card_text,
        manifest_path=path,
        entry={**entry, "hub": {**entry["hub"], "revision": PENDING_REVISION}},
        label_space=entry["label_space"],
        new_label_space=entry["label_space"] not in data["label_spaces"],
    )


def _hub_call(step: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except (TypeError, AttributeError, NameError):  # bugs, not Hub answers: keep the traceback
        raise
    except Exception as err:
        text = " ".join(str(err).split()) or type(err).__name__
        raise UploadError(f"{step} failed: {text}") from err


def _stage(plan: PublishPlan, folder: Path) -> None:
    """The commit's files in ``folder``: weights hard-linked where possible (no 160 MB copy), the card filled in."""
    for name in (WEIGHTS_FILENAME, CONFIG_FILENAME):
        try:
            os.link(plan.export_dir / name, folder / name)
        except OSError:  # another file system, or links not supported
            shutil.copy2(plan.export_dir / name, folder / name)
    (folder / CARD_FILENAME).write_text(plan.card_text, encoding="utf-8")


def publish_export(
    export_dir: str | os.PathLike[str],
    repo_id: str,
    *,
    revision: str = "main",
    tag: str | None = None,
    private: bool | None = None,
    manifest: str | os.PathLike[str] | None = None,
    token: str | None = None,
    api: Any = None,
) -> PublishResult:
    """Upload an export in one commit and write the manifest entry pinning that commit.

    Args:
        export_dir: Folder written by ``fpn-zoo export``.
        repo_id: Hub model repository, ``"ORG/NAME"``; created if missing.
        revision: Branch to commit to; created from ``main`` if missing.
        tag: Weights tag; default: the tag the export was made for.
        private: Visibility of a newly created repository (``None``: the account's default).
        manifest: Manifest to update; default: the one in use.
        token: Hub token; default: ``HF_TOKEN`` or the ``hf auth login`` one.
        api: An object with ``HfApi``'s ``create_repo``, ``create_branch`` and ``upload_folder`` (default:
            ``huggingface_hub.HfApi(token=token)``).

    Returns:
        The commit and the entry written.

    Raises:
        UploadError: The Hub refused a step; nothing was written to the manifest.
        ExportError: As [`plan_publish`][fpn_zoo.publish.publish.plan_publish], before any network access.
        WeightsMismatchError: As [`plan_publish`][fpn_zoo.publish.publish.plan_publish], before any network access.
        ManifestError: As [`plan_publish`][fpn_zoo.publish.publish.plan_publish], before any network access.

    Examples:
        >>> publish_export("export/fpn_r50_bccd", "acme/fpn_r50_bccd", tag="bccd")  # doctest: +SKIP
    """
    plan = plan_publish(export_dir, repo_id, revision=revision, tag=tag, manifest=manifest)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    repo = _hub_call(f"Creating Hub repository {repo_id}", api.create_repo, repo_id, private=private, exist_ok=True)
    if getattr(repo, "repo_id", repo_id) != repo_id:
        raise UploadError(f"The Hub created {repo.repo_id!r} for {repo_id!r}; publish to an explicit 'ORG/NAME'.")
    if plan.branch != "main":
        _hub_call(f"Creating branch {plan.branch}", api.create_branch, repo_id, branch=plan.branch, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fpn-zoo-publish-") as tmp:
        _stage(plan, Path(tmp))
        info = _hub_call(
            f"Uploading {plan.export_dir} to {repo_id}@{plan.branch}",
            api.upload_folder,
            repo_id=repo_id,
            repo_type="model",
            folder_path=tmp,
            revision=plan.branch,
            commit_message=f"Publish {plan.config.name} weights ({plan.tag}) with fpn-zoo",
        )
    commit = getattr(info, "oid", None)
    if not isinstance(commit, str) or not COMMIT_PATTERN.match(commit):
        raise UploadError(f"The upload to {repo_id} returned no commit id ({info!r}); the manifest was not changed.")
    entry = {**plan.entry, "hub": {**plan.entry["hub"], "revision": commit}}
    try:
        # Re-read: the manifest may have been edited since the plan; only this model's tag is replaced.
        data = read_manifest_data(plan.manifest_path)
        data = apply_entry(data, plan.config.name, entry, plan.config.categories, plan.manifest_path)
        write_manifest(plan.manifest_path, data)
    except (ManifestError, OSError) as err:
        raise ManifestError(
            f"Uploaded {repo_id}@{commit}, but {plan.manifest_path} could not be updated ({err}). Add this entry "
            f"to models.{plan.config.name}.weights by hand: {json.dumps(entry)}"
        ) from err
    written = next(e for e in data["models"][plan.config.name]["weights"] if e["tag"] == plan.tag)
    return PublishResult(plan=plan, commit=commit, commit_url=getattr(info, "commit_url", str(info)), entry=written)
