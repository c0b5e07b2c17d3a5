"""A figure on the site is a value with its source and date: the types that make that impossible to forget."""

from __future__ import annotations

import datetime
import html
from dataclasses import dataclass

__all__ = ["DocsSourceError", "Figure", "Source"]


class DocsSourceError(ValueError):
    """A figure would be shown without a source or a date, or a source file cannot back the pages."""


@dataclass(frozen=True)
class Source:
    """Where a set of figures comes from.

    Attributes:
        label: What a reader can open to check the figures, e.g. ``"docs/results/bench-cpu-20261121T1800.json"``.
        date: ``YYYY-MM-DD``: when they were measured, or when an upstream's claim was recorded.
        note: One sentence on how they were obtained (machine, settings, caveats).
        link: Path of the page or file to link, relative to ``docs/`` (``None``: no page to link).

    Examples:
        >>> Source("weights_manifest.json", "2026-11-21", "reported by torchvision").describe()
        'weights_manifest.json, 2026-11-21: reported by torchvision'
    """

    label: str
    date: str
    note: str = ""
    link: str | None = None

    def __post_init__(self) -> None:
        if not self.label.strip():
            raise DocsSourceError(f"A figure source needs a name (got {self.label!r}, dated {self.date!r}).")
        try:
            datetime.date.fromisoformat(self.date)
        except (TypeError, ValueError):
            raise DocsSourceError(
                f"Source {self.label!r} has date {self.date!r}; every figure on the site needs a YYYY-MM-DD date."
            ) from None

    def markdown(self, to_docs: str) -> str:
        """The label as a Markdown link from a page ``to_docs`` (e.g. ``"../"``) below ``docs/``, or as code."""
        return f"[`{self.label}`]({to_docs}{self.link})" if self.link else f"`{self.label}`"

    def describe(self) -> str:
        """``label, date: note`` in one line, for tooltips and footnotes."""
        return f"{self.label}, {self.date}" + (f": {self.note}" if self.note else "")


@dataclass(frozen=True)
class Figure:
    """One number as shown (``text``), the value it sorts by, and its source.

    Examples:
        >>> f = Figure(1921.3, "1921", Source("bench.json", "2026-11-21"), detail="median of 10 runs")
        >>> f.html_cell()
        '<td data-sort="1921.3" title="median of 10 runs. Source: bench.json, 2026-11-21">1921</td>'
    """

    value: float
    text: str
    source: Source
    detail: str = ""

    def tooltip(self) -> str:
        return (f"{self.detail}. " if self.detail else "") + f"Source: {self.source.describe()}"

    def html_cell(self, extra: str = "", sort: float | None = None) -> str:
        """A sortable table cell whose tooltip names the source and date; ``sort`` replaces ``value`` as its key."""
        title = html.escape(self.tooltip(), quote=True)
        key = self.value if sort is None else sort
        return f'<td data-sort="{key:g}" title="{title}">{html.escape(self.text)}{extra}</td>'

    def html_span(self) -> str:
        """The figure inside a cell that holds several (a model's weights tags), with the same tooltip.

        Examples:
            >>> Figure(37.0, "37.0", Source("manifest", "2026-11-21", "reported")).html_span()
            '<span class="zoo-figure" data-value="37" title="Source: manifest, 2026-11-21: reported">37.0</span>'
        """
        title = html.escape(self.tooltip(), quote=True)
        return f'<span class="zoo-figure" data-value="{self.value:g}" title="{title}">{html.escape(self.text)}</span>'
