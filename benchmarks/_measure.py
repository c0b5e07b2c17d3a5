"""The measuring helpers of the scripts in this folder, which now live in the installed package (``fpn_zoo.bench``).

Kept as a module so that ``bench_load.py``, ``bench_train_throughput.py``, ``bench_finetune_bccd.py`` and
``_load_child.py`` import them as before; ``fpn-zoo bench`` uses the same functions.
"""

from __future__ import annotations

from fpn_zoo.bench.machine import git_commit as _git_commit
from fpn_zoo.bench.machine import library_versions, machine_info
from fpn_zoo.bench.measure import (
    PRECISIONS,
    count_call_flops,
    markdown_table,
    max_rss_kib,
    measure_peak_rss,
    measure_peak_tensor_memory,
    precision,
    release_free_heap,
    summarize,
    sync,
    time_interleaved,
)
from fpn_zoo.bench.measure import proc_status_kib as _proc_status_kib

__all__ = [
    "PRECISIONS",
    "_git_commit",
    "_proc_status_kib",
    "count_call_flops",
    "library_versions",
    "machine_info",
    "markdown_table",
    "max_rss_kib",
    "measure_peak_rss",
    "measure_peak_tensor_memory",
    "precision",
    "release_free_heap",
    "summarize",
    "sync",
    "time_interleaved",
]
