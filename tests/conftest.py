"""Shared test fixtures."""

from __future__ import annotations

import shutil

import pytest
import torch


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
