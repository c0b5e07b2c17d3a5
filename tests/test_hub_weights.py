"""Downloading weights for real, on loopback: the Hub path through olah, the upstream path through a plain HTTP server.

Setup (module-scoped, built once):

* ``exported``: an ``fpn_r50_coco`` with random weights exported with ``save_checkpoint`` (the published format),
  with the detections and state digest it gives when loaded back with ``create_model(weights=folder)``.
* ``olah``: a self-hosted Hub mirror (tests/hub_servers.py) serving that export from a git repository
  (``acme/fpn_r50_test``), and a tiny repository whose file is not the one its manifest entry pins (``acme/tampered``).
* ``upstream``: a torchvision ``fasterrcnn_resnet50_fpn`` with random weights saved as a ``.pth`` named the way
  download.pytorch.org names files (``name-<first 8 hex of its sha256>.pth``), served by ``file_server``.
* ``zoo_manifest``: the repository's manifest with two entries for ``fpn_r50_coco``: ``tv`` (convertible from the
  file server; the default) and ``hub`` (published on olah, pinned to the commit, with sha256 and size).
* ``filled``: the caches that the first load of each path (``hub_cold_load``, ``tv_cold_load``) fills. Tests that
  corrupt a cache work on copies of it.

Every load runs in a fresh interpreter (``hub_servers.run_child``) because huggingface_hub reads ``HF_ENDPOINT``,
``HF_HUB_OFFLINE`` and ``HF_HUB_CACHE`` when imported; each scenario gets its own ``HF_HUB_CACHE``, ``FPN_ZOO_CACHE``
and ``TORCH_HOME``. The servers' request counts (olah's access log, the file server's counter) show what was
downloaded, step by step. Starting an interpreter that imports torch costs seconds on this 2-core machine and olah
streams files in 4 KiB chunks (~5 s for the 160 MB export), so scenarios with several steps run them in one child
(``LOADS``) and the Hub downloads are kept few.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from hub_servers import (
    Caches,
    CountingFileServer,
    OlahMirror,
    child_env,
    detections,
    finish_child,
    flip_bit,
    is_up,
    read_counters,
    run_child,
    sha256_of,
    spawn_child,
    state_digest,
)
from model_helpers import model_with_detections, randomise

import fpn_zoo
from fpn_zoo.weights.checkpoint import save_checkpoint
from fpn_zoo.weights.manifest import ManifestError, parse_manifest

REPO = Path(__file__).resolve().parents[1]
MODEL = "fpn_r50_coco"
HUB_REPO = "acme/fpn_r50_test"
TAMPERED_REPO = "acme/tampered"
SIZE = {"min_size": 128, "max_size": 160}
# torchvision's detector and its conversion: a score threshold that leaves a dozen well-separated detections.
TV_OPTIONS = {**SIZE, "box_score_thresh": 0.3}

# --------------------------------------------------------------------------------------------------------------------
# The child scripts. `hs` is tests/hub_servers.py; arguments come as JSON in sys.argv[1].

# torch.hub.load from a repository folder, then where fpn_zoo and its manifest were imported from.
HUB_LOAD = f"""
import json, sys, torch
repo_dir = json.loads(sys.argv[1])
model = torch.hub.load(repo_dir, "{MODEL}", source="local", pretrained=True, device="cpu", **{SIZE!r})
import fpn_zoo.weights.manifest
hs.emit(
    detections=hs.detections(model),
    digest=hs.state_digest(model),
    fpn_zoo_file=sys.modules["fpn_zoo"].__file__,
    factory_file=sys.modules["fpn_zoo.factory"].__file__,
    manifest=str(fpn_zoo.weights.manifest.manifest_path()),
)
"""

# Steps: corrupt files, then create_model(**load); each outcome (digest, or exception) is reported, never raised,
# with the request counters read after the step.
LOADS = f"""
import json, sys
from pathlib import Path
spec = json.loads(sys.argv[1])
from fpn_zoo.factory import create_model  # before the clock starts: timings are of the loads, not of imports
if spec["barrier"]:
    hs.barrier(*spec["barrier"])

def load(kwargs):
    model = create_model("{MODEL}", **{{"device": "cpu", **{SIZE!r}, **kwargs}})
    return {{"digest": hs.state_digest(model), "detections": hs.detections(model) if spec["detect"] else None}}

results = []
for step in spec["steps"]:
    for kind, path in step["corrupt"]:
        hs.CORRUPTIONS[kind](Path(path))
    outcome = hs.attempt(lambda: load(step["load"]))
    outcome["requests"] = hs.read_counters(spec["counters"])
    results.append(outcome)
hs.emit(results=results, converter_imported="fpn_zoo.weights.convert" in sys.modules)
"""


def step(*corrupt: tuple[str, Path], **load: Any) -> dict[str, Any]:
    """One LOADS step: corrupt files (``(hub_servers.CORRUPTIONS key, path)`` pairs), then ``create_model(**load)``."""
    return {"load": load, "corrupt": [[kind, str(path)] for kind, path in corrupt]}


def run_loads(
    env: dict[str, str],
    cwd: Path,
    *steps: dict[str, Any],
    detect: bool = False,
    counters: dict[str, dict[str, str]] | None = None,
    prefix: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run LOADS. ``results[i]``: ``{"ok", "value" | "error" + "message", "seconds", "requests"}`` of ``steps[i]``."""
    spec = {"steps": list(steps), "detect": detect, "counters": counters or {}, "barrier": None}
    return run_child(LOADS, env, cwd=cwd, args=[json.dumps(spec)], prefix=prefix)


def per_step(before: dict[str, int], results: list[dict[str, Any]], counter: str) -> list[int]:
    """Requests counted by ``counter`` during each step."""
    counts = [before[counter]] + [r["requests"][counter] for r in results]
    return [b - a for a, b in itertools.pairwise(counts)]


def loaded(outcome: dict[str, Any]) -> dict[str, Any]:
    """The value of a load that must have succeeded."""
    assert outcome["ok"], f"{outcome['error']}: {outcome['message']}"
    return outcome["value"]


def failed(outcome: dict[str, Any], error: str) -> str:
    """The message of a load that must have failed with ``error``."""
    assert not outcome["ok"], f"expected {error}, but the load succeeded"
    assert outcome["error"] == error, f"expected {error}, got {outcome['error']}: {outcome['message']}"
    return outcome["message"]


# --------------------------------------------------------------------------------------------------------------------
# Manifests


def real_manifest() -> dict[str, Any]:
    return json.loads((REPO / "weights_manifest.json").read_text())


def manifest_entry(tag: str, *, hub: dict[str, Any] | None = None, upstream: dict[str, Any] | None = None) -> dict:
    """An ``fpn_r50_coco`` entry: the repository's, with another tag and location and no measured metrics."""
    entry = copy.deepcopy(real_manifest()["models"][MODEL]["weights"][0])
    entry.update(
        tag=tag,
        status="published" if hub else "convertible",
        hub=hub,
        upstream=upstream,
        metrics=[],
        source=f"fpn_zoo tests ({tag})",
    )
    return entry


def hub_location(repo_id: str, commit: str, sha256: str, size: int) -> dict[str, Any]:
    return {"repo_id": repo_id, "filename": "model.safetensors", "revision": commit, "sha256": sha256, "size": size}


def upstream_location(url: str, prefix: str) -> dict[str, Any]:
    return {"converter": "torchvision", "url": url, "sha256_prefix": prefix, "sha256": None}


def manifest_with(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The repository's manifest with ``fpn_r50_coco``'s entries replaced (validated, so a mistake fails here)."""
    data = real_manifest()
    data["models"][MODEL]["weights"] = entries
    parse_manifest(data, Path("test-manifest.json"))
    return data


def write_manifest(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(manifest_with(entries), indent=1))
    return path


# --------------------------------------------------------------------------------------------------------------------
# Fixtures


@dataclass(frozen=True)
class Exported:
    folder: Path
    sha256: str
    size: int
    detections: dict[str, list[Any]]
    digest: str


@dataclass(frozen=True)
class Upstream:
    path: Path
    prefix: str
    url: str
    detections: dict[str, list[Any]]  # torchvision's own, with this state dict and TV_OPTIONS


@dataclass(frozen=True)
class Mirror:
    server: OlahMirror
    commit: str
    tampered_commit: str
    tampered_expected_sha256: str
    tampered_size: int

    def gets(self, repo_id: str = HUB_REPO) -> int:
        """GETs of ``model.safetensors`` of ``repo_id`` so far."""
        return self.server.count_gets(repo_id, "model.safetensors")

    def counter(self, repo_id: str = HUB_REPO) -> dict[str, str]:
        return self.server.counter(repo_id, "model.safetensors")


@dataclass(frozen=True)
class ColdLoad:
    env: dict[str, str]
    result: dict[str, Any]
    downloads: int  # GETs of the weights file the server saw during the load


@pytest.fixture(scope="module")
def exported(tmp_path_factory, single_thread) -> Exported:
    """A random fpn_r50_coco whose detections are not empty: non-trivial BatchNorm statistics, peaky class logits."""
    model = model_with_detections(MODEL, **SIZE)
    folder = save_checkpoint(model.state_dict(), model.config, tmp_path_factory.mktemp("export") / MODEL)
    reloaded = fpn_zoo.create_model(MODEL, weights=folder, device="cpu", **SIZE)
    expected = detections(reloaded)
    assert len(expected["boxes"]) > 0, "the comparisons need real detections"
    weights = folder / "model.safetensors"
    return Exported(folder, sha256_of(weights), weights.stat().st_size, expected, state_digest(reloaded))


@pytest.fixture(scope="module")
def olah(tmp_path_factory, exported) -> Mirror:
    server = OlahMirror(tmp_path_factory.mktemp("olah"))
    commit = server.add_repo(
        HUB_REPO,
        {"model.safetensors": exported.folder / "model.safetensors", "config.json": exported.folder / "config.json"},
    )
    # A repository with other bytes than the manifest pins: 1000 bytes are enough, loading stops at the hash check.
    genuine = bytes(range(256)) * 3 + bytes(232)
    tampered = bytearray(genuine)
    tampered[500] ^= 0x01
    tampered_commit = server.add_repo(TAMPERED_REPO, {"model.safetensors": bytes(tampered)})
    server.start(ready_repo=HUB_REPO)
    try:
        yield Mirror(server, commit, tampered_commit, sha256_of(genuine), len(genuine))
    finally:
        server.stop()


@pytest.fixture(scope="module")
def file_server() -> CountingFileServer:
    with CountingFileServer() as server:
        yield server


@pytest.fixture(scope="module")
def upstream(tmp_path_factory, file_server, single_thread) -> Upstream:
    """torchvision's detector with random weights, saved and served the way download.pytorch.org serves COCO_V1.

    Built as torchvision builds it without weights (BatchNorm2d, eps 1e-5): the converter uses eps 1e-5 for any file
    whose hash prefix is not COCO_V1's, and in eval mode BatchNorm2d computes what FrozenBatchNorm2d does.
    """
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    tv = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, **TV_OPTIONS)
    # Logits peaky enough for a dozen detections above TV_OPTIONS' threshold, not so peaky that scores saturate at
    # 1.0 (ties there make the order, and the top-100 cut, depend on rounding).
    randomise(tv, seed=0, logit_scale=3.0)
    tv.eval()
    folder = tmp_path_factory.mktemp("upstream")
    tmp = folder / "state.pth"
    torch.save(tv.state_dict(), tmp)
    prefix = sha256_of(tmp)[:8]
    path = tmp.rename(folder / f"fasterrcnn_resnet50_fpn_random-{prefix}.pth")
    expected = detections(tv)
    # Float noise between the two implementations (~1e-5) must not decide which detections there are.
    assert 0 < len(expected["scores"]) < 100, "the comparison needs detections, and none cut by the top-100 limit"
    assert min(expected["scores"]) > TV_OPTIONS["box_score_thresh"] + 1e-3
    return Upstream(path, prefix, file_server.serve(path.name, path), expected)


@pytest.fixture(scope="module")
def zoo_manifest(tmp_path_factory, olah, exported, upstream) -> Path:
    return write_manifest(
        tmp_path_factory.mktemp("manifest") / "weights_manifest.json",
        [
            manifest_entry("tv", upstream=upstream_location(upstream.url, upstream.prefix)),
            manifest_entry("hub", hub=hub_location(HUB_REPO, olah.commit, exported.sha256, exported.size)),
        ],
    )


@pytest.fixture(scope="module")
def hub_repo_copy(tmp_path_factory, olah, exported) -> Path:
    """hubconf.py, the fpn_zoo package and a manifest whose default ``fpn_r50_coco`` entry is published on olah."""
    dest = tmp_path_factory.mktemp("repo_copy") / "fpn-zoo"
    dest.mkdir()
    shutil.copy2(REPO / "hubconf.py", dest / "hubconf.py")
    shutil.copytree(REPO / "fpn_zoo", dest / "fpn_zoo", ignore=shutil.ignore_patterns("__pycache__"))
    published = manifest_entry("coco_test", hub=hub_location(HUB_REPO, olah.commit, exported.sha256, exported.size))
    entries = [published]  # alone, so it is the default whatever the figures of the repository's entries
    (dest / "weights_manifest.json").write_text(json.dumps(manifest_with(entries), indent=1))
    return dest


@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> Caches:
    """The caches that the two first loads fill (each its own part: the HF cache, or torch's and the converted)."""
    return Caches(tmp_path_factory.mktemp("filled") / "caches")


@pytest.fixture(scope="module")
def hub_cold_load(filled, olah, hub_repo_copy) -> ColdLoad:
    """``torch.hub.load(copy, pretrained=True)`` with nothing in the HF cache: the weights come from olah."""
    env = child_env(filled, endpoint=olah.server.endpoint)  # no FPN_ZOO_MANIFEST: the copy's own manifest
    before = olah.gets()
    result = run_child(HUB_LOAD, env, cwd=filled.root.parent, args=[json.dumps(str(hub_repo_copy))])
    return ColdLoad(env, result, olah.gets() - before)


@pytest.fixture(scope="module")
def tv_cold_load(filled, zoo_manifest, file_server, upstream) -> ColdLoad:
    """``create_model(pretrained=True)`` (the convertible ``tv`` entry) with nothing in torch's or fpn_zoo's cache."""
    env = child_env(filled, manifest=zoo_manifest)
    before = file_server.count(upstream.path.name)
    result = run_loads(env, filled.root.parent, step(pretrained=True, **TV_OPTIONS), detect=True)
    return ColdLoad(env, result, file_server.count(upstream.path.name) - before)


def hub_file(caches: Caches, commit: str, repo_id: str = HUB_REPO) -> Path:
    """The cached ``model.safetensors`` of ``repo_id`` at ``commit`` (a symlink into ``blobs/``)."""
    return caches.hf / f"models--{repo_id.replace('/', '--')}" / "snapshots" / commit / "model.safetensors"


def converted_file(caches: Caches, tag: str, prefix: str) -> Path:
    return caches.fpn / "converted" / MODEL / f"{tag}-{prefix}" / "model.safetensors"


def assert_same_detections(got: dict[str, list[Any]], expected: dict[str, list[Any]], atol: float) -> None:
    """The same detections within ``atol``, in any order (near-equal scores may swap places)."""
    assert len(got["scores"]) == len(expected["scores"])
    unmatched = list(zip(got["labels"], got["boxes"], got["scores"], strict=True))
    for label, box, score in zip(expected["labels"], expected["boxes"], expected["scores"], strict=True):
        match = next(
            (
                d
                for d in unmatched
                if d[0] == label
                and abs(d[2] - score) <= atol
                and max(abs(a - b) for a, b in zip(d[1], box, strict=True)) <= atol
            ),
            None,
        )
        assert match is not None, f"no detection matches label {label}, box {box}, score {score} (atol {atol})"
        unmatched.remove(match)


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()) if folder.exists() else []


# --------------------------------------------------------------------------------------------------------------------
# 1. End to end through the Hub mirror


def test_torch_hub_load_from_the_mirror_gives_the_exported_model(hub_cold_load, hub_repo_copy, exported, olah):
    result = hub_cold_load.result
    # The child imported fpn_zoo, and read the manifest, from the repository copy, not from this checkout.
    for key in ("fpn_zoo_file", "factory_file", "manifest"):
        assert Path(result[key]).is_relative_to(hub_repo_copy), (key, result[key])
    assert hub_cold_load.downloads == 1
    assert result["digest"] == exported.digest
    assert_same_detections(result["detections"], exported.detections, atol=1e-5)

    # The server down and HF_HUB_OFFLINE=1: the filled cache alone gives the same model.
    with olah.server.stopped(ready_repo=HUB_REPO):
        assert not is_up(olah.server.endpoint)
        offline = run_child(
            HUB_LOAD,
            {**hub_cold_load.env, "HF_HUB_OFFLINE": "1"},
            cwd=hub_repo_copy.parent,
            args=[json.dumps(str(hub_repo_copy))],
        )
    assert offline["digest"] == exported.digest
    assert offline["detections"] == result["detections"]


@dataclass(frozen=True)
class HubRepairs:
    caches: Caches
    outcomes: list[dict[str, Any]]
    downloads: list[int]  # olah's GETs of model.safetensors during each step


@pytest.fixture(scope="module")
def hub_repairs(tmp_path_factory, hub_cold_load, filled, olah, zoo_manifest) -> HubRepairs:
    """One child on a copy of the filled HF cache (the blob is there; fpn_zoo has no sha256 recorded for it):

    0. ``weights="hf-hub:REPO"`` (``main``): the first use records the file's sha256;
    1. ``weights="hf-hub:REPO@COMMIT"``: from the cache, checked against that record;
    2. a bit of the cached blob flipped, then ``hf-hub:REPO@COMMIT`` again;
    3. the cached blob truncated, then ``pretrained="hub"`` (the manifest's pinned commit, sha256 and size).
    """
    root = tmp_path_factory.mktemp("hub_repairs")
    caches = filled.copy_to(root / "caches", "hf", "fpn")
    blob = hub_file(caches, olah.commit)
    counters = {"olah": olah.counter()}
    before = read_counters(counters)
    result = run_loads(
        child_env(caches, endpoint=olah.server.endpoint, manifest=zoo_manifest),
        root,
        step(weights=f"hf-hub:{HUB_REPO}"),
        step(weights=f"hf-hub:{HUB_REPO}@{olah.commit}"),
        step(("bit_flipped", blob), weights=f"hf-hub:{HUB_REPO}@{olah.commit}"),
        step(("truncated", blob), pretrained="hub"),
        counters=counters,
    )
    return HubRepairs(caches, result["results"], per_step(before, result["results"], "olah"))


def test_hf_hub_reference_trusts_on_first_use_and_detects_a_modified_blob(hub_repairs, olah, exported):
    """A community repository pins no sha256: the first use records it, later loads check it."""
    main, pinned, repaired = hub_repairs.outcomes[:3]
    assert loaded(main)["digest"] == exported.digest  # main, resolved to the commit by the mirror
    assert loaded(pinned)["digest"] == exported.digest
    record = hub_repairs.caches.fpn / "hf-hub" / HUB_REPO / olah.commit / "model.safetensors.sha256"
    assert record.read_text().strip() == exported.sha256
    # The flipped blob did not match the record: it was deleted and downloaded again.
    assert loaded(repaired)["digest"] == exported.digest
    assert hub_repairs.downloads[:3] == [0, 0, 1]


def test_truncated_hub_file_is_downloaded_again(hub_repairs, olah, exported):
    assert loaded(hub_repairs.outcomes[3])["digest"] == exported.digest
    assert hub_repairs.downloads[3] == 1
    assert sha256_of(hub_file(hub_repairs.caches, olah.commit)) == exported.sha256


# --------------------------------------------------------------------------------------------------------------------
# 2. The upstream conversion path


def test_upstream_checkpoint_converts_once_to_torchvisions_detector(tv_cold_load, filled, upstream, file_server):
    cold = loaded(tv_cold_load.result["results"][0])
    assert tv_cold_load.downloads == 1
    assert tv_cold_load.result["converter_imported"]
    assert_same_detections(cold["detections"], upstream.detections, atol=1e-4)

    converted = converted_file(filled, "tv", upstream.prefix)
    before = (file_server.count(upstream.path.name), converted.stat().st_mtime_ns)
    warm = run_loads(tv_cold_load.env, filled.root.parent, step(pretrained=True))
    assert loaded(warm["results"][0])["digest"] == cold["digest"]
    assert (file_server.count(upstream.path.name), converted.stat().st_mtime_ns) == before  # no request, no rewrite
    assert not warm["converter_imported"]  # not converted again: the converter was not even imported


@dataclass(frozen=True)
class ConversionRepairs:
    caches: Caches
    outcomes: list[dict[str, Any]]
    downloads: list[int]  # the file server's GETs of the upstream file during each step


@pytest.fixture(scope="module")
def conversion_repairs(
    tmp_path_factory, tv_cold_load, filled, zoo_manifest, upstream, file_server
) -> ConversionRepairs:
    """One child on a copy of the filled torch and fpn_zoo caches:

    0. the converted file truncated, then ``pretrained="tv"``: converted again from torch's copy of the upstream file;
    1. both the converted file and torch's copy bit-flipped: downloaded and converted again.
    """
    root = tmp_path_factory.mktemp("conversion_repairs")
    caches = filled.copy_to(root / "caches", "torch", "fpn")
    converted = converted_file(caches, "tv", upstream.prefix)
    counters = {"upstream": file_server.counter(upstream.path.name)}
    before = read_counters(counters)
    result = run_loads(
        child_env(caches, manifest=zoo_manifest),
        root,
        step(("truncated", converted), pretrained="tv"),
        step(("bit_flipped", converted), ("bit_flipped", caches.checkpoints / upstream.path.name), pretrained="tv"),
        counters=counters,
    )
    return ConversionRepairs(caches, result["results"], per_step(before, result["results"], "upstream"))


def test_corrupted_conversion_is_converted_again(conversion_repairs, tv_cold_load, upstream):
    assert loaded(conversion_repairs.outcomes[0])["digest"] == loaded(tv_cold_load.result["results"][0])["digest"]
    assert conversion_repairs.downloads[0] == 0  # torch's copy of the upstream file was fine


def test_corrupted_upstream_download_is_downloaded_again(conversion_repairs, tv_cold_load, upstream):
    assert loaded(conversion_repairs.outcomes[1])["digest"] == loaded(tv_cold_load.result["results"][0])["digest"]
    assert conversion_repairs.downloads[1] == 1
    caches = conversion_repairs.caches
    assert sha256_of(caches.checkpoints / upstream.path.name).startswith(upstream.prefix)
    converted = converted_file(caches, "tv", upstream.prefix)
    assert sha256_of(converted) == converted.with_name("model.safetensors.sha256").read_text().strip()


# --------------------------------------------------------------------------------------------------------------------
# 3. Hostile servers and files


class RunsShellOnUnpickle:
    """Unpickling this runs a shell command: what a malicious .pth would carry next to its tensors."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


def malicious_pth(folder: Path, marker: Path) -> Path:
    """A .pth holding tensors and an object that creates ``marker`` when unpickled, named with its hash prefix."""
    tmp = folder / "payload.pth"
    torch.save({"weight": torch.zeros(3), "hook": RunsShellOnUnpickle(f"touch '{marker}'")}, tmp)
    return tmp.rename(folder / f"fasterrcnn_resnet50_fpn_evil-{sha256_of(tmp)[:8]}.pth")


@dataclass(frozen=True)
class HostileLoads:
    caches: Caches
    outcomes: dict[str, dict[str, Any]]
    requests: dict[str, int]  # GETs of each served weights file during the loads
    marker: Path  # created if the malicious .pth's payload ever runs


@pytest.fixture(scope="module")
def hostile_loads(tmp_path_factory, olah, file_server, upstream) -> HostileLoads:
    """Loads that must fail, all in one child into empty caches:

    * ``hub_tampered``: a published entry whose repository serves other bytes than its pinned sha256;
    * ``tv_tampered``: the upstream server serves a bit-flipped copy of the file that its hash prefix names;
    * ``tv_evil``: a genuine upstream file (its hash matches) that carries a pickled, code-running object;
    * ``no_branch`` / ``no_repo``: an unknown revision, an unknown repository.
    """
    root = tmp_path_factory.mktemp("hostile")
    served = root / "served"
    served.mkdir()
    wrong = served / upstream.path.name
    shutil.copyfile(upstream.path, wrong)
    flip_bit(wrong)
    marker = root / "payload-ran"
    evil = malicious_pth(served, marker)
    tampered_url = file_server.serve(f"tampered/{wrong.name}", wrong)
    evil_url = file_server.serve(f"evil/{evil.name}", evil)
    hub = hub_location(TAMPERED_REPO, olah.tampered_commit, olah.tampered_expected_sha256, olah.tampered_size)
    manifest = write_manifest(
        root / "manifest.json",
        [
            manifest_entry("hub_tampered", hub=hub),
            manifest_entry("tv_tampered", upstream=upstream_location(tampered_url, upstream.prefix)),
            manifest_entry("tv_evil", upstream=upstream_location(evil_url, evil.stem[-8:])),
        ],
    )
    steps = {
        "hub_tampered": step(pretrained="hub_tampered"),
        "tv_tampered": step(pretrained="tv_tampered"),
        "tv_evil": step(pretrained="tv_evil"),
        "no_branch": step(weights=f"hf-hub:{HUB_REPO}@no-such-branch"),
        "no_repo": step(weights="hf-hub:acme/no-such-repo"),
    }
    counters = {
        "hub_tampered": olah.counter(TAMPERED_REPO),
        "tv_tampered": file_server.counter(f"tampered/{wrong.name}"),
        "tv_evil": file_server.counter(f"evil/{evil.name}"),
    }
    caches = Caches(root / "caches")
    before = read_counters(counters)
    env = child_env(caches, endpoint=olah.server.endpoint, manifest=manifest)
    result = run_loads(env, root, *steps.values(), counters=counters)
    after = result["results"][-1]["requests"]
    return HostileLoads(
        caches=caches,
        outcomes=dict(zip(steps, result["results"], strict=True)),
        requests={name: after[name] - before[name] for name in counters},
        marker=marker,
    )


def test_hub_server_serving_wrong_bytes_ends_in_an_integrity_error(hostile_loads, olah):
    message = failed(hostile_loads.outcomes["hub_tampered"], "WeightsIntegrityError")
    assert olah.tampered_expected_sha256 in message and "even after a fresh download" in message
    assert hostile_loads.requests["hub_tampered"] == 2  # the first copy, then one more try
    repo_cache = hostile_loads.caches.hf / f"models--{TAMPERED_REPO.replace('/', '--')}"
    assert files_under(repo_cache / "blobs") == [] and files_under(repo_cache / "snapshots") == []


def test_upstream_server_serving_wrong_bytes_ends_in_an_integrity_error(hostile_loads, upstream):
    message = failed(hostile_loads.outcomes["tv_tampered"], "WeightsIntegrityError")
    assert upstream.prefix in message and "on two downloads; nothing was kept" in message
    assert hostile_loads.requests["tv_tampered"] == 2
    checkpoints = hostile_loads.caches.checkpoints
    assert [p for p in checkpoints.iterdir() if upstream.path.name in p.name] == []  # no bad copy, no partial file


def test_upstream_checkpoint_carrying_code_is_refused(hostile_loads, tmp_path):
    message = failed(hostile_loads.outcomes["tv_evil"], "CheckpointError")
    assert "holds pickled objects of types outside the ones fpn_zoo reads (posix.system)" in message
    assert hostile_loads.requests["tv_evil"] == 1
    assert not hostile_loads.marker.exists()
    assert files_under(hostile_loads.caches.fpn / "converted") == []  # neither this nor the tampered file converted
    # The payload is live: an unsafe torch.load of the same kind of file does run it.
    control = tmp_path / "control-ran"
    torch.load(malicious_pth(tmp_path, control), weights_only=False)
    assert control.exists()


def test_unknown_revision_or_repository_is_a_clear_error(hostile_loads):
    branch, repo = hostile_loads.outcomes["no_branch"], hostile_loads.outcomes["no_repo"]
    assert "'no-such-branch'" in failed(branch, "WeightsDownloadError")
    assert "'acme/no-such-repo' not found" in failed(repo, "WeightsDownloadError")
    assert branch["seconds"] < 10 and repo["seconds"] < 10  # answered, not retried


@pytest.mark.slow
def test_unknown_commit_is_a_clear_error(olah, exported, tmp_path):
    """olah answers 500 for a commit it does not have, and huggingface_hub retries that for ~25 s."""
    unknown = "0123456789abcdef" * 2 + "01234567"
    hub = hub_location(HUB_REPO, unknown, exported.sha256, exported.size)
    manifest = write_manifest(tmp_path / "manifest.json", [manifest_entry("hub", hub=hub)])
    env = child_env(Caches(tmp_path / "caches"), endpoint=olah.server.endpoint, manifest=manifest)
    message = failed(run_loads(env, tmp_path, step(pretrained=True))["results"][0], "WeightsDownloadError")
    assert unknown in message and "server error" in message


# --------------------------------------------------------------------------------------------------------------------
# 4. Concurrency, offline, read-only caches


def test_concurrent_cold_loads_download_once(
    zoo_manifest, olah, file_server, upstream, tv_cold_load, exported, tmp_path
):
    """Four processes load both entries into the same empty caches at the same moment."""
    caches = Caches(tmp_path / "caches")
    env = child_env(caches, endpoint=olah.server.endpoint, manifest=zoo_manifest)
    ready = tmp_path / "ready"
    ready.mkdir()
    spec = {
        "steps": [step(pretrained="tv"), step(pretrained="hub")],
        "detect": False,
        "counters": {},
        "barrier": [str(ready), 4],  # start loading only when all four have imported torch
    }
    before = (file_server.count(upstream.path.name), olah.gets())
    children = [spawn_child(LOADS, env, cwd=tmp_path, args=[json.dumps(spec)]) for _ in range(4)]
    results = [finish_child(child) for child in children]
    assert {loaded(r["results"][0])["digest"] for r in results} == {loaded(tv_cold_load.result["results"][0])["digest"]}
    assert {loaded(r["results"][1])["digest"] for r in results} == {exported.digest}
    assert (file_server.count(upstream.path.name), olah.gets()) == (before[0] + 1, before[1] + 1)


def test_offline_with_a_cold_cache_fails_fast_and_says_how_to_fill_it(
    zoo_manifest, olah, file_server, upstream, tmp_path
):
    caches = Caches(tmp_path / "caches")
    env = child_env(caches, endpoint=olah.server.endpoint, manifest=zoo_manifest, offline=True)
    before = (file_server.count(upstream.path.name), olah.gets())
    hub, tv = run_loads(env, tmp_path, step(pretrained="hub"), step(pretrained="tv"))["results"]
    for outcome, folder in ((hub, caches.hf), (tv, caches.checkpoints)):
        message = failed(outcome, "WeightsDownloadError")
        assert outcome["seconds"] < 2.0, outcome  # measured in the child around create_model, imports excluded
        assert str(folder) in message and "fpn-zoo download" in message and "HF_HUB_OFFLINE=1" in message
    assert (file_server.count(upstream.path.name), olah.gets()) == before


def drop_capabilities() -> tuple[str, ...]:
    """A command prefix under which root obeys file permissions (root ignores chmod otherwise)."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a folder read-only for the loading process")
    return ("setpriv", "--inh-caps=-all", "--bounding-set=-all")


def set_writable(root: Path, writable: bool) -> None:
    """Give or take write permission on a whole tree (symlinks skipped: their mode is their target's)."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def test_read_only_cold_cache_is_a_clear_error(zoo_manifest, olah, tmp_path):
    prefix = drop_capabilities()
    caches = Caches(tmp_path / "caches")
    for folder in (caches.hf, caches.fpn, caches.torch):
        folder.mkdir(parents=True)
    set_writable(caches.root, False)
    try:
        env = child_env(caches, endpoint=olah.server.endpoint, manifest=zoo_manifest)
        hub, tv = run_loads(env, tmp_path, step(pretrained="hub"), step(pretrained="tv"), prefix=prefix)["results"]
    finally:
        set_writable(caches.root, True)
    assert f"Cannot write to the cache folder {caches.hf}" in failed(hub, "CacheNotWritableError")
    message = failed(tv, "CacheNotWritableError")
    assert str(caches.fpn) in message and "Set FPN_ZOO_CACHE to a writable folder" in message


def test_read_only_cache_holding_verified_weights_loads_offline(
    hub_cold_load, tv_cold_load, filled, zoo_manifest, exported, tmp_path
):
    """The caches the first loads filled (and verified), made read-only in place: both entries still load."""
    prefix = drop_capabilities()
    env = child_env(filled, manifest=zoo_manifest, offline=True)
    set_writable(filled.root, False)
    try:
        hub, tv = run_loads(env, tmp_path, step(pretrained="hub"), step(pretrained="tv"), prefix=prefix)["results"]
    finally:
        set_writable(filled.root, True)
    assert loaded(hub)["digest"] == exported.digest
    assert loaded(tv)["digest"] == loaded(tv_cold_load.result["results"][0])["digest"]


# --------------------------------------------------------------------------------------------------------------------
# Manifest validation (no server)


def manifest_with_hub_entry(**changes: Any) -> dict[str, Any]:
    """The repository's manifest with one published ``fpn_r50_coco`` entry, unvalidated, ``hub`` fields changed."""
    entry = manifest_entry("hub", hub=hub_location(HUB_REPO, "a" * 40, "b" * 64, 1))
    entry["hub"].update(changes)
    data = real_manifest()
    data["models"][MODEL]["weights"] = [entry]
    return data


@pytest.mark.parametrize(
    "filename",
    ["../x.safetensors", "/abs/x.safetensors", "a/../../x.safetensors", "..\\x.safetensors", "./x.safetensors"],
)
def test_manifest_filename_escaping_its_folder_is_rejected(filename):
    with pytest.raises(ManifestError, match=r"weights\[0\]\.hub: filename .* must be a plain relative path"):
        parse_manifest(manifest_with_hub_entry(filename=filename), Path("m.json"))


def test_manifest_valid_hub_entry_is_accepted():
    """The baseline of the schema tests below: only their one change makes the entry invalid."""
    entry = parse_manifest(manifest_with_hub_entry(), Path("m.json")).entry(MODEL)
    assert entry.status == "published" and entry.hub.revision == "a" * 40


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"revision": "main"}, r"hub\.revision: 'main' must be a full 40-hex commit id"),
        ({"sha256": "B" * 64}, r"hub\.sha256: .* must be 64 lowercase hex digits"),
        ({"size": 0}, r"hub\.size: must be positive"),
        ({"filename": "weights.bin"}, r"published weights are \.safetensors files"),
        ({"mirror": "x"}, r"hub: unknown field\(s\) \['mirror'\]"),
    ],
    ids=["branch-revision", "uppercase-sha256", "zero-size", "pickle-file", "unknown-field"],
)
def test_manifest_invalid_hub_location_is_rejected(changes, message):
    with pytest.raises(ManifestError, match=message):
        parse_manifest(manifest_with_hub_entry(**changes), Path("m.json"))


@pytest.mark.parametrize(
    ("entry_changes", "message"),
    [
        ({"hub": None}, r"status 'published' requires a 'hub' location"),
        ({"status": "convertible"}, r"status 'convertible' forbids a 'hub' location"),
    ],
    ids=["published-without-hub", "convertible-with-hub"],
)
def test_manifest_status_and_location_must_agree(entry_changes, message):
    data = manifest_with_hub_entry()
    data["models"][MODEL]["weights"][0].update(entry_changes)
    with pytest.raises(ManifestError, match=message):
        parse_manifest(data, Path("m.json"))
