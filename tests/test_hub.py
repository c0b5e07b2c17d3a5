"""hubconf.py: torch.hub.list / help / load(source="local") for every registered model, and a light import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fpn_zoo

REPO = Path(__file__).resolve().parents[1]
GITHUB_SPEC = "fpn-zoo/fpn-zoo:main"


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """A torch.hub cache holding this checkout, as `torch.hub.load("fpn-zoo/fpn-zoo:main", ...)` leaves it.

    torch.hub.list/help only take GitHub specs; with the ref pinned and the code cached they work offline, which is
    the path users take on a plane. The GitHub download itself cannot be exercised here (no network).
    """
    previous = torch.hub.get_dir()
    hub_dir = tmp_path_factory.mktemp("torch_hub")
    (hub_dir / "fpn-zoo_fpn-zoo_main").symlink_to(REPO, target_is_directory=True)
    torch.hub.set_dir(str(hub_dir))
    yield hub_dir
    torch.hub.set_dir(previous)


def test_hub_list_is_the_registry(hub_cache):
    assert torch.hub.list(GITHUB_SPEC, trust_repo=True, verbose=False) == fpn_zoo.list_models()
    assert len(fpn_zoo.list_models()) == 21


@pytest.mark.parametrize("name", fpn_zoo.list_models())
def test_hub_help_documents_every_entrypoint(hub_cache, name):
    doc = torch.hub.help(GITHUB_SPEC, name, trust_repo=True)
    config = fpn_zoo.get_model_config(name)
    assert doc.startswith(f"{name}: Faster R-CNN")
    assert config.backbone_spec.timm_name in doc
    assert "num_classes" in doc and "Example" in doc


def test_hub_load_passes_arguments_through():
    model = torch.hub.load(
        str(REPO),
        "bifpn_r50_coco",
        source="local",
        device="cpu",
        num_classes=5,
        bifpn_repeats=2,
        min_size=64,
        max_size=96,
    )
    assert isinstance(model, fpn_zoo.ZooDetector)
    assert model.config.num_classes == 5 and model.config.bifpn_repeats == 2
    assert len(model.backbone.neck.cell) == 2
    with torch.no_grad():
        out = model([torch.rand(3, 64, 80)])
    assert set(out[0]) == {"boxes", "scores", "labels"}


def test_hub_load_from_the_cache_offline(hub_cache):
    model = torch.hub.load(GITHUB_SPEC, "augfpn_r50_coco", trust_repo=True, verbose=False, device="cpu")
    assert model.config.name == "augfpn_r50_coco" and not model.training


def test_hub_load_reports_bad_arguments():
    with pytest.raises(TypeError, match="Unknown option 'colour'"):
        torch.hub.load(str(REPO), "fpn_r50_coco", source="local", colour="red")


def test_hubconf_import_is_light():
    """Importing hubconf (what torch.hub.list does) builds nothing and imports neither torchvision nor timm."""
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[1]); t = time.perf_counter(); import hubconf; "
        "print(time.perf_counter() - t); "
        "print(any(m in sys.modules for m in ('torch', 'torchvision', 'timm', 'safetensors')))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(REPO)], capture_output=True, text=True, check=True)
    seconds, heavy = out.stdout.split()
    assert heavy == "False"
    assert float(seconds) < 1.0


def test_dependencies_are_declared():
    namespace: dict = {}
    exec(compile((REPO / "hubconf.py").read_text().split("from fpn_zoo")[0], "hubconf", "exec"), namespace)
    assert {"torch", "torchvision", "timm", "safetensors"} <= set(namespace["dependencies"])
