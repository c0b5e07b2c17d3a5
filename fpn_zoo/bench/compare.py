"""Do two benchmark runs rank the models the same way? ``fpn-zoo bench compare RUN_A.json RUN_B.json``.

A ranking is only worth publishing if a repeated run reproduces it. Two models are *ordered* by a run when their
95% intervals do not overlap there (one is measurably faster); a *contradiction* is a pair that both runs order, in
opposite orders. Ties are never contradictions: a tie says the run could not tell the two apart.
Only models and sizes both runs ranked are compared (rows timed in one shared process, with intervals), for the
eager and the fast path each.

Exit status: 0 when the runs agree, 3 when a pair is contradicted (a noisy machine, as for ``fpn-zoo bench``'s
consistency check), 2 for a file that is not a results file.

Examples:
    >>> ranks_a = {"a": RankedRow("a", 0.9, 0.85, 0.95, 1, False), "b": RankedRow("b", 1.2, 1.1, 1.3, 2, False)}
    >>> ranks_b = {"a": RankedRow("a", 1.3, 1.2, 1.4, 2, False), "b": RankedRow("b", 1.0, 0.9, 1.1, 1, False)}
    >>> [c.models for c in contradictions(ranks_a, ranks_b)]
    [('a', 'b')]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fpn_zoo.bench.command import INCONSISTENT_EXIT
from fpn_zoo.bench.ranking import RankedRow, latency_ranking
from fpn_zoo.bench.results import BenchResultsError, load_results

__all__ = ["Comparison", "Contradiction", "compare_runs", "contradictions", "main", "parse_args", "run"]


@dataclass(frozen=True)
class Contradiction:
    """Two models that both runs order, in opposite orders.

    Attributes:
        models: The pair, in the first run's order (faster first).
        first: Their ranks in the first run.
        second: Their ranks in the second run.
    """

    models: tuple[str, str]
    first: tuple[str, str]
    second: tuple[str, str]


@dataclass(frozen=True)
class Comparison:
    """The two runs' rankings at one size, for one path.

    Attributes:
        size: ``"HxW"``.
        path: ``"eager"`` or ``"fast"``.
        models: The models both runs ranked here.
        ordered_in_both: Pairs that both runs order (not tied in either).
        contradictions: Those of them ordered oppositely.
    """

    size: str
    path: str
    models: tuple[str, ...]
    ordered_in_both: int
    contradictions: tuple[Contradiction, ...]


def contradictions(first: dict[str, RankedRow], second: dict[str, RankedRow]) -> list[Contradiction]:
    """The pairs of models both rankings order, in opposite orders (ties never count)."""
    found = []
    for a, b in itertools.combinations(sorted(set(first) & set(second)), 2):
        in_first, in_second = _order(first[a], first[b]), _order(second[a], second[b])
        if in_first * in_second < 0:
            pair = (a, b) if in_first < 0 else (b, a)
            found.append(
                Contradiction(
                    pair,
                    (first[pair[0]].rank_text, first[pair[1]].rank_text),
                    (second[pair[0]].rank_text, second[pair[1]].rank_text),
                )
            )
    return found


def _order(a: RankedRow, b: RankedRow) -> int:
    """-1 when ``a`` is measurably faster than ``b`` (its interval wholly below), 1 when slower, 0 within noise."""
    return -1 if a.high < b.low else 1 if b.high < a.low else 0


def _ordered_pairs(first: dict[str, RankedRow], second: dict[str, RankedRow]) -> int:
    common = sorted(set(first) & set(second))
    return sum(
        1 for a, b in itertools.combinations(common, 2) if _order(first[a], first[b]) and _order(second[a], second[b])
    )


def compare_runs(first: dict[str, Any], second: dict[str, Any]) -> list[Comparison]:
    """Compare the latency rankings of two results files at every size and path both ranked.

    Args:
        first: A results file's data (`load_results`).
        second: Another's.

    Returns:
        One comparison per size and path with at least two models ranked by both runs.
    """
    sizes = sorted({r["size"] for m in first["models"] for r in m.get("latency") or []})
    comparisons = []
    for size, path in itertools.product(sizes, ("eager", "fast")):
        ranks = [latency_ranking(run["models"], size, fast=path == "fast") for run in (first, second)]
        common = tuple(sorted(set(ranks[0]) & set(ranks[1])))
        if len(common) < 2:
            continue
        comparisons.append(Comparison(size, path, common, _ordered_pairs(*ranks), tuple(contradictions(*ranks))))
    return comparisons


def to_text(comparisons: list[Comparison], names: tuple[str, str]) -> str:
    """What the command prints: one line per size and path, then each contradiction."""
    if not comparisons:
        return f"{names[0]} and {names[1]} rank no common model at a common size: nothing to compare."
    lines = []
    for c in comparisons:
        verdict = "agree" if not c.contradictions else f"{len(c.contradictions)} contradiction(s)"
        lines.append(
            f"{c.size}, {c.path}: {len(c.models)} models in both runs, {c.ordered_in_both} pairs ordered by both "
            f"(the others tied in at least one): {verdict}"
        )
        lines += [
            f"  {x.models[0]} before {x.models[1]} in the first run (ranks {x.first[0]}, {x.first[1]}), after it in "
            f"the second (ranks {x.second[0]}, {x.second[1]})"
            for x in c.contradictions
        ]
    return "\n".join(lines)


def parse_args(
    argv: list[str] | None = None,
    prog: str = "fpn-zoo bench compare",
    parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser,
) -> argparse.Namespace:
    """The options of ``fpn-zoo bench compare``."""
    parser = parser_class(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path, help="a results JSON of fpn-zoo bench")
    parser.add_argument("second", type=Path, help="another, e.g. a repeated run of the same models")
    args = parser.parse_args(argv)
    for path in (args.first, args.second):
        if not path.is_file():
            parser.error(f"{path} is not a file; give two results JSON files written by fpn-zoo bench")
    return args


def run(args: argparse.Namespace) -> int:
    """Compare the runs of parsed ``args``; print the verdicts; 0 when they agree, 3 on a contradiction."""
    try:
        runs = [load_results(path) for path in (args.first, args.second)]
    except BenchResultsError as err:
        print(f"fpn-zoo: error: {err}", file=sys.stderr)
        return 2
    comparisons = compare_runs(*runs)
    print(to_text(comparisons, (str(args.first), str(args.second))))
    return INCONSISTENT_EXIT if any(c.contradictions for c in comparisons) else 0


def main(argv: list[str] | None = None) -> int:
    """Command line (``fpn-zoo bench compare``): see the module docstring."""
    return run(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
