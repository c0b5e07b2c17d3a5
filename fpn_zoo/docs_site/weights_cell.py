"""Where a manifest entry's weights come from: its status, the file to download and the sha256 it is checked against."""

from __future__ import annotations

from dataclasses import dataclass

from fpn_zoo.weights.manifest import WeightsEntry

__all__ = ["WeightsLink", "weights_link"]

STATUS_TEXT = {"published": "published", "convertible": "convertible", "not_trained": "not trained"}


@dataclass(frozen=True)
class WeightsLink:
    """Where an entry's weights come from.

    Attributes:
        status: ``published``, ``convertible`` or ``not_trained``.
        url: The file to download (pinned Hub commit, or the upstream checkpoint), ``None`` when not trained.
        sha256: The digest the loader checks, ``None`` when there is no file.
        sha256_kind: ``"sha256"``, or ``"sha256 prefix"`` when the upstream publishes only a prefix.
    """

    status: str
    url: str | None
    sha256: str | None
    sha256_kind: str = "sha256"


def weights_link(entry: WeightsEntry) -> WeightsLink:
    """The download link and digest of a manifest entry.

    Examples:
        >>> from fpn_zoo.weights.manifest import load_manifest
        >>> link = weights_link(load_manifest().entry("fpn_r50_coco", "coco_tv"))
        >>> link.status, link.sha256_kind, link.url.endswith("fasterrcnn_resnet50_fpn_coco-258fb6c6.pth")
        ('convertible', 'sha256 prefix', True)
    """
    if entry.hub is not None:
        hub = entry.hub
        url = f"https://huggingface.co/{hub.repo_id}/blob/{hub.revision}/{hub.filename}"
        return WeightsLink(entry.status, url, hub.sha256)
    if entry.upstream is not None:
        upstream = entry.upstream
        if upstream.sha256:
            return WeightsLink(entry.status, upstream.url, upstream.sha256)
        return WeightsLink(entry.status, upstream.url, upstream.sha256_prefix, "sha256 prefix")
    return WeightsLink(entry.status, None, None)
