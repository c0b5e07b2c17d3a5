"""Round-robin timing: every callable once per round, in a freshly shuffled order each round.

Timing every model of a run and the reference in one process, round after round, puts them under the same
conditions: a load spike or a thermal change hits whichever callables run during it, and the shuffle spreads that
over all of them instead of always the one after (or before) the reference. The orders come from a seeded
``random.Random``, so a run can be repeated exactly, and the orders are returned for the results file.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["order_seed", "shuffled_rounds", "time_round_robin"]


def order_seed(seed: int, key: str) -> str:
    """The seed of one combination's orders: the run's seed and the combination, so each gets its own sequence.

    ``random.Random`` hashes a string seed with SHA-512, so the same text gives the same orders on every Python.

    Examples:
        >>> order_seed(0, "512x512/b1/fp32/contiguous/eager")
        'fpn-zoo-bench:0:512x512/b1/fp32/contiguous/eager'
    """
    return f"fpn-zoo-bench:{seed}:{key}"


def shuffled_rounds(names: Sequence[str], rounds: int, seed: int | str) -> list[list[str]]:
    """``rounds`` orders of ``names``, each a fresh shuffle, from a generator seeded with ``seed``.

    Raises:
        ValueError: Negative ``rounds`` or a name given twice.

    Examples:
        >>> orders = shuffled_rounds(["a", "b", "c"], 4, seed=0)
        >>> len(orders), all(sorted(o) == ["a", "b", "c"] for o in orders)
        (4, True)
        >>> orders == shuffled_rounds(["a", "b", "c"], 4, seed=0)
        True
    """
    if rounds < 0:
        raise ValueError(f"rounds {rounds}: give 0 or more")
    if len(set(names)) != len(names):
        raise ValueError(f"names must be distinct, got {list(names)}")
    rng = random.Random(seed)
    orders = []
    for _ in range(rounds):
        order = list(names)
        rng.shuffle(order)
        orders.append(order)
    return orders


def time_round_robin(
    fns: dict[str, Callable[[], Any]],
    *,
    warmup: int,
    rounds: int,
    seed: int | str,
    sync: Callable[[], None] = lambda: None,
) -> tuple[dict[str, list[float]], list[list[str]]]:
    """Time every callable once per round in a shuffled order, after ``warmup`` shuffled untimed rounds.

    Args:
        fns: The callables by name (models, their fast paths and the reference).
        warmup: Untimed rounds first (every callable, shuffled), so caches, allocator pools and lazy
            initialisations are settled for all of them before any timing.
        rounds: Timed rounds.
        seed: Seed of the orders (see ``order_seed``); warm-up and timed rounds draw from the same generator.
        sync: Waits for queued device work (``torch.cuda.synchronize`` on CUDA), called before and after each call.

    Returns:
        Milliseconds per callable, one per round in round order (so index ``i`` of two callables was measured in
        the same round), and the timed rounds' orders.

    Examples:
        >>> times, orders = time_round_robin({"a": lambda: None, "b": lambda: None}, warmup=1, rounds=3, seed=0)
        >>> [len(times["a"]), len(times["b"]), len(orders)]
        [3, 3, 3]
    """
    names = list(fns)
    orders = shuffled_rounds(names, warmup + rounds, seed)
    for order in orders[:warmup]:
        for name in order:
            fns[name]()
    sync()
    times: dict[str, list[float]] = {name: [] for name in names}
    for order in orders[warmup:]:
        for name in order:
            sync()
            start = time.perf_counter_ns()
            fns[name]()
            sync()
            times[name].append((time.perf_counter_ns() - start) / 1e6)
    return times, orders[warmup:]
