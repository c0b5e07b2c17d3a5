"""``fpn-zoo export``: a checkpoint as a Hub-ready folder (``model.safetensors``, ``config.json``, ``README.md``).

The checkpoint is loaded strictly with ``create_model(name, weights=path)`` first, so an export can only contain
weights that load into the named model. The written tensors are the loaded model's, the config is the model's, and
``config.json`` keeps the source's provenance fields and adds an ``export`` record (tag, licence, datasets, where the
metrics came from, the source file's sha256).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fpn_zoo.outputs import claim_outputs
from fpn_zoo.publish.card import CardInputs, build_model_card
from fpn_zoo.voice import option
from fpn_zoo.weights.checkpoint import CONFIG_FILENAME, WEIGHTS_FILENAME, read_checkpoint, save_checkpoint
from fpn_zoo.weights.manifest import TAG_PATTERN, ManifestError, Metric, WeightsEntry, check_metric_date, load_manifest

if TYPE_CHECKING:
    from fpn_zoo.detector import ZooDetector

__all__ = ["CARD_FILENAME", "FLOPS_INPUT_SIZE", "ExportError", "ExportResult", "export_checkpoint", "write_export"]

CARD_FILENAME = "README.md"
FLOPS_INPUT_SIZE = (800, 800)  # the manifest's gflops_input_size
EXPORT_KEY = "export"  # config.json field holding the export record
_METRIC_FIELDS = ("dataset", "metric", "value", "source")


class ExportError(ValueError):
    """Export inputs or export folders that cannot be used (metrics file, tag, folder, card); the message says which."""


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes:
        out_dir: The export folder.
        sha256: Hex sha256 of ``model.safetensors``.
        size: Its size in bytes.
        num_params: Parameter count stated in the card.
        gflops: GFLOPs stated in the card (``None`` when not counted).
        metrics: The metrics in the card's ``model-index`` (empty: the card says none were measured).
        metrics_origin: Where they were taken from (``None`` when there are none).
    """

    out_dir: Path
    sha256: str
    size: int
    num_params: int
    gflops: float | None
    metrics: tuple[Metric, ...]
    metrics_origin: str | None = None


def atomic_write_text(target: Path, text: str) -> None:
    """Replace ``target`` with ``text`` in one step, so readers (and a crash) never see half a file."""
    # mkstemp creates the file 0600; keep the mode of the file being replaced (a manifest in a checkout is 0644).
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_tag(tag: str) -> str:
    """A weights tag as ``weights_manifest.json`` accepts it: lowercase letters, digits and underscores."""
    if not TAG_PATTERN.match(tag):
        raise ExportError(f"Tag {tag!r} must be lowercase letters, digits and underscores (e.g. 'coco', 'bccd_ft').")
    return tag


def load_metrics_file(path: str | os.PathLike[str]) -> tuple[Metric, ...]:
    """Read ``[{"dataset", "metric", "value", "source", "date"?}, ...]`` from a JSON file (``date``: YYYY-MM-DD).

    Examples:
        >>> load_metrics_file("no/such.json")
        Traceback (most recent call last):
        ...
        fpn_zoo.publish.export.ExportError: Cannot read metrics file no/such.json: ...
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ExportError(f"Cannot read metrics file {path}: {err}") from err
    if not isinstance(data, list):
        raise ExportError(f"Metrics file {path}: expected a JSON list of {{{', '.join(_METRIC_FIELDS)}}} objects.")
    metrics = []
    for i, item in enumerate(data):
        where = f"Metrics file {path}, item {i}"
        if not isinstance(item, dict) or not set(_METRIC_FIELDS) <= set(item) <= {*_METRIC_FIELDS, "date"}:
            raise ExportError(
                f"{where}: expected the keys {list(_METRIC_FIELDS)} and optionally 'date' (YYYY-MM-DD), got {item!r}."
            )
        value = item["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ExportError(f"{where}: value must be a finite number, got {value!r}.")
        texts = [item[k] for k in ("dataset", "metric", "source")]
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise ExportError(f"{where}: dataset, metric and source must be non-empty strings (source: who measured).")
        try:
            date = check_metric_date(item.get("date"), f"{where}: date")
        except ManifestError as err:
            raise ExportError(str(err)) from err
        metrics.append(Metric(item["dataset"], item["metric"], float(value), item["source"], date))
    keys = [(m.dataset, m.metric) for m in metrics]
    if len(set(keys)) != len(keys):
        raise ExportError(f"Metrics file {path}: a (dataset, metric) pair appears twice: {keys}.")
    return tuple(metrics)


def write_export(
    model: ZooDetector,
    out_dir: str | os.PathLike[str],
    *,
    extra: dict[str, Any] | None = None,
    tag: str | None = None,
    metrics: Sequence[Metric] = (),
    metrics_origin: str | None = None,
    license: str | None = None,
    datasets: Sequence[str] = (),
    repo_id: str | None = None,
    gflops_input_size: tuple[int, int] | None = FLOPS_INPUT_SIZE,
    provenance: str | None = None,
) -> ExportResult:
    """Write ``model`` as an export folder: weights and config (atomically), then the card describing them.

    Args:
        model: The detector to export (any device; tensors are saved from CPU).
        out_dir: Folder, created if needed; existing export files in it are replaced.
        extra: Extra ``config.json`` fields (provenance).
        tag: Weights tag the card's usage snippets load.
        metrics: Figures for the card (none: the card says nothing was measured).
        metrics_origin: Where ``metrics`` come from, for the card.
        license: Licence of the weights.
        datasets: Hub dataset ids for the card metadata.
        repo_id: Hub repository for the usage snippets (``None``: a placeholder ``fpn-zoo publish`` fills in).
        gflops_input_size: Input size of the FLOP count (one CPU forward pass, seconds); ``None`` skips it.
        provenance: One line on where the weights come from.

    Returns:
        What was written.
    """
    from fpn_zoo import inspect_model
    from fpn_zoo.weights.integrity import sha256_file

    out = save_checkpoint(model.state_dict(), model.config, out_dir, extra=extra)
    weights = out / WEIGHTS_FILENAME
    sha256, size = sha256_file(weights), weights.stat().st_size
    num_params = inspect_model.count_parameters(model.config)
    gflops = None
    if gflops_input_size is not None:
        gflops = round(inspect_model.count_flops(model.config, *gflops_input_size).gflops, 2)
    inputs = CardInputs(
        config=model.config,
        sha256=sha256,
        size=size,
        num_params=num_params,
        gflops=gflops,
        gflops_input_size=gflops_input_size,
        metrics=tuple(metrics),
        metrics_origin=metrics_origin,
        license=license,
        datasets=tuple(datasets),
        tag=tag,
        repo_id=repo_id,
        provenance=provenance,
    )
    card = build_model_card(inputs)
    atomic_write_text(out / CARD_FILENAME, str(card))
    return ExportResult(out, sha256, size, num_params, gflops, tuple(metrics), metrics_origin if metrics else None)


def describe_source(source: Any) -> str | None:
    """``config.json``'s ``source`` field as one line (``fpn-zoo convert`` writes a dict)."""
    if isinstance(source, str):
        return source
    if isinstance(source, dict):
        return ", ".join(f"{k}: {v}" for k, v in source.items())
    return None


def _manifest_entry(model: str, tag: str, manifest: str | os.PathLike[str] | None) -> WeightsEntry | None:
    return load_manifest(manifest).entry(model, tag)


def export_checkpoint(
    model: str,
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    tag: str | None = None,
    metrics_file: str | os.PathLike[str] | None = None,
    license: str | None = None,
    datasets: Sequence[str] = (),
    manifest: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Validate a checkpoint by loading it strictly, then write it as an export folder with its model card.

    Metrics come only from ``metrics_file`` or from the manifest entry ``model``/``tag`` (the caller asserts the
    checkpoint holds that entry's weights; its label space must match). With neither, the card states that no
    metrics were measured.

    Args:
        model: Registered model name.
        checkpoint: Exported folder or ``.safetensors`` file.
        out_dir: Export folder to write (not the checkpoint's own folder).
        tag: Weights tag for the manifest (``fpn-zoo publish`` writes the entry under it).
        metrics_file: JSON list of ``{dataset, metric, value, source}``.
        license: Licence of the weights; default: the manifest entry's.
        datasets: Hub dataset ids the weights were trained on.
        manifest: Manifest to read ``tag`` from (default: the one in use).
        overwrite: Replace the export files ``out_dir`` already holds (else they are refused, naming them).

    Returns:
        What was written.

    Raises:
        ExportError: Bad tag, metrics file or output folder, or a label space that contradicts ``tag``'s entry.
        ValueError: The checkpoint was exported for another model (and other ``create_model`` errors).

    Examples:
        >>> export_checkpoint("fpn_r50_coco", "runs/best.safetensors", "export/fpn_r50_bccd")  # doctest: +SKIP
    """
    from fpn_zoo import __version__
    from fpn_zoo.factory import create_model
    from fpn_zoo.weights.integrity import sha256_file

    if tag is not None:
        check_tag(tag)
    metrics = load_metrics_file(metrics_file) if metrics_file is not None else ()
    source = read_checkpoint(checkpoint)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{option('out_dir', str(out))} exists and is not a folder.")
    if out.resolve() == source.weights_path.parent.resolve():
        raise ExportError(f"{option('out_dir', str(out))} is the checkpoint's own folder; export into a new folder.")
    export_files = (WEIGHTS_FILENAME, CONFIG_FILENAME, CARD_FILENAME)
    claim_outputs(
        out, lambda folder: [folder / n for n in export_files], chosen=True, overwrite=overwrite, what="out_dir"
    )
    detector = create_model(model, weights=checkpoint, device="cpu")  # strict: the checkpoint must fit
    entry = _manifest_entry(model, tag, manifest) if tag is not None else None
    categories = detector.config.categories
    if entry is not None and entry.categories != categories:
        raise ExportError(
            f"The checkpoint has {len(categories)} class slots ({', '.join(categories[1:4])}, ...) but manifest "
            f"entry {model}:{tag} has label space {entry.label_space!r} "
            f"({len(entry.categories)} slots). Use another --tag for weights of another label space."
        )
    origin = f"metrics file {Path(metrics_file).name}" if metrics_file is not None else None
    if entry is not None and metrics_file is None:
        metrics, origin = entry.metrics, f"weights_manifest.json entry {model}:{tag}"
    license = license or (entry.license if entry is not None else None)
    if not datasets and entry is not None and entry.label_space == "coco-91":
        datasets = ("detection-datasets/coco",)  # the manifest entry's weights are COCO weights
    extra = {k: v for k, v in source.extra.items() if k not in ("format_version", "fpn_zoo_model", EXPORT_KEY)}
    extra[EXPORT_KEY] = {
        "tag": tag,
        "license": license,
        "datasets": list(datasets),
        "metrics_from": origin,
        "checkpoint": {"file": source.weights_path.name, "sha256": sha256_file(source.weights_path)},
        "fpn_zoo_version": __version__,
    }
    provenance = describe_source(extra.get("source")) or (entry.source if entry is not None else None)
    return write_export(
        detector,
        out,
        extra=extra,
        tag=tag,
        metrics=metrics,
        metrics_origin=origin,
        license=license,
        datasets=datasets,
        provenance=provenance,
    )
