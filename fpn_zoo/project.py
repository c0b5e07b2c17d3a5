"""Where the project lives: the one place its GitHub repository and Hugging Face organisation are named.

Code, generated docs and model cards read these names from here; the hand-written pages (README, guides) spell them
out and ``tests/test_project_ids.py`` holds them to these values, as it does ``[project.urls]`` of pyproject.toml.
A fork changes them here and runs ``fpn-zoo docs``.
"""

from __future__ import annotations

__all__ = ["GITHUB_REPO", "HOMEPAGE", "HUB_ORG"]

GITHUB_REPO = "fpn-zoo/fpn-zoo"
"""``owner/name`` on GitHub: the first argument of ``torch.hub.load``."""

HOMEPAGE = f"https://github.com/{GITHUB_REPO}"

HUB_ORG = "fpn-zoo"
"""The Hugging Face organisation the project publishes its weights under (``fpn-zoo publish-converted --org``)."""
