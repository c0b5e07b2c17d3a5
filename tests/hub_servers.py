"""Loopback servers and subprocess helpers for the weights-download tests (``tests/test_hub_weights.py``).

Two servers stand in for the internet:

* :class:`OlahMirror` runs olah (a self-hosted Hugging Face Hub mirror) over git repositories in a temporary
  folder, so ``huggingface_hub`` talks to a real Hub API (``/api/models``, ``/resolve/``, commit and ETag headers) on
  loopback. Its access log tells how many times a file was downloaded.
* :class:`CountingFileServer` serves local files over HTTP from a thread of the test process, the way
  download.pytorch.org serves torchvision checkpoints, and counts GET requests per path.

``huggingface_hub`` reads ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and ``HF_HUB_CACHE`` when it is imported, so every
loading scenario runs in a fresh interpreter (:func:`run_child`) with its own caches (:class:`Caches`). The child
imports this module for the helpers in the "child side" section, which is why this module imports only the standard
library at the top: importing it must not import fpn_zoo (one test checks that fpn_zoo comes from a repository copy).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TESTS_DIR = Path(__file__).resolve().parent
RESULT_MARKER = "CHILD-RESULT "

# One intra-op thread everywhere: the machine has 2 cores and several interpreters run at once; it also makes the
# parent's reference forward and the children's forwards use the same reduction order.
_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def free_port() -> int:
    """A TCP port that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sha256_of(data: bytes | Path) -> str:
    """Hex sha256 of bytes, or of a file's content (read in chunks: weights files are 160 MB)."""
    digest = hashlib.sha256()
    if isinstance(data, bytes):
        digest.update(data)
        return digest.hexdigest()
    with open(data, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def truncate_file(path: Path) -> None:
    """Cut a file to half its size, as an interrupted copy leaves it (written through the file system)."""
    real = path.resolve()
    with open(real, "r+b") as f:
        f.truncate(real.stat().st_size // 2)


def flip_bit(path: Path, offset: int | None = None) -> None:
    """Flip one bit in place (size unchanged), by default in the middle of the file where the tensors are."""
    real = path.resolve()
    where = real.stat().st_size // 2 if offset is None else offset
    with open(real, "r+b") as f:
        f.seek(where)
        byte = f.read(1)[0]
        f.seek(where)
        f.write(bytes([byte ^ 0x01]))


CORRUPTIONS: dict[str, Callable[[Path], None]] = {"truncated": truncate_file, "bit_flipped": flip_bit}


# --------------------------------------------------------------------------------------------------------------------
# Hub mirror


def _git(repo: Path, *args: str) -> str:
    # No global or system git configuration: a signing hook or template there must not affect the test repositories.
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "fpn_zoo tests",
        "GIT_AUTHOR_EMAIL": "tests@example.invalid",
        "GIT_COMMITTER_NAME": "fpn_zoo tests",
        "GIT_COMMITTER_EMAIL": "tests@example.invalid",
    }
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


class OlahMirror:
    """An olah server over git repositories under ``root/mirrors/models/ORG/NAME`` (branch ``main``, no LFS).

    olah serves plain git blobs itself; their ETag is the git blob sha1, not a sha256, so ``huggingface_hub``
    names the cached blob by that sha1 and fpn_zoo has to take the expected sha256 from the manifest or record it
    at first use.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mirrors = root / "mirrors"
        self.workdir = root / "olah"  # olah writes ./logs and its repos cache relative to here
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_repo(self, repo_id: str, files: Mapping[str, bytes | Path], message: str = "export") -> str:
        """Commit ``files`` (name -> content or file to copy) on ``main`` of model repo ``repo_id``; the commit id."""
        repo = self.mirrors / "models" / repo_id
        if not (repo / ".git").is_dir():
            repo.mkdir(parents=True)
            _git(repo, "init", "-q", "-b", "main")
        for name, content in files.items():
            target = repo / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copyfile(content, target)
            else:
                target.write_bytes(content)
        # compression 0: zlib on 160 MB of float32 noise takes seconds and saves nothing.
        _git(repo, "-c", "core.compression=0", "add", "-A")
        _git(repo, "-c", "commit.gpgsign=false", "commit", "-q", "-m", message)
        return _git(repo, "rev-parse", "HEAD")

    def start(self, ready_repo: str, timeout_s: float = 60.0) -> None:
        """Start olah and wait until it answers for ``ready_repo`` (start-up takes a few seconds)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "olah.toml"
        config.write_text(
            "[basic]\n"
            'host = "127.0.0.1"\n'
            f"port = {self.port}\n"
            f'mirror-netloc = "127.0.0.1:{self.port}"\n'
            f'mirror-lfs-netloc = "127.0.0.1:{self.port}"\n'
            f"mirrors-path = [{json.dumps(str(self.mirrors))}]\n"
            f"repos-path = {json.dumps(str(self.workdir / 'repos'))}\n"
            "[accessibility]\n"
            "offline = true\n"  # never try huggingface.co for what the mirror lacks
        )
        olah_cli = Path(sys.executable).with_name("olah-cli")
        with open(self.workdir / "stdout.txt", "ab") as out:
            self._process = subprocess.Popen(
                [str(olah_cli), "-c", str(config)],
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() ends uvicorn and anything it forked
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        url = f"{self.endpoint}/api/models/{ready_repo}/revision/main"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"olah exited with {self._process.returncode}:\n{self.server_output()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"olah did not answer {url} within {timeout_s} s:\n{self.server_output()}")

    def stop(self) -> None:
        """Stop the server and everything in its process group."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    @contextlib.contextmanager
    def stopped(self, ready_repo: str) -> Iterator[None]:
        """The server is down inside the block and up again (same port) after it."""
        self.stop()
        try:
            yield
        finally:
            self.start(ready_repo)

    def server_output(self) -> str:
        path = self.workdir / "stdout.txt"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def count_gets(self, repo_id: str, filename: str) -> int:
        """How many GET requests for ``filename`` of ``repo_id`` (any revision) olah answered so far."""
        return count_olah_gets(self.workdir / "logs", repo_id, filename)

    def counter(self, repo_id: str, filename: str) -> dict[str, str]:
        """A description of :meth:`count_gets` that a child can evaluate with :func:`read_counters`."""
        return {"kind": "olah", "logs": str(self.workdir / "logs"), "repo_id": repo_id, "filename": filename}


def count_olah_gets(logs: Path, repo_id: str, filename: str) -> int:
    """GETs of ``filename`` of ``repo_id`` (any revision) in olah's access log folder ``logs``.

    uvicorn logs each request when its response starts, before the body is sent, so every GET that a finished
    load made is in the log by the time the load returns. olah's log file rotates hourly: read all parts.
    """
    pattern = re.compile(rf'"GET /{re.escape(repo_id)}/resolve/[^/ ]+/{re.escape(filename)} HTTP/[\d.]+"')
    return sum(len(pattern.findall(p.read_text(errors="replace"))) for p in sorted(logs.glob("olah.log*")))


# --------------------------------------------------------------------------------------------------------------------
# Plain HTTP file server (the upstream of convertible weights)


_COUNT_PREFIX = "_count/"


class CountingFileServer:
    """Serves registered files on ``http://127.0.0.1:PORT/<name>`` from a thread; counts GETs per name.

    ``GET /_count/<name>`` answers the count, for children that report it between their steps.
    """

    def __init__(self) -> None:
        self.routes: dict[str, Path] = {}
        self.gets: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                if name.startswith(_COUNT_PREFIX):  # a child reading the counter: not a download
                    body = str(server.count(name.removeprefix(_COUNT_PREFIX))).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                with server._lock:
                    server.gets[name] += 1
                    path = server.routes.get(name)
                if path is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(path.stat().st_size))
                self.end_headers()
                with open(path, "rb") as f, contextlib.suppress(ConnectionError):
                    shutil.copyfileobj(f, self.wfile, 1 << 20)

            def log_message(self, format: str, *args: Any) -> None:  # keep pytest's output clean
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="counting-file-server", daemon=True)

    def __enter__(self) -> CountingFileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def serve(self, name: str, path: Path) -> str:
        """Serve ``path`` as ``name``; returns its URL."""
        with self._lock:
            self.routes[name] = path
        return self.url(name)

    def url(self, name: str) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/{name}"

    def count(self, name: str) -> int:
        with self._lock:
            return self.gets[name]

    def counter(self, name: str) -> dict[str, str]:
        """A description of :meth:`count` that a child can evaluate with :func:`read_counters`."""
        return {"kind": "http", "url": self.url(_COUNT_PREFIX + name)}


def read_counters(counters: Mapping[str, Mapping[str, str]]) -> dict[str, int]:
    """The current values of named counters made by :meth:`OlahMirror.counter` / :meth:`CountingFileServer.counter`."""
    values = {}
    for name, counter in counters.items():
        if counter["kind"] == "olah":
            values[name] = count_olah_gets(Path(counter["logs"]), counter["repo_id"], counter["filename"])
        else:
            with urllib.request.urlopen(counter["url"], timeout=10) as response:
                values[name] = int(response.read())
    return values


# --------------------------------------------------------------------------------------------------------------------
# Subprocesses


@dataclass(frozen=True)
class Caches:
    """The three caches a load touches, all fresh folders under ``root``."""

    root: Path

    @property
    def hf(self) -> Path:  # HF_HUB_CACHE: Hub downloads
        return self.root / "hf_hub"

    @property
    def fpn(self) -> Path:  # FPN_ZOO_CACHE: conversions, verification records, locks
        return self.root / "fpn_zoo"

    @property
    def torch(self) -> Path:  # TORCH_HOME: upstream .pth files under hub/checkpoints
        return self.root / "torch"

    @property
    def checkpoints(self) -> Path:
        return self.torch / "hub" / "checkpoints"

    def copy_to(self, root: Path, *parts: str) -> Caches:
        """A copy of some of these caches (``"hf"``, ``"fpn"``, ``"torch"``), as fresh files a test may corrupt.

        Symlinks are kept as they are: the HF cache's snapshots point into its blobs/ relatively.
        """
        copy = Caches(root)
        root.mkdir(parents=True)
        for part in parts:
            shutil.copytree(getattr(self, part), getattr(copy, part), symlinks=True)
        return copy

    def env(self) -> dict[str, str]:
        return {
            "HF_HUB_CACHE": str(self.hf),
            "HF_HOME": str(self.root / "hf_home"),  # no token or settings from the real home
            "FPN_ZOO_CACHE": str(self.fpn),
            "TORCH_HOME": str(self.torch),
        }


def child_env(
    caches: Caches,
    *,
    endpoint: str | None = None,
    manifest: Path | None = None,
    offline: bool = False,
) -> dict[str, str]:
    """An environment for a child interpreter: this one's, minus anything that configures HF, torch or fpn_zoo."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGING_FACE", "FPN_ZOO_", "TORCH_HOME", "XDG_CACHE", "PYTHONPATH"))
    }
    env.update(_THREAD_ENV)
    env.update(caches.env())
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    # An endpoint nothing listens on unless a test gives one: a child must never reach huggingface.co.
    env["HF_ENDPOINT"] = endpoint or f"http://127.0.0.1:{free_port()}"
    if manifest is not None:
        env["FPN_ZOO_MANIFEST"] = str(manifest)
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def child_command(code: str, args: Sequence[str] = (), prefix: Sequence[str] = ()) -> list[str]:
    """``python -c code args...`` (behind ``prefix``, e.g. setpriv), with this module importable as ``hs``."""
    header = f"import sys; sys.path.insert(0, {str(TESTS_DIR)!r}); import hub_servers as hs\n"
    return [*prefix, sys.executable, "-c", header + code, *args]


def parse_child(stdout: str, stderr: str, returncode: int | None) -> dict[str, Any]:
    """The JSON a child emitted with :func:`emit`; an AssertionError showing its output if there is none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    raise AssertionError(f"child exited {returncode} without a result.\nstdout:\n{stdout[-3000:]}\n{stderr[-6000:]}")


def run_child(
    code: str,
    env: Mapping[str, str],
    *,
    cwd: Path,
    args: Sequence[str] = (),
    prefix: Sequence[str] = (),
    timeout: float = 180,
) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter (``hs`` = this module, ``sys.argv[1:]`` = ``args``); what it emitted.

    ``cwd`` must not be the repository: ``python -c`` puts the working directory first on sys.path.
    """
    done = subprocess.run(
        child_command(code, args, prefix), env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    return parse_child(done.stdout, done.stderr, done.returncode)


def spawn_child(code: str, env: Mapping[str, str], *, cwd: Path, args: Sequence[str] = ()) -> subprocess.Popen[str]:
    """Start a child without waiting for it (:func:`finish_child` collects its result)."""
    return subprocess.Popen(
        child_command(code, args), env=dict(env), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish_child(process: subprocess.Popen[str], timeout: float = 300) -> dict[str, Any]:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return parse_child(stdout, stderr, process.returncode)


# --------------------------------------------------------------------------------------------------------------------
# Child side: called inside the child interpreters (lazy imports: see the module docstring)


def emit(**fields: Any) -> None:
    """Hand results to the parent: one marked JSON line on stdout."""
    print(RESULT_MARKER + json.dumps(fields), flush=True)


def attempt(fn: Callable[[], Any]) -> dict[str, Any]:
    """Run ``fn``; its value or its exception (class name, message) and how long it took, JSON-ready."""
    start = time.perf_counter()
    try:
        value = fn()
    except Exception as err:
        return {
            "ok": False,
            "error": type(err).__name__,
            "message": str(err),
            "seconds": time.perf_counter() - start,
        }
    return {"ok": True, "value": value, "seconds": time.perf_counter() - start}


def fixed_image() -> Any:
    """The fixed image every scenario detects on (small: the 2-core machine runs many forwards)."""
    import torch

    return torch.rand(3, 120, 160, generator=torch.Generator().manual_seed(0))


def detections(model: Any) -> dict[str, list[Any]]:
    """``model``'s detections on :func:`fixed_image` as JSON-ready lists (float32 values survive JSON exactly)."""
    import torch

    torch.set_num_threads(1)
    with torch.no_grad():
        out = model([fixed_image()])[0]
    return {key: value.tolist() for key, value in out.items()}


def state_digest(model: Any) -> str:
    """sha256 over the names and bytes of ``model``'s state dict, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def barrier(folder: str, parties: int, timeout_s: float = 120.0) -> None:
    """Wait until ``parties`` children have reached this point (files in ``folder``), so they start together."""
    Path(folder, f"{os.getpid()}.ready").touch()
    deadline = time.monotonic() + timeout_s
    while len(list(Path(folder).glob("*.ready"))) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(list(Path(folder).glob('*.ready')))} of {parties} children arrived")
        time.sleep(0.01)


def is_up(url: str) -> bool:
    """Whether anything answers ``url`` (for asserting that a server is really down)."""
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True
