"""What the measuring commands print while they run, and how a failed measuring subprocess is reported.

Examples:
    >>> log = StageLog("bench demo")
    >>> log.elapsed_s >= 0.0
    True
"""

from __future__ import annotations

import sys
import time

__all__ = ["ChildError", "StageLog"]


class ChildError(RuntimeError):
    """A measuring subprocess failed; the message ends with its stderr."""


class StageLog:
    """Progress lines on stderr, each stamped with the seconds since the log was made: ``[bench load +  12.3s] ...``.

    Args:
        name: What runs, shown in every line.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._start = time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        """Seconds since the log was made."""
        return time.perf_counter() - self._start

    def __call__(self, message: str) -> None:
        print(f"[{self.name} +{self.elapsed_s:6.1f}s] {message}", file=sys.stderr, flush=True)
