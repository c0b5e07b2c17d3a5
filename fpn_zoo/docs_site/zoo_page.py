"""The model-zoo page: one sortable, filterable table of every model, the sources of its figures, and the plot."""

from __future__ import annotations

import dataclasses
import html
from collections import Counter
from collections.abc import Callable

from fpn_zoo.bench.ranking import RankedRow
from fpn_zoo.docs_site.figures import Figure, Source
from fpn_zoo.docs_site.sources import SiteSources
from fpn_zoo.docs_site.weights_tags import tags_cell
from fpn_zoo.docs_site.zoo_rows import FLOPS_SIZE, NECK_NAMES, REFERENCE_NAME, TABLE_SIZES, ZooRow

__all__ = ["PLOT_FILE", "TABLE_ID", "render_zoo_page"]

TABLE_ID = "zoo-table"
FILTER_ID = "zoo-filter"
PLOT_FILE = "latency.svg"
PLOT_ID = "zoo-plot"
DASH = "\u2014"
AP_SOURCES_ID = "coco-ap-sources"
AP_MARK = f' <sup><a href="#{AP_SOURCES_ID}">[AP]</a></sup>'
# mkdocs-material front matter: the table needs the page's full width.
FRONT_MATTER = "---\nhide:\n  - navigation\n  - toc\n---\n"


def _dash(reason: str) -> str:
    return f'<td data-sort="" title="{html.escape(reason, quote=True)}">{DASH}</td>'


def _figure_cell(figure: Figure | None, reason: str, ratio: float | None = None, rank: RankedRow | None = None) -> str:
    if figure is None:
        return _dash(reason)
    extra = f' <span class="zoo-ratio">{ratio:.2f}x</span>' if ratio is not None else ""
    if rank is None:
        return figure.html_cell(extra)
    # Ranked runs sort by what the rank is of (the median per-round ratio, one reference for all), so the rows a
    # reader sorts into order are the ones the marks compare, and a tie reads as a tie.
    noise = "within noise of a neighbour: its 95% interval overlaps theirs" if rank.within_noise else "ranked"
    title = html.escape(f"latency rank {rank.rank_text} at this size ({noise})", quote=True)
    extra += f' <span class="zoo-rank" title="{title}">#{rank.rank_text}</span>'
    return figure.html_cell(extra, sort=rank.median)


class _Columns:
    """Column headers with footnote marks that point at the source list under the table."""

    def __init__(self) -> None:
        self.sources: list[Source] = []

    def mark(self, source: Source | None) -> str:
        if source is None:
            return ""
        if source not in self.sources:
            self.sources.append(source)
        n = self.sources.index(source) + 1
        return f' <sup><a href="#source-{n}">[{n}]</a></sup>'

    @staticmethod
    def header(text: str, mark: str, numeric: bool) -> str:
        method = ' data-sort-method="number"' if numeric else ""
        return f"<th{method}>{text}{mark}</th>"


def _text_cell(text: str, sort: str | None = None) -> str:
    sort_attr = f' data-sort="{html.escape(sort, quote=True)}"' if sort is not None else ""
    return f"<td{sort_attr}>{text}</td>"


def _row_html(row: ZooRow, gpu_columns: list[str], fast: bool, not_measured: Callable[[str, str], str]) -> str:
    name = row.config.name
    page = f"models/{name}/"

    def measured(what: str) -> str:
        return not_measured(what, name)

    default_tag = f" ({row.weights.tag}, the default weights)" if row.coco_ap is not None and row.weights else ""
    cells = [
        _text_cell(f'<a href="{page}"><code>{name}</code></a>', name),
        _text_cell(f"{row.config.backbone_spec.timm_name}", row.config.backbone_spec.timm_name),
        _text_cell(NECK_NAMES[row.config.neck], row.config.neck),
        _figure_cell(
            _with_detail(row.coco_ap, default_tag),
            "no COCO weights: nothing to evaluate (see the model's page for how to train)",
        ),
        tags_cell(row.tags, page),
        _figure_cell(row.params, measured("params")),
        _figure_cell(row.gflops, measured("GFLOPs")),
        *(
            _figure_cell(row.latency.get(s), measured("latency"), row.latency_ratio.get(s), row.latency_rank.get(s))
            for s in TABLE_SIZES
        ),
        *(
            _figure_cell(
                row.fast_latency.get(s),
                measured("fast-path latency"),
                row.fast_latency_ratio.get(s),
                row.fast_latency_rank.get(s),
            )
            for s in (TABLE_SIZES if fast else ())
        ),
        _figure_cell(row.memory, measured("memory")),
        *(_figure_cell(row.gpu.get(column), measured("GPU figures")) for column in gpu_columns),
        _figure_cell(row.bccd_ap, "not in the BCCD fine-tuning run"),
    ]
    return f'<tr data-model="{name}">' + "".join(cells) + "</tr>"


def _with_detail(figure: Figure | None, extra: str) -> Figure | None:
    """The figure with ``extra`` added to its tooltip's first sentence."""
    return None if figure is None else dataclasses.replace(figure, detail=figure.detail + extra)


def render_zoo_table(rows: list[ZooRow], sources: SiteSources) -> tuple[str, list[Source]]:
    """The table's HTML and the sources its footnote marks number, in order."""
    columns = _Columns()
    bench = sources.bench.source if sources.bench else None
    gpu_columns = list(rows[0].gpu) if rows and rows[0].gpu else []
    gpu_source = sources.bench_gpu.source if sources.bench_gpu else None
    fast = any(row.fast_latency for row in rows)  # runs before the fast path have no such column

    def not_measured(what: str, name: str) -> str:
        if bench is None:
            return f"{what} not measured: no benchmark results are committed; run `fpn-zoo bench`"
        return (
            f"{what} not benchmarked yet: {bench.label} ({bench.date}) does not cover this model; "
            f"run `fpn-zoo bench {name}`, then `fpn-zoo docs`"
        )

    bccd = sources.finetune.source if sources.finetune else None
    headers = [
        columns.header("Model", "", False),
        columns.header("Backbone (timm)", "", False),
        columns.header("Neck", "", False),
        columns.header("COCO box AP, default weights", AP_MARK, True),
        columns.header("Weights: tag, COCO box AP", AP_MARK, True),
        columns.header("Params (M)", columns.mark(bench), True),
        columns.header(f"GFLOPs {FLOPS_SIZE}", columns.mark(bench), True),
        *(columns.header(f"CPU ms {size}", columns.mark(bench), True) for size in TABLE_SIZES),
        *(columns.header(f"CPU fast ms {size}", columns.mark(bench), True) for size in (TABLE_SIZES if fast else ())),
        columns.header(f"CPU peak MiB {FLOPS_SIZE}", columns.mark(bench), True),
        *(columns.header(f"{c} {FLOPS_SIZE}", columns.mark(gpu_source), True) for c in gpu_columns),
        columns.header("BCCD AP (AP50)", columns.mark(bccd), True),
    ]
    body = "\n".join(_row_html(row, gpu_columns, fast, not_measured) for row in rows)
    table = f'<table id="{TABLE_ID}">\n<thead><tr>{"".join(headers)}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'
    return table, columns.sources


def _source_list(sources: list[Source], rows: list[ZooRow]) -> list[str]:
    lines = []
    for n, source in enumerate(sources, 1):
        lines.append(f'{n}. <span id="source-{n}"></span>{source.markdown("../")}, {source.date}: {source.note}')
    # Every weights tag's AP carries its own source (the manifest entry, who reported it) and date: list each one.
    coco = [tag.coco_ap.source for row in rows for tag in row.tags if tag.coco_ap is not None]
    if coco:
        lines += [
            "",
            f'<span id="{AP_SOURCES_ID}"></span>[AP] COCO val2017 box AP of each weights tag, from '
            "`weights_manifest.json`:",
            "",
            *(f"- `{s.label}`, {s.date}: {s.note}" for s in coco),
        ]
    return lines


def _summary(rows: list[ZooRow]) -> str:
    tags = Counter(t.entry.status for r in rows for t in r.tags if t.entry.available)
    with_weights = sum(1 for r in rows if any(t.entry.available for t in r.tags))
    kinds = [
        f"{tags[s]} {text}"
        for s, text in [("published", "published"), ("convertible", "convertible from upstream checkpoints")]
        if tags[s]
    ]
    parts = [f"{with_weights} with weights to load ({', '.join(kinds)})"] if with_weights else []
    if len(rows) > with_weights:
        parts.append(f"{len(rows) - with_weights} not trained yet")
    return f"{len(rows)} models: " + ", ".join(parts) + "."


def _plot_sources(sources: SiteSources) -> str:
    used = [run.source for run in (sources.bench, sources.finetune) if run is not None]
    if not used:
        return "No results files yet, so the plot is empty."
    return "Sources: " + "; ".join(f"`{s.label}` ({s.date})" for s in used) + "."


def _fast_note(rows: list[ZooRow]) -> str:
    if not any(row.fast_latency for row in rows):
        return ""
    return (
        " The CPU fast columns time each model's fast inference path (`create_model(name, fast=True)`, what "
        "`fpn-zoo predict` and `fpn-zoo eval` run: BatchNorm folded into the convolutions, channels-last ResNets, "
        "inference mode, an NMS that stops once its 100 detections are decided, RoIAlign on every core) in the same "
        "rounds; their ratio is to the reference's eager path, and their ranks rank the fast paths among themselves."
    )


def _rank_note(rows: list[ZooRow]) -> str:
    if not any(row.latency_rank for row in rows):
        return ""
    return (
        " Every model of that run was timed in one process per size, in shuffled rounds with the reference; the "
        "latency columns sort by the median per-round ratio, and #N is the model's rank: 1 + the models measurably "
        "faster (their whole 95% interval below its own). \u2248 marks a rank within "
        "noise: the model's 95% interval overlaps its neighbour's, so their order is not measured."
    )


def render_zoo_page(rows: list[ZooRow], sources: SiteSources, header: str) -> str:
    """The Markdown of ``docs/zoo/index.md``."""
    table, table_sources = render_zoo_table(rows, sources)
    bench = sources.bench
    latency_note = (
        f"CPU latency is the median of the timed runs at batch 1 in fp32; the small figure beside it is the ratio "
        f"to {REFERENCE_NAME}, measured interleaved with each model in the same run (below 1: faster)."
        + _rank_note(rows)
        + _fast_note(rows)
        if bench
        else "No benchmark results are committed yet: run `fpn-zoo bench` and then `fpn-zoo docs`."
    )
    if sources.bench_gpu is None:
        latency_note += (
            " No GPU results are committed yet; `fpn-zoo bench --device cuda` on a GPU machine, then `fpn-zoo docs`, "
            "adds GPU columns here."
        )
    lines = [
        FRONT_MATTER + header,
        "# Model zoo",
        "",
        f"{_summary(rows)} Every figure below is generated by `fpn-zoo docs` from `weights_manifest.json` and the "
        "results files under `docs/results/`; hover a cell for how it was measured, and the numbered notes under the "
        "table give each column's source and date. A dash means not measured (hover it for why). Click a column "
        "header to sort; type in the box to filter (all words must match, e.g. `bifpn convnext`, `mmdet` or "
        "`not trained`).",
        "",
        '!!! note "Where the figures come from"',
        "    Latency, memory and FLOPs do not depend on the weights' values, so they are measured on randomly "
        "initialised models. Every COCO box AP is the figure the upstream (torchvision, mmdetection) reports for the "
        "checkpoint a weights tag converts, with the date it was recorded: none was measured by fpn_zoo, as no COCO "
        "images or upstream files could be downloaded where these pages were made. What was proven is the "
        "conversion: each model's page names the test that compares it with the upstream's own code, and what could "
        "not be verified. The BCCD column is a short fine-tune from scratch, far below what COCO-pretrained weights "
        "reach.",
        "",
        "The weights column lists every tag a model can load, its COCO box AP (hover for the source and date) and "
        "the hash prefix its file is checked against, which links to the file; **default** marks the tag "
        "`pretrained=True` loads, the one with the highest AP "
        "([the rule](../manifest.md#weights-entry)). The AP column sorts by the default weights; the weights column by "
        "the number of tags.",
        "",
        latency_note,
        "",
        f'<input id="{FILTER_ID}" class="zoo-filter" type="search" placeholder="Filter models" '
        f'aria-label="Filter the model table" aria-controls="{TABLE_ID}">',
        "",
        table,
        "",
        "Sources:",
        "",
        *_source_list(table_sources, rows),
        "",
        "## GFLOPs and accuracy against latency",
        "",
        f"![GFLOPs against CPU latency at {FLOPS_SIZE}, and BCCD fine-tuning AP against latency]({PLOT_FILE})"
        f"{{ #{PLOT_ID} }}",
        "",
        f"Left: cost of one forward at {FLOPS_SIZE}, every model. Right: box AP on BCCD val after the fine-tuning run, "
        "for the models it covers. " + _plot_sources(sources),
        "",
    ]
    return "\n".join(lines)
