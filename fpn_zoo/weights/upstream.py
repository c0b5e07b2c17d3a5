"""Upstream checkpoints (torchvision's, mmdetection's ``.pth``): downloaded with their hash checked, converted once,
cached.

The ``.pth`` goes where torch.hub keeps checkpoints (``$TORCH_HOME/hub/checkpoints``), under its upstream name, so
torchvision and fpn_zoo share one copy. The conversion to safetensors is cached under
``<fpn_zoo cache>/converted/<model>/<tag>-<hash prefix>/`` and its sha256 recorded there; warm loads read only that.
Everything runs under one inter-process lock per entry, so concurrent processes download and convert once.
``HF_HUB_OFFLINE=1`` also forbids these downloads.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from fpn_zoo.weights.cache import cache_dir, cache_lock, ensure_dir
from fpn_zoo.weights.hub_download import WeightsDownloadError
from fpn_zoo.weights.integrity import WeightsIntegrityError, matches, record_verified, sha256_file
from fpn_zoo.weights.manifest import UpstreamSource, WeightsEntry

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


def _fetch_upstream_file(upstream: UpstreamSource, converted: Path) -> tuple[Path, str]:
    """The verified upstream file in torch's checkpoint folder and its sha256; downloads it (twice at most)."""
    target = Path(torch.hub.get_dir()) / "checkpoints" / upstream.filename
    if target.is_file():
        digest = sha256_file(target)
        if _hash_ok(digest, upstream):
            return target, digest
        logger.warning("%s does not match its published hash %s: deleting it.", target, upstream.sha256_prefix)
        target.unlink()
    if _offline():
        raise WeightsDownloadError(
            f"Neither a converted copy ({converted}) nor the upstream {upstream.filename} (torch's checkpoint cache "
            f"{target.parent}) is cached, and HF_HUB_OFFLINE=1 forbids downloading it. Fill the caches on a "
            f"connected machine (`fpn-zoo download MODEL`, or download {upstream.url} into {target.parent}) and "
            "copy them here (FPN_ZOO_CACHE and TORCH_HOME say where), or pass weights=PATH."
        )
    ensure_dir(target.parent, "TORCH_HOME")
    for attempt in (1, 2):
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{upstream.filename}.", suffix=".partial")
        os.close(fd)
        try:
            torch.hub.download_url_to_file(upstream.url, tmp, progress=True)
            digest = sha256_file(tmp)
            if _hash_ok(digest, upstream):
                os.replace(tmp, target)
                return target, digest
            logger.warning("Download %d of %s has sha256 %s, expected %s.", attempt, upstream.url, digest, upstream)
        except OSError as err:  # URLError, HTTPError, connection reset: all OSError
            raise WeightsDownloadError(f"Could not download {upstream.url}: {err}") from err
        finally:
            Path(tmp).unlink(missing_ok=True)
    raise WeightsIntegrityError(
        f"{upstream.url} has sha256 {digest}, expected {_expected(upstream)}, on two downloads; nothing was kept. "
        "The server or a proxy in between serves different bytes."
    )


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
        src, src_sha256 = _fetch_upstream_file(entry.upstream, dest)  # type: ignore[arg-type]  # converted_dir checked it
        logger.info("Converting %s to %s", src, dest)
        _convert(entry, src, src_sha256, dest)
    return dest
