"""Weights from the Hugging Face Hub: pinned downloads through ``huggingface_hub``, then a full sha256 check.

``huggingface_hub`` does the transfer, the cache (``HF_HUB_CACHE``), mirrors (``HF_ENDPOINT``), offline mode
(``HF_HUB_OFFLINE=1``), tokens and the per-file lock that makes N processes download once. It checks only sizes, so
every file is hashed here before its first use (see [`fpn_zoo.weights.integrity`][fpn_zoo.weights.integrity]). A
mismatch deletes the cached copy, downloads once more and, if that copy is wrong too, deletes it and fails.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fpn_zoo.voice import option
from fpn_zoo.weights.cache import cache_dir, cache_lock, ensure_dir, is_permission_error, not_writable
from fpn_zoo.weights.integrity import (
    WeightsIntegrityError,
    forget,
    is_recorded,
    matches,
    record_verified,
    sha256_file,
)
from fpn_zoo.weights.manifest import REPO_ID_PATTERN
from fpn_zoo.weights.network import (
    Cause,
    WeightsDownloadError,
    describe,
    fetch_failed,
    fill_caches,
    local_weights,
    retrying,
)

__all__ = [
    "HF_HUB_PREFIX",
    "HubFile",
    "WeightsDownloadError",
    "fetch_hub_file",
    "fetch_timm_weights",
    "is_cached",
    "parse_hf_hub_spec",
    "timm_weights_cached",
]

logger = logging.getLogger(__name__)

HF_HUB_PREFIX = "hf-hub:"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REVISION = re.compile(r"^[\w./-]+$")


@dataclass(frozen=True)
class HubFile:
    """A file in the Hugging Face cache, verified, with the commit it was resolved to."""

    path: Path
    commit: str
    sha256: str


def parse_hf_hub_spec(spec: str) -> tuple[str, str | None]:
    """Split ``hf-hub:ORG/NAME[@REVISION]`` (timm's convention) into repository id and revision.

    Examples:
        >>> parse_hf_hub_spec("hf-hub:acme/fpn_r50_bccd@v1")
        ('acme/fpn_r50_bccd', 'v1')
    """
    repo_id, at, revision = spec.removeprefix(HF_HUB_PREFIX).partition("@")
    # The repository rule is the manifest's own, so a spec and a manifest entry accept the same ids.
    valid = spec.startswith(HF_HUB_PREFIX) and REPO_ID_PATTERN.match(repo_id) and (not at or _REVISION.match(revision))
    if not valid:
        raise ValueError(f"{spec!r} is not a Hub reference: use 'hf-hub:ORG/NAME' or 'hf-hub:ORG/NAME@REVISION'.")
    return repo_id, revision or None


def _where(repo_id: str, revision: str | None) -> str:
    from huggingface_hub import constants

    return f"{repo_id}@{revision or 'main'} on {constants.ENDPOINT}"


def _fill_command(repo_id: str, revision: str | None) -> str:
    """The command that fills the cache with ``repo_id``'s files: ``fpn-zoo download`` for a manifest entry."""
    from fpn_zoo.weights.manifest import ManifestError, load_manifest

    try:
        manifest = load_manifest()
    except ManifestError:  # the error being reported is the download's, not the manifest's
        manifest = None
    for name in manifest.models if manifest is not None else ():
        default = manifest.default_entry(name)
        for entry in manifest.entries(name):
            if entry.hub is not None and entry.hub.repo_id == repo_id and revision in (None, entry.hub.revision):
                return f"fpn-zoo download {name}" + ("" if entry is default else f" --tag {entry.tag}")
    return f"hf download {repo_id} --revision {revision or 'main'}"


def _hub_fill(fill: str) -> str:
    from huggingface_hub import constants

    return fill_caches(fill, [("HF_HUB_CACHE", constants.HF_HUB_CACHE)])


def _translate(
    err: Exception,
    repo_id: str,
    filename: str,
    revision: str | None,
    fill: str | None = None,
    label: str | None = None,
) -> Exception:
    """A huggingface_hub (or network) error as one message a user can act on."""
    from huggingface_hub import constants, errors

    where = _where(repo_id, revision)
    cache = constants.HF_HUB_CACHE
    target = f"{filename} of {where}" + (f" ({label})" if label else "")
    if (
        isinstance(err, errors.LocalEntryNotFoundError)
        and not constants.HF_HUB_OFFLINE
        and isinstance(err.__cause__, errors.HfHubHTTPError)
    ):
        # huggingface_hub wraps a failed metadata request in LocalEntryNotFoundError ("check your connection") even
        # when the server answered with an error status, e.g. a mirror's 500 for a commit it does not have.
        return _translate(err.__cause__, repo_id, filename, revision, fill, label)
    if isinstance(err, errors.RevisionNotFoundError):
        return WeightsDownloadError(f"Revision {revision!r} does not exist in {repo_id} ({where}).")
    if isinstance(err, errors.RepositoryNotFoundError):
        return WeightsDownloadError(
            f"Hub repository {repo_id!r} not found at {constants.ENDPOINT} (or private/gated: log in with "
            f"`hf auth login` or set HF_TOKEN). If revision {revision or 'main'!r} does not exist, some mirrors "
            "answer this way too."
        )
    if isinstance(err, errors.EntryNotFoundError) and not isinstance(err, errors.LocalEntryNotFoundError):
        return WeightsDownloadError(f"{where} has no file {filename!r}.")
    fill = _hub_fill(fill or _fill_command(repo_id, revision))
    if isinstance(err, errors.LocalEntryNotFoundError) and constants.HF_HUB_OFFLINE:
        return WeightsDownloadError(
            f"{target} is not in the Hugging Face cache {cache} and HF_HUB_OFFLINE=1 forbids downloading. Next: "
            + "; or ".join(s for s in (fill, local_weights()) if s)
            + ".",
            target=target,
            cause="HF_HUB_OFFLINE=1 forbids downloading",
            fill=fill,
        )
    cause = describe(err, _resolve_url(repo_id, filename, revision))
    if cause is not None:
        mirror = "point HF_ENDPOINT at a reachable Hub mirror"
        if cause.text.startswith("the server answered HTTP 5"):
            # A mirror (olah) answers 500 for a commit it does not have: the revision may be the problem.
            mirror = f"check that revision {revision or 'main'!r} exists in {repo_id} on {constants.ENDPOINT}"
        return fetch_failed(target, cause, fill, alternatives=[local_weights(), mirror])
    if isinstance(err, errors.LocalEntryNotFoundError):
        return fetch_failed(target, Cause(f"the Hub at {constants.ENDPOINT} could not be reached", False), fill)
    if isinstance(err, OSError) and is_permission_error(err):
        return not_writable(Path(cache), err, "HF_HUB_CACHE")
    return err


def is_cached(repo_id: str, filename: str, revision: str | None, cache_dir: str | Path | None = None) -> bool:
    """Whether the Hugging Face cache holds ``filename`` of ``repo_id`` at ``revision`` (no network call)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision), str)


def _check_reachable(repo_id: str, filename: str, revision: str | None, hub_kwargs: dict[str, Any]) -> None:
    """Ask the Hub for the file's metadata, a few bounded tries, before ``hf_hub_download`` may ask for it.

    ``hf_hub_download`` (huggingface_hub 2.x) retries an unreachable Hub with exponential backoff for ~23 s when the
    file is not cached, and timm asks twice (``model.safetensors``, then ``pytorch_model.bin``): nearly a minute
    before a host that does not even resolve is reported. This HEAD request fails at once for such a host, and
    retries only what may pass (server errors, read timeouts) within ~2 s.
    """
    from huggingface_hub import constants, get_hf_file_metadata

    from fpn_zoo import __version__

    endpoint = hub_kwargs.get("endpoint")
    url = _resolve_url(repo_id, filename, revision, endpoint)
    retrying(
        lambda: get_hf_file_metadata(
            url,
            token=hub_kwargs.get("token"),
            timeout=hub_kwargs.get("etag_timeout", constants.HF_HUB_ETAG_TIMEOUT),
            library_name="fpn_zoo",
            library_version=__version__,
            endpoint=endpoint,
        ),
        what=url,
        url=url,
    )


def _resolve_url(repo_id: str, filename: str, revision: str | None, endpoint: str | None = None) -> str:
    from huggingface_hub import hf_hub_url

    return hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)


def _download(
    repo_id: str,
    filename: str,
    revision: str | None,
    *,
    force: bool = False,
    fill: str | None = None,
    label: str | None = None,
    **hub_kwargs,
) -> Path:
    from huggingface_hub import constants, hf_hub_download

    from fpn_zoo import __version__

    try:
        offline = constants.HF_HUB_OFFLINE or hub_kwargs.get("local_files_only")
        if not offline and (force or not is_cached(repo_id, filename, revision, hub_kwargs.get("cache_dir"))):
            _check_reachable(repo_id, filename, revision, hub_kwargs)
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                force_download=force,
                library_name="fpn_zoo",
                library_version=__version__,
                **hub_kwargs,
            )
        )
    except Exception as err:
        translated = _translate(err, repo_id, filename, revision, fill, label)
        if translated is err:
            raise
        raise translated from err


def _timm_source(timm_name: str) -> tuple[str, str | None, list[str]] | None:
    """Where timm takes ``timm_name``'s default weights on the Hub: repository, revision, files in timm's order."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(timm_name)
    if cfg is None or not cfg.hf_hub_id or cfg.file or cfg.state_dict or cfg.custom_load:
        return None
    repo_id, _, revision = cfg.hf_hub_id.partition("@")
    # timm's own order: the configured file, else model.safetensors before its default pytorch_model.bin.
    candidates = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    return repo_id, revision or None, candidates


def timm_weights_cached(timm_name: str) -> bool:
    """Whether timm's default weights for ``timm_name`` are in the Hugging Face cache (no network call)."""
    source = _timm_source(timm_name)
    return source is not None and any(is_cached(source[0], name, source[1]) for name in source[2])


def fetch_timm_weights(timm_name: str) -> Path | None:
    """The local file of timm's default ImageNet weights for ``timm_name``, fetched like any Hub file.

    Returns ``None`` where timm does not take them from the Hub (a URL or a custom loader): timm fetches those.

    Raises:
        WeightsDownloadError: The Hub cannot be reached (one line, within seconds) or does not have the file.
    """
    from huggingface_hub import errors

    source = _timm_source(timm_name)
    if source is None:
        return None
    repo_id, revision, candidates = source
    label = f"timm's ImageNet weights of {timm_name}, for {option('pretrained_backbone', True)}"
    names = [name for name in candidates if is_cached(repo_id, name, revision)] or candidates
    for name in names:
        fill = f"hf download {repo_id} {name}" + (f" --revision {revision}" if revision else "")
        try:
            return _download(repo_id, name, revision, fill=fill, label=label)
        except WeightsDownloadError as err:
            missing = err.__cause__  # the Hub answered that it has no such file: try the next one, as timm does
            remote = isinstance(missing, errors.EntryNotFoundError) and not isinstance(
                missing, errors.LocalEntryNotFoundError
            )
            if name == names[-1] or not remote:
                raise
    raise AssertionError("unreachable")  # the last name returns or raises


def _commit_of(snapshot_path: Path) -> str:
    # .../models--org--name/snapshots/<commit>/<filename>
    parts = snapshot_path.parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else "unknown"


def _trusted_first_use_record(repo_id: str, commit: str, filename: str) -> Path:
    return cache_dir() / "hf-hub" / repo_id / commit / (filename.replace("/", "__") + ".sha256")


def _expected_sha256(path: Path, repo_id: str, commit: str, filename: str, sha256: str | None) -> str | None:
    """The digest to check against: the manifest's, else the Hub's LFS one, else the one recorded at first use."""
    if sha256 is not None:
        return sha256
    blob_name = path.resolve().name  # the cache names LFS blobs by their sha256 (the Hub's X-Linked-Etag)
    if _SHA256.match(blob_name):
        return blob_name
    try:
        return _trusted_first_use_record(repo_id, commit, filename).read_text().strip()
    except OSError:
        return None


def _delete_cached(path: Path, sha256: str) -> None:
    forget(path, sha256)
    blob = path.resolve()
    blob.unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def fetch_hub_file(
    repo_id: str,
    filename: str,
    revision: str | None,
    *,
    sha256: str | None = None,
    size: int | None = None,
    force_download: bool = False,
    **hub_kwargs,
) -> HubFile:
    """Download (or find in the cache) one file and verify its full sha256 before returning it.

    Args:
        repo_id: Hub model repository, ``"org/name"``.
        filename: Path inside the repository.
        revision: A 40-hex commit (no network call when cached), a branch or tag, or ``None`` for ``main``.
        sha256: Expected digest (the manifest's). Without it: the Hub's LFS sha256 when the file is an LFS file,
            else the digest recorded at the first download of this commit (trust on first use).
        size: Expected size in bytes, checked before hashing.
        force_download: Download again even if the file is cached (the new copy is verified like any other).
        **hub_kwargs (Any): ``token``, ``cache_dir``, ``local_files_only``, ``endpoint`` for ``hf_hub_download``.

    Raises:
        WeightsDownloadError: Unknown repository, revision or file; offline with a cold cache; network failure.
        WeightsIntegrityError: The file is wrong even after deleting it and downloading it again.
        CacheNotWritableError: The cache cannot be written.
    """
    path = _download(repo_id, filename, revision, force=force_download, **hub_kwargs)
    commit = _commit_of(path)
    expected = _expected_sha256(path, repo_id, commit, filename, sha256)
    if expected is not None and is_recorded(path, expected):  # warm path: one stat, no lock
        return HubFile(path, commit, expected)
    with cache_lock(f"hub-{repo_id}-{commit}-{filename}", required=False):
        if expected is None:  # first use of a non-LFS file from a community repository: record what it is
            digest = sha256_file(path)
            record = _trusted_first_use_record(repo_id, commit, filename)
            try:
                ensure_dir(record.parent)
                record.write_text(digest + "\n")
                record_verified(path, digest)
            except OSError as err:  # a read-only cache still loads, it just cannot remember the digest
                logger.warning("Could not record the sha256 of %s (%s); it will be recomputed next time.", path, err)
            return HubFile(path, commit, digest)
        if matches(path, expected, size=size):
            return HubFile(path, commit, expected)
        logger.warning("%s does not match its sha256 %s: deleting it and downloading again.", path, expected)
        try:
            _delete_cached(path, expected)
        except OSError as err:
            raise not_writable(path.parent, err, "HF_HUB_CACHE") from err
        path = _download(repo_id, filename, commit if commit != "unknown" else revision, force=True, **hub_kwargs)
        if matches(path, expected, size=size):
            return HubFile(path, commit, expected)
        actual = sha256_file(path)
        _delete_cached(path, expected)
        raise WeightsIntegrityError(
            f"{filename} from {_where(repo_id, commit)} has sha256 {actual}, expected {expected}, even after a "
            "fresh download. The copy was deleted. The server or a proxy/mirror in between serves different "
            "bytes: do not use it; report it to the repository owner."
        )
