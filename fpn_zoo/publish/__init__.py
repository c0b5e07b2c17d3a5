"""Publishing weights: export folders with model cards, Hub uploads pinned in ``weights_manifest.json``.

The maintainer's path, each step a CLI command and a function:

1. ``fpn-zoo export`` / [`export_checkpoint`][fpn_zoo.publish.export.export_checkpoint]: a checkpoint, loaded strictly,
   becomes a folder with ``model.safetensors``, ``config.json`` and a ``README.md`` model card
   ([`fpn_zoo.publish.card`][fpn_zoo.publish.card]).
2. Review the card; it states only the metrics it was given, each with its source.
3. ``fpn-zoo publish --dry-run`` / [`plan_publish`][fpn_zoo.publish.publish.plan_publish]: what would be uploaded and
   the manifest entry.
4. ``fpn-zoo publish`` / [`publish_export`][fpn_zoo.publish.publish.publish_export]: one Hub commit, then the manifest
   entry pinned to it.

Examples:
    ```console
    $ fpn-zoo export --model fpn_r50_coco --checkpoint runs/best.safetensors --out export/ --tag bccd \\
          --metrics metrics.json --license apache-2.0
    $ fpn-zoo publish export/ --repo-id acme/fpn_r50_bccd --dry-run
    $ fpn-zoo publish export/ --repo-id acme/fpn_r50_bccd
    ```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fpn_zoo.publish.card import CardError, CardInputs, build_model_card, card_metrics
    from fpn_zoo.publish.export import ExportError, ExportResult, export_checkpoint, load_metrics_file, write_export
    from fpn_zoo.publish.publish import PublishPlan, PublishResult, UploadError, plan_publish, publish_export

# Served lazily (PEP 562): the CLI imports fpn_zoo.publish.commands, and `fpn-zoo --help` must not import torch.
_LAZY = {
    "CardError": "card",
    "CardInputs": "card",
    "build_model_card": "card",
    "card_metrics": "card",
    "ExportError": "export",
    "ExportResult": "export",
    "export_checkpoint": "export",
    "load_metrics_file": "export",
    "write_export": "export",
    "PublishPlan": "publish",
    "PublishResult": "publish",
    "UploadError": "publish",
    "plan_publish": "publish",
    "publish_export": "publish",
}

__all__ = [
    "CardError",
    "CardInputs",
    "ExportError",
    "ExportResult",
    "PublishPlan",
    "PublishResult",
    "UploadError",
    "build_model_card",
    "card_metrics",
    "export_checkpoint",
    "load_metrics_file",
    "plan_publish",
    "publish_export",
    "write_export",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"fpn_zoo.publish.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'fpn_zoo.publish' has no attribute {name!r}")
