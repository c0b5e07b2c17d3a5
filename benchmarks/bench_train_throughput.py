"""Kept so that the commands recorded in older results files still run: this is `fpn-zoo bench train`.

The measuring code is `fpn_zoo/bench/train_command.py`; docs/benchmarks.md documents it.
"""

import sys

from fpn_zoo.bench.train_command import main

if __name__ == "__main__":
    sys.exit(main())
