"""The README's main-job command, run as printed against a loopback weights server.

``fpn-zoo predict --model fpn_r50_coco`` uses the model's default weights: mmdetection's Mask R-CNN R-50 3x file,
downloaded once, hash-checked, converted and cached. Here a file in exactly that layout is served on loopback under
its upstream name (random weights, calibrated by ``mmdet_reference.randomise_for_detections`` so that the sample
photo gives detections above the command's 0.5 threshold). The real file cannot be downloaded here, so the classes
drawn are not the photo's: what is checked is the whole path from the command to boxes on the picture.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import mmdet_reference as mmref
import numpy as np
import pytest
import torch
from hub_servers import Caches, CountingFileServer, child_env, sha256_of
from PIL import Image

from fpn_zoo.images import load_image, sample_image_path
from fpn_zoo.labels import COCO_CATEGORIES
from fpn_zoo.weights.manifest import load_manifest

mmref.require_mmdet()

REPO = Path(__file__).resolve().parents[1]
FPN_ZOO = Path(sys.executable).with_name("fpn-zoo")  # the console script `pip install` put next to this Python


def readme_commands() -> list[str]:
    """The two commands of the README's first code block, comments removed."""
    block = re.search(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert block, "README.md must open with a ```bash block"
    return [line.split("#", 1)[0].strip() for line in block[1].strip().splitlines()]


def test_readme_opens_with_an_install_and_run_command_and_a_test_command():
    main_job, tests = readme_commands()
    install, _, run = main_job.partition(" && ")
    assert shlex.split(install) == ["pip", "install", "-e", "."]  # the package alone: no test or docs tools
    assert shlex.split(run)[:2] == ["fpn-zoo", "predict"]
    install, _, run = tests.partition(" && ")
    assert shlex.split(install) == ["pip", "install", "-e", ".[test]"]
    assert shlex.split(run) == ["python", "-m", "pytest"]
    ci = (REPO / ".ci" / "run").read_text()
    assert "readme_test_command" in ci  # CI runs that line, read from the README (see .ci/run)


def _sample_at_model_size() -> torch.Tensor:
    """The sample photo as the model sees it: resized to 800 on its shorter side (it is 512x512), uint8."""
    image = load_image(sample_image_path())
    resized = torch.nn.functional.interpolate(image[None], size=(800, 800), mode="bilinear", align_corners=False)[0]
    return (resized * 255).round().clamp(0, 255).to(torch.uint8)


@pytest.fixture(scope="module")
def weights_server(module_scratch):
    """The default weights of the README's model, served under their upstream name; a manifest pointing there."""
    argv = shlex.split(readme_commands()[0].partition(" && ")[2])
    name = argv[argv.index("--model") + 1]
    default = load_manifest(REPO / "weights_manifest.json").default_entry(name)
    assert default is not None and default.upstream is not None and default.upstream.converter == "mmdet"
    assert "_mask" in default.tag  # the file below is mmdetection's Mask R-CNN R-50 layout
    model = mmref.build_mmdet_model("mask_r50_fpn")
    mmref.randomise_for_detections(model, seed=0, images=[_sample_at_model_size()], roi_fraction=0.02)
    upstream_file = module_scratch / "upstream.pth"
    mmref.save_mmdet_checkpoint(model, upstream_file)
    data = json.loads((REPO / "weights_manifest.json").read_text())
    upstream_name = default.upstream.url.rsplit("/", 1)[-1]
    with CountingFileServer() as server:
        for entry in data["models"][name]["weights"]:
            if entry["tag"] == default.tag:
                entry["upstream"].update(url=server.serve(upstream_name, upstream_file), sha256=None)
                entry["upstream"]["sha256_prefix"] = sha256_of(upstream_file)[:8]
        manifest = module_scratch / "weights_manifest.json"
        manifest.write_text(json.dumps(data, indent=1))
        yield argv, manifest, server, upstream_name


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FPN_ZOO), *argv[1:]], env=env, cwd=cwd, capture_output=True, text=True, timeout=900)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_readme_main_command_draws_boxes_with_the_default_weights(weights_server, tmp_path):
    argv, manifest, server, upstream_name = weights_server
    env = child_env(Caches(tmp_path / "caches"), manifest=manifest)
    work = tmp_path / "work"
    work.mkdir()

    done = _run(argv, env, work)
    assert done.returncode == 0, done.stderr
    assert server.count(upstream_name) == 1
    assert "default" in done.stdout and "RANDOMLY" not in done.stderr
    record = json.loads((work / "predictions" / "astronaut.json").read_text())
    assert record["weights"] == "pretrained" and record["detections"], record
    assert {d["label_name"] for d in record["detections"]} <= set(COCO_CATEGORIES)
    assert all(d["score"] >= 0.5 for d in record["detections"])

    # The picture is the photo with the detections' outlines drawn on it: pixels change on the box edges only.
    drawn = np.asarray(Image.open(work / "predictions" / "astronaut.png").convert("RGB")).astype(int)
    photo = np.asarray(Image.open(sample_image_path()).convert("RGB")).astype(int)
    changed = np.abs(drawn - photo).max(axis=2) > 40
    assert changed.any()
    x1, y1, _, y2 = (round(v) for v in record["detections"][0]["box"])
    edge = changed[max(y1, 0) : y2 + 1, max(x1 - 2, 0) : x1 + 3]  # around the left edge of the best box
    assert edge.any(axis=1).mean() > 0.9

    # Again: no second download, and the first results stay as they were, the new ones beside them.
    first = _digests(work / "predictions")
    again = _run(argv, env, work)
    assert again.returncode == 0, again.stderr
    assert server.count(upstream_name) == 1
    assert _digests(work / "predictions") == first
    assert "predictions-2" in again.stdout and (work / "predictions-2" / "astronaut.json").is_file()
