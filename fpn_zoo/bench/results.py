"""Reading ``fpn-zoo bench`` results: the schema (version 2), its validation, v1 migration and file discovery.

The results JSON is a contract: the docs generator and anyone comparing runs read it through ``load_results``,
which accepts version 2 as written and version 1 (``benchmarks/bench_models.py``) migrated in memory, and refuses
anything else by name. docs/bench-results.md documents every field. Imports nothing heavy.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "STATS_KEYS",
    "BenchResultsError",
    "find_results",
    "is_v1_results",
    "load_results",
    "validate_results",
]

SCHEMA = "fpn-zoo-bench"
SCHEMA_VERSION = 2
READABLE = "this fpn-zoo reads versions 1 (migrated) and 2; upgrade fpn-zoo or re-run fpn-zoo bench"
STATS_KEYS = ("n", "median_ms", "min_ms", "max_ms", "q1_ms", "q3_ms", "iqr_ms", "mean_ms", "times_ms")


class BenchResultsError(ValueError):
    """A results file that cannot be read as ``fpn-zoo bench`` results; the message names the file and the key."""


def is_v1_results(data: Any) -> bool:
    """Whether ``data`` is what ``benchmarks/bench_models.py`` wrote (schema version 1, before the ``schema`` key).

    Examples:
        >>> is_v1_results({"schema_version": 1, "pairs": [], "models": []})
        True
    """
    return (
        isinstance(data, dict)
        and data.get("schema", SCHEMA) == SCHEMA
        and data.get("schema_version") == 1
        and isinstance(data.get("pairs"), list)
        and isinstance(data.get("models"), list)
    )


class _Checker:
    """Walks a results dict and raises ``BenchResultsError`` naming the file and the first bad key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> None:
        raise BenchResultsError(f"results file {self.source}: {path} {problem}")

    def key(self, obj: dict[str, Any], key: str, path: str, kind: str, *, nullable: bool = False) -> Any:
        where = f"{path}.{key}" if path else key
        if key not in obj:
            self.fail(where, "is missing")
        value = obj[key]
        if value is None and nullable:
            return None
        checks: dict[str, Callable[[Any], bool]] = {
            "str": lambda v: isinstance(v, str),
            "bool": lambda v: isinstance(v, bool),
            "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            "list": lambda v: isinstance(v, list),
            "dict": lambda v: isinstance(v, dict),
        }
        if not checks[kind](value):
            article = "an" if kind == "int" else "a"
            self.fail(where, f"must be {article} {kind}{' or null' * nullable}, got {value!r:.60}")
        return value

    def stats(self, obj: dict[str, Any], key: str, path: str, *, nullable: bool = False) -> None:
        record = self.key(obj, key, path, "dict", nullable=nullable)
        if record is None:
            return
        where = f"{path}.{key}"
        for name in STATS_KEYS[1:-1]:
            self.key(record, name, where, "number")
        n = self.key(record, "n", where, "int")
        times = self.key(record, "times_ms", where, "list")
        if len(times) != n:
            self.fail(f"{where}.times_ms", f"has {len(times)} timings but n is {n}")

    def interval(self, obj: dict[str, Any], key: str, path: str) -> None:
        record = self.key(obj, key, path, "dict")
        where = f"{path}.{key}"
        for name in ("low", "high", "level", "coverage"):
            self.key(record, name, where, "number")
        self.key(record, "n", where, "int")
        if record["low"] > record["high"]:
            self.fail(where, f"has low {record['low']!r} above high {record['high']!r}")

    def sized_numbers(self, obj: dict[str, Any], key: str, path: str) -> None:
        values = self.key(obj, key, path, "dict", nullable=True)
        for size, value in (values or {}).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(f"{path}.{key}.{size}", f"must be a number, got {value!r:.60}")


def _check_model(c: _Checker, entry: Any, path: str) -> None:
    if not isinstance(entry, dict):
        c.fail(path, "must be an object")
    for key in ("model", "backbone", "neck", "dataset"):
        c.key(entry, key, path, "str")
    failed = c.key(entry, "error", path, "str", nullable=True) is not None
    c.key(entry, "params", path, "int", nullable=True)
    c.sized_numbers(entry, "gflops", path)
    for i, row in enumerate(c.key(entry, "latency", path, "list", nullable=failed) or []):
        where = f"{path}.latency[{i}]"
        for key, kind in (("size", "str"), ("batch", "int"), ("precision", "str"), ("channels_last", "bool"),
                          ("compiled", "bool"), ("throughput_img_s", "number")):  # fmt: skip
            c.key(row, key, where, kind)
        c.stats(row, "ours", where)
        c.stats(row, "reference", where, nullable=True)
        for key in ("ratio", "paired_ratio", "reference_throughput_img_s"):
            c.key(row, key, where, "number", nullable=True)
        if "fast" in row:  # runs with the fast path (settings.fast); older files have none of these keys
            c.stats(row, "fast", where)
            for key in ("fast_ratio", "fast_paired_ratio", "fast_vs_eager_paired_ratio"):
                c.key(row, key, where, "number")
        for key in ("paired_ratio_ci", "fast_paired_ratio_ci", "fast_vs_eager_paired_ratio_ci"):
            if key in row:  # rows timed in the shared latency process; older files have none
                c.interval(row, key, where)
    memory = c.key(entry, "memory", path, "dict", nullable=True)
    if memory is not None:
        for key, kind in (("size", "str"), ("method", "str"), ("ours_mib", "number")):
            c.key(memory, key, f"{path}.memory", kind)
        for key in ("reference_mib", "ratio"):
            c.key(memory, key, f"{path}.memory", "number", nullable=True)
    load = c.key(entry, "load", path, "dict", nullable=True)
    if load is not None:
        for key in ("weights_mib", "reference_weights_mib"):
            c.key(load, key, f"{path}.load", "number")
        for temperature in ("cold", "warm"):
            where = f"{path}.load.{temperature}"
            record = c.key(load, temperature, f"{path}.load", "dict")
            c.stats(record, "ours", where)
            c.stats(record, "reference", where)
            c.key(record, "ratio", where, "number")


def _check_neck(c: _Checker, row: Any, path: str) -> None:
    if not isinstance(row, dict):
        c.fail(path, "must be an object")
    for key, kind in (("neck", "str"), ("size", "str"), ("reference_name", "str"), ("equivalent", "bool"),
                      ("ratio", "number"), ("gflops", "number"), ("reference_gflops", "number")):  # fmt: skip
        c.key(row, key, path, kind)
    c.stats(row, "ours", path)
    c.stats(row, "reference", path)
    c.key(row, "paired_ratio", path, "number", nullable=True)
    c.key(row, "max_abs_diff", path, "number", nullable=True)


def validate_results(data: Any, source: str | os.PathLike[str] = "<memory>") -> dict[str, Any]:
    """Check that ``data`` has the schema-2 structure; return it unchanged.

    Raises:
        BenchResultsError: A missing key or a value of the wrong type, named by its path (``models[3].load.cold``).

    Examples:
        >>> validate_results({"schema": "fpn-zoo-bench", "schema_version": 2}, "x.json")
        Traceback (most recent call last):
        ...
        fpn_zoo.bench.results.BenchResultsError: results file x.json: date is missing
    """
    c = _Checker(str(source))
    if not isinstance(data, dict):
        c.fail("the top level", "must be a JSON object")
    if data.get("schema") != SCHEMA or data.get("schema_version") != SCHEMA_VERSION:
        c.fail("schema/schema_version", f"must be {SCHEMA!r}/{SCHEMA_VERSION}")
    date = c.key(data, "date", "", "str")
    try:
        datetime.datetime.fromisoformat(date)
    except ValueError:
        c.fail("date", f"must be an ISO 8601 date, got {date!r}")
    c.key(data, "command", "", "list")
    c.key(data, "quick", "", "bool")
    c.key(data, "device", "", "str")
    machine = c.key(data, "machine", "", "dict")
    c.key(machine, "processor", "machine", "str")
    c.key(machine, "cpu_count", "machine", "int", nullable=True)
    c.key(machine, "torch_num_threads", "machine", "int")
    c.key(machine, "gpu", "machine", "str", nullable=True)
    versions = c.key(data, "versions", "", "dict")
    for key in ("python", "torch", "torchvision", "timm", "effdet", "fpn-zoo", "fpn_zoo_commit"):
        c.key(versions, key, "versions", "str", nullable=key != "python")
    settings = c.key(data, "settings", "", "dict")
    for key, kind in (("sizes", "list"), ("runs", "int"), ("warmup", "int"), ("batches", "list"),
                      ("precisions", "list"), ("channels_last", "list"), ("compile", "list"), ("seed", "int"),
                      ("score_thresh", "number"), ("memory_size", "str"), ("weights", "str")):  # fmt: skip
        c.key(settings, key, "settings", kind)
    c.key(settings, "load_runs", "settings", "int", nullable=True)
    references = c.key(data, "references", "", "dict")
    detector = c.key(references, "detector", "references", "dict")
    c.key(detector, "name", "references.detector", "str")
    c.key(detector, "params", "references.detector", "int", nullable=True)
    c.sized_numbers(detector, "gflops", "references.detector")
    for neck in ("fpn_neck", "bifpn_neck"):
        c.key(c.key(references, neck, "references", "dict"), "name", f"references.{neck}", "str")
    for i, entry in enumerate(c.key(data, "models", "", "list")):
        _check_model(c, entry, f"models[{i}]")
    for i, row in enumerate(c.key(data, "necks", "", "list")):
        _check_neck(c, row, f"necks[{i}]")
    c.key(data, "total_wall_s", "", "number", nullable=True)
    if "consistency" in data:  # written since the shared latency process; older files have none
        consistency = c.key(data, "consistency", "", "dict")
        c.key(consistency, "ok", "consistency", "bool")
        for i, violation in enumerate(c.key(consistency, "violations", "consistency", "list")):
            c.key(violation, "message", f"consistency.violations[{i}]", "str")
        if consistency["ok"] == bool(consistency["violations"]):
            c.fail("consistency.ok", "must be true exactly when violations is empty")
    for i, record in enumerate(c.key(data, "latency_rounds", "", "list") if "latency_rounds" in data else []):
        where = f"latency_rounds[{i}]"
        c.key(record, "order_seed", where, "str")
        c.key(record, "orders", where, "list")
    return data


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise BenchResultsError(f"results file {path} cannot be read: {err}") from err
    except json.JSONDecodeError as err:
        raise BenchResultsError(f"results file {path} is not JSON: {err}") from err


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read, version-check and validate an ``fpn-zoo bench`` results file; schema version 1 is migrated in memory.

    Args:
        path: A JSON file written by ``fpn-zoo bench`` (version 2) or ``benchmarks/bench_models.py`` (version 1).

    Returns:
        The results in the version-2 structure (docs/bench-results.md). Migrated files carry ``"migrated_from": 1``
        and a ``migration_note``; the file itself is never rewritten.

    Raises:
        BenchResultsError: Unreadable JSON, another schema, an unknown version, or a missing/mistyped key (named).

    Examples:
        >>> results = load_results("docs/results/bench-cpu-20261121.json")  # doctest: +SKIP
        >>> results["schema_version"], results["migrated_from"]  # doctest: +SKIP
        (2, 1)
    """
    from fpn_zoo.bench.migrate import migrate_v1

    source = Path(path)
    data = _read_json(source)
    if not isinstance(data, dict):
        raise BenchResultsError(f"results file {source} holds a JSON {type(data).__name__}, not an object; {READABLE}")
    if is_v1_results(data):
        return validate_results(migrate_v1(data, source), source)
    if "schema" not in data:
        version = data.get("schema_version", "missing")
        raise BenchResultsError(
            f"results file {source} has no 'schema' key (schema_version {version}) and is not a version-1 "
            f"bench_models.py file (which has 'pairs' and 'models'); it is not {SCHEMA!r} results; {READABLE}"
        )
    name, version = data["schema"], data.get("schema_version")
    if name != SCHEMA:
        raise BenchResultsError(f"results file {source} has schema {name!r}, not {SCHEMA!r}; {READABLE}")
    if version != SCHEMA_VERSION:
        raise BenchResultsError(f"results file {source} has schema {name!r} version {version!r}; {READABLE}")
    return validate_results(data, source)


def _date_of(data: dict[str, Any]) -> datetime.datetime:
    try:
        date = datetime.datetime.fromisoformat(str(data.get("date")))
    except ValueError:
        return datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)
    return date if date.tzinfo else date.replace(tzinfo=datetime.timezone.utc)


def find_results(directory: str | os.PathLike[str], device: str | None = None) -> list[Path]:
    """The ``fpn-zoo bench`` results files in ``directory`` (not its subfolders), oldest first.

    A file counts when it names the ``fpn-zoo-bench`` schema (any version, so that ``load_results`` can refuse a
    newer one by name) or is a version-1 file; other JSON (the load or training benchmarks) is left out.

    Args:
        directory: Folder to search, e.g. ``docs/results``.
        device: Keep only runs on this device type (``"cpu"``, ``"cuda"``; ``"cuda:1"`` matches ``"cuda"`` runs).

    Returns:
        Paths sorted by the ``date`` recorded inside each file, then by name.

    Examples:
        >>> [p.name for p in find_results("docs/results", device="cpu")]  # doctest: +SKIP
        ['bench-cpu-20261121.json', 'bench-cpu-20261121-pairs40.json']
    """
    found = []
    for path in Path(directory).glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(data, dict) or not (data.get("schema") == SCHEMA or is_v1_results(data)):
            continue
        if device is not None and str(data.get("device", "")).split(":")[0] != device.split(":")[0]:
            continue
        found.append((_date_of(data), path.name, path))
    return [path for _, _, path in sorted(found)]
