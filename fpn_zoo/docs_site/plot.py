"""The zoo page's plot: GFLOPs and BCCD fine-tuning AP against CPU latency, as a reproducible SVG.

matplotlib draws it. The SVG carries a digest of the data it was drawn from (its ``dc:description``), so the drift
check compares data, not bytes that change with the matplotlib version.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from typing import Any

from fpn_zoo.docs_site.zoo_rows import FLOPS_SIZE, NECK_NAMES, ZooRow

__all__ = ["plot_data", "plot_digest", "render_plot", "svg_digest"]

NECK_COLOURS = {"fpn": "#1f77b4", "panet": "#ff7f0e", "bifpn": "#2ca02c", "augfpn": "#d62728"}
BACKBONE_MARKERS = {"r50": "o", "r101": "s", "convnext_t": "^", "convnext_s": "D", "convnext_b": "P"}
_DIGEST = re.compile(r"fpn-zoo-plot-data sha256 ([0-9a-f]{64})")


def plot_data(rows: list[ZooRow]) -> list[dict[str, Any]]:
    """The points the plot draws, with the source and date of each coordinate."""
    points = []
    for row in rows:
        latency = row.latency.get(FLOPS_SIZE)
        if latency is None:
            continue
        point = {
            "model": row.config.name,
            "neck": row.config.neck,
            "backbone": row.config.backbone,
            "latency_ms": round(latency.value, 3),
            "latency_source": [latency.source.label, latency.source.date],
            "gflops": None if row.gflops is None else round(row.gflops.value, 3),
        }
        if row.bccd_ap is not None:
            point["bccd_ap"] = round(row.bccd_ap.value, 3)
            point["bccd_source"] = [row.bccd_ap.source.label, row.bccd_ap.source.date]
        points.append(point)
    return points


def plot_digest(points: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(points, sort_keys=True).encode()).hexdigest()


def svg_digest(svg: str) -> str | None:
    """The data digest an SVG written by ``render_plot`` carries, or ``None``."""
    match = _DIGEST.search(svg)
    return match[1] if match else None


def render_plot(rows: list[ZooRow]) -> str:
    """The SVG text. Deterministic for a given matplotlib: fixed hash salt, no date, text kept as text.

    Raises:
        ImportError: matplotlib is not installed (it comes with the ``docs`` extra).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    points = plot_data(rows)
    with matplotlib.rc_context({"svg.hashsalt": "fpn-zoo", "svg.fonttype": "none", "font.size": 9}):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), constrained_layout=True)
        for point in points:
            style = {"color": NECK_COLOURS[point["neck"]], "marker": BACKBONE_MARKERS[point["backbone"]], "s": 42}
            if point["gflops"] is not None:
                left.scatter(point["latency_ms"], point["gflops"], **style)
            if "bccd_ap" in point:
                right.scatter(point["latency_ms"], point["bccd_ap"], **style)
                right.annotate(
                    point["model"],
                    (point["latency_ms"], point["bccd_ap"]),
                    fontsize=7,
                    xytext=(4, 4),
                    textcoords="offset points",
                )
        left.set(
            xlabel=f"CPU latency at {FLOPS_SIZE}, batch 1, fp32 (ms)",
            ylabel=f"GFLOPs at {FLOPS_SIZE}",
            title="Cost: GFLOPs against latency",
        )
        right.set(
            xlabel=f"CPU latency at {FLOPS_SIZE} (ms)",
            ylabel="box AP on BCCD val after fine-tuning",
            title="Accuracy: BCCD fine-tune AP against latency",
        )
        if not any("bccd_ap" in p for p in points):
            right.text(0.5, 0.5, "no fine-tuning results", ha="center", va="center", transform=right.transAxes)
        for axes in (left, right):
            axes.grid(True, alpha=0.3)
        handles = [
            Line2D([], [], color=colour, marker="o", linestyle="", label=NECK_NAMES[neck])
            for neck, colour in NECK_COLOURS.items()
        ]
        handles += [Line2D([], [], color="grey", marker=m, linestyle="", label=b) for b, m in BACKBONE_MARKERS.items()]
        left.legend(handles=handles, fontsize=7, ncols=2, loc="upper left")
        buffer = io.StringIO()
        metadata = {"Date": None, "Description": f"fpn-zoo-plot-data sha256 {plot_digest(points)}"}
        fig.savefig(buffer, format="svg", metadata=metadata)
        plt.close(fig)
    return buffer.getvalue()
