"""A weights download that fails ends in one line within seconds: what was fetched, why, and what to do next.

Each download path (an upstream ``.pth`` of a convertible entry, a published entry's Hub file, an ``hf-hub:``
reference, timm's ImageNet backbone) meets each failure on loopback, with no network needed:

* a host name that does not resolve (under ``.invalid``, reserved never to resolve: RFC 2606);
* a port that refuses the connection (bound, noted and closed again);
* a server answering HTTP 500 to everything, which is tried three times, and one answering 404, tried once.

Every load goes through ``fpn_zoo.create_model`` in this process with its caches in ``tmp_path``; all of them fail
before any model is built. ``huggingface_hub`` reads ``HF_ENDPOINT`` and ``HF_HUB_CACHE`` when it is imported, so
the tests set both the variables and the constants it read them into. Then the command line: ``fpn-zoo download``,
``predict --pretrained`` and ``train --init auto`` say the same in flags and commands, never in keyword arguments.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import fpn_zoo
from fpn_zoo.cli import main
from fpn_zoo.engine.model_init import build_training_model
from fpn_zoo.engine.train_config import TrainConfig
from fpn_zoo.weights.manifest import MANIFEST_PATH
from fpn_zoo.weights.network import WeightsDownloadError, describe, download_url, retrying

try:  # the HTTP library of the installed huggingface_hub: httpx2 from its 2.x releases, httpx in 1.x
    import httpx2 as httpx
except ImportError:
    import httpx

MODEL = "fpn_r50_coco"
COMMIT = "c" * 40
TIMM_REPO = "timm/resnet50.a1_in1k"  # timm's default weights of fpn_r50's backbone
LIMIT_S = 5.0
KEYWORD_ARGUMENTS = ("weights=", "pretrained=", "pretrained_backbone=", "device=", "init=")


class StatusServer:
    """Answers every GET and HEAD on ``http://127.0.0.1:PORT`` with the next of ``statuses`` (the last one repeats)
    and ``headers``, from a thread; counts the requests. A 200 carries ``body``."""

    def __init__(self, *statuses: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.statuses, self.body, self.headers, self.requests = list(statuses), body, headers or {}, 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, with_body: bool) -> None:
                with server._lock:
                    status = server.statuses[min(server.requests, len(server.statuses) - 1)]
                    server.requests += 1
                body = server.body if status == 200 else b"no\n"
                self.send_response(status)
                for key, value in server.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(True)

            def do_HEAD(self) -> None:
                self._answer(False)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._lock = threading.Lock()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> StatusServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


def refused_port() -> int:
    """A loopback port nothing listens on: bound, noted, closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def failing_base(failure: str) -> Iterator[tuple[str, StatusServer | None]]:
    """The base URL that fails in the way named, and the server behind it (``None`` where nothing answers)."""
    if failure == "unresolvable":
        yield "http://fpn-zoo-test.invalid", None
    elif failure == "refused":
        yield f"http://127.0.0.1:{refused_port()}", None
    else:
        with StatusServer(int(failure.removeprefix("http_"))) as server:
            yield server.base, server


CAUSES = {
    "unresolvable": "the host name 'fpn-zoo-test.invalid' could not be resolved",
    "refused": "was refused (nothing listens there",
    "http_500": "the server answered HTTP 500 Internal Server Error, a server error",
    "http_404": "the server answered HTTP 404 Not Found",
}
REQUESTS = {"http_500": 3, "http_404": 1}  # a server error is tried three times, a missing file once


def point_everything_at(base: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Caches in ``tmp_path``; the Hub endpoint and every upstream URL of a copy of the manifest at ``base``.

    The copy also has a published entry ``acme`` for fpn_r50_coco, pinned to a commit, as a released zoo has.
    """
    from huggingface_hub import constants

    caches = {name: tmp_path / name for name in ("fpn_zoo", "torch", "hf_home", "hf_hub")}
    for variable, name in (("FPN_ZOO_CACHE", "fpn_zoo"), ("TORCH_HOME", "torch"), ("HF_HOME", "hf_home")):
        monkeypatch.setenv(variable, str(caches[name]))
    monkeypatch.setenv("HF_HUB_CACHE", str(caches["hf_hub"]))
    monkeypatch.setenv("HF_ENDPOINT", base)
    for variable in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)  # loopback must be reached directly
    # huggingface_hub read these variables when it was imported: set what it made of them.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(caches["hf_hub"]))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", base)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", base + "/{repo_id}/resolve/{revision}/{filename}")

    data = json.loads(MANIFEST_PATH.read_text())
    for block in data["models"].values():
        for entry in block["weights"]:
            if entry.get("upstream"):
                entry["upstream"]["url"] = f"{base}/{entry['upstream']['url'].rsplit('/', 1)[1]}"
    weights = data["models"][MODEL]["weights"]
    weights.append({
        **weights[0], "tag": "acme", "status": "published", "upstream": None,
        "hub": {"repo_id": "acme/fpn_r50_coco", "filename": "model.safetensors", "revision": COMMIT,
                "sha256": "0" * 64, "size": 1},
    })  # fmt: skip
    manifest = tmp_path / "weights_manifest.json"
    manifest.write_text(json.dumps(data))
    monkeypatch.setenv("FPN_ZOO_MANIFEST", str(manifest))
    return caches


def upstream_url(base: str, tag: str) -> str:
    entry = next(e for e in json.loads(MANIFEST_PATH.read_text())["models"][MODEL]["weights"] if e["tag"] == tag)
    return f"{base}/{entry['upstream']['url'].rsplit('/', 1)[1]}"


# path -> (create_model's arguments, what the message names, the command that fills the caches, their variables)
PATHS: dict[str, tuple[dict[str, Any], Any, str, tuple[str, ...]]] = {
    "upstream": (
        {"pretrained": "coco_tv"},
        lambda base: upstream_url(base, "coco_tv"),
        f"fpn-zoo download {MODEL} --tag coco_tv",
        ("FPN_ZOO_CACHE", "TORCH_HOME"),
    ),
    "published": (
        {"pretrained": "acme"},
        lambda base: f"model.safetensors of acme/fpn_r50_coco@{COMMIT} on {base}",
        f"fpn-zoo download {MODEL} --tag acme",
        ("HF_HUB_CACHE",),
    ),
    "hf_hub": (
        {"weights": "hf-hub:acme/fpn_r50_bccd@v1"},
        lambda base: f"model.safetensors of acme/fpn_r50_bccd@v1 on {base}",
        "hf download acme/fpn_r50_bccd --revision v1",
        ("HF_HUB_CACHE",),
    ),
    "backbone": (
        {"pretrained_backbone": True},
        lambda base: f"model.safetensors of {TIMM_REPO}@main on {base} (timm's ImageNet weights of resnet50",
        f"hf download {TIMM_REPO} model.safetensors",
        ("HF_HUB_CACHE",),
    ),
}


def one_line(message: str) -> str:
    assert "\n" not in message.strip(), message
    return message


@pytest.mark.parametrize("failure", list(CAUSES))
@pytest.mark.parametrize("path", list(PATHS))
def test_a_failed_download_says_what_why_and_what_next_within_seconds(path, failure, tmp_path, monkeypatch):
    kwargs, target, fill, variables = PATHS[path]
    with failing_base(failure) as (base, server):
        caches = point_everything_at(base, tmp_path, monkeypatch)
        start = time.monotonic()
        with pytest.raises(WeightsDownloadError) as caught:
            fpn_zoo.create_model(MODEL, device="cpu", **kwargs)
        seconds = time.monotonic() - start
        requests = server.requests if server is not None else None
    message = one_line(str(caught.value))
    assert seconds < LIMIT_S, (seconds, message)
    assert target(base) in message, message
    assert CAUSES[failure] in message, message
    assert f"run `{fill}` on a machine with a network" in message, message
    for variable in variables:
        assert variable in message, message
    assert "HF_HUB_OFFLINE=1 to use only the caches" in message
    assert "or pass weights=PATH (a local .safetensors file or exported folder)" in message
    if failure in REQUESTS:
        assert requests == REQUESTS[failure], message
    assert not (caches["fpn_zoo"] / "converted").exists()


def test_cached_timm_weights_load_unchanged_while_the_hub_refuses(tmp_path, monkeypatch):
    """fpn_zoo fetches timm's file and timm loads it: the backbone holds exactly the cached tensors, and a cached
    file needs no network (the Hub's freshness check fails at once and the cache answers)."""
    import timm
    from safetensors.torch import save_file

    from fpn_zoo.backbones import TimmBackbone
    from fpn_zoo.config import BackboneSpec
    from fpn_zoo.weights.hub_download import fetch_timm_weights

    caches = point_everything_at(f"http://127.0.0.1:{refused_port()}", tmp_path, monkeypatch)
    reference = timm.create_model("resnet18", pretrained=False).state_dict()
    repo = caches["hf_hub"] / "models--timm--resnet18.a1_in1k"
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    save_file(reference, repo / "snapshots" / COMMIT / "model.safetensors")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    start = time.monotonic()
    weights_file = fetch_timm_weights("resnet18")  # what create_model(pretrained_backbone=True) hands the backbone
    spec = BackboneSpec("resnet18", (1, 2, 3, 4), False, "resnet")
    body = TimmBackbone(spec, pretrained=True, weights_file=weights_file, frozen_bn=False)
    assert time.monotonic() - start < LIMIT_S
    loaded = body.model.state_dict()
    assert loaded and all(torch.equal(tensor, reference[name]) for name, tensor in loaded.items())


def test_a_hub_without_timms_safetensors_is_asked_for_its_bin_as_timm_would(tmp_path, monkeypatch):
    with StatusServer(404, headers={"X-Error-Code": "EntryNotFound"}) as hub:
        point_everything_at(hub.base, tmp_path, monkeypatch)
        with pytest.raises(WeightsDownloadError, match=r"resnet50.a1_in1k@main on .* has no file 'pytorch_model.bin'"):
            fpn_zoo.create_model(MODEL, pretrained_backbone=True, device="cpu")
        assert hub.requests == 2  # model.safetensors, then pytorch_model.bin; each answered, neither tried again


def test_a_server_that_recovers_is_tried_again_and_read(tmp_path):
    with StatusServer(503, 500, 200, body=b"weights") as server:
        retrying(lambda: download_url(f"{server.base}/w.pth", tmp_path / "w.pth", progress=False), what="w.pth")
        assert server.requests == 3
    assert (tmp_path / "w.pth").read_bytes() == b"weights"


@pytest.mark.parametrize(
    ("err", "cause", "transient"),
    [
        (urllib.error.URLError(TimeoutError("timed out")), "the connection to example.org:80 timed out", False),
        (TimeoutError("timed out"), "example.org stopped answering (read timed out)", True),
        (urllib.error.URLError(OSError("Tunnel connection failed: 403 Forbidden")), "the proxy refused", False),
        (httpx.ProxyError("407"), "the proxy refused the connection", False),
        (httpx.ReadTimeout("timed out"), "stopped answering (read timed out)", True),
        (httpx.RemoteProtocolError("Server disconnected"), "dropped mid-transfer", True),
        (ValueError("not a network failure"), None, None),
    ],
)
def test_causes_are_read_from_the_exception_chain(err, cause, transient):
    described = describe(err, "http://example.org/w.pth")
    if cause is None:
        assert described is None
    else:
        assert cause in described.text and described.transient is transient


def test_httpx_errors_name_the_socket_error_beneath(monkeypatch):
    try:
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except socket.gaierror as inner:
            raise httpx.ConnectError("[Errno -2] Name or service not known") from inner
    except httpx.ConnectError as err:
        described = describe(err, "https://fpn-zoo-test.invalid/x")
    assert "'fpn-zoo-test.invalid' could not be resolved" in described.text and not described.transient
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.fpn-zoo-test.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    via_proxy = describe(ConnectionRefusedError(111, "Connection refused"), "https://huggingface.co/x")
    assert "the connection to the proxy http://proxy.fpn-zoo-test.invalid:3128 was refused" in via_proxy.text


# --------------------------------------------------------------------------------------------------------------------
# The command line: flags and commands, never keyword arguments


def assert_cli_error(err: str, *fragments: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fpn-zoo: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    for keyword in KEYWORD_ARGUMENTS:
        assert keyword not in lines[0], (keyword, lines[0])
    return lines[0]


def test_download_command_says_it_in_commands(capsys, tmp_path, monkeypatch):
    base = "http://fpn-zoo-test.invalid"
    point_everything_at(base, tmp_path, monkeypatch)
    start = time.monotonic()
    code = main(["download", MODEL])
    seconds = time.monotonic() - start
    line = assert_cli_error(
        capsys.readouterr().err,
        "could not be resolved",
        f"run `fpn-zoo download {MODEL}` on a machine with a network",
        "FPN_ZOO_CACHE",
        "TORCH_HOME",
        "HF_HUB_OFFLINE=1",
    )
    assert code == 2 and seconds < LIMIT_S, (code, seconds)
    assert "or pass" not in line  # `fpn-zoo download` has no --weights to offer


@pytest.mark.parametrize("failure", ["refused", "http_500"])
def test_predict_offers_its_weights_flag(failure, capsys, tmp_path, monkeypatch):
    with failing_base(failure) as (base, _):
        point_everything_at(base, tmp_path, monkeypatch)
        code = main(["predict", "--model", MODEL, "--pretrained", "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert code == 2
    # One line on stderr even after three tries of a server error: the retries are not announced.
    assert_cli_error(capsys.readouterr().err, CAUSES[failure], "or pass --weights PATH")


def write_timm_weights_to_cache(hf_hub: Path) -> None:
    """What a finished download of timm's resnet50 weights leaves in the Hugging Face cache (content aside)."""
    repo = hf_hub / f"models--{TIMM_REPO.replace('/', '--')}"
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "snapshots" / COMMIT / "model.safetensors").write_bytes(b"")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


def test_train_init_auto_lists_the_inits_that_work_offline(capsys, tmp_path, monkeypatch):
    from fpn_zoo.data import write_synthetic_coco

    caches = point_everything_at("http://fpn-zoo-test.invalid", tmp_path, monkeypatch)
    ann, images = write_synthetic_coco(tmp_path / "data", num_images=2, num_classes=2, image_size=(64, 64), seed=0)
    argv = ["train", "--model", MODEL, "--train-ann", str(ann), "--train-images", str(images), "--out",
            str(tmp_path / "run"), "--iters", "1", "--workers", "0", "--no-progress", "--device", "cpu"]  # fmt: skip
    assert main([*argv, "--init", "auto"]) == 2
    line = assert_cli_error(
        capsys.readouterr().err,
        "--init auto (here: coco) needs http://fpn-zoo-test.invalid/",
        "could not be resolved",
        "Starts that work here without a network: --init scratch (random init); --init PATH",
        f"run `fpn-zoo download {MODEL}` on a machine with a network",
    )
    assert "--init backbone" not in line and "--init coco" not in line  # neither is cached
    write_timm_weights_to_cache(caches["hf_hub"])
    assert main([*argv, "--init", "coco"]) == 2
    assert_cli_error(capsys.readouterr().err, "--init backbone (its ImageNet backbone weights are cached)")


def test_train_from_python_says_it_in_keyword_arguments(tmp_path, monkeypatch):
    point_everything_at("http://fpn-zoo-test.invalid", tmp_path, monkeypatch)
    config = TrainConfig(model=MODEL, train_ann="a.json", train_images="i", out="o", iters=1, init="backbone")
    with pytest.raises(WeightsDownloadError) as caught:
        build_training_model(config, ("__background__", "cell"), device=torch.device("cpu"))
    message = one_line(str(caught.value))
    assert message.startswith(f"init='backbone' needs model.safetensors of {TIMM_REPO}@main"), message
    assert "init='scratch' (random init); init=PATH" in message, message
