"""Kept so that the commands recorded in older results files still run: this is `fpn-zoo bench load`.

The measuring code is `fpn_zoo/bench/load_command.py`; docs/benchmarks.md documents it.
"""

import sys

from fpn_zoo.bench.load_command import main

if __name__ == "__main__":
    sys.exit(main())
