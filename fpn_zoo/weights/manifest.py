"""``weights_manifest.json``: the single source of weights metadata, parsed into typed, validated records.

The file lives at the repository root (next to ``hubconf.py``); wheels carry a copy inside the package. Its schema
is documented in ``docs/manifest.md``. Every registered model has at least one weights entry, and an entry never
claims what does not exist: ``published`` (on the Hugging Face Hub, pinned to a commit, sha256 known),
``convertible`` (an upstream checkpoint converts to this model) or ``not_trained`` (no weights; the recipe says how
to train it).

``FPN_ZOO_MANIFEST=/path/to/manifest.json`` points the loader at another manifest (a private zoo, or a manifest
being prepared for publication).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any, Literal

SCHEMA_VERSION = 2
MANIFEST_ENV = "FPN_ZOO_MANIFEST"
STATUSES = ("published", "convertible", "not_trained")
CONVERTERS = ("torchvision", "mmdet", "convnext")  # fpn_zoo.converters.CONVERTERS, named without importing torch

# The repository-root file is the source of truth: a checkout, a torch.hub download and an editable install read it
# there; a built wheel has no repository root and carries a copy inside the package (setup.py's build hook).
_ROOT_MANIFEST = Path(__file__).resolve().parents[2] / "weights_manifest.json"
_PACKAGED_MANIFEST = Path(__file__).resolve().parents[1] / "weights_manifest.json"
MANIFEST_PATH = _ROOT_MANIFEST if _ROOT_MANIFEST.is_file() else _PACKAGED_MANIFEST

COMMIT_PATTERN = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
REPO_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
TAG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_]*$")
# The metric that ranks a model's weights: `pretrained=True` loads the entry with the highest value.
DEFAULT_METRIC = ("COCO val2017", "box_ap")


class ManifestError(ValueError):
    """The manifest is missing or does not follow its schema; the message names the offending field."""


@dataclass(frozen=True)
class Metric:
    """One measured figure, with where it comes from (``"measured by fpn_zoo ..."`` or the upstream's claim).

    ``date`` (ISO ``YYYY-MM-DD``) is when it was measured, or when an upstream's claim was recorded; the
    documentation site shows no figure without one.
    """

    dataset: str
    metric: str
    value: float
    source: str
    date: str | None = None


@dataclass(frozen=True)
class HubLocation:
    """Where published weights live on the Hugging Face Hub, pinned to one commit.

    ``filename`` is relative to the repository root; ``config.json`` sits beside it.
    """

    repo_id: str
    filename: str
    revision: str
    sha256: str
    size: int

    @property
    def config_filename(self) -> str:
        parent = PurePosixPath(self.filename).parent
        return str(parent / "config.json") if str(parent) != "." else "config.json"


@dataclass(frozen=True)
class UpstreamSource:
    """An upstream checkpoint that converts to the model: its URL and the hash the upstream publishes.

    torchvision publishes only the first 8 hex digits of a file's sha256 (in its name); ``sha256`` holds the full
    digest once a maintainer has recorded it, and is then checked instead.
    """

    converter: str
    url: str
    sha256_prefix: str
    sha256: str | None = None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class WeightsEntry:
    """One weights tag of one model."""

    model: str
    tag: str
    status: Literal["published", "convertible", "not_trained"]
    label_space: str
    categories: tuple[str, ...]
    num_params: int
    gflops: float
    gflops_input_size: tuple[int, int]
    metrics: tuple[Metric, ...]
    license: str | None
    recipe: str
    source: str
    hub: HubLocation | None = None
    upstream: UpstreamSource | None = None

    @property
    def available(self) -> bool:
        """Whether ``pretrained=True`` can load this entry (published, or convertible from upstream)."""
        return self.status != "not_trained"

    @property
    def coco_box_ap(self) -> float | None:
        """The entry's box AP on COCO val2017 (``DEFAULT_METRIC``), whoever reported it; ``None`` without one."""
        for m in self.metrics:
            if (m.dataset, m.metric) == DEFAULT_METRIC:
                return m.value
        return None


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest: weights entries per model name, in file order.

    The default weights of a model (``pretrained=True``) are its available entry with the highest box AP on COCO
    val2017, the first in file order on a tie or when none reports one (`default_entry`).
    """

    path: Path
    models: dict[str, tuple[WeightsEntry, ...]]
    label_spaces: dict[str, tuple[str, ...]]

    def entries(self, name: str) -> tuple[WeightsEntry, ...]:
        return self.models.get(name, ())

    def default_entry(self, name: str) -> WeightsEntry | None:
        """The weights ``pretrained=True`` loads: the best available entry by COCO box AP, ``None`` if none.

        Examples:
            >>> load_manifest().default_entry("fpn_r50_coco").tag
            'coco_mmdet_mask_ms3x'
        """
        return self._best(self.entries(name))

    @staticmethod
    def _best(entries: tuple[WeightsEntry, ...]) -> WeightsEntry | None:
        available = [e for e in entries if e.available]
        if not available:
            return None
        # max() keeps the first of equal keys, so file order breaks ties; entries without the AP rank last.
        return max(available, key=lambda e: -math.inf if e.coco_box_ap is None else e.coco_box_ap)

    def entry(self, name: str, tag: str | None = None) -> WeightsEntry | None:
        """The entry with ``tag``, or the default one (`default_entry`); ``None`` when there is none.

        A tag's leading parts name a group: ``"coco"``, when no entry is tagged exactly that, is the default among
        the ``coco_*`` entries with weights (``"coco_mmdet"`` among ``coco_mmdet_*``), so that ``pretrained="coco"``
        means "COCO weights" on every model, whoever trained them.

        Examples:
            >>> manifest = load_manifest()
            >>> manifest.entry("fpn_r50_coco", "coco").tag, manifest.entry("fpn_r50_coco", "coco_tv").tag
            ('coco_mmdet_mask_ms3x', 'coco_tv')
        """
        if tag is None:
            return self.default_entry(name)
        exact = next((e for e in self.entries(name) if e.tag == tag), None)
        if exact is not None:
            return exact
        return self._best(tuple(e for e in self.entries(name) if e.tag.startswith(f"{tag}_")))

    def pretrained_models(self) -> list[str]:
        """Names of the models with weights to load (published or convertible), sorted."""
        return sorted(name for name, entries in self.models.items() if any(e.available for e in entries))


def _require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise ManifestError(f"{where}: missing field {key!r}.")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ManifestError(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}.")
    return value


def _check_unknown(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(allowed)}.")


def check_relative_filename(filename: str, where: str) -> str:
    """Refuse filenames that could escape the repository folder (absolute paths, ``..``, backslashes)."""
    path = PurePosixPath(filename)
    if (
        not filename
        or path.is_absolute()
        or "\\" in filename
        or ".." in path.parts
        or re.match(r"^[A-Za-z]:", filename)
        or filename != str(path)  # "./x", "a//b"
    ):
        raise ManifestError(f"{where}: filename {filename!r} must be a plain relative path inside the repository.")
    return filename


def _parse_hub(obj: Any, where: str) -> HubLocation:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected an object, got {obj!r}.")
    _check_unknown(obj, {"repo_id", "filename", "revision", "sha256", "size"}, where)
    repo_id = _require(obj, "repo_id", str, where)
    if not REPO_ID_PATTERN.match(repo_id):
        raise ManifestError(f"{where}.repo_id: {repo_id!r} is not a Hub repository id ('org/name').")
    revision = _require(obj, "revision", str, where)
    if not COMMIT_PATTERN.match(revision):
        raise ManifestError(f"{where}.revision: {revision!r} must be a full 40-hex commit id (branches move).")
    sha256 = _require(obj, "sha256", str, where)
    if not _HEX64.match(sha256):
        raise ManifestError(f"{where}.sha256: {sha256!r} must be 64 lowercase hex digits.")
    size = _require(obj, "size", int, where)
    if size <= 0:
        raise ManifestError(f"{where}.size: must be positive, got {size}.")
    filename = check_relative_filename(_require(obj, "filename", str, where), where)
    if not filename.endswith(".safetensors"):
        raise ManifestError(f"{where}.filename: published weights are .safetensors files, got {filename!r}.")
    return HubLocation(repo_id, filename, revision, sha256, size)


def _parse_upstream(obj: Any, where: str) -> UpstreamSource:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected an object, got {obj!r}.")
    _check_unknown(obj, {"converter", "url", "sha256_prefix", "sha256"}, where)
    converter = _require(obj, "converter", str, where)
    if converter not in CONVERTERS:
        raise ManifestError(f"{where}.converter: {converter!r} is not one of {CONVERTERS}.")
    url = _require(obj, "url", str, where)
    if not re.match(r"^https?://", url):
        raise ManifestError(f"{where}.url: {url!r} must be an http(s) URL.")
    check_relative_filename(url.rsplit("/", 1)[-1], where + ".url")
    prefix = _require(obj, "sha256_prefix", str, where)
    if not re.match(r"^[0-9a-f]{8,64}$", prefix):
        raise ManifestError(f"{where}.sha256_prefix: {prefix!r} must be 8 to 64 lowercase hex digits.")
    sha256 = obj.get("sha256")
    valid = isinstance(sha256, str) and _HEX64.match(sha256) and sha256.startswith(prefix)
    if sha256 is not None and not valid:
        raise ManifestError(f"{where}.sha256: {sha256!r} must be 64 hex digits starting with the prefix {prefix}.")
    return UpstreamSource(converter, url, prefix, sha256)


def _parse_metric(obj: Any, where: str) -> Metric:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected an object, got {obj!r}.")
    _check_unknown(obj, {"dataset", "metric", "value", "source", "date"}, where)
    value = _require(obj, "value", (int, float), where)
    return Metric(
        dataset=_require(obj, "dataset", str, where),
        metric=_require(obj, "metric", str, where),
        value=float(value),
        source=_require(obj, "source", str, where),
        date=check_metric_date(obj.get("date"), f"{where}.date"),
    )


def check_metric_date(date: object, where: str) -> str | None:
    """``date`` if it is ``None`` or an ISO calendar date (``2026-11-21``); otherwise a `ManifestError`."""
    if date is None:
        return None
    try:
        if isinstance(date, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
            datetime.date.fromisoformat(date)
            return date
    except ValueError:
        pass
    raise ManifestError(f"{where}: {date!r} is not a date; write it as YYYY-MM-DD, e.g. '2026-11-21'.")


_ENTRY_FIELDS = {
    "tag",
    "status",
    "label_space",
    "num_params",
    "gflops",
    "gflops_input_size",
    "metrics",
    "license",
    "recipe",
    "source",
    "hub",
    "upstream",
}


def _parse_entry(model: str, obj: Any, label_spaces: dict[str, tuple[str, ...]], where: str) -> WeightsEntry:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected an object, got {obj!r}.")
    _check_unknown(obj, _ENTRY_FIELDS, where)
    tag = _require(obj, "tag", str, where)
    if not TAG_PATTERN.match(tag):
        raise ManifestError(f"{where}.tag: {tag!r} must be lowercase letters, digits and underscores.")
    status = _require(obj, "status", str, where)
    if status not in STATUSES:
        raise ManifestError(f"{where}.status: {status!r} is not one of {STATUSES}.")
    label_space = _require(obj, "label_space", str, where)
    if label_space not in label_spaces:
        raise ManifestError(f"{where}.label_space: {label_space!r} is not in label_spaces {sorted(label_spaces)}.")
    size = _require(obj, "gflops_input_size", list, where)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ManifestError(f"{where}.gflops_input_size: expected [height, width], got {size!r}.")
    license_ = obj.get("license")
    if license_ is not None and not isinstance(license_, str):
        raise ManifestError(f"{where}.license: expected a string or null, got {license_!r}.")
    hub = _parse_hub(obj["hub"], where + ".hub") if obj.get("hub") is not None else None
    upstream = _parse_upstream(obj["upstream"], where + ".upstream") if obj.get("upstream") is not None else None
    # The status and the locations must agree, so the manifest cannot claim weights it has no address for.
    if (status == "published") != (hub is not None):
        raise ManifestError(f"{where}: status {status!r} {'requires' if hub is None else 'forbids'} a 'hub' location.")
    if (status == "convertible") != (upstream is not None):
        raise ManifestError(
            f"{where}: status {status!r} {'requires' if upstream is None else 'forbids'} an 'upstream' source."
        )
    metrics = _require(obj, "metrics", list, where)
    if status == "not_trained" and metrics:
        raise ManifestError(f"{where}: a not_trained entry cannot carry metrics.")
    return WeightsEntry(
        model=model,
        tag=tag,
        status=status,  # type: ignore[arg-type]  # checked against STATUSES above
        label_space=label_space,
        categories=label_spaces[label_space],
        num_params=_require(obj, "num_params", int, where),
        gflops=float(_require(obj, "gflops", (int, float), where)),
        gflops_input_size=(size[0], size[1]),
        metrics=tuple(_parse_metric(m, f"{where}.metrics[{i}]") for i, m in enumerate(metrics)),
        license=license_,
        recipe=_require(obj, "recipe", str, where),
        source=_require(obj, "source", str, where),
        hub=hub,
        upstream=upstream,
    )


def parse_manifest(data: Any, path: Path) -> Manifest:
    """Validate a decoded manifest against schema version 2.

    Raises:
        ManifestError: The first violation, with its location (e.g. ``models.fpn_r50_coco.weights[0].hub.revision``).
    """
    where = str(path)
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected a JSON object.")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(
            f"{where}: schema_version {data.get('schema_version')!r} is not supported; this fpn_zoo reads "
            f"version {SCHEMA_VERSION} (docs/manifest.md)."
        )
    _check_unknown(data, {"schema_version", "description", "label_spaces", "models"}, where)
    raw_spaces = _require(data, "label_spaces", dict, where)
    label_spaces = {}
    for key, names in raw_spaces.items():
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ManifestError(f"{where}.label_spaces.{key}: expected a non-empty list of category names.")
        label_spaces[key] = tuple(names)
    models: dict[str, tuple[WeightsEntry, ...]] = {}
    for name, model_obj in _require(data, "models", dict, where).items():
        mwhere = f"{where}: models.{name}"
        if not isinstance(model_obj, dict):
            raise ManifestError(f"{mwhere}: expected an object.")
        _check_unknown(model_obj, {"weights"}, mwhere)
        raw_entries = _require(model_obj, "weights", list, mwhere)
        if not raw_entries:
            raise ManifestError(f"{mwhere}.weights: list at least one entry (status not_trained if none exist).")
        entries = tuple(
            _parse_entry(name, e, label_spaces, f"{mwhere}.weights[{i}]") for i, e in enumerate(raw_entries)
        )
        tags = [e.tag for e in entries]
        if len(set(tags)) != len(tags):
            raise ManifestError(f"{mwhere}.weights: duplicate tags {tags}.")
        models[name] = entries
    return Manifest(path=path, models=models, label_spaces=label_spaces)


def manifest_path() -> Path:
    """The manifest in use: ``$FPN_ZOO_MANIFEST`` when set, else the repository's (or the installed copy)."""
    override = os.environ.get(MANIFEST_ENV)
    return Path(override) if override else MANIFEST_PATH


@cache
def _load(path: Path, mtime_ns: int) -> Manifest:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ManifestError(f"Cannot read the weights manifest {path}: {err}") from err
    return parse_manifest(data, path)


def load_manifest(path: str | os.PathLike[str] | None = None) -> Manifest:
    """Parse and validate the manifest (cached per file version; read on first use, never at import).

    Examples:
        >>> load_manifest().entry("fpn_r50_coco").status
        'convertible'
    """
    p = Path(path) if path is not None else manifest_path()
    try:
        mtime = p.stat().st_mtime_ns
    except OSError as err:
        raise ManifestError(f"Cannot read the weights manifest {p}: {err}") from err
    return _load(p, mtime)


def weights_status(name: str) -> str:
    """One line for tables and ``fpn-zoo info``: what weights exist for ``name``."""
    entries = load_manifest().entries(name)
    if not entries:
        return "no manifest entry"
    parts = []
    for e in entries:
        where = {
            "published": f"{e.hub.repo_id}@{e.hub.revision[:8]}" if e.hub else "",
            "convertible": f"converted on first use from {e.source}",
            "not_trained": "random init; " + e.recipe,
        }[e.status]
        parts.append(f"{e.tag}: {e.status} ({where})")
    return "; ".join(parts)
