"""The files the site's figures come from: the weights manifest and the results JSON under ``docs/results/``.

Nothing here measures anything. The benchmark (``fpn-zoo bench``) and the fine-tuning run (``fpn-zoo bench
finetune``) write results files; this module picks the newest full run of each and hands the pages the data with its
source and date.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fpn_zoo.docs_site.figures import DocsSourceError, Source
from fpn_zoo.weights.manifest import Manifest, load_manifest

__all__ = [
    "FINETUNE_SCHEMA",
    "ResultsFile",
    "SiteSources",
    "load_finetune_results",
    "load_sources",
    "refuse_flagged",
]

FINETUNE_SCHEMA = "fpn-zoo-finetune"
FINETUNE_VERSION = 1
RESULTS_DIR = Path("docs") / "results"


@dataclass(frozen=True)
class ResultsFile:
    """One results file the pages draw on, with its source line.

    Attributes:
        path: The file.
        data: Its content, checked (and, for an old benchmark schema, migrated).
        source: Its name, date and how it was measured.
        rows_key: The list of per-model rows: ``"models"`` in a benchmark file, ``"results"`` in a fine-tuning file.
    """

    path: Path
    data: dict[str, Any]
    source: Source
    rows_key: str = "models"

    def model(self, name: str) -> dict[str, Any] | None:
        """The model's row, or ``None`` when the run did not measure it (or measuring it failed)."""
        rows = self.data[self.rows_key]
        return next((row for row in rows if row["model"] == name and not row.get("error")), None)


@dataclass(frozen=True)
class SiteSources:
    """Everything the generated pages are made from.

    Attributes:
        root: The repository root (holds ``mkdocs.yml`` and ``weights_manifest.json``).
        manifest: The parsed weights manifest.
        bench: The newest full CPU benchmark run, or ``None`` when there is none.
        bench_gpu: The newest full CUDA benchmark run, or ``None``.
        finetune: The newest BCCD fine-tuning run, or ``None``.
    """

    root: Path
    manifest: Manifest
    bench: ResultsFile | None
    bench_gpu: ResultsFile | None
    finetune: ResultsFile | None

    def files(self) -> list[Path]:
        """The source files, relative to the root, for the generated pages' headers."""
        runs = [self.bench, self.bench_gpu, self.finetune]
        paths = [self.manifest.path, *(run.path for run in runs if run is not None)]
        return [_relative(path, self.root) for path in paths]


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        return path


def _results_page(path: Path, root: Path) -> str | None:
    """The ``docs/``-relative link of the markdown table written beside a results file, if there is one."""
    table = path.with_suffix(".md")
    if not table.is_file():
        return None
    return _relative(table, root / "docs").as_posix()


def refuse_flagged(path: Path, data: dict[str, Any]) -> None:
    """Refuse a full benchmark run that its own consistency check flagged (``consistency.ok`` false).

    Its latency ranking contradicts the FLOPs beyond the measured intervals, so the machine was too noisy: the pages
    must not rank models from it. Quick smoke runs are never published, so they are let through.

    Raises:
        DocsSourceError: One line: the file, the first violation, and what to do.
    """
    from fpn_zoo.bench.ranking import describe_violations

    problem = describe_violations(data.get("consistency"))
    if problem and not data.get("quick"):
        raise DocsSourceError(
            f"{path} is flagged by fpn-zoo bench's consistency check ({problem}); its latency ranking is noise, so "
            "it cannot be published: rerun `fpn-zoo bench` on a quiet machine and replace this file with that run."
        )


def _bench_run(path: Path, root: Path) -> ResultsFile:
    from fpn_zoo.bench.results import load_results

    data = load_results(path)
    refuse_flagged(path, data)
    machine = data.get("machine") or {}
    versions = data.get("versions") or {}
    device = data.get("device", "cpu")
    hardware = machine.get("gpu") if device == "cuda" else machine.get("processor")
    cores = f", {machine['cpu_count']} cores" if device != "cuda" and machine.get("cpu_count") else ""
    note = (
        f"measured on {hardware or device}{cores} with torch {versions.get('torch', '?')}, batch 1 unless stated, "
        "random weights"
    )
    if data.get("migrated_from"):
        note += f" (schema {data['migrated_from']} file, migrated on load)"
    source = Source(_relative(path, root).as_posix(), str(data["date"])[:10], note, _results_page(path, root))
    return ResultsFile(path, data, source)


def _newest_bench(results_dir: Path, root: Path, device: str) -> ResultsFile | None:
    from fpn_zoo.bench.results import find_results

    runs = [_bench_run(path, root) for path in find_results(results_dir, device=device)]
    full = [run for run in runs if not run.data.get("quick") and _measured_models(run)]
    if not full:
        return None
    # Prefer a file in the current schema (a migrated old file backs the pages only when nothing newer exists), then
    # the run that covers the most models (a partial re-run does not hide the others), then the newest.
    return max(full, key=lambda run: (not run.data.get("migrated_from"), _measured_models(run), run.data["date"]))


def _measured_models(run: ResultsFile) -> int:
    return sum(1 for m in run.data["models"] if not m.get("error") and m.get("latency") and m.get("params"))


def load_finetune_results(path: Path) -> dict[str, Any]:
    """Read and check a BCCD fine-tuning results file (``fpn-zoo bench finetune``).

    Files written before the schema fields existed (no ``schema`` key) are version 1; any other schema name or
    version is refused by name.

    Raises:
        DocsSourceError: Unreadable file, another schema, or a missing field (named).
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DocsSourceError(f"Cannot read fine-tuning results {path}: {err}") from err
    schema = data.get("schema", FINETUNE_SCHEMA) if isinstance(data, dict) else None
    version = data.get("schema_version", FINETUNE_VERSION) if isinstance(data, dict) else None
    if schema != FINETUNE_SCHEMA or version != FINETUNE_VERSION:
        raise DocsSourceError(
            f"{path} has schema {schema!r} version {version!r}; this fpn-zoo reads {FINETUNE_SCHEMA!r} version "
            f"{FINETUNE_VERSION}. Re-run `fpn-zoo bench finetune` or upgrade fpn-zoo."
        )
    for key in ("date", "command", "results", "settings"):
        if key not in data:
            raise DocsSourceError(f"{path}: missing {key!r}; a fine-tuning results file needs date, command, results.")
    for i, row in enumerate(data["results"]):
        for key in ("model", "after"):
            if key not in row:
                raise DocsSourceError(f"{path}: results[{i}] has no {key!r}.")
        for metric in ("AP", "AP50"):
            if not isinstance(row["after"].get(metric), (int, float)):
                raise DocsSourceError(f"{path}: results[{i}].after.{metric} must be a number.")
    return data


def _finetune_run(path: Path, root: Path) -> ResultsFile:
    data = load_finetune_results(path)
    settings = data["settings"]
    note = (
        f"{settings.get('iters', '?')} iterations from {settings.get('init', '?')} init on BCCD train, "
        f"COCO AP on BCCD val; {data.get('note', '')}"
    ).strip()
    source = Source(_relative(path, root).as_posix(), str(data["date"])[:10], note, _results_page(path, root))
    return ResultsFile(path, data, source, rows_key="results")


def load_sources(root: str | Path = ".") -> SiteSources:
    """Read the manifest and pick the newest full results files under ``<root>/docs/results``.

    Raises:
        DocsSourceError: ``root`` is not an fpn-zoo checkout, or a results file is malformed or of an unknown schema.
    """
    root = Path(root)
    manifest_file = root / "weights_manifest.json"
    if not (root / "mkdocs.yml").is_file() or not manifest_file.is_file():
        raise DocsSourceError(
            f"{root.resolve()} is not an fpn-zoo checkout (it needs mkdocs.yml and weights_manifest.json); "
            "run `fpn-zoo docs` from the repository root or pass --root."
        )
    results_dir = root / RESULTS_DIR
    finetune = sorted(results_dir.glob("bccd-finetune-*.json"))
    finetune_runs = [_finetune_run(path, root) for path in finetune]
    return SiteSources(
        root=root,
        manifest=load_manifest(manifest_file),
        bench=_newest_bench(results_dir, root, "cpu"),
        bench_gpu=_newest_bench(results_dir, root, "cuda"),
        finetune=max(finetune_runs, key=lambda run: run.data["date"], default=None),
    )
