"""One name for the project's GitHub repository and Hub organisation: fpn_zoo/project.py, and every page agrees."""

from __future__ import annotations

import re
from pathlib import Path

from fpn_zoo.project import GITHUB_REPO, HOMEPAGE, HUB_ORG

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "hubconf.py", *sorted((REPO / "docs").rglob("*.md"))]
CODE = sorted((REPO / "fpn_zoo").rglob("*.py"))


def test_pyproject_urls_name_the_same_repository():
    table = re.search(r"^\[project\.urls\]\n(.*?)\n\n", (REPO / "pyproject.toml").read_text(), re.M | re.S)
    assert table, "pyproject.toml has no [project.urls]"
    urls = dict(re.findall(r'^(\w+) = "([^"]+)"', table[1], re.M))  # (tomllib is Python 3.11+)
    assert urls["Homepage"] == urls["Repository"] == HOMEPAGE
    assert urls["Documentation"].startswith(HOMEPAGE)


def test_no_page_names_a_placeholder_owner():
    offenders = [str(p.relative_to(REPO)) for p in [*PAGES, *CODE] if "OWNER" in p.read_text()]
    assert not offenders


def test_every_torch_hub_spec_in_the_pages_is_the_projects():
    specs = {
        (str(page.relative_to(REPO)), spec)
        for page in PAGES
        for spec in re.findall(r'torch\.hub\.(?:load|list|help)\(\s*"([^"]+)"', page.read_text())
    }
    assert specs  # the README and the torch.hub guide show it
    wrong = {(page, spec) for page, spec in specs if spec.split(":")[0] not in (GITHUB_REPO, "path/to/fpn-zoo")}
    assert not wrong


def test_the_project_publishes_under_its_hub_org():
    text = (REPO / "docs" / "guides" / "converting.md").read_text()
    assert f"--org {HUB_ORG} " in text
