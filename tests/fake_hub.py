"""A stand-in for ``HfApi``'s publishing calls: the Hub is unreachable here, and uploading is huggingface_hub's job.

The fakes answer as the Hub does (``RepoUrl``, ``CommitInfo``) and record what they were asked to upload, so tests
check everything fpn_zoo does around the upload: validation first, one commit's files, the manifest pinned to it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from huggingface_hub import CommitInfo, HfApi
from huggingface_hub.hf_api import RepoUrl

COMMIT = "3f1e2d4c5b6a79808f7e6d5c4b3a291817161514"


def route_hfapi(monkeypatch: pytest.MonkeyPatch, api: FakeApi) -> None:
    """Make every ``HfApi`` answer through ``api`` (as code that builds its own ``HfApi`` sees it)."""
    for name in ("create_repo", "create_branch", "upload_folder"):
        fake = getattr(api, name)
        monkeypatch.setattr(HfApi, name, lambda self, *args, _fake=fake, **kwargs: _fake(*args, **kwargs))


class FakeApi:
    """``HfApi``'s three publishing calls, answering as the Hub does and recording the uploaded files."""

    def __init__(self, commit: str | None = COMMIT):
        """``commit``: the id every upload returns; ``None`` gives each repository its own (sha1 of its id)."""
        self.commit = commit
        self.calls: list[tuple[str, dict]] = []
        self.uploaded: dict[str, bytes] = {}
        self.uploads: dict[str, dict[str, bytes]] = {}  # repo id -> its files, every upload

    def create_repo(self, repo_id, *, private=None, exist_ok=False, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, "private": private, "exist_ok": exist_ok}))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_branch(self, repo_id, *, branch, exist_ok=False, **kwargs):
        self.calls.append(("create_branch", {"repo_id": repo_id, "branch": branch, "exist_ok": exist_ok}))

    def upload_folder(self, *, repo_id, folder_path, revision=None, commit_message=None, **kwargs):
        self.calls.append(("upload_folder", {"repo_id": repo_id, "revision": revision, **kwargs}))
        self.uploaded = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        self.uploads[repo_id] = self.uploaded
        commit = self.commit or hashlib.sha1(repo_id.encode()).hexdigest()
        return CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/{commit}",
            commit_message=commit_message or "",
            commit_description="",
            oid=commit,
        )
