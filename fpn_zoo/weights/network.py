"""A failed download as one line: what was being fetched, why it failed in words, and what to do next.

Every weights download ends here when it fails: upstream ``.pth`` files over plain HTTP (urllib), Hub files and
timm's ImageNet backbones through ``huggingface_hub`` (httpx, or httpx2 from its 2.x releases; requests before 1.0).
[`describe`][fpn_zoo.weights.network.describe] reads the exception chain down to the socket error and names the
cause: no network, host name not resolved, connection refused, timed out, HTTP status, proxy refused.
[`retrying`][fpn_zoo.weights.network.retrying] repeats what may pass on its own (server errors, read timeouts,
dropped connections) a bounded number of times and nothing else, so a host that does not resolve or refuses the
connection fails in well under a second instead of after a minute of backoff.

Examples:
    >>> import socket, urllib.error
    >>> describe(urllib.error.URLError(socket.gaierror(-2, "Name or service not known")), "http://x.invalid/a.pth")
    Cause(text="the host name 'x.invalid' could not be resolved (no network, or no DNS record for it)", transient=False)
"""

from __future__ import annotations

import errno
import http
import http.client
import logging
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from fpn_zoo.voice import offers, option

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_DELAYS_S: tuple[float, ...] = (0.5, 1.0)
"""Pauses before the 2nd and 3rd try of a transient failure: three tries within ~2 s, not huggingface_hub's ~23 s."""
# Seconds without a byte (or without a connection) before a plain-HTTP download counts as stalled.
DOWNLOAD_TIMEOUT_S = 30.0
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_UNRESOLVED = ("name or service not known", "nodename nor servname", "getaddrinfo failed", "name resolution")
_UNREACHABLE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN})


class WeightsDownloadError(RuntimeError):
    """Weights that could not be fetched; the message says from where, why, and what to do about it.

    Attributes:
        target: What was being fetched (a URL, or a Hub file with its revision), when the failure was a download.
        cause: The cause in words, e.g. ``"the connection to 127.0.0.1:9 was refused (...)"``.
        fill: How to fill the caches on another machine and use them here.
    """

    def __init__(
        self, message: str, *, target: str | None = None, cause: str | None = None, fill: str | None = None
    ) -> None:
        super().__init__(message)
        self.target, self.cause, self.fill = target, cause, fill


@dataclass(frozen=True)
class Cause:
    """Why a fetch failed, in words, and whether trying again soon may help."""

    text: str
    transient: bool


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and every exception beneath it: causes, contexts, and the socket error a ``URLError`` wraps."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        todo += [current.__cause__, current.__context__, reason if isinstance(reason, BaseException) else None]


def _names(err: BaseException) -> set[str]:
    # Class names, so that httpx, httpx2 and requests errors are recognised without importing those libraries.
    return {cls.__name__ for cls in type(err).__mro__}


def _status(err: BaseException) -> tuple[int, str] | None:
    if isinstance(err, urllib.error.HTTPError):
        return err.code, str(err.reason or "")
    response = getattr(err, "response", None)  # huggingface_hub, httpx and requests errors keep the response
    code = getattr(response, "status_code", None)
    if not isinstance(code, int) or code < 400:
        return None
    return code, str(getattr(response, "reason_phrase", None) or getattr(response, "reason", None) or "")


def _phrase(code: int, reason: str) -> str:
    if not reason:
        try:
            reason = http.HTTPStatus(code).phrase
        except ValueError:
            reason = ""
    return f"HTTP {code} {reason}".rstrip()


def proxy_for(url: str) -> str | None:
    """The proxy that requests for ``url`` go through, from the environment (``HTTPS_PROXY``, ``NO_PROXY``...)."""
    parts = urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


def _host(url: str | None) -> tuple[str, str]:
    """``(host, host:port)`` of ``url``, or of the proxy it goes through."""
    parts = urlsplit(url or "")
    try:
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except ValueError:
        port = None
    host = parts.hostname or "the server"
    return host, f"{host}:{port}" if port else host


def describe(err: BaseException, url: str | None = None) -> Cause | None:
    """The cause of a failed fetch of ``url`` in words; ``None`` when ``err`` is not a network failure.

    Args:
        err: What the download raised (``URLError``, an ``httpx`` or ``requests`` error, a ``huggingface_hub``
            error wrapping one).
        url: What was being fetched, to name the host (or the proxy it went through).
    """
    chain = list(_chain(err))
    proxy = proxy_for(url) if url else None
    host, address = _host(proxy or url)
    via = f"the proxy {proxy}" if proxy else None
    for e in chain:  # a server that answered says the most
        if (status := _status(e)) is not None:
            code, reason = status
            if code == 407:
                return Cause(f"{via or 'the proxy'} refused the request: {_phrase(code, reason)}", False)
            kind = ", a server error" if code >= 500 else ""
            return Cause(f"the server answered {_phrase(code, reason)}{kind}", code in _TRANSIENT_STATUS)
    detail = next((str(e) for e in reversed(chain) if str(e)), str(err)).splitlines()[0]
    for e in chain:
        names, text = _names(e), str(e).lower()
        if "ProxyError" in names or "tunnel connection failed" in text:
            return Cause(f"{via or 'the proxy'} refused the connection ({detail})", False)
        if isinstance(e, socket.gaierror) or any(s in text for s in _UNRESOLVED):
            if via:
                return Cause(f"the host name of {via} could not be resolved (no network, or no DNS record)", False)
            return Cause(f"the host name {host!r} could not be resolved (no network, or no DNS record for it)", False)
        if isinstance(e, ConnectionRefusedError) or "connection refused" in text:
            where = via or address
            return Cause(
                f"the connection to {where} was refused (nothing listens there, or a firewall rejects it)", False
            )
        if isinstance(e, OSError) and e.errno in _UNREACHABLE:
            return Cause(f"no network route to {via or host} ({detail})", False)
    for e in chain:
        names = _names(e)
        if isinstance(e, ssl.SSLError) or "SSLError" in names:
            return Cause(f"the TLS handshake with {via or host} failed ({detail}): a proxy or firewall intercepting "
                         "HTTPS, or an outdated CA bundle", False)  # fmt: skip
        timed_out = isinstance(e, TimeoutError) or "TimeoutException" in names or "Timeout" in names
        if timed_out and ("ConnectTimeout" in names or any(isinstance(x, urllib.error.URLError) for x in chain)):
            return Cause(f"the connection to {via or address} timed out (no route to it, or a firewall drops the "
                         "packets)", False)  # fmt: skip
        if timed_out:
            return Cause(f"{via or host} stopped answering (read timed out)", True)
        dropped = (
            ConnectionResetError,
            ConnectionAbortedError,
            http.client.RemoteDisconnected,
            http.client.IncompleteRead,
        )
        if isinstance(e, dropped) or names & {"RemoteProtocolError", "ReadError", "ChunkedEncodingError"}:
            return Cause(f"the connection to {via or host} dropped mid-transfer ({detail})", True)
    network = {"URLError", "ConnectError", "NetworkError", "TransportError", "ConnectionError"}
    if any(isinstance(e, (urllib.error.URLError, http.client.HTTPException)) or _names(e) & network for e in chain):
        return Cause(f"the request to {via or host} failed ({detail})", False)
    return None


def retrying(call: Callable[[], T], *, what: str, url: str | None = None) -> T:
    """``call()``, tried again after [`RETRY_DELAYS_S`][fpn_zoo.weights.network.RETRY_DELAYS_S] while it fails
    with a transient cause (server error, read timeout, dropped connection); any other failure is raised at once.

    Examples:
        >>> retrying(lambda: 42, what="the answer")
        42
    """
    for delay in (*RETRY_DELAYS_S, None):
        try:
            return call()
        except Exception as err:
            cause = describe(err, url)
            if delay is None or cause is None or not cause.transient:
                raise
            logger.info("Fetching %s: %s; trying again in %.1f s.", what, cause.text, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # the last try returns or raises


def download_url(url: str, dest: Path, *, progress: bool = True, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Write the body of ``url`` to ``dest`` (overwritten), failing after ``timeout`` seconds of silence.

    torch.hub's download has no timeout: a host that drops packets would hang it for minutes.
    """
    from tqdm import tqdm

    from fpn_zoo import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"fpn_zoo/{__version__}"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(dest, "wb") as out:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress) as bar:
            while block := response.read(1 << 20):
                out.write(block)
                bar.update(len(block))


def local_weights() -> str | None:
    """The reader's way to load weights from a local file instead, or ``None`` where the command has none."""
    what = "a local .safetensors file or exported folder"
    if offers("weights"):
        return f"pass {option('weights', placeholder='PATH')} ({what})"
    if offers("init"):  # `fpn-zoo train`
        return f"pass {option('init', placeholder='PATH')} ({what})"
    return None


def fill_caches(fill: str, caches: Sequence[tuple[str, object]]) -> str:
    """How to fill the caches elsewhere and use them here: run ``fill`` there, copy ``caches`` (variable, folder here).

    Examples:
        >>> fill_caches("fpn-zoo download fpn_r50_coco", [("FPN_ZOO_CACHE", "/c/fpn_zoo")])  # doctest: +ELLIPSIS
        'run `fpn-zoo download fpn_r50_coco` on a machine with a network, copy its FPN_ZOO_CACHE folder...'
    """
    folders = " and ".join(f"its {variable} folder to {folder}" for variable, folder in caches)
    return (
        f"run `{fill}` on a machine with a network, copy {folders} here and set HF_HUB_OFFLINE=1 to use only the caches"
    )


def fetch_failed(
    target: str, cause: Cause, fill: str, *, alternatives: Sequence[str | None] = ()
) -> WeightsDownloadError:
    """The one-line error for a failed fetch of ``target``: the cause, then the next steps.

    Args:
        target: What was being fetched, e.g. the URL, or ``"model.safetensors of acme/x@main on https://hf.co"``.
        cause: From [`describe`][fpn_zoo.weights.network.describe].
        fill: From [`fill_caches`][fpn_zoo.weights.network.fill_caches].
        alternatives: Further next steps (``None`` entries are skipped), e.g.
            [`local_weights`][fpn_zoo.weights.network.local_weights].
    """
    later = ["try again later: the server may recover"] if cause.transient else []
    steps = "; or ".join([fill, *(a for a in alternatives if a), *later])
    return WeightsDownloadError(
        f"Could not fetch {target}: {cause.text}. Next: {steps}.", target=target, cause=cause.text, fill=fill
    )
