"""fpn_zoo's own cache: converted upstream checkpoints, verification records and inter-process locks.

Hub downloads live in the Hugging Face cache (``HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``) and upstream
``.pth`` files in torch's (``$TORCH_HOME/hub/checkpoints``), where torchvision looks for them too. This folder holds
what neither does: ``converted/`` (upstream checkpoints converted once to safetensors), ``verified/`` (one record per
file whose full sha256 was checked, so the warm path does not hash again) and ``.locks/``.

Location: ``$FPN_ZOO_CACHE``, else ``$XDG_CACHE_HOME/fpn_zoo``, else ``~/.cache/fpn_zoo``.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

CACHE_ENV = "FPN_ZOO_CACHE"
# Minutes: a conversion of a 160 MB checkpoint takes seconds; a holder that died releases its flock at once.
_LOCK_TIMEOUT_S = 30 * 60


class CacheNotWritableError(PermissionError):
    """A cache folder that must be written is read-only; the message names it and the variable that moves it."""


def cache_dir() -> Path:
    """fpn_zoo's cache folder (not created here).

    Examples:
        >>> cache_dir().name
        'fpn_zoo'
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fpn_zoo"


def not_writable(path: Path, err: OSError, variable: str) -> CacheNotWritableError:
    """The error for a cache folder that cannot be written, saying how to point it elsewhere."""
    return CacheNotWritableError(
        f"Cannot write to the cache folder {path} ({err.strerror or err}). Set {variable} to a writable folder, "
        "or fill this cache on a machine that can write it and load with HF_HUB_OFFLINE=1 (a read-only cache that "
        "already holds the weights works)."
    )


def is_permission_error(err: OSError) -> bool:
    return isinstance(err, PermissionError) or err.errno in (errno.EACCES, errno.EPERM, errno.EROFS)


def ensure_dir(path: Path, variable: str = CACHE_ENV) -> Path:
    """Create ``path`` (and parents); a read-only location raises `CacheNotWritableError`."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if is_permission_error(err):
            raise not_writable(path, err, variable) from err
        raise
    return path


@contextmanager
def cache_lock(key: str, *, required: bool = True) -> Iterator[None]:
    """An inter-process lock named ``key`` (threads, processes, torchrun ranks on one machine).

    Args:
        key: Lock name; characters outside ``[A-Za-z0-9_.-]`` are replaced.
        required: With ``False``, a read-only cache folder means running unlocked instead of failing: for work
            that only reads (verifying a file in a read-only shared cache), there is nothing to race on.

    Raises:
        CacheNotWritableError: The lock folder cannot be created or written (only when ``required``).
    """
    locks = cache_dir() / ".locks"
    lock = FileLock(str(locks / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}.lock"), timeout=_LOCK_TIMEOUT_S)
    try:
        ensure_dir(locks)
        lock.acquire()
    except OSError as err:
        if not is_permission_error(err):
            raise
        if required:
            if isinstance(err, CacheNotWritableError):
                raise
            raise not_writable(locks, err, CACHE_ENV) from err
        yield
        return
    try:
        yield
    finally:
        lock.release()
