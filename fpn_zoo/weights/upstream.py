"""Upstream checkpoints (torchvision's, mmdetection's ``.pth``): downloaded with their hash checked, converted once,
cached.

The ``.pth`` goes where torch.hub keeps checkpoints (``$TORCH_HOME/hub/checkpoints``), under its upstream name, so
torchvision and fpn_zoo share one copy. The conversion to safetensors is cached under
``<fpn_zoo cache>/converted/<model>/<tag>-<hash prefix>/`` and its sha256 recorded there; warm loads read only that.
Everything runs under one inter-process lock per entry, so concurrent processes download and convert once.
``HF_HUB_OFFLINE=1`` also forbids these downloads. A download that fails says why in one line and what to do
(``fpn_zoo.weights.network``); only server errors and stalls are tried again, twice.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from fpn_zoo.weights.cache import cache_dir, cache_lock, ensure_dir
from fpn_zoo.weights.integrity import WeightsIntegrityError, matches, record_verified, sha256_file
from fpn_zoo.weights.manifest import UpstreamSource, WeightsEntry, load_manifest
from fpn_zoo.weights.network import (
    WeightsDownloadError,
    describe,
    download_url,
    fetch_failed,
    fill_caches,
    local_weights,
    retrying,
)

logger = logging.getLogger(__name__)

_DIGEST_FILE = "model.safetensors.sha256"


def converted_dir(entry: WeightsEntry) -> Path:
    """Where ``entry``'s converted checkpoint is cached."""
    if entry.upstream is None:
        raise ValueError(f"{entry.model}:{entry.tag} has no upstream checkpoint.")
    return cache_dir() / "converted" / entry.model / f"{entry.tag}-{entry.upstream.sha256_prefix}"


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _hash_ok(digest: str, upstream: UpstreamSource) -> bool:
    return digest == upstream.sha256 if upstream.sha256 else digest.startswith(upstream.sha256_prefix)


def _expected(upstream: UpstreamSource) -> str:
    return upstream.sha256 or f"{upstream.sha256_prefix}... (prefix published by the upstream)"


def _checkpoints_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _fill(entry: WeightsEntry) -> str:
    """How to fill the caches with ``entry`` on a machine with a network and use them here."""
    default = load_manifest().default_entry(entry.model)
    command = f"fpn-zoo download {entry.model}"
    if default is None or default.tag != entry.tag:
        command += f" --tag {entry.tag}"
    return fill_caches(command, [("FPN_ZOO_CACHE", cache_dir()), ("TORCH_HOME", Path(torch.hub.get_dir()).parent)])


def _fetch_upstream_file(entry: WeightsEntry, converted: Path) -> tuple[Path, str]:
    """The verified upstream file in torch's checkpoint folder and its sha256; downloads it (twice at most)."""
    upstream: UpstreamSource = entry.upstream  # type: ignore[assignment]  # converted_dir checked it
    target = _checkpoints_dir() / upstream.filename
    if target.is_file():
        digest = sha256_file(target)
        if _hash_ok(digest, upstream):
            return target, digest
        logger.warning("%s does not match its published hash %s: deleting it.", target, upstream.sha256_prefix)
        target.unlink()
    if _offline():
        fill = _fill(entry)
        by_hand = f"put {upstream.filename} from {upstream.url} into {target.parent} yourself (its hash is checked)"
        steps = "; or ".join(s for s in (fill, by_hand, local_weights()) if s)
        raise WeightsDownloadError(
            f"Neither a converted copy ({converted}) nor the upstream {upstream.filename} (torch's checkpoint cache "
            f"{target.parent}) is cached, and HF_HUB_OFFLINE=1 forbids downloading it. Next: {steps}.",
            target=upstream.url,
            cause="HF_HUB_OFFLINE=1 forbids downloading",
            fill=fill,
        )
    ensure_dir(target.parent, "TORCH_HOME")
    for attempt in (1, 2):
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{upstream.filename}.", suffix=".partial")
        os.close(fd)
        try:
            retrying(lambda: download_url(upstream.url, Path(tmp)), what=upstream.url, url=upstream.url)  # noqa: B023
            digest = sha256_file(tmp)
            if _hash_ok(digest, upstream):
                os.replace(tmp, target)
                return target, digest
            logger.warning("Download %d of %s has sha256 %s, expected %s.", attempt, upstream.url, digest, upstream)
        except Exception as err:
            cause = describe(err, upstream.url)
            if cause is None:
                raise
            what = f"{upstream.url} (weights {entry.tag!r} of {entry.model})"
            by_hand = f"put that file into {target.parent} yourself (its hash is checked)"
            raise fetch_failed(what, cause, _fill(entry), alternatives=[by_hand, local_weights()]) from err
        finally:
            Path(tmp).unlink(missing_ok=True)
    raise WeightsIntegrityError(
        f"{upstream.url} has sha256 {digest}, expected {_expected(upstream)}, on two downloads; nothing was kept. "
        "The server or a proxy in between serves different bytes."
    )


def is_cached(entry: WeightsEntry) -> bool:
    """Whether ``entry`` loads without a network: its conversion is cached, or the upstream file to convert."""
    if entry.upstream is None:
        return False
    return _cached_conversion_ok(converted_dir(entry)) or (_checkpoints_dir() / entry.upstream.filename).is_file()


def _convert(entry: WeightsEntry, src: Path, src_sha256: str, dest: Path) -> None:
    from fpn_zoo.weights.convert import convert_checkpoint

    ensure_dir(dest.parent)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        # The entry names its model: a file whose tensors fit another one is refused, not converted to it.
        convert_checkpoint(src, staging, source=entry.upstream.converter, model=entry.model, sha256=src_sha256)
        digest = sha256_file(staging / "model.safetensors")
        (staging / _DIGEST_FILE).write_text(digest + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(staging, dest)  # a folder appears complete or not at all
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    record_verified(dest / "model.safetensors", digest)


def _cached_conversion_ok(dest: Path) -> bool:
    try:
        digest = (dest / _DIGEST_FILE).read_text().strip()
    except OSError:
        return False
    weights = dest / "model.safetensors"
    return weights.is_file() and (dest / "config.json").is_file() and matches(weights, digest)


def fetch_converted(entry: WeightsEntry) -> Path:
    """The exported folder of ``entry``'s converted weights, downloading and converting on first use.

    Raises:
        WeightsDownloadError: Offline with nothing cached, or the download failed.
        WeightsIntegrityError: The upstream file does not match its published hash on two downloads.
        CacheNotWritableError: A cache folder that must be written is read-only.
    """
    dest = converted_dir(entry)
    if _cached_conversion_ok(dest):  # warm path: one stat against the verification record, no lock
        return dest
    with cache_lock(f"convert-{entry.model}-{entry.tag}"):
        if _cached_conversion_ok(dest):  # another process converted it while this one waited
            return dest
        if dest.exists():
            logger.warning("Cached conversion %s is incomplete or corrupt: converting again.", dest)
        src, src_sha256 = _fetch_upstream_file(entry, dest)
        logger.info("Converting %s to %s", src, dest)
        _convert(entry, src, src_sha256, dest)
    return dest
