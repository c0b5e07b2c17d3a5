"""The documentation site's generated pages: the model-zoo table, its plot and one page per model.

``fpn-zoo docs`` writes them from ``weights_manifest.json`` and ``docs/results/*.json``; ``fpn-zoo docs --check``
(and the test suite) fails when the committed pages drift from those sources.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DocsSourceError",
    "Figure",
    "SiteSources",
    "Source",
    "check_pages",
    "load_sources",
    "render_pages",
    "write_pages",
]

# Imported on first use, so that the command line (which imports fpn_zoo.docs_site.command) starts without torch.
_HOMES = {
    "DocsSourceError": "figures",
    "Figure": "figures",
    "Source": "figures",
    "SiteSources": "sources",
    "load_sources": "sources",
    "check_pages": "generate",
    "render_pages": "generate",
    "write_pages": "generate",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'fpn_zoo.docs_site' has no attribute {name!r}")
    return getattr(importlib.import_module(f"fpn_zoo.docs_site.{_HOMES[name]}"), name)
