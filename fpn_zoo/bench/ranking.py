"""Ranking benchmark rows honestly: a confidence interval for each median ratio, ties marked, and a sanity check.

Pure arithmetic on the numbers of a results file; imports nothing heavy, so the docs generator and the report use it
as the bench does. docs/bench-results.md gives the method in words.

* ``median_ci``: the distribution-free confidence interval of a median from order statistics. With ``n`` values
  sorted, the interval ``[x_(k), x_(n+1-k)]`` covers the true median with probability
  ``1 - 2 * P(Binomial(n, 1/2) <= k - 1)``, whatever the distribution; ``k`` is the largest that keeps at least the
  asked confidence. No bootstrap, so no seed and the same interval every time.
* ``rank_rows``: rows sorted by median; a row whose interval overlaps its neighbour's shares its rank and is marked
  within noise instead of being ranked above or below it.
* ``latency_ranking``: ``rank_rows`` over the models of a results file at one size, the order the tables show.
* ``check_consistency``: a model that computes all of another and more (``work_order.contains``: PANet over FPN,
  ResNet-101 over ResNet-50, ...) must not come out faster beyond the intervals; a violation means the machine was
  too noisy for the table to be trusted.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fpn_zoo.bench.work_order import contains

__all__ = [
    "CI_LEVEL",
    "CI_METHOD",
    "NOISE_MARK",
    "MedianCI",
    "RankedRow",
    "check_consistency",
    "describe_violations",
    "latency_ranking",
    "median_ci",
    "overlaps",
    "paired_ratios",
    "rank_rows",
]

CI_LEVEL = 0.95
CI_METHOD = (
    "distribution-free confidence interval of the median from order statistics: [x_(k), x_(n+1-k)] of the sorted "
    "per-round ratios, k the largest with 1 - 2 P(Binomial(n, 1/2) <= k-1) >= 0.95 (below n = 6 no k reaches 0.95: "
    "the interval is [min, max] and coverage says what it reaches)"
)
NOISE_MARK = "\u2248"  # ≈


@dataclass(frozen=True)
class MedianCI:
    """A median and its confidence interval.

    Attributes:
        median: The sample median.
        low: Lower end of the interval (an order statistic of the sample).
        high: Upper end.
        coverage: The interval's exact coverage under any continuous distribution (at least ``CI_LEVEL`` for
            ``n >= 6``; below, what ``[min, max]`` reaches).
        n: Sample size.
    """

    median: float
    low: float
    high: float
    coverage: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in latency rows (``paired_ratio_ci``, ``fast_paired_ratio_ci``)."""
        return {"low": self.low, "high": self.high, "level": CI_LEVEL, "coverage": self.coverage, "n": self.n}


def _binomial_cdf_half(k: int, n: int) -> float:
    """``P(Binomial(n, 1/2) <= k)``, exactly (``math.comb`` on integers)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def median_ci(values: Sequence[float], level: float = CI_LEVEL) -> MedianCI:
    """The median of ``values`` and its distribution-free confidence interval from order statistics.

    Raises:
        ValueError: No values, or ``level`` outside (0, 1).

    Examples:
        >>> ci = median_ci([float(v) for v in range(1, 11)])  # n = 10: [x_(2), x_(9)], coverage 0.979
        >>> (ci.median, ci.low, ci.high, round(ci.coverage, 3))
        (5.5, 2.0, 9.0, 0.979)
        >>> median_ci([3.0, 1.0, 2.0]).low  # n < 6: no interval reaches 95 %, so [min, max]
        1.0
    """
    if not values:
        raise ValueError("No values: a confidence interval needs at least one.")
    if not 0 < level < 1:
        raise ValueError(f"level {level!r}: give a confidence level between 0 and 1, e.g. 0.95")
    ordered, n = sorted(values), len(values)
    k = 1  # 1-based rank of the lower end; k = 1 is [min, max]
    while k + 1 <= (n + 1) // 2 and 1 - 2 * _binomial_cdf_half(k, n) >= level:
        k += 1
    coverage = 1 - 2 * _binomial_cdf_half(k - 1, n) if n > 1 else 0.0
    return MedianCI(statistics.median(ordered), ordered[k - 1], ordered[n - k], coverage, n)


def paired_ratios(ours_ms: Sequence[float], reference_ms: Sequence[float]) -> list[float]:
    """``ours_i / reference_i`` per round: both timed in the same round, so the pair shares the machine's load.

    Examples:
        >>> paired_ratios([1.0, 3.0], [2.0, 2.0])
        [0.5, 1.5]
    """
    return [a / b for a, b in zip(ours_ms, reference_ms, strict=True)]


def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two closed intervals ``(low, high)`` share a point.

    Examples:
        >>> overlaps((0.9, 1.1), (1.05, 1.2)), overlaps((0.9, 1.0), (1.01, 1.2))
        (True, False)
    """
    return a[0] <= b[1] and b[0] <= a[1]


@dataclass(frozen=True)
class RankedRow:
    """One row of a latency ranking.

    Attributes:
        key: What the row is (a model name).
        median: Its sort key (the median per-round ratio to the reference).
        low: Lower end of its confidence interval.
        high: Upper end.
        rank: 1 plus the number of rows measurably faster (their whole interval below this row's).
        within_noise: Its interval overlaps a neighbour's in the sorted order, so its place is not measured.
    """

    key: str
    median: float
    low: float
    high: float
    rank: int
    within_noise: bool

    @property
    def rank_text(self) -> str:
        """``"3"``, or ``"≈3"`` for a row within noise of a neighbour.

        Examples:
            >>> RankedRow("a", 1.0, 0.9, 1.1, 3, True).rank_text
            '≈3'
        """
        return f"{NOISE_MARK if self.within_noise else ''}{self.rank}"


def rank_rows(rows: Iterable[tuple[str, float, float, float]]) -> list[RankedRow]:
    """Sort ``(key, median, low, high)`` rows by median and rank them, rows within noise marked.

    A row's rank is 1 plus the number of rows measurably faster than it: rows whose whole interval lies below its
    own. Rows whose intervals overlap are not told apart, so they can share a rank, and a row whose interval
    overlaps a neighbour's in the sorted order is marked within noise. A long run of overlapping neighbours thus
    still ranks its ends apart when their own intervals are clear of each other.

    Examples:
        >>> [r.rank_text for r in rank_rows([("b", 1.0, 0.95, 1.05), ("a", 0.9, 0.85, 0.96), ("c", 1.3, 1.2, 1.4)])]
        ['≈1', '≈1', '3']
        >>> [r.rank_text for r in rank_rows([("a", 1.0, 0.9, 1.1), ("b", 1.1, 1.05, 1.2), ("c", 1.2, 1.15, 1.3)])]
        ['≈1', '≈1', '≈2']
    """
    ordered = sorted(rows, key=lambda r: (r[1], r[0]))
    tied = [False] * len(ordered)
    for i in range(1, len(ordered)):
        if overlaps(ordered[i - 1][2:4], ordered[i][2:4]):
            tied[i - 1] = tied[i] = True
    return [
        RankedRow(key, median, low, high, 1 + sum(other[3] < low for other in ordered), tied[i])
        for i, (key, median, low, high) in enumerate(ordered)
    ]


def _baseline_row(entry: dict[str, Any], size: str) -> dict[str, Any] | None:
    """The fp32, batch-1, contiguous, eager latency row of a model entry at ``size``: what the tables rank."""
    rows = entry.get("latency") or []
    return next((r for r in rows if _combo(r) == (size, 1, "fp32", False, False)), None)


def latency_ranking(models: list[dict[str, Any]], size: str, *, fast: bool = False) -> dict[str, RankedRow]:
    """The models' ranks at ``size`` (fp32, batch 1, eager, contiguous), by median per-round ratio to the reference.

    Only rows timed in one shared process carry an interval (``paired_ratio_ci``); rows of older files, each timed
    in its own process, are not ranked at all: their ratios are to different measurements of the reference.

    Args:
        models: The model entries of a results file.
        size: ``"HxW"``.
        fast: Rank the fast paths instead of the eager models.

    Returns:
        Model name -> its ranked row; empty when no row has an interval.

    Examples:
        >>> latency_ranking([], "512x512")
        {}
    """
    key = "fast_paired_ratio" if fast else "paired_ratio"
    rows = []
    for entry in models:
        row = None if entry.get("error") else _baseline_row(entry, size)
        if row is not None and row.get(f"{key}_ci") is not None:
            rows.append((entry["model"], row[key], row[f"{key}_ci"]["low"], row[f"{key}_ci"]["high"]))
    return {ranked.key: ranked for ranked in rank_rows(rows)}


def _ci_of(row: dict[str, Any], path: str) -> tuple[float, float, float] | None:
    key = "paired_ratio" if path == "eager" else "fast_paired_ratio"
    ci = row.get(f"{key}_ci")
    return None if ci is None or row.get(key) is None else (row[key], ci["low"], ci["high"])


def check_consistency(models: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Compare every model with each model it contains ([`work_order.contains`][fpn_zoo.bench.work_order.contains]).

    ``models`` are model entries of a results file. For each size and latency combination measured in one process
    (rows with ``paired_ratio_ci``), and for the eager and the fast path, a model that computes all of another and
    more must not be faster beyond the intervals: its upper bound below the other's lower bound is a violation.

    Returns:
        ``{"ok", "checked", "violations", "rule"}``; ``checked`` counts the comparisons made, and each violation
        names both models, the size and combination, the path, both GFLOPs and both intervals.

    Examples:
        >>> row = lambda r, lo, hi: {"size": "64x64", "batch": 1, "precision": "fp32", "channels_last": False,
        ...     "compiled": False, "paired_ratio": r, "paired_ratio_ci": {"low": lo, "high": hi}}
        >>> fpn = {"model": "fpn_r50_coco", "gflops": {"64x64": 10.0}, "latency": [row(1, .9, 1.1)]}
        >>> panet = {"model": "panet_r50_coco", "gflops": {"64x64": 11.0}, "latency": [row(.8, .7, .85)]}
        >>> check_consistency([fpn, panet])["ok"]
        False
    """
    violations, checked = [], 0
    usable = [m for m in models if not m.get("error")]
    for heavy in usable:
        for light in usable:
            if not contains(heavy["model"], light["model"]):
                continue
            rows_light = {_combo(r): r for r in light.get("latency") or []}
            for row_heavy in heavy.get("latency") or []:
                row_light = rows_light.get(_combo(row_heavy))
                if row_light is None:
                    continue
                for path in ("eager", "fast"):
                    ci_heavy, ci_light = _ci_of(row_heavy, path), _ci_of(row_light, path)
                    if ci_heavy is None or ci_light is None:
                        continue
                    checked += 1
                    if ci_heavy[2] < ci_light[1]:
                        violations.append(_violation(heavy, light, row_heavy, path, ci_heavy, ci_light))
    return {
        "ok": not violations,
        "checked": checked,
        "violations": violations,
        "rule": "a model that computes all of another and more (same heads; its neck and backbone each the other's "
        "or containing it: PANet and AugFPN contain FPN, ResNet-101 contains ResNet-50, ConvNeXt-B contains S "
        "contains T): its upper CI bound of the median per-round ratio must not lie below the other's lower bound "
        "(eager and fast path each)",
    }


def _combo(row: dict[str, Any]) -> tuple[Any, ...]:
    return row["size"], row["batch"], row["precision"], row["channels_last"], row["compiled"]


def _violation(
    heavy: dict[str, Any],
    light: dict[str, Any],
    row: dict[str, Any],
    path: str,
    ci_heavy: tuple[float, float, float],
    ci_light: tuple[float, float, float],
) -> dict[str, Any]:
    size = row["size"]
    flops = [(entry.get("gflops") or {}).get(size) for entry in (heavy, light)]
    shown = [f" ({f:.1f} GFLOPs)" if f is not None else "" for f in flops]
    return {
        "heavier": heavy["model"], "lighter": light["model"], "path": path, "size": size, "batch": row["batch"],
        "precision": row["precision"], "channels_last": row["channels_last"], "compiled": row["compiled"],
        "gflops": flops, "heavier_ci": list(ci_heavy[1:]), "lighter_ci": list(ci_light[1:]),
        "message": f"{heavy['model']}{shown[0]} ran faster than {light['model']}{shown[1]}, which it contains, at "
        f"{size}, {path}: ratio CI [{ci_heavy[1]:.3f}, {ci_heavy[2]:.3f}] below [{ci_light[1]:.3f}, {ci_light[2]:.3f}]",
    }  # fmt: skip


def describe_violations(consistency: dict[str, Any] | None) -> str:
    """One line on a flagged run (empty when it is not flagged).

    Examples:
        >>> describe_violations({"ok": True, "violations": []})
        ''
    """
    if not consistency or consistency.get("ok", True):
        return ""
    violations = consistency.get("violations") or []
    first = violations[0]["message"] if violations else "no detail recorded"
    more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
    return f"{len(violations)} consistency violation(s): {first}{more}"
