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

logger = logging.getLogger(__name__)

HF_HUB_PREFIX = "hf-hub:"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REVISION = re.compile(r"^[\w./-]+$")


class WeightsDownloadError(RuntimeError):
    """Weights that could not be fetched; the message says from where, why, and what to do about it."""


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


def _translate(err: Exception, repo_id: str, filename: str, revision: str | None) -> Exception:
    """A huggingface_hub error as one message a user can act on."""
    from huggingface_hub import constants, errors

    where = _where(repo_id, revision)
    cache = constants.HF_HUB_CACHE
    if isinstance(err, errors.RevisionNotFoundError):
        return WeightsDownloadError(f"Revision {revision!r} does not exist in {repo_id} ({where}).")
    if isinstance(err, errors.RepositoryNotFoundError):
        return WeightsDownloadError(
            f"Hub repository {repo_id!r} not found at {constants.ENDPOINT} (or private/gated: log in with "
            f"`hf auth login` or set HF_TOKEN). If revision {revision or 'main'!r} does not exist, some mirrors "
            "answer this way too."
        )
    if (
        isinstance(err, errors.LocalEntryNotFoundError)
        and not constants.HF_HUB_OFFLINE
        and isinstance(err.__cause__, errors.HfHubHTTPError)
    ):
        # huggingface_hub wraps a failed metadata request in LocalEntryNotFoundError ("check your connection") even
        # when the server answered with an error status, e.g. a mirror's 500 for a commit it does not have.
        return _translate(err.__cause__, repo_id, filename, revision)
    if isinstance(err, errors.LocalEntryNotFoundError):
        reason = (
            "HF_HUB_OFFLINE=1 forbids downloading"
            if constants.HF_HUB_OFFLINE
            else f"the Hub at {constants.ENDPOINT} could not be reached"
        )
        return WeightsDownloadError(
            f"{filename} of {where} is not in the Hugging Face cache {cache} and {reason}. Fill the cache on a "
            f"connected machine (`fpn-zoo download MODEL`, or `hf download {repo_id} {filename} --revision "
            f"{revision or 'main'}`) and copy it here (or set HF_HUB_CACHE to it); point HF_ENDPOINT at a mirror; "
            "or pass weights=PATH to a local file."
        )
    if isinstance(err, errors.EntryNotFoundError):  # after LocalEntryNotFoundError, its subclass
        return WeightsDownloadError(f"{where} has no file {filename!r}.")
    if isinstance(err, errors.HfHubHTTPError):
        return WeightsDownloadError(
            f"Downloading {filename} from {where} failed: {str(err).splitlines()[0]}. A mirror may answer a server "
            f"error for a revision it does not have; check that {revision or 'main'!r} exists in {repo_id}."
        )
    if isinstance(err, OSError) and is_permission_error(err):
        return not_writable(Path(cache), err, "HF_HUB_CACHE")
    return err


def _download(repo_id: str, filename: str, revision: str | None, *, force: bool = False, **hub_kwargs) -> Path:
    from huggingface_hub import hf_hub_download

    from fpn_zoo import __version__

    try:
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
        translated = _translate(err, repo_id, filename, revision)
        if translated is err:
            raise
        raise translated from err


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
