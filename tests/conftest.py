"""Shared test fixtures."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread for files of many tiny forwards: on 2 busy cores OpenMP spin-waits made them 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def module_scratch(tmp_path_factory):
    """A folder for one test module's large files (checkpoints of hundreds of MB each), removed when the module's
    tests are done, so that a full run holds one module's files on disk at a time, not every module's."""
    folder = tmp_path_factory.mktemp("scratch")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def checkout(tmp_path: Path) -> Path:
    """A copy of what the docs pages are generated from (manifest, mkdocs.yml, results files) and the pages."""
    for name in ("mkdocs.yml", "weights_manifest.json"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "docs" / "results", tmp_path / "docs" / "results")
    shutil.copytree(REPO / "docs" / "zoo", tmp_path / "docs" / "zoo")
    return tmp_path


# A Python keyword argument (`weights=`, `on_invalid='skip'`) or call (`create_model(`, `fpn_zoo.list_models()`) in
# an `fpn-zoo: error:` line: advice a command-line user cannot follow (fpn_zoo.voice renders it as flags there).
PYTHON_ADVICE = re.compile(r"(?<![-\w.:/?&=])[a-z][a-z0-9_]*=(?!=)|\bcreate_model\(|\bfpn_zoo\.[a-z_.]+\(")


@pytest.fixture(autouse=True)
def cli_errors_speak_cli(monkeypatch):
    """Every CLI error line a test provokes names flags and commands, never Python keyword arguments."""
    import fpn_zoo.cli

    said: list[str] = []
    fail = fpn_zoo.cli._fail

    def recording_fail(message: object) -> int:
        said.append(str(message))
        return fail(message)

    monkeypatch.setattr(fpn_zoo.cli, "_fail", recording_fail)
    yield
    python_advice = [m for m in said if PYTHON_ADVICE.search(m)]
    assert not python_advice, f"CLI errors giving Python advice: {python_advice}"
