"""Full sha256 verification of weights files, done once per file and recorded so warm loads skip the hashing.

``huggingface_hub`` checks only a download's size and torch.hub only a hash prefix, and only when the file name
carries one. Here every weights file's full sha256 is compared with the expected digest before its first use. A
record in ``<cache>/verified/`` then remembers the file (real path, size, mtime, inode): as long as they are
unchanged, later loads trust it without reading 160 MB again. Any rewrite of the file (a truncation, a bit flip
written through the file system, a re-download) changes them and triggers a new check. ``FPN_ZOO_VERIFY=always``
hashes on every load, for caches on media that can rot silently.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from fpn_zoo.weights.cache import cache_dir, is_permission_error

VERIFY_ENV = "FPN_ZOO_VERIFY"
_CHUNK = 1 << 20


class WeightsIntegrityError(RuntimeError):
    """A weights file whose sha256 differs from the expected one even after a fresh download."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks.

    Examples:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile() as f:
        ...     sha256_file(f.name)[:12]
        'e3b0c44298fc'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _fingerprint(path: Path) -> dict[str, int | str]:
    real = path.resolve()
    st = real.stat()
    return {"path": str(real), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _record_path(path: Path, sha256: str) -> Path:
    # One record per (digest, real path): the same blob can sit in several caches.
    where = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "verified" / f"{sha256}-{where}.json"


def is_recorded(path: Path, sha256: str) -> bool:
    """Whether ``path`` was verified against ``sha256`` and is unchanged since."""
    if os.environ.get(VERIFY_ENV, "").lower() == "always":
        return False
    try:
        record = json.loads(_record_path(path, sha256).read_text())
        return record == {"sha256": sha256, **_fingerprint(path)}
    except (OSError, ValueError):
        return False


def record_verified(path: Path, sha256: str) -> bool:
    """Remember that ``path`` matches ``sha256``; ``False`` when the cache is read-only (the check then repeats)."""
    target = _record_path(path, sha256)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"sha256": sha256, **_fingerprint(path)}))
        os.replace(tmp, target)
    except OSError as err:
        if is_permission_error(err):
            return False
        raise
    return True


def forget(path: Path, sha256: str) -> None:
    """Drop the record of ``path`` (before deleting or replacing the file)."""
    _record_path(path, sha256).unlink(missing_ok=True)


def matches(path: Path, sha256: str, *, size: int | None = None) -> bool:
    """Whether ``path`` holds content with this sha256 (and size): from the record if unchanged, else by hashing.

    A match is recorded, so the next call is a ``stat``; a mismatch is not.
    """
    if is_recorded(path, sha256):
        return True
    if size is not None and path.stat().st_size != size:
        return False  # truncated or padded: no need to hash
    if sha256_file(path) != sha256:
        return False
    record_verified(path, sha256)
    return True
