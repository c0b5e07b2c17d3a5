"""``fpn-zoo bench``: latency, memory, FLOPs and load time of the zoo next to torchvision and effdet, in one run.

Modules, one job each: ``settings`` (what a run measures), ``measure`` (timing, statistics, memory), ``machine``
(machine and library facts), ``references`` (the reference builders), ``loadtime`` (cold/warm weight loads),
``child`` (one measuring subprocess), ``latency`` (every model's latency in one process per size), ``roundrobin``
(shuffled, seeded rounds), ``ranking`` (confidence intervals, tied ranks, the FLOPs consistency check), ``runner``
(orchestration and progress bar), ``report`` (markdown), ``results`` and ``migrate`` (reading results files),
``command`` (the CLI and its family of measurements). The other members of ``fpn-zoo bench``: ``load_command``,
``load_child`` and ``load_report`` (``fpn-zoo bench load``), ``train_command``, ``train_child`` and ``train_report``
(``fpn-zoo bench train``), ``finetune`` (``fpn-zoo bench finetune``) and ``fast_check`` (``fpn-zoo bench
fast-check``).

Reading results needs neither torch nor a GPU:

Example:
    >>> from fpn_zoo.bench import find_results, load_results
    >>> for path in find_results("docs/results", device="cpu"):  # doctest: +SKIP
    ...     results = load_results(path)
"""

from __future__ import annotations

from fpn_zoo.bench.results import (
    SCHEMA,
    SCHEMA_VERSION,
    BenchResultsError,
    find_results,
    load_results,
    validate_results,
)
from fpn_zoo.bench.settings import BenchSettings

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "BenchResultsError",
    "BenchSettings",
    "find_results",
    "load_results",
    "validate_results",
]
